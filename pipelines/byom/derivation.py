"""What a user's model file implies (`python -m export.add`): the request typed, the tensors read from the
model's own signature, whether it is batched, the formats it is served as, an images sample's layout and
pre-processing, and which output scores classes. Every refusal about the model or its sample is made here,
before anything is written; `added_index` writes what is derived.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from pipelines.byom import sources
from pipelines.config import dtypes
from pipelines.config.preprocessing import Preprocessing
from pipelines.config.tensors import TensorSpec
from pipelines.core.errors import ArtifactError, ConfigError, DataError, checked_number
from pipelines.core.paths import project_path
from pipelines.data import parity_inputs

NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
TENSOR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/-]*$")
DEFAULT_MAX_BATCH = 8
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's, as conf/network/base


@dataclass(frozen=True)
class Request:
    """What `python -m export.add` was asked, typed and checked (conf/add.yaml)."""

    source: Path
    name: str
    sample: Path | None = None
    signature: str = "serving_default"
    formats: tuple[str, ...] | None = None
    max_batch_size: int | None = None
    class_output: str | None = None
    output_names: tuple[str, ...] | None = None
    samples: int = 16
    value_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    dim_sizes: tuple[int, ...] = (8, 13)


def request_from_config(cfg: DictConfig) -> Request:
    """Build the request from the composed config; a wrong type or value is one line."""

    def optional(key: str) -> Any:
        return cfg.get(key)

    name = str(cfg.name)
    if not NAME.match(name):
        raise ConfigError(
            f"name {name!r} must be lowercase letters, digits and _, starting with a letter "
            "(it names Triton models and files)"
        )
    ranges = {}
    for key, value in dict(optional("value_ranges") or {}).items():
        try:
            low, high = (float(v) for v in value)
        except (TypeError, ValueError):
            raise ConfigError(f"value_ranges.{key} must be [low, high), got {value!r}") from None
        ranges[str(key)] = (low, high)
    formats = optional("formats")
    names = optional("output_names")
    max_batch = optional("max_batch_size")
    return Request(
        source=Path(str(cfg.source)).expanduser(),
        name=name,
        sample=None if optional("sample") is None else Path(str(cfg.sample)).expanduser(),
        signature=str(cfg.signature),
        formats=None
        if formats is None
        else tuple(str(f) for f in ([formats] if isinstance(formats, str) else formats)),
        max_batch_size=None if max_batch is None else checked_number(max_batch, "max_batch_size", int),
        class_output=None if optional("class_output") is None else str(cfg.class_output),
        output_names=None if names is None else tuple(str(n) for n in names),
        samples=checked_number(cfg.samples, "samples", int, 1),
        value_ranges=ranges,
        dim_sizes=tuple(checked_number(d, "dim_sizes", int, 1) for d in cfg.dim_sizes) or Request.dim_sizes,
    )


@dataclass(frozen=True)
class Derived:
    """What the user's file implies: its kind and reference, its tensors (dims without the batch axis when
    batched), the served models, and what was decided on the way (`notes`, for the summary)."""

    kind: str
    source: sources.Source
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    formats: tuple[str, ...]
    models: tuple[str, ...]
    class_output: str | None
    preprocessing: Preprocessing | None
    notes: tuple[str, ...]


def derive(req: Request, served: set[str]) -> Derived:
    """Read the model (and its sample) and check everything it implies; `served`: the model names taken."""
    if not req.source.exists():
        raise ArtifactError(f"{req.source} not found")
    if req.sample is not None and not req.sample.exists():
        raise DataError(f"sample {req.sample} not found")
    images = req.sample is not None and req.sample.is_dir()
    kind = sources.kind_of(req.source)
    if images and kind == "torchscript":
        raise ConfigError("a TorchScript model's input shapes come from an .npz sample, not a folder of images")
    # TorchScript's inputs are read from its sample, before the spec is known
    raw = (
        parity_inputs.ParityInputs(*parity_inputs.npz_arrays(req.sample))
        if req.sample is not None and kind == "torchscript"
        else None
    )
    source = sources.read_source(req.source, req.signature, raw)
    outputs_found = source.outputs
    if req.output_names is not None:
        if kind not in ("torch_export", "torchscript") or len(req.output_names) != len(outputs_found):
            raise ConfigError(
                f"output_names renames a PyTorch model's {len(outputs_found)} outputs; "
                f"got {list(req.output_names)} for a {kind} model"
            )
        outputs_found = tuple(type(t)(n, t.dtype, t.shape) for t, n in zip(outputs_found, req.output_names))
    every = (*source.inputs, *outputs_found)
    has_batch_axis = all(t.shape and t.shape[0] == -1 for t in every)
    max_batch = DEFAULT_MAX_BATCH if has_batch_axis else 0
    if req.max_batch_size is not None:
        if req.max_batch_size > 0 and not has_batch_axis:
            fixed = [t.name for t in every if not (t.shape and t.shape[0] == -1)]
            raise ConfigError(
                f"max_batch_size {req.max_batch_size} needs a dynamic first axis on every tensor; "
                f"{fixed} have none (max_batch_size=0 serves the model unbatched)"
            )
        max_batch = req.max_batch_size
    batched = max_batch > 0
    inputs = _tensors(source.inputs, batched, "input", req.source)
    outputs = _tensors(outputs_found, batched, "output", req.source)
    clash = {t.name for t in inputs} & {t.name for t in outputs}
    if clash:
        raise ArtifactError(f"{req.source}: {sorted(clash)} name both an input and an output")
    unknown = sorted(set(req.value_ranges) - {t.name for t in inputs})
    if unknown:
        raise ConfigError(f"value_ranges names {unknown}, which are not inputs {[t.name for t in inputs]}")
    formats = req.formats or source.formats
    unsupported = [f for f in formats if f not in source.formats]
    if unsupported or not formats:
        raise ConfigError(
            f"a {kind} model is served as {', '.join(source.formats)}; formats={list(formats)} asks for "
            f"{unsupported or 'none'}"
        )
    models = tuple(f"{req.name}_{fmt}" for fmt in formats)
    taken = sorted(set(models) & served)
    if taken:
        raise ConfigError(f"{', '.join(taken)} is a served model already: choose another name")
    notes = [_open_dims(t, batched, req.dim_sizes, req.sample) for t in inputs]
    notes = [n for n in notes if n]
    sample, preprocessing = None, None
    if images:
        inputs, preprocessing = _image_input(inputs, batched)
        count = parity_inputs.read_images(req.sample, inputs[0], preprocessing).count  # every image decodes
        notes.append(
            f"parity inputs: the {count} images of {project_path(req.sample)}, through ImageNet's evaluation "
            f"transform (resize {preprocessing.resize}, crop {preprocessing.crop}), input {inputs[0].name!r} "
            f"laid out {inputs[0].layout}"
        )
    elif req.sample is not None:
        sample = parity_inputs.read_npz(req.sample, inputs, batched)
    class_output = _class_output(req, outputs, sample)
    return Derived(kind, source, inputs, outputs, max_batch, formats, models, class_output, preprocessing, tuple(notes))


def _tensors(found: tuple[Any, ...], batched: bool, kind: str, where: Path) -> tuple[TensorSpec, ...]:
    tensors = []
    for t in found:
        if not t.name or not TENSOR_NAME.match(t.name):
            raise ArtifactError(
                f"{where}: {kind} {t.name!r} has no usable name (Triton needs letters, digits, _ . : / -)"
            )
        if t.dtype not in dtypes.SPEC_DTYPES:
            raise ArtifactError(
                f"{where}: {kind} {t.name!r} is {t.dtype}, which is not supported (supported: "
                f"{', '.join(dtypes.SPEC_DTYPES)})"
            )
        dims = tuple(t.shape[1:] if batched else t.shape)
        tensors.append(TensorSpec(t.name, t.dtype, dims))
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise ArtifactError(f"{where}: {kind} names repeat: {names}")
    return tuple(tensors)


def _image_input(inputs: tuple[TensorSpec, ...], batched: bool) -> tuple[tuple[TensorSpec, ...], Preprocessing]:
    """A folder of images feeds one square image input, channels first or last, through ImageNet's evaluation
    transform at the input's size (the ensemble's pre-processing): the layout and the transform it implies."""
    shape = "[3, S, S] or [S, S, 3]"
    if len(inputs) != 1 or not batched or inputs[0].exact or len(inputs[0].dims) != 3:
        raise ConfigError(
            f"a folder of images feeds a batched model with one floating-point image input {shape}; "
            f"this one has {[(t.name, t.dtype, list(t.dims)) for t in inputs]}: give an .npz sample"
        )
    (tensor,) = inputs
    dims = tensor.dims
    layout = (
        "NCHW"
        if dims[0] == 3 and dims[1] == dims[2] > 0
        else "NHWC"
        if dims[2] == 3 and dims[0] == dims[1] > 0
        else None
    )
    if layout is None:
        raise ConfigError(f"a folder of images feeds an image input {shape}; {tensor.name!r} is {list(dims)}")
    size = dims[1] if layout == "NCHW" else dims[0]
    pre = Preprocessing(resize=round(size * 256 / 224), crop=size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return (TensorSpec(tensor.name, tensor.dtype, dims, layout=layout),), pre


def _open_dims(tensor: TensorSpec, batched: bool, sizes: tuple[int, ...], sample: Path | None) -> str:
    axes = [i + int(batched) for i, d in enumerate(tensor.dims) if d == -1]
    if not axes:
        return ""
    how = (
        "the sample fixes their size (arrays `<input>@<tag>` add samples of other sizes)"
        if sample
        else f"generated inputs give them the sizes {list(sizes)} (dim_sizes), each sent in requests of its own"
    )
    return f"input {tensor.name!r} leaves axes {axes} open: served as -1 (dynamic, any size per request); {how}"


def _class_output(req: Request, outputs: tuple[TensorSpec, ...], sample: Any) -> str | None:
    floats = [t for t in outputs if not t.exact and len(t.dims) == 1 and t.dims[0] > 1]
    if req.class_output is not None:
        if req.class_output not in {t.name for t in outputs}:
            raise ConfigError(f"class_output {req.class_output!r} is not an output: {[t.name for t in outputs]}")
        return req.class_output
    if sample is not None and sample.labels is not None:
        if len(floats) != 1:
            raise ConfigError(
                f"the sample has labels: name the output that scores the classes, class_output=<one of "
                f"{[t.name for t in outputs]}>"
            )
        return floats[0].name
    return None
