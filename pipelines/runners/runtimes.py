"""The served artifact run in process, by the runtime Triton's backend uses: what serving is measured against.

Parity's reference is the training framework (Keras, PyTorch); the benchmark's baseline is the very
file Triton serves, in the runtime its backend (here: its stand-in) runs: ONNX Runtime for ONNX,
TensorFlow for a SavedModel. An ensemble runs its steps in process: the same Pillow pre-processing,
its classifier in ONNX Runtime, softmax and top-k.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipelines.config import ensemble_parts
from pipelines.config.spec import ModelSpec
from pipelines.core.errors import ConfigError
from pipelines.runners import reference
from pipelines.runners.reference import Runner, onnxruntime_runner, savedmodel_runner


def _onnx(spec: ModelSpec) -> Runner:
    return onnxruntime_runner(spec.artifact, spec.inputs, spec.outputs)


def _savedmodel(spec: ModelSpec) -> Runner:
    return savedmodel_runner(spec.artifact, spec.network.signature, spec.inputs, spec.outputs)


def _ensemble(spec: ModelSpec, catalog: Mapping[str, ModelSpec]) -> Runner:
    parts = ensemble_parts.parts(spec, catalog)
    return reference.load_ensemble(parts, served_runner(parts.classifier, catalog))


def own_file(spec: ModelSpec) -> tuple[Runner, str]:
    """A lossy model's strict reference for parity, and how the report names it: the ONNX file it serves (for a
    TensorRT engine, the Q/DQ file it was built from) in ONNX Runtime here. Serving must add no error to it; its
    cost against the FP32 framework model is judged apart (`pipelines.comparison.lossy`)."""
    if spec.format == "tensorrt" and spec.tensorrt is not None:
        source = spec.network.artifact(spec.tensorrt.source)
        return onnxruntime_runner(source, spec.inputs, spec.outputs), "its Q/DQ source in onnxruntime, in process"
    return _onnx(spec), "its own file in onnxruntime, in process"


def served_runner(spec: ModelSpec, catalog: Mapping[str, ModelSpec]) -> Runner:
    """A function from input arrays to output arrays running `spec`'s served artifact here."""
    if spec.format == "onnx":
        return _onnx(spec)
    if spec.format == "savedmodel":
        return _savedmodel(spec)
    if spec.format == "ensemble":
        return _ensemble(spec, catalog)
    raise ConfigError(
        f"model {spec.name!r}: no in-process runtime here for format {spec.format!r} "
        "(a TensorRT engine needs a GPU host with TensorRT)"
    )
