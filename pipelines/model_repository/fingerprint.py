"""Incremental proof: what a model's parity report or benchmark was made from, as one key.

`dvc repro` re-runs the parity and benchmark stages when any model, config or code file changes, and each stage
served and measured every model of the catalog: after adding one model, all of them were proven and benchmarked
again. Each report records a key (`proof_key`): a SHA-256 over everything its figures depend on, that is

- the code that proves and serves (every file under pipelines/, evaluate/, serve/),
- the model's spec (every field, its network's and tolerances included) and the config.pbtxt files it generates,
- the content of every file the spec names (the export, the user's source and sample, labels) and of every file
  the repository serves for it (an ensemble's steps and classifier),
- the run's settings (protocols, or the load; the server and its front), the instance kind, the data, and the
  versions of what serves and computes the references (Triton's wheel, ONNX Runtime, TensorFlow, PyTorch, ...).

`reuse=true` (the stages' setting) keeps a report whose key is today's key (for parity: a passed one), and serves
only the other models; `python -m evaluate.parity model=all` (reuse off) proves everything again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from pipelines.artifacts import io_signature
from pipelines.config.spec import ModelSpec
from pipelines.core.paths import PROJECT_ROOT, project_path
from pipelines.model_repository import assembly

CODE = ("pipelines", "evaluate", "serve")  # what proves, serves and builds the served steps
# what serves (Triton, the stand-ins' runtimes), what computes the references, and the clients
WHEELS = ("nvidia-pytriton", "onnxruntime", "onnx", "tensorflow-cpu", "keras", "torch", "torchvision", "tritonclient")


@cache
def code_digest() -> str:
    """SHA-256 of every file of the code that makes a proof (bytecode caches left out)."""
    digest = hashlib.sha256()
    for package in CODE:
        for path in sorted((PROJECT_ROOT / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(path.relative_to(PROJECT_ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _paths(value: Any) -> Iterator[Path]:
    """Every path a spec names, through nested dataclasses, mappings and sequences."""
    if isinstance(value, Path):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _paths(getattr(value, f.name))
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _paths(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _paths(item)


@cache  # once per process: every model's key asks for the same few
def _wheel(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def key(
    spec: ModelSpec, catalog: Mapping[str, ModelSpec], settings: Mapping[str, Any], instance_kind: str, data: Path
) -> str:
    """The key a report of `spec` proven with `settings` (protocols, server, front) would record."""
    digest = hashlib.sha256()

    def add(label: str, text: str) -> None:
        digest.update(label.encode() + b"\0" + text.encode() + b"\0")

    add("code", code_digest())
    add("settings", json.dumps({**settings, "instance_kind": instance_kind}, sort_keys=True, default=repr))
    add("wheels", " ".join(f"{name}=={_wheel(name)}" for name in WHEELS))
    add("spec", repr(spec))
    for relative, config in assembly.expected_configs(spec, catalog, instance_kind):
        add(relative.as_posix(), str(config))
    named = set(_paths(spec)) | {source for _, source in assembly.served_copies(spec, catalog)} | {data}
    here = Path.cwd().resolve()
    for path in sorted(named, key=str):
        if path.resolve() in (here, *here.parents):  # a placeholder (an ensemble has no file of its own)
            continue
        add(project_path(path), _content(path.resolve()))
    return digest.hexdigest()


def _content(path: Path) -> str:
    if path.is_file():  # the data file and a catalog's shared files are named by many models' keys: hashed once
        stat = path.stat()
        return _file_content(path, stat.st_size, stat.st_mtime_ns)
    return io_signature.sha256(path) if path.exists() else "absent"


@cache  # keyed on the file's size and modification time too: a file written since is hashed again
def _file_content(path: Path, size: int, mtime_ns: int) -> str:
    return io_signature.sha256(path)
