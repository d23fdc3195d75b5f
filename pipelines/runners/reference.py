"""The framework side of parity: run the trained model in its own framework, never the served file.

An FP16/INT8 model has a second, strict reference apart from this one: its own file in ONNX Runtime
(`pipelines.runners.runtimes.own_file`); the FP32 framework model here judges it with the precision's bounds.

Our own networks run in Keras (MNIST) and PyTorch (torchvision state dicts); a model added with
`python -m export.add` runs from the user's own source file: a Keras model, a SavedModel signature
in TensorFlow, a torch.export program or TorchScript in PyTorch, or an ONNX file in `onnx.reference`
(an implementation independent of ONNX Runtime, which serves it) where that is fast enough.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.config.spec import ModelSpec, NetworkSpec, TensorSpec
from pipelines.core.errors import ArtifactError, ConfigError
from pipelines.runners import keras_models

Runner = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]
# onnx.reference is pure numpy: above this many weights (ResNet50 has 25 M) it takes seconds per sample, and
# ONNX Runtime with every graph optimization off is the reference instead
REFERENCE_EVALUATOR_MAX_WEIGHTS = 5_000_000


def _keras(spec: NetworkSpec) -> Runner:
    return keras_runner(keras_models.load(spec.artifact("keras")), spec)


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
    from pipelines.runners import torch_models

    return torch_runner(torch_models.build(spec, str(spec.artifact("state_dict"))), spec)


def torch_runner(module: Any, spec: NetworkSpec) -> Runner:
    """A PyTorch callable with the spec's inputs as positional arguments and its outputs in order."""
    import torch

    def run(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            out = module(*[torch.from_numpy(np.ascontiguousarray(arrays[t.name])) for t in spec.inputs])
        outs = out if isinstance(out, (list, tuple)) else [out]
        return {t.name: value.detach().numpy() for t, value in zip(spec.outputs, outs)}

    return run


def _torch_export(spec: NetworkSpec) -> Runner:
    from pipelines.byom import sources

    return torch_runner(sources.load_torch_export(spec.source).module(), spec)


def _torchscript(spec: NetworkSpec) -> Runner:
    from pipelines.byom import sources

    return torch_runner(sources.load_torchscript(spec.source), spec)


def savedmodel_runner(
    path: Path, signature: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]
) -> Runner:
    """A SavedModel's named signature in TensorFlow, fed and read by tensor name."""
    from pipelines.runners.tensorflow_import import tensorflow

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
    import onnxruntime as ort

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
    """Which implementation runs an ONNX source as the reference: onnx.reference where it is fast enough."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends: the user's file, not our bug
        raise ArtifactError(f"{path}: not a readable ONNX model ({exc})") from exc
    weights = sum(int(np.prod(init.dims)) for init in model.graph.initializer)
    return "onnx.reference" if weights <= REFERENCE_EVALUATOR_MAX_WEIGHTS else "onnxruntime (optimizations off)"


def _onnx(spec: NetworkSpec) -> Runner:
    path = spec.source
    if onnx_runtime_name(path) != "onnx.reference":
        return onnxruntime_runner(path, spec.inputs, spec.outputs, optimize=False)
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(str(path))
    names = [t.name for t in spec.outputs]

    def run(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        # string tensors go in as str, as to ONNX Runtime: given bytes, onnx.reference's string lookups (a label
        # encoder, skl2onnx's one-hot encoding) match nothing; BYTES come back as bytes, as Triton returns them
        feeds = {t.name: _ort_text(arrays[t.name]) if t.dtype == "BYTES" else arrays[t.name] for t in spec.inputs}
        return {
            name: _bytes(out) if out.dtype == np.object_ else out
            for name, out in zip(names, evaluator.run(names, feeds))
        }

    return run


def _tensorflow(spec: NetworkSpec) -> Runner:
    return savedmodel_runner(spec.source, spec.signature, spec.inputs, spec.outputs)


def describe(network: NetworkSpec) -> str:
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
    from pipelines.data import images, labels

    classify = classify or load(parts.classifier)
    settings = parts.ensemble.network.require_preprocessing("the ensemble's reference").settings()
    (cls_in,), (cls_out,) = parts.classifier.inputs, parts.classifier.outputs
    names = np.array([name.encode() for name in labels.read(parts.classifier.network)], dtype=np.object_)
    k = parts.ensemble.ensemble.top_k

    def run(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = np.stack([images.preprocess(item, settings) for item in arrays[parts.image.name].reshape(-1)])
        scores, indices = images.top_k(images.softmax(classify({cls_in.name: batch})[cls_out.name]), k)
        return {parts.probabilities.name: scores, parts.labels.name: names[indices]}

    return run


def load(spec: ModelSpec | NetworkSpec) -> Runner:
    """A function from input arrays to output arrays, keyed by the network's tensor names."""
    network = spec.network if isinstance(spec, ModelSpec) else spec
    if network.reference not in LOADERS:
        raise ConfigError(f"network {network.name!r}: no reference runner for {network.reference!r}")
    return LOADERS[network.reference](network)
