"""Models that users add (`python -m export.add`, `python -m export.remove`): their spec files, written as one.

An added network is `conf/network/<name>.yaml` (its tensors, read from the model's own signature,
its source file, where its parity inputs come from) and one `conf/model/<name>_<format>.yaml` per
served format; `conf/added.yaml` lists them for the CPU catalog (its `defaults`) and for `dvc.yaml`
(`added`: one export stage each, depending on the source and the sample). Every file is written
only once everything was checked, and a failure puts every file back as it was.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig

from pipelines.byom import conversion, sources
from pipelines.config import dtypes
from pipelines.config.network import network_spec
from pipelines.config.preprocessing import Preprocessing
from pipelines.config.spec import model_spec
from pipelines.config.tensors import TensorSpec
from pipelines.core.atomic import write_text
from pipelines.core.cli import CONF_DIR, compose
from pipelines.core.errors import ArtifactError, ConfigError, DataError, checked_number
from pipelines.data import parity_inputs
from pipelines.model_repository import standins, triton_config
from pipelines.runners import reference

ROOT = CONF_DIR.parent
INDEX = CONF_DIR / "added.yaml"
NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
TENSOR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/-]*$")
DEFAULT_MAX_BATCH = 8
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's, as conf/network/base
INDEX_HEADER = """\
# @package _global_
# Models added with `python -m export.add` (it writes this file; `python -m export.remove` takes one out).
# The CPU catalog includes this file; dvc.yaml reads `added` through `vars`: one export_added stage each,
# depending on the model's source and on its sample (the network's own file where inputs are generated).
"""


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


def request(cfg: DictConfig) -> Request:
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
class Added:
    """What was added: the network, its served models, the files written, and what was decided on the way."""

    name: str
    kind: str
    reference: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    models: tuple[str, ...]
    files: tuple[Path, ...]
    notes: tuple[str, ...]

    def summary(self) -> str:
        def tensor(t: TensorSpec) -> str:
            return f"    {t.name}: {t.dtype} {list(t.dims)}"

        batch = (
            f"batched (max_batch_size {self.max_batch_size}, dims below exclude the batch axis)"
            if self.max_batch_size
            else "no batch axis (max_batch_size 0)"
        )
        lines = [
            f"added {self.name}: {self.kind} model, reference {self.reference}, {batch}",
            "  inputs:",
            *map(tensor, self.inputs),
            "  outputs:",
            *map(tensor, self.outputs),
            *(f"  note: {n}" for n in self.notes),
            "  wrote: " + ", ".join(shown(f) for f in self.files),
            f"  served as: {', '.join(self.models)}",
            "next: `dvc repro` exports, serves and checks it; "
            f"`python -m evaluate.parity model={self.models[0]}` checks one",
        ]
        return "\n".join(lines)


def shown(path: Path) -> str:
    """A path as messages show it: relative to the project where it lies inside it."""
    resolved = Path(path).resolve()
    return resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else str(path)


def _project_path(path: Path) -> str:
    """A path as the spec files record it: relative to the project where it lies inside it (clones agree)."""
    resolved = path.resolve()
    return resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else str(resolved)


def read_index() -> tuple[list[str], dict[str, dict[str, str]]]:
    """conf/added.yaml: the served models it lists (defaults) and the networks (`added`)."""
    data = yaml.safe_load(INDEX.read_text()) if INDEX.exists() else {}
    models = [next(iter(entry.values())) for entry in data.get("defaults") or []]
    return models, dict(data.get("added") or {})


def index_text(models: list[str], networks: dict[str, dict[str, str]]) -> str:
    lines = [INDEX_HEADER.rstrip("\n"), "defaults:" if models else "defaults: []"]
    lines += [f"  - /model@models.{m}: {m}" for m in models]
    lines.append(
        yaml.safe_dump({"added": networks}, sort_keys=True, default_flow_style=False).rstrip("\n")
        if networks
        else "added: {}"
    )
    return "\n".join(lines) + "\n"


CATALOG_ENTRY = re.compile(r"^\s*-\s*/model@models\.([\w.-]+)\s*:", re.MULTILINE)


def served_names() -> set[str]:
    """Every model name the catalogs serve or conf/model/ defines (an ensemble's steps included). Read from the
    files, not composed: composing a catalog composes every model in it, seconds once many models are added."""
    names = set(CATALOG_ENTRY.findall("\n".join(p.read_text() for p in (CONF_DIR / "catalog").glob("*.yaml"))))
    for path in (CONF_DIR / "model").glob("*.yaml"):
        names.add(path.stem)
        if (yaml.safe_load(path.read_text()) or {}).get("format") == "ensemble":
            names |= {f"{path.stem}_preprocess", f"{path.stem}_postprocess"}
    return names


@contextlib.contextmanager
def transaction(paths: list[Path]) -> Iterator[None]:
    """Every file as it was before, on any failure inside (a user error, a bug, an interruption)."""
    saved = {p: p.read_bytes() if p.exists() else None for p in paths}
    try:
        yield
    except BaseException:
        for path, data in saved.items():
            if data is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(data)
        raise


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


def add(req: Request) -> Added:
    """Check everything, then write the spec files (all or none)."""
    network_file = CONF_DIR / "network" / f"{req.name}.yaml"
    if network_file.exists() or req.name in read_index()[1]:
        raise ConfigError(
            f"a network named {req.name!r} exists already ({shown(network_file)}): choose another "
            f"name, or `python -m export.remove name={req.name}` first"
        )
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
    source = sources.read(req.source, req.signature, raw)
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
    taken = sorted(set(models) & served_names())
    if taken:
        raise ConfigError(f"{', '.join(taken)} is a served model already: choose another name")
    notes = [_open_dims(t, batched, req.dim_sizes, req.sample) for t in inputs]
    notes = [n for n in notes if n]
    sample, preprocessing = None, None
    if images:
        inputs, preprocessing = _image_input(inputs, batched)
        count = parity_inputs.read_images(req.sample, inputs[0], preprocessing).count  # every image decodes
        notes.append(
            f"parity inputs: the {count} images of {shown(req.sample)}, through ImageNet's evaluation "
            f"transform (resize {preprocessing.resize}, crop {preprocessing.crop}), input {inputs[0].name!r} "
            f"laid out {inputs[0].layout}"
        )
    elif req.sample is not None:
        sample = parity_inputs.read_npz(req.sample, inputs, batched)
    class_output = _class_output(req, outputs, sample)
    files = _spec_files(req, source, inputs, outputs, max_batch, formats, class_output, preprocessing)
    models_before, networks = read_index()
    networks[req.name] = {
        "source": _project_path(req.source),
        "sample": _project_path(req.sample) if req.sample else f"conf/network/{req.name}.yaml",
    }
    files[INDEX] = index_text([*models_before, *models], networks)
    with transaction(list(files)):
        for path, text in files.items():
            write_text(path, text)
        _validate(req.name, models)
    return Added(req.name, kind, source.reference, inputs, outputs, max_batch, models, tuple(files), tuple(notes))


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


def _spec_files(
    req: Request,
    source: sources.Source,
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
    max_batch: int,
    formats: tuple[str, ...],
    class_output: str | None,
    preprocessing: Preprocessing | None = None,
) -> dict[Path, str]:
    """The network's file and one model file per format, as YAML text."""
    folder = "${paths.added}/" + req.name
    artifacts = {
        "keras" if source.reference == "keras" else "source": _project_path(req.source),
        "inputs": f"{folder}/inputs.npz",
    }
    artifacts.update({fmt: f"{folder}/model.{'onnx' if fmt == 'onnx' else 'savedmodel'}" for fmt in formats})
    network: dict[str, Any] = {
        "name": req.name,
        "reference": source.reference,
        "signature": req.signature,
        "batch_axis": max_batch > 0,
        "inputs": [
            {"name": t.name, "dtype": t.dtype, "dims": list(t.dims), **({"layout": t.layout} if t.layout else {})}
            for t in inputs
        ],
        "outputs": [{"name": t.name, "dtype": t.dtype, "dims": list(t.dims)} for t in outputs],
        "artifacts": artifacts,
        "parity_inputs": "npz",
        "sampling": {
            "sample": None if req.sample is None else _project_path(req.sample),
            "count": req.samples,
            "value_ranges": {k: list(v) for k, v in req.value_ranges.items()},
            "dim_sizes": list(req.dim_sizes),
        },
    }
    if class_output:
        network["class_output"] = class_output
    if preprocessing:  # the images' transform (images.preprocess), as the ensemble's pre-processing step runs it
        network["preprocessing"] = {
            **preprocessing.settings(),
            "mean": list(preprocessing.mean),
            "std": list(preprocessing.std),
        }
    header = (
        f"# Added by `python -m export.add` from {_project_path(req.source)} ({source.kind}); tensors read from "
        "its own signature.\n# Edit freely (value_ranges, class_output); "
        f"`python -m export.remove name={req.name}` takes it out.\n"
    )
    files = {CONF_DIR / "network" / f"{req.name}.yaml": header + yaml.safe_dump(network, sort_keys=False)}
    fp16 = [t.name for t in outputs if t.dtype == "FP16"]
    for fmt in formats:
        model: dict[str, Any] = {
            "name": f"{req.name}_{fmt}",
            "format": fmt,
            "precision": "fp32",
            "max_batch_size": max_batch,
            "instance_count": 1,
            "parity": {
                "batch_sizes": [1],
                "samples": req.samples if req.sample is None else None,
                "concurrent_requests": min(8, max_batch) if max_batch else 0,
            },
        }
        if model["parity"]["samples"] is None:
            del model["parity"]["samples"]  # every sample of the file
        if max_batch:
            model["dynamic_batching"] = {"max_queue_delay_microseconds": 100}
        if fp16:  # FP16 values get the FP16 preset's tolerance; per-output overrides go here too
            model["output_tolerance"] = {name: {"atol": 5.0e-2, "rtol": 5.0e-2} for name in fp16}
        text = (
            f"# {req.name} served as {fmt}; written by `python -m export.add` (tolerance: conf/tolerance/fp32.yaml, "
            "per output: output_tolerance).\n"
            f"defaults:\n  - /network@network: {req.name}\n  - /tolerance@tolerance: fp32\n  - _self_\n\n"
        )
        files[CONF_DIR / "model" / f"{req.name}_{fmt}.yaml"] = text + yaml.safe_dump(model, sort_keys=False)
    return files


def _validate(name: str, models: tuple[str, ...]) -> None:
    """The written files compose and build valid specs and Triton configs, as every entry point will build them,
    and the source runs on its parity inputs, as its export will run it: a model that cannot get through is
    refused now, not in `dvc repro`. (Whether Triton loads the config is known only to a server: parity says.)"""
    network = network_spec(compose("export_added", [f"network={name}"]).network)
    feeds = conversion.first_feeds(network, conversion.inputs_for(network))
    conversion.require_runs(network, reference.load(network), feeds)
    for model in models:  # composed as export.quantize composes one model: without the catalog (parity's config
        # composes every model it serves: seconds once dozens are added, for each add)
        config = triton_config.build(model_spec(model, compose("quantize", [f"model={model}"]).model))
        refused = standins.refusal_message(config)
        if refused:
            raise ConfigError(refused)


def remove(name: str) -> tuple[list[Path], list[str]]:
    """Take an added network out: its spec files and its entry in conf/added.yaml. Returns the files and the
    served models removed."""
    models, networks = read_index()
    if name not in networks:
        raise ConfigError(f"no added model {name!r}; added: {', '.join(sorted(networks)) or 'none'}")
    own = [
        m
        for m in models
        if m.startswith(f"{name}_")
        and (CONF_DIR / "model" / f"{m}.yaml").exists()
        and f"/network@network: {name}\n" in (CONF_DIR / "model" / f"{m}.yaml").read_text()
    ]
    del networks[name]
    files = [CONF_DIR / "network" / f"{name}.yaml", *(CONF_DIR / "model" / f"{m}.yaml" for m in own)]
    write_text(INDEX, index_text([m for m in models if m not in own], networks))
    for path in files:
        path.unlink(missing_ok=True)
    return files, own
