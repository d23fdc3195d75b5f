"""The framework side of parity: run the trained model in its own framework, never the served file.

An FP16/INT8 model has a second, strict reference apart from this one: its own file in ONNX Runtime
(`pipelines.runners.runtimes.own_file`); the FP32 framework model here judges it with the precision's bounds.

Our own networks run in Keras (MNIST) and PyTorch (torchvision state dicts); a model added with
`python -m export.add` runs from the user's own source file: a Keras model, a SavedModel signature
in TensorFlow, a torch.export program or TorchScript in PyTorch, or an ONNX file in `onnx.reference`
(an implementation independent of ONNX Runtime, which serves it) where that is fast enough and implements the
model's operators (else ONNX Runtime with every graph optimization off, the reference's name saying why).
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.config.network import NetworkSpec
from pipelines.config.spec import ModelSpec
from pipelines.config.tensors import TensorSpec
from pipelines.core.errors import ArtifactError, ConfigError, first_line
from pipelines.data import images, labels
from pipelines.frameworks.tensorflow_import import tensorflow
from pipelines.runners import keras_models, torch_models

log = logging.getLogger(__name__)
Runner = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]
# onnx.reference is pure numpy: above this many weights (ResNet50 has 25 M) it takes seconds per sample, and
# ONNX Runtime with every graph optimization off is the reference instead
REFERENCE_EVALUATOR_MAX_WEIGHTS = 5_000_000
# what onnx.reference said it cannot run, per ONNX file (resolved path), where that was found by running it
_REFUSED: dict[str, str] = {}
# an error of onnx.reference's own that says it lacks an implementation (GridSample: "only supports nearest, ...")
_LACKS = re.compile(r"not implemented|not supported|only supports|unsupported", re.IGNORECASE)


def _keras(spec: NetworkSpec) -> Runner:
    return keras_runner(keras_models.load_keras(spec.artifact("keras")), spec)


def keras_runner(model: Any, spec: NetworkSpec) -> Runner:
    """A loaded Keras model, called as in training (`training=False`) on the spec's inputs."""
    names = [spec.outputs[0].name] if len(spec.outputs) == 1 else keras_models.output_names(model)

    def run(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if len(spec.inputs) == 1:
            out = model(arrays[spec.inputs[0].name], training=False)
        else:  # a functional model maps its inputs by name
            out = model({t.name: arrays[t.name] for t in spec.inputs}, training=False)
        if isinstance(out, dict):
            return {t.name: np.asarray(out[t.name]) for t in spec.outputs}
        outs = out if isinstance(out, (list, tuple)) else [out]
        return {name: np.asarray(value) for name, value in zip(names, outs)}

    return run


def _torch(spec: NetworkSpec) -> Runner:
    return torch_runner(torch_models.build_torchvision(spec, str(spec.artifact("state_dict"))), spec)


def torch_runner(module: Any, spec: NetworkSpec) -> Runner:
    """A PyTorch callable with the spec's inputs as positional arguments and its outputs in order."""
    import torch  # lazy: torch takes ~6 s to import; torch work only

    def run(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            out = module(*[torch.from_numpy(np.ascontiguousarray(arrays[t.name])) for t in spec.inputs])
        outs = out if isinstance(out, (list, tuple)) else [out]
        return {t.name: value.detach().numpy() for t, value in zip(spec.outputs, outs)}

    return run


def _torch_export(spec: NetworkSpec) -> Runner:
    return torch_runner(torch_models.load_torch_export(spec.source).module(), spec)


def _torchscript(spec: NetworkSpec) -> Runner:
    return torch_runner(torch_models.load_torchscript(spec.source), spec)


def savedmodel_runner(
    path: Path, signature: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]
) -> Runner:
    """A SavedModel's named signature in TensorFlow, fed and read by tensor name."""
    tf = tensorflow()
    try:
        fn = tf.saved_model.load(str(path)).signatures[signature]
    except KeyError as exc:
        raise ArtifactError(f"{path}: no signature {signature!r}") from exc

    def run(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = fn(**{t.name: tf.constant(arrays[t.name]) for t in inputs})
        return {t.name: out[t.name].numpy() for t in outputs}

    return run


def onnxruntime_runner(
    path: Path, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], optimize: bool = True
) -> Runner:
    """An ONNX file in ONNX Runtime on the CPU; `optimize=False` turns every graph optimization off."""
    import onnxruntime as ort  # lazy: ONNX Runtime takes ~0.5 s; ONNX runs only

    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [t.name for t in outputs]

    def run(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {t.name: _ort_text(arrays[t.name]) if t.dtype == "BYTES" else arrays[t.name] for t in inputs}
        return {
            name: _bytes(out) if out.dtype == np.object_ else out for name, out in zip(names, session.run(names, feeds))
        }

    return run


def _ort_text(array: np.ndarray) -> np.ndarray:
    """BYTES for ONNX Runtime's Python API, which takes string tensors as str only: bytes it turns into their
    repr ("b'a'"), silently. Triton's onnxruntime backend hands the bytes over as they are (UTF-8 here)."""
    return np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else v, otypes=[object])(array)


def _bytes(array: np.ndarray) -> np.ndarray:
    """String outputs as bytes, as Triton returns BYTES (ONNX Runtime's Python API returns str)."""
    return np.vectorize(lambda v: v.encode() if isinstance(v, str) else v, otypes=[object])(array)


def onnx_runtime_name(path: Path) -> str:
    """Which implementation runs an ONNX source as the reference: onnx.reference where it is fast enough and can run
    the model, else ONNX Runtime with every graph optimization off, named with the reason."""
    too_large, refused = _onnx_reference_fit(path)
    if too_large:
        return "onnxruntime (optimizations off)"
    return f"onnxruntime (optimizations off; onnx.reference cannot run {refused})" if refused else "onnx.reference"


def _onnx_reference_fit(path: Path) -> tuple[bool, str | None]:
    """Whether the model is too large for onnx.reference, and what of it onnx.reference cannot run (None: nothing
    known: found in the file, or by an earlier run in this process)."""
    import onnx  # lazy: onnx takes ~0.6 s; ONNX work only

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends: the user's file, not our bug
        raise ArtifactError(f"{path}: not a readable ONNX model ({exc})") from exc
    weights = sum(int(np.prod(init.dims)) for init in model.graph.initializer)
    if weights > REFERENCE_EVALUATOR_MAX_WEIGHTS:
        return True, None
    return False, _REFUSED.get(str(Path(path).resolve())) or _known_refusal(model)


def _known_refusal(model: Any) -> str | None:
    """A valid construct onnx.reference (1.23) refuses only when it runs it, found in the file, so that the reference
    is named the same before its first run as after it: GridSample's opset-16 modes "bilinear" and "bicubic" (it knows
    opset 20's "linear" and "cubic" only; fixed upstream in onnx/onnx#8431)."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    for node in _nodes([model.graph, *model.functions]):
        if node.op_type == "GridSample" and node.domain in ("", "ai.onnx") and opset < 20:
            mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "bilinear")
            if mode in ("bilinear", "bicubic"):
                return f"GridSample mode {mode!r}: onnx/onnx#8431"
    return None


def _nodes(graphs: Sequence[Any]) -> list[Any]:
    """Every node of the graphs (or functions), with those of their subgraphs (If, Loop, Scan)."""
    import onnx  # lazy: onnx takes ~0.6 s; ONNX work only

    found = []
    for graph in graphs:
        for node in graph.node:
            found.append(node)
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    found.extend(_nodes([attribute.g]))
                elif attribute.type == onnx.AttributeProto.GRAPHS:
                    found.extend(_nodes(attribute.graphs))
    return found


def _lacks(exc: BaseException) -> str | None:
    """What onnx.reference lacks, where `exc` is its own saying so: a NotImplementedError (an operator, or an
    attribute value, without an implementation) or a RuntimeError naming what it does not support, raised in its own
    code. None otherwise (numpy's errors among them): the inputs do not fit the model, and the caller says so."""
    import onnx.reference  # lazy: onnx takes ~0.6 s; ONNX work only

    frames = traceback.extract_tb(exc.__traceback__)
    own = bool(frames) and Path(frames[-1].filename).is_relative_to(Path(onnx.reference.__file__).parent)
    if own and (isinstance(exc, NotImplementedError) or (isinstance(exc, RuntimeError) and _LACKS.search(str(exc)))):
        return first_line(exc).rstrip(".")
    return None


def _fails_alone(exc: BaseException, spec: NetworkSpec, arrays: Mapping[str, np.ndarray]) -> str | None:
    """onnx.reference's own bug, where ONNX Runtime runs the same inputs (RoBERTa as the TorchScript exporter writes
    it: onnx 1.23's GatherElements after an Expand fails with numpy's "cannot reshape array"): what it raised. None
    where ONNX Runtime fails too: the inputs do not fit the model, and the caller says so."""
    try:
        onnxruntime_runner(spec.source, spec.inputs, spec.outputs, optimize=False)(arrays)
    except Exception:  # noqa: BLE001 - ONNX Runtime refuses them too: the inputs, not onnx.reference
        return None
    return f"{type(exc).__name__}: {first_line(exc)}".rstrip(".")


def _instead(spec: NetworkSpec, refused: str) -> Runner:
    """ONNX Runtime, optimizations off, as the reference of a model onnx.reference cannot run; recorded, so that the
    reference's name (`describe_reference`) says so."""
    _REFUSED[str(Path(spec.source).resolve())] = refused
    log.warning(
        "%s: onnx.reference cannot run %s; ONNX Runtime (optimizations off) is its reference instead",
        spec.source,
        refused,
    )
    try:
        return onnxruntime_runner(spec.source, spec.inputs, spec.outputs, optimize=False)
    except Exception as exc:  # ONNX Runtime's errors share no base class: neither can run the model
        raise ArtifactError(
            f"{spec.source}: neither onnx.reference (it cannot run {refused}) nor ONNX Runtime "
            f"({first_line(exc)}) can run it"
        ) from exc


def _onnx(spec: NetworkSpec) -> Runner:
    path = spec.source
    too_large, refused = _onnx_reference_fit(path)
    if too_large:
        return onnxruntime_runner(path, spec.inputs, spec.outputs, optimize=False)
    if refused:
        return _instead(spec, refused)
    from onnx.reference import ReferenceEvaluator  # lazy: onnx takes ~0.6 s; ONNX work only

    try:
        evaluator = ReferenceEvaluator(str(path))
    except Exception as exc:  # onnx.reference's errors share no base class: an operator it lacks, or not ours
        refused = _lacks(exc)
        if refused is None:
            raise
        return _instead(spec, f"it: {refused}")
    names = [t.name for t in spec.outputs]
    fallback: list[Runner] = []  # ONNX Runtime, once onnx.reference has said it cannot run the model

    def run(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if fallback:
            return fallback[0](arrays)
        # string tensors go in as str, as to ONNX Runtime: given bytes, onnx.reference's string lookups (a label
        # encoder, skl2onnx's one-hot encoding) match nothing; BYTES come back as bytes, as Triton returns them
        feeds = {t.name: _ort_text(arrays[t.name]) if t.dtype == "BYTES" else arrays[t.name] for t in spec.inputs}
        try:
            got = evaluator.run(names, feeds)
        except Exception as exc:  # onnx.reference's errors share no base class: what it lacks, or bad inputs
            refused = _lacks(exc) or _fails_alone(exc, spec, arrays)
            if refused is None:
                raise
            fallback.append(_instead(spec, f"it: {refused}"))
            return fallback[0](arrays)
        return {name: _bytes(out) if out.dtype == np.object_ else out for name, out in zip(names, got)}

    return run


def _tensorflow(spec: NetworkSpec) -> Runner:
    return savedmodel_runner(spec.source, spec.signature, spec.inputs, spec.outputs)


def describe_reference(network: NetworkSpec) -> str:
    """What computes the reference, as the report names it."""
    if network.reference == "onnx":
        return f"onnx ({onnx_runtime_name(network.source)})"
    return network.reference


LOADERS: dict[str, Callable[[NetworkSpec], Runner]] = {
    "keras": _keras,
    "torch": _torch,
    "tensorflow": _tensorflow,
    "torch_export": _torch_export,
    "torchscript": _torchscript,
    "onnx": _onnx,
}


def load_ensemble(parts: Any, classify: Runner | None = None) -> Runner:
    """The client-side pipeline an ensemble must reproduce: Pillow pre-processing, the framework, softmax, top-k.

    `classify`: another runner for the classifier step (the benchmark's in-process runtime); default its framework.
    """
    classify = classify or reference_runner(parts.classifier)
    settings = parts.ensemble.network.require_preprocessing("the ensemble's reference").settings()
    (cls_in,), (cls_out,) = parts.classifier.inputs, parts.classifier.outputs
    names = np.array([name.encode() for name in labels.read_labels(parts.classifier.network)], dtype=np.object_)
    k = parts.ensemble.ensemble.top_k

    def run(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = np.stack([images.preprocess(item, settings) for item in arrays[parts.image.name].reshape(-1)])
        scores, indices = images.top_k(images.softmax(classify({cls_in.name: batch})[cls_out.name]), k)
        return {parts.probabilities.name: scores, parts.labels.name: names[indices]}

    return run


def reference_runner(spec: ModelSpec | NetworkSpec) -> Runner:
    """A function from input arrays to output arrays, keyed by the network's tensor names."""
    network = spec.network if isinstance(spec, ModelSpec) else spec
    if network.reference not in LOADERS:
        raise ConfigError(f"network {network.name!r}: no reference runner for {network.reference!r}")
    return LOADERS[network.reference](network)
