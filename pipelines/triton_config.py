"""Triton `config.pbtxt` generated from the model spec through Triton's model-config protobuf.

Two flavours of the same model:
- `native`: the canonical layout for NGC images (`tensorflow_savedmodel`, `onnxruntime_onnx`).
- `python`: the same artifact served by Triton's Python backend running ONNX Runtime or
  TensorFlow (`serve/python_backend/model.py`): what the tritonserver bundled in the
  nvidia-pytriton wheel can run, since it ships only that backend.
"""

from __future__ import annotations

import json
from typing import Mapping

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from pipelines.errors import ConfigError
from pipelines.spec import ModelSpec, TensorSpec

FLAVOURS = ("native", "python")
# format -> (native platform, file or directory name inside the version directory, runtime in the python flavour)
FORMATS = {
    "savedmodel": ("tensorflow_savedmodel", "model.savedmodel", "tensorflow"),
    "onnx": ("onnxruntime_onnx", "model.onnx", "onnxruntime"),
    "tensorrt": ("tensorrt_plan", "model.plan", "tensorrt"),
}
LABELS_FILENAME = "labels.txt"
PYTHON_MODEL_FILENAME = "model.py"
INSTANCE_KINDS = ("KIND_AUTO", "KIND_CPU", "KIND_GPU")


def artifact_filename(spec: ModelSpec) -> str:
    return FORMATS[spec.format][1]


def data_type(dtype: str) -> int:
    """Spec dtype -> model-config enum (the protocol's BYTES is TYPE_STRING in model configs)."""
    return mc.DataType.Value("TYPE_STRING" if dtype == "BYTES" else f"TYPE_{dtype}")


def dtype_name(data_type_: int) -> str:
    name = mc.DataType.Name(data_type_).removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


def _tensor(message: mc.ModelInput | mc.ModelOutput, tensor: TensorSpec) -> None:
    message.name = tensor.name
    message.data_type = data_type(tensor.dtype)
    message.dims.extend(tensor.dims)


def _param(config: mc.ModelConfig, key: str, value: str) -> None:
    config.parameters[key].string_value = value


def build(spec: ModelSpec, flavour: str, instance_kind: str = "KIND_AUTO",
          cc_plans: Mapping[str, str] | None = None) -> mc.ModelConfig:
    """The complete config for `spec` in `flavour`; Triton needs no auto-completion for it.

    `cc_plans` (TensorRT only): compute capability -> plan file name, when plans for several GPU
    architectures are served side by side (Triton picks one by `cc_model_filenames`).
    """
    if flavour not in FLAVOURS:
        raise ConfigError(f"flavour must be one of {', '.join(FLAVOURS)}, got {flavour!r}")
    if instance_kind not in INSTANCE_KINDS:
        raise ConfigError(f"instance_kind must be one of {', '.join(INSTANCE_KINDS)}, got {instance_kind!r}")
    platform, filename, runtime = FORMATS[spec.format]
    config = mc.ModelConfig(name=spec.name, max_batch_size=spec.max_batch_size)
    if flavour == "native":
        config.platform = platform
        config.default_model_filename = filename
        if spec.format == "savedmodel":
            _param(config, "TF_SIGNATURE_DEF", spec.signature)
        if spec.format == "tensorrt" and cc_plans:
            config.default_model_filename = cc_plans[sorted(cc_plans)[0]]  # a real file, also for unlisted GPUs
            if len(cc_plans) > 1:
                config.cc_model_filenames.update(dict(cc_plans))
    else:
        config.backend = "python"
        _param(config, "runtime", runtime)
        _param(config, "artifact", filename)
        if spec.format == "savedmodel":
            _param(config, "signature", spec.signature)
        if spec.format == "tensorrt":
            if cc_plans and len(cc_plans) == 1:
                _param(config, "artifact", next(iter(cc_plans.values())))
            elif cc_plans:
                _param(config, "cc_artifacts", json.dumps(dict(cc_plans), sort_keys=True))
            instance_kind = "KIND_GPU"  # the Python backend drives the engine on the GPU itself
        else:
            instance_kind = "KIND_CPU"  # ONNX Runtime and TensorFlow run on the CPU in the stub
    for tensor in spec.inputs:
        _tensor(config.input.add(), tensor)
    for tensor in spec.outputs:
        out = config.output.add()
        _tensor(out, tensor)
        if tensor.labels:
            out.label_filename = LABELS_FILENAME
    if spec.max_batch_size > 0 and spec.dynamic_batching:
        batching = spec.dynamic_batching
        preferred = [int(b) for b in batching.get("preferred_batch_size", [])]
        too_big = [b for b in preferred if b > spec.max_batch_size or b < 1]
        if too_big:
            raise ConfigError(f"model {spec.name!r}: preferred_batch_size {too_big} outside 1..{spec.max_batch_size}")
        config.dynamic_batching.preferred_batch_size.extend(preferred)
        config.dynamic_batching.max_queue_delay_microseconds = int(batching.get("max_queue_delay_microseconds", 0))
    group = config.instance_group.add()
    group.count = spec.instance_count
    group.kind = mc.ModelInstanceGroup.Kind.Value(instance_kind)
    return config


def to_text(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def parse(text: str) -> mc.ModelConfig:
    """Parse config.pbtxt text; raises ConfigError with the parser's line and column."""
    try:
        return text_format.Parse(text, mc.ModelConfig())
    except text_format.ParseError as exc:
        raise ConfigError(f"config.pbtxt does not parse: {exc}") from exc


def mismatches(config: mc.ModelConfig, spec: ModelSpec) -> list[str]:
    """Where a (parsed) config disagrees with the spec: names, dtypes, dims, max_batch_size."""
    problems = []
    if config.name != spec.name:
        problems.append(f"name is {config.name!r}, spec says {spec.name!r}")
    if config.max_batch_size != spec.max_batch_size:
        problems.append(f"max_batch_size is {config.max_batch_size}, spec says {spec.max_batch_size}")
    for kind, messages, tensors in (("input", config.input, spec.inputs), ("output", config.output, spec.outputs)):
        got = {m.name: (dtype_name(m.data_type), tuple(m.dims)) for m in messages}
        want = {t.name: (t.dtype, t.dims) for t in tensors}
        if got != want:
            problems.append(f"{kind}s are {got}, spec says {want}")
    return problems
