"""Writing served formats, and the one self-check every exporter runs before anything is moved into place.

Keras -> SavedModel through an explicit named signature (`keras.export.ExportArchive`; Keras 3's
plain `model.export` has been reported to load in Triton's TensorFlow backend and fail at inference,
triton-inference-server/server#7456); SavedModel -> ONNX with tf2onnx's CLI; PyTorch -> ONNX with
the TorchScript exporter (a module) or the dynamo exporter (a torch.export program; the TorchScript
exporter on its module where the dynamo one fails, as on transformers' T5). `self_check`
runs the written file beside its source on the same inputs, as optimum's `validate_model_outputs` does,
and compares their outputs as parity does (`pipelines.outputs.validator`).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.artifacts import reproducible
from pipelines.artifacts.io_signature import ArtifactSignature, require_match
from pipelines.config.network import NetworkSpec
from pipelines.config.tensors import TensorSpec
from pipelines.core.errors import ArtifactError, first_line
from pipelines.frameworks.tensorflow_import import tensorflow
from pipelines.outputs.answers import concat, per_sample, request_pairs, take
from pipelines.outputs.validator import validate_output
from pipelines.runners.keras_models import output_names
from pipelines.runners.reference import Runner

log = logging.getLogger(__name__)


def keras_savedmodel(
    model: Any,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    signature: str,
    target: Path,
    batch_axis: bool = True,
) -> None:
    """A SavedModel whose signature `signature` maps the spec's input names to its output names."""
    tf = tensorflow()  # first, quietly: Keras imports it
    import keras  # lazy: Keras imports TensorFlow (~15 s); Keras work only

    names = [t.name for t in outputs]
    returned = [names[0]] if len(names) == 1 else output_names(model)

    def endpoint(*args: Any) -> dict[str, Any]:
        out = model(args[0] if len(args) == 1 else {t.name: a for t, a in zip(inputs, args)}, training=False)
        if isinstance(out, dict):
            return {name: out[name] for name in names}
        return dict(zip(returned, out if isinstance(out, (list, tuple)) else [out]))

    with reproducible.keras_export(model):
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            name=signature,
            fn=endpoint,
            input_signature=[
                tf.TensorSpec(
                    ((None,) if batch_axis else ()) + tuple(None if d == -1 else d for d in t.dims),
                    t.numpy_dtype,
                    name=t.name,
                )
                for t in inputs
            ],
        )
        archive.write_out(str(target), verbose=False)
    reproducible.savedmodel_fingerprint(target)


# `python -m tf2onnx.convert`, but TensorFlow's `try: import keras` finds none
TF2ONNX_WITHOUT_KERAS = (
    "import runpy, sys; sys.modules['keras'] = None; "
    "runpy.run_module('tf2onnx.convert', run_name='__main__', alter_sys=True)"
)


def savedmodel_onnx(savedmodel: Path, signature: str, opset: int, target: Path, batch_axis: bool = True) -> None:
    """tf2onnx on the SavedModel's signature (its CLI is the documented, stable interface), with Keras kept out:
    a SavedModel converts without it, and TensorFlow's eager import of Keras doubles the start (8.8 s -> 5.2 s
    for the same, byte-identical ONNX file)."""
    import onnx  # lazy: onnx takes ~0.6 s; ONNX work only

    cmd = [
        sys.executable,
        "-c",
        TF2ONNX_WITHOUT_KERAS,
        "--saved-model",
        str(savedmodel),
        "--signature_def",
        signature,
        "--opset",
        str(opset),
        "--output",
        str(target),
    ]
    # string hashing fixed: one cause of run-to-run differences fewer (reproducible.onnx_names renumbers the names)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise ArtifactError(f"tf2onnx failed (exit {proc.returncode}):\n{tail}")
    model = onnx.load(str(target))
    if batch_axis:
        for value in [*model.graph.input, *model.graph.output]:  # tf2onnx names the batch dim unk__N
            dim = value.type.tensor_type.shape.dim[0]
            if not dim.HasField("dim_value"):
                dim.dim_param = "batch"
    model.graph.doc_string = "converted from a SavedModel by tf2onnx"  # tf2onnx's names the (temporary) folder
    reproducible.onnx_names(model)
    require_valid_onnx(model, "tf2onnx's export")
    onnx.save(model, str(target))


def require_valid_onnx(model: Any, what: str) -> None:
    """ONNX's own checker (full, with shape inference); one line when it refuses: an exporter wrote an op the opset
    lacks (tf2onnx's Bitcast for a Keras argmax), or a user's file is not valid ONNX."""
    import onnx  # lazy: onnx takes ~0.6 s; ONNX work only

    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(f"{what} is not valid ONNX: {detail}") from exc


def torch_onnx(
    model: Any,
    example: Mapping[str, np.ndarray],
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    opset: int,
    target: Path,
    batch_axis: bool = True,
) -> None:
    """A torch.nn.Module or TorchScript module (the TorchScript exporter, `dynamic_axes` from the spec), or a
    torch.export program (the dynamo exporter, which keeps the program's own dynamic dimensions; where it fails, as
    torch 2.13's does on transformers' T5, the TorchScript exporter on the program's module)."""
    import torch  # lazy: torch takes ~6 s to import; torch work only

    args = tuple(torch.from_numpy(np.ascontiguousarray(example[t.name])) for t in inputs)
    names = {"input_names": [t.name for t in inputs], "output_names": [t.name for t in outputs]}
    dynamic = {
        t.name: {axis + int(batch_axis): f"{t.name}_{axis}" for axis, d in enumerate(t.dims) if d == -1}
        for t in (*inputs, *outputs)
    }
    if batch_axis:
        for axes in dynamic.values():
            axes[0] = "batch"
    dynamic_axes = {k: v for k, v in dynamic.items() if v}
    if not isinstance(model, torch.export.ExportedProgram):
        try:
            torch.onnx.export(
                model, args, str(target), dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False, **names
            )
        except Exception as exc:  # the exporters' errors share no base class: name the exporter and its first line
            raise ArtifactError(f"torch.onnx.export failed: {first_line(exc)}") from exc
    else:
        for chatty in ("onnxscript", "onnx_ir"):  # the optimizer's INFO lines, under our INFO-level stage log
            logging.getLogger(chatty).setLevel(logging.WARNING)
        try:
            torch.onnx.export(model, args, str(target), dynamo=True, external_data=False, verbose=False, **names)
        except Exception as dynamo_exc:  # noqa: BLE001 - its errors share no base class; the TorchScript exporter next
            try:
                # a program's module is straight-line code: its tracer warnings are its shape guards, checked once
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore", torch.jit.TracerWarning)
                    torch.onnx.export(
                        _program_module(model),
                        args,
                        str(target),
                        dynamic_axes=dynamic_axes,
                        opset_version=opset,
                        dynamo=False,
                        **names,
                    )
            except Exception as exc:
                raise ArtifactError(
                    f"torch.onnx.export failed: dynamo: {first_line(dynamo_exc)}; TorchScript: {first_line(exc)}"
                ) from exc
            log.warning(
                "%s: written by the TorchScript exporter from the program's module; the dynamo exporter failed (%s)",
                target.name,
                first_line(dynamo_exc),
            )
    require_valid_onnx(str(target), "torch.onnx.export's export")


def _program_module(program: Any) -> Any:
    """A torch.export program's module as the TorchScript exporter can take it, its open dimensions still open.

    That exporter switches what it exports to eval mode, and a program's module refuses `.train()`
    (NotImplementedError): a plain module holds it outside its own module tree and calls it. Its tracer records a
    size read as `x.size(d)` (a traced 0-dim tensor), while the program's `aten.sym_size.int` gives a plain int,
    which the trace would keep as a constant: sizes are read as `x.size(d)`, and the aten overloads they go to
    (`aten.view.default`, which takes ints only) become the Python functions that take traced sizes."""
    import torch  # lazy: torch takes ~6 s to import; torch work only

    module = program.module()
    for weight in module.parameters():  # the exporter makes them constants, which must not require grad
        weight.requires_grad_(False)
    graph, sized = module.graph, set()
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        if node.target is torch.ops.aten.sym_size.int:
            with graph.inserting_before(node):
                size = graph.call_method("size", node.args)
            node.replace_all_uses_with(size)
            graph.erase_node(node)
            sized.add(size)
        elif sized.intersection(node.all_input_nodes):
            if getattr(node.target, "__module__", None) in ("operator", "_operator"):  # arithmetic on sizes: a size
                sized.add(node)
            elif isinstance(node.target, torch._ops.OpOverload):
                name = node.target.overloadpacket.__name__
                node.target = TRACEABLE.get(name) or getattr(torch, name, None) or getattr(torch.Tensor, name)
    module.recompile()

    class Program(torch.nn.Module):
        def __init__(self, module: Any) -> None:
            super().__init__()
            object.__setattr__(self, "_program", module)  # not a submodule: `.train()` never reaches it

        def forward(self, *args: Any) -> Any:
            return self._program(*args)

    return Program(module)


def _slice(tensor: Any, dim: int = 0, start: Any = None, end: Any = None, step: Any = 1) -> Any:
    """`aten.slice.Tensor` as indexing (torch has no `slice` function), which the tracer records with traced bounds."""
    return tensor[(slice(None),) * (dim % tensor.dim()) + (slice(start, end, step),)]


# aten operators without a Python function of the same name, as the tracer takes them
TRACEABLE = {"slice": _slice}


@dataclass(frozen=True)
class Check:
    """An export against its source on the same inputs: the largest difference per output."""

    samples: int
    max_abs_diff: dict[str, float]

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff.values(), default=0.0)


def check_export(
    what: str,
    signature: ArtifactSignature,
    source: Runner,
    exported: Runner,
    inputs: Mapping[str, np.ndarray],
    network: NetworkSpec,
    limit: float,
) -> Check:
    """What every exporter checks before anything is moved into place: the written file's own I/O against the
    network's spec (names, dtypes, dims, batch axis), then its outputs against the source's on the same inputs."""
    require_match(what, network.inputs, network.outputs, int(network.batch_axis), signature)
    return self_check(what, source, exported, inputs, network.outputs, limit, network.batch_axis)


def self_check(
    what: str,
    source: Runner,
    exported: Runner,
    inputs: Mapping[str, np.ndarray],
    outputs: Sequence[TensorSpec],
    limit: float,
    batched: bool = True,
) -> Check:
    """Run both on `inputs`; ArtifactError when an output differs by more than `limit` (integer, bool and string
    outputs: at all; an FP16 output also by one FP16 step of its largest value, its own rounding) or holds NaN/inf,
    so that nothing is written. Unbatched models run one sample at a time, and are compared sample by sample: an
    output whose length depends on the data (NonZero, TopK with k an input) differs in shape between samples. The
    comparison is parity's (`pipelines.outputs.validator`); the limit is this check's own."""
    count = len(next(iter(inputs.values())))

    def run(runner: Runner) -> Mapping[str, Any]:
        if batched:
            return runner(inputs)
        one = per_sample(what, runner)
        return concat([one(take(inputs, i, i + 1)) for i in range(count)])

    expected, got = run(source), run(exported)
    diffs: dict[str, float] = {}
    for tensor in outputs:
        compared = validate_output(tensor, request_pairs(got[tensor.name], expected[tensor.name]))
        if compared.shape is not None:
            have, want = compared.shape.served, compared.shape.reference
            where = "" if batched else f" for sample {compared.shape.pair}"
            raise ArtifactError(
                f"{what}: output {tensor.name!r} has shape {list(have if batched else have[1:])}, the source's "
                f"{list(want if batched else want[1:])}{where}; nothing was written"
            )
        allowed, metrics = 0.0, compared.metrics
        if compared.exact is not None:
            diffs[tensor.name] = float(compared.exact.differing_elements)
        elif metrics is not None:
            diffs[tensor.name] = metrics.max_abs
            # an FP16 output may also differ by one FP16 step of its largest value: its own rounding
            step = np.finfo(np.float16).eps * compared.scale if tensor.dtype == "FP16" else 0
            allowed = limit + step
        log.info(
            "%s vs its source on %d samples, %s: %s %.3g (limit %g)",
            what,
            count,
            tensor.name,
            "differing elements" if tensor.exact else "max abs diff",
            diffs[tensor.name],
            allowed,
        )
        if metrics is not None and metrics.nonfinite:
            raise ArtifactError(
                f"{what} or its source gives {metrics.nonfinite} NaN/inf values in output {tensor.name!r}; "
                "nothing was written"
            )
        if diffs[tensor.name] > allowed:
            raise ArtifactError(
                f"{what} differs from its source in output {tensor.name!r} by {diffs[tensor.name]:.3g} "
                f"> {allowed:g}; nothing was written"
            )
    return Check(count, diffs)
