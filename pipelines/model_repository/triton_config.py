"""Triton `config.pbtxt` generated from the model spec through Triton's model-config protobuf.

One config per served model, exactly what `tritonserver` in the pinned NGC image loads:
`onnxruntime_onnx`, `tensorflow_savedmodel`, `tensorrt_plan`, the Python-backend steps of the
ensemble and the ensemble itself. The embedded server loads the same files, serving the first
three through stand-in backends (`pipelines/model_repository/standins.py`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from google.protobuf import text_format
from google.protobuf.message import Message
from tritonclient.grpc import model_config_pb2 as mc

from pipelines.config import dtypes
from pipelines.config.ensemble_parts import Parts
from pipelines.config.spec import ModelSpec
from pipelines.config.tensors import TensorSpec
from pipelines.core.errors import ConfigError, checked_choice
from pipelines.data import labels
from pipelines.model_repository.standins import INSTANCE_KINDS, default_filename

PLATFORMS = {"savedmodel": "tensorflow_savedmodel", "onnx": "onnxruntime_onnx", "tensorrt": "tensorrt_plan"}
VERSION = "1"  # the one version directory every model is served from
CONFIG_FILENAME = "config.pbtxt"
PYTHON_MODEL_FILENAME = "model.py"
STEP_SETTINGS = "config"  # parameter key under which an ensemble step's settings travel (JSON)


def artifact_filename(spec: ModelSpec) -> str:
    """Where the artifact goes in the version directory: the name Triton's backend loads by default."""
    return default_filename(PLATFORMS[spec.format])


def _io(config: mc.ModelConfig, spec: ModelSpec, with_labels: bool = True) -> None:
    """Inputs (with their declared layout) and outputs (with the labels file where one applies)."""
    for tensor in spec.inputs:
        message = config.input.add(name=tensor.name, data_type=dtypes.config_enum(tensor.dtype))
        _dims(message, tensor)
        if tensor.layout:
            message.format = mc.ModelInput.Format.Value(f"FORMAT_{tensor.layout}")
    for tensor in spec.outputs:
        message = config.output.add(name=tensor.name, data_type=dtypes.config_enum(tensor.dtype))
        _dims(message, tensor)
        if with_labels and tensor.labels:
            message.label_filename = labels.FILENAME


def _dims(message: mc.ModelInput | mc.ModelOutput, tensor: TensorSpec) -> None:
    """dims, and `reshape: { shape: [] }` for a per-sample scalar (Triton: "must specify 'dims'")."""
    message.dims.extend(tensor.served_dims)
    if tensor.reshaped:
        message.reshape.SetInParent()


def _declared(message: mc.ModelInput | mc.ModelOutput) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """(dims, reshape shape or None) as a config declares a tensor."""
    return tuple(message.dims), tuple(message.reshape.shape) if message.HasField("reshape") else None


def _tensor_text(dtype: str, dims: tuple[int, ...], reshape: tuple[int, ...] | None) -> str:
    return f"{dtype} {list(dims)}" + ("" if reshape is None else f" reshaped to {list(reshape)}")


def model_config(
    spec: ModelSpec, instance_kind: str = "KIND_AUTO", cc_plans: Mapping[str, str] | None = None
) -> mc.ModelConfig:
    """The complete config of a model served from its artifact; Triton needs no auto-completion for it.

    `cc_plans` (TensorRT only): compute capability -> plan file name, when plans for several GPU
    architectures are served side by side (Triton picks one by `cc_model_filenames`).
    """
    checked_choice(instance_kind, INSTANCE_KINDS, "instance_kind")
    if spec.format not in PLATFORMS:
        raise ConfigError(f"model {spec.name!r}: format {spec.format!r} has no Triton platform")
    config = mc.ModelConfig(
        name=spec.name,
        platform=PLATFORMS[spec.format],
        max_batch_size=spec.max_batch_size,
        default_model_filename=artifact_filename(spec),
    )
    if spec.format == "savedmodel":
        config.parameters["TF_SIGNATURE_DEF"].string_value = spec.network.signature
    if spec.format == "tensorrt":
        instance_kind = "KIND_GPU"  # an engine runs on the GPU it was built for
        if cc_plans:
            config.default_model_filename = cc_plans[sorted(cc_plans)[0]]  # a real file, also for unlisted GPUs
            if len(cc_plans) > 1:
                config.cc_model_filenames.update(dict(cc_plans))
    _io(config, spec)
    _dynamic_batching(config, spec)
    config.instance_group.add(count=spec.instance_count, kind=mc.ModelInstanceGroup.Kind.Value(instance_kind))
    return _with_extra(config, spec)


def _dynamic_batching(config: mc.ModelConfig, spec: ModelSpec) -> None:
    batching = spec.dynamic_batching
    if spec.max_batch_size > 0 and batching is not None:
        too_big = [b for b in batching.preferred_batch_size if b > spec.max_batch_size or b < 1]
        if too_big:
            raise ConfigError(f"model {spec.name!r}: preferred_batch_size {too_big} outside 1..{spec.max_batch_size}")
        config.dynamic_batching.preferred_batch_size.extend(batching.preferred_batch_size)
        config.dynamic_batching.max_queue_delay_microseconds = batching.max_queue_delay_microseconds


# Fields the spec sets: extra_config may not set them too (a repeated one would be appended, not replaced)
SPEC_FIELDS = (
    "name",
    "platform",
    "backend",
    "max_batch_size",
    "input",
    "output",
    "default_model_filename",
    "cc_model_filenames",
    "dynamic_batching",
    "instance_group",
    "ensemble_scheduling",
)


def _with_extra(config: mc.ModelConfig, spec: ModelSpec) -> mc.ModelConfig:
    """Add the model's `extra_config` (config.pbtxt syntax, checked by the protobuf parser)."""
    if not spec.extra_config.strip():
        return config
    try:
        extra = text_format.Parse(spec.extra_config, mc.ModelConfig())
    except text_format.ParseError as exc:
        raise ConfigError(f"model {spec.name!r}: extra_config does not parse: {exc}") from exc
    owned = [field.name for field, _ in extra.ListFields() if field.name in SPEC_FIELDS]
    if owned:
        raise ConfigError(
            f"model {spec.name!r}: extra_config sets {', '.join(owned)}, which come from the model's "
            "spec (conf/model/, conf/network/): change them there"
        )
    for key in set(extra.parameters) & set(config.parameters):
        raise ConfigError(f"model {spec.name!r}: extra_config sets parameter {key}, which comes from the spec")
    config.MergeFrom(extra)
    return config


def ensemble_step(step: ModelSpec, settings: Mapping[str, object]) -> mc.ModelConfig:
    """A Python-backend step of an ensemble; its settings travel as one JSON parameter."""
    config = mc.ModelConfig(name=step.name, backend="python", max_batch_size=step.max_batch_size)
    _io(config, step, with_labels=False)
    _dynamic_batching(config, step)  # concurrent ensemble requests merge in every step, not only the classifier
    config.instance_group.add(count=step.instance_count, kind=mc.ModelInstanceGroup.KIND_CPU)
    config.parameters[STEP_SETTINGS].string_value = json.dumps(dict(settings), sort_keys=True)
    return config


def ensemble(parts: Parts) -> mc.ModelConfig:
    """platform "ensemble": image -> preprocess -> classifier -> postprocess -> probabilities, labels."""
    spec = parts.ensemble
    config = mc.ModelConfig(name=spec.name, platform="ensemble", max_batch_size=spec.max_batch_size)
    _io(config, spec, with_labels=False)
    (cls_in,), (cls_out,) = parts.classifier.inputs, parts.classifier.outputs
    scheduling = config.ensemble_scheduling
    pre = scheduling.step.add(model_name=parts.preprocess.name, model_version=-1)
    pre.input_map[parts.image.name] = parts.image.name
    pre.output_map[cls_in.name] = f"{cls_in.name}_preprocessed"
    classify = scheduling.step.add(model_name=parts.classifier.name, model_version=-1)
    classify.input_map[cls_in.name] = f"{cls_in.name}_preprocessed"
    classify.output_map[cls_out.name] = f"{cls_out.name}_raw"
    post = scheduling.step.add(model_name=parts.postprocess.name, model_version=-1)
    post.input_map[cls_out.name] = f"{cls_out.name}_raw"
    for tensor in spec.outputs:
        post.output_map[tensor.name] = tensor.name
    return config


def to_text(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def parse_config(text: str) -> mc.ModelConfig:
    """Parse config.pbtxt text; raises ConfigError with the parser's line and column."""
    try:
        return text_format.Parse(text, mc.ModelConfig())
    except text_format.ParseError as exc:
        raise ConfigError(f"config.pbtxt does not parse: {exc}") from exc


def field_differences(expected: Message, actual: Message, path: str = "") -> list[str]:
    """Every field, set in either, in which two configs differ: 'path: value, expected value' (a protobuf
    equality that says where; a served copy edited by hand must not pass as the one the spec generates)."""
    out: list[str] = []
    fields = {f.name: f for f, _ in [*expected.ListFields(), *actual.ListFields()]}
    for name, field in sorted(fields.items()):
        where = f"{path}.{name}" if path else name
        want, got = getattr(expected, name), getattr(actual, name)
        repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED
        if field.message_type is not None and repeated and not field.message_type.GetOptions().map_entry:
            if len(want) != len(got):
                out.append(f"{where}: {len(got)} entries, expected {len(want)}")
            out += [d for i, (w, g) in enumerate(zip(want, got)) for d in field_differences(w, g, f"{where}[{i}]")]
        elif field.message_type is not None and not repeated:
            out += field_differences(want, got, where)
        elif want != got:
            out.append(f"{where}: {_proto_text(got)}, expected {_proto_text(want)}")
    return out


def served_differences(expected: Message, served: Message, path: str = "") -> list[str]:
    """Every field the spec sets, in which the config a server reports differs: 'path: value, expected value'.

    A running server reports its config completed (backend beside platform, instance names, defaults),
    so only what `expected` sets is compared: a remote server cannot serve other settings than those proven
    for any field the spec decides. Fields left at their defaults are `config_mismatches`' to check (names, dims,
    batch)."""
    out: list[str] = []
    for field, want in expected.ListFields():
        where = f"{path}.{field.name}" if path else field.name
        got = getattr(served, field.name)
        repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key, value in want.items():
                if key not in got:
                    out.append(f"{where}[{key!r}]: missing, expected {_proto_text({key: value})}")
                elif hasattr(value, "ListFields"):
                    out += served_differences(value, got[key], f"{where}[{key!r}]")
                elif value != got[key]:
                    out.append(f"{where}[{key!r}]: {got[key]!r}, expected {value!r}")
        elif field.message_type is not None and repeated:
            if len(want) != len(got):
                out.append(f"{where}: {len(got)} entries, expected {len(want)}")
            out += [d for i, (w, g) in enumerate(zip(want, got)) for d in served_differences(w, g, f"{where}[{i}]")]
        elif field.message_type is not None:
            out += served_differences(want, got, where)
        elif want != got:
            out.append(f"{where}: {_proto_text(got)}, expected {_proto_text(want)}")
    return out


def _proto_text(value: object) -> str:
    if hasattr(value, "items"):  # a protobuf map
        return str(
            dict(
                sorted(
                    (k, text_format.MessageToString(v, as_one_line=True) if hasattr(v, "ListFields") else v)
                    for k, v in value.items()
                )
            )
        )
    if isinstance(value, (list, tuple)) or type(value).__name__.startswith("Repeated"):
        return str(list(value))
    return repr(value)


def config_mismatches(config: mc.ModelConfig, spec: ModelSpec) -> list[str]:
    """Where a (parsed or served) config disagrees with the spec: names, dtypes, dims, layout, max_batch_size."""
    problems = []
    if config.name != spec.name:
        problems.append(f"name is {config.name!r}, spec says {spec.name!r}")
    if config.max_batch_size != spec.max_batch_size:
        problems.append(f"max_batch_size is {config.max_batch_size}, spec says {spec.max_batch_size}")
    for kind, messages, tensors in (("input", config.input, spec.inputs), ("output", config.output, spec.outputs)):
        got = {m.name: _tensor_text(dtypes.from_config_enum(m.data_type), *_declared(m)) for m in messages}
        want = {t.name: _tensor_text(t.dtype, t.served_dims, () if t.reshaped else None) for t in tensors}
        if got != want:
            problems.append(f"{kind}s are {got}, spec says {want}")
    for message in config.input:
        tensor = next((t for t in spec.inputs if t.name == message.name), None)
        layout = mc.ModelInput.Format.Name(message.format).removeprefix("FORMAT_")
        if tensor is not None and (tensor.layout or "NONE") != layout:
            problems.append(f"input {message.name!r} format is {layout}, spec says {tensor.layout or 'NONE'}")
    return problems
