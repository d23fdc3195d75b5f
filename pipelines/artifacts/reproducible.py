"""Byte-reproducible files: the same model written twice is the same bytes, so dvc.lock and the proof keys hold.

TensorFlow and Keras do not write reproducible files (tensorflow/tensorflow#54067). What differs between two runs
on one machine, and what is done about it:
- a `.keras` archive: the save date (metadata.json), Python object ids (config.json's `shared_object_id`), the zip
  entries' times: rewritten with the date dropped, ids numbered in order of appearance, a fixed time;
- a Keras SavedModel export: the random layers' seed states (drawn when the model is loaded), the order of the
  endpoint's variables (`_all_variables`, keras-team/keras#23553, listed in capture order, which differs between
  processes) and fingerprint.pb's random UUID: seed states numbered, variables sorted by name, the UUID derived
  from the content;
- tf2onnx's ONNX file: the numbers in the names it makes up (`Transpose__32`), and which of two equal constants
  survives its folding, follow object order: those names renumbered in graph order;
- a torch state dict: `torch.save` to a path names its zip folder after the (temporary) file: saved to a stream.
The exports' own checks (tests/test_reproducible.py) write each twice and compare the bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import logging
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
_OBJECT_ID = re.compile(r'"shared_object_id": (\d+)')


def keras_archive(path: Path) -> None:
    """Rewrite the `.keras` file at `path` without what changes from save to save (the weights are untouched)."""
    with zipfile.ZipFile(path) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    ids: dict[str, str] = {}

    def numbered(match: re.Match) -> str:
        return f'"shared_object_id": {ids.setdefault(match.group(1), str(len(ids) + 1))}'

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as out:
        for info, original in entries:
            data = original
            if info.filename == "metadata.json":
                metadata = json.loads(original)
                metadata.pop("date_saved", None)
                data = json.dumps(metadata).encode()
            elif info.filename == "config.json":
                data = _OBJECT_ID.sub(numbered, original.decode()).encode()
            fixed = zipfile.ZipInfo(info.filename, ZIP_TIME)
            fixed.compress_type, fixed.external_attr = info.compress_type, 0o644 << 16
            out.writestr(fixed, data)
    path.write_bytes(buffer.getvalue())


@contextlib.contextmanager
def keras_export(model: Any) -> Iterator[None]:
    """Around `ExportArchive.write_out`: seed states numbered, the endpoint's variables listed by name."""
    for number, variable in enumerate(v for v in model.variables if v.path.endswith("seed_generator_state")):
        variable.assign([number, 0])  # a random layer's state: used in training only, drawn at random on load
    try:
        from keras.src.export import (  # lazy: Keras imports TensorFlow (~15 s); Keras work only
            saved_model_export_archive as archive_module,
        )
    except ImportError:  # another Keras layout: the export works, not reproducibly (the test says so)
        log.warning("this Keras has no saved_model_export_archive: the SavedModel will not be byte-reproducible")
        yield
        return
    listed = archive_module._list_variables_used_by_fns

    def by_name(fns: Any) -> tuple[list, list]:
        trainable, other = listed(fns)
        key = _variable_key
        return sorted(trainable, key=key), sorted(other, key=key)

    archive_module._list_variables_used_by_fns = by_name
    try:
        yield
    finally:
        archive_module._list_variables_used_by_fns = listed


def _variable_key(variable: Any) -> tuple[str, tuple]:
    return str(variable.name), tuple(int(d) if d is not None else -1 for d in variable.shape)


def savedmodel_fingerprint(savedmodel: Path) -> None:
    """fingerprint.pb's UUID (random per save) derived from the SavedModel's own bytes; its hashes are kept."""
    from tensorflow.core.protobuf import fingerprint_pb2  # lazy: TensorFlow takes ~15 s to import; TF work only

    path = savedmodel / "fingerprint.pb"
    if not path.is_file():
        return
    fingerprint = fingerprint_pb2.FingerprintDef()
    fingerprint.ParseFromString(path.read_bytes())
    digest = hashlib.sha256()
    for part in ("saved_model.pb", "variables/variables.index"):
        if (savedmodel / part).is_file():
            digest.update((savedmodel / part).read_bytes())
    fingerprint.uuid = str(int.from_bytes(digest.digest()[:16], "big"))  # the form TensorFlow writes: 128 bits
    path.write_bytes(fingerprint.SerializeToString(deterministic=True))


_MADE_UP = re.compile(r"^(.*)__\d+(:\d+)?$")  # tf2onnx's names: <what>__<counter>[:<output>]


def onnx_names(model: Any) -> None:
    """Renumber the names tf2onnx made up (`<what>__<n>`) in order of first use, in place, and list the initializers
    in that order; a made-up constant's name is `const__<n>` (of two equal constants, which one's name survives
    folding varies). The graph's inputs and outputs keep theirs. A graph with subgraphs (If, Loop) is left as it is:
    they may refer to outer names."""
    graph = model.graph
    if any(a.type in (5, 10) for node in graph.node for a in node.attribute):  # GRAPH, GRAPHS
        return
    interface = {v.name for v in [*graph.input, *graph.output]}
    constants = {i.name for i in graph.initializer}
    names: dict[str, str] = {}
    numbers = itertools.count()
    for name in [n for node in graph.node for n in [*node.input, *node.output]] + sorted(constants):
        made_up = _MADE_UP.match(name)
        if made_up and name not in interface and name not in names:
            what = "const" if name in constants else made_up.group(1)
            while (new := f"{what}__{next(numbers)}{made_up.group(2) or ''}") in interface:  # inputs keep theirs
                pass
            names[name] = new
    nodes: dict[str, str] = {}
    for node in graph.node:
        made_up = _MADE_UP.match(node.name)
        if made_up:
            node.name = nodes.setdefault(node.name, f"{made_up.group(1)}__n{len(nodes)}")
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
    for item in [*graph.initializer, *graph.value_info]:
        item.name = names.get(item.name, item.name)
    first_use = {n: i for i, n in reversed(list(enumerate(n for node in graph.node for n in node.input)))}
    ordered = sorted(graph.initializer, key=lambda i: (first_use.get(i.name, len(first_use)), i.name))
    graph.ClearField("initializer")
    graph.initializer.extend(ordered)


def torch_state_dict(state: Any, target: Path) -> None:
    """`torch.save` to a stream: the zip's folder is then "archive", not the temporary file's name."""
    import torch  # lazy: torch takes ~6 s to import; torch work only

    with target.open("wb") as stream:
        torch.save(state, stream)
