"""The declarative model spec: the one place tensor names, dtypes, dims and tolerances come from.

Export, repository assembly, the Triton client and the parity check all read a `ModelSpec`
built from the composed Hydra config (`conf/network/*.yaml` for tensors, `conf/model/*.yaml`
for how a variant is served), so a tensor name is never typed twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from pipelines.errors import ConfigError

# Triton data type name (without TYPE_) -> numpy dtype. Only types our models use or may use.
TRITON_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "INT8": np.dtype(np.int8),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),  # Triton's TYPE_STRING: encoded images, label strings
}
FORMATS = ("savedmodel", "onnx", "tensorrt", "ensemble")
LAYOUTS = ("NCHW", "NHWC")  # Triton's input `format`: how image clients lay out pixels
PRECISIONS = ("fp32", "fp16")
REFERENCES = ("keras", "torch")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor; `dims` exclude the batch dimension.

    `layout` (NCHW, NHWC) is an image input's pixel layout, served as Triton's input `format`.
    """

    name: str
    dtype: str
    dims: tuple[int, ...]
    labels: bool = False
    layout: str | None = None

    @property
    def numpy_dtype(self) -> np.dtype:
        return TRITON_TO_NUMPY[self.dtype]

    @property
    def json_safe(self) -> bool:
        """FP16/BF16 cannot travel as JSON in the KServe v2 protocol, nor can arbitrary (non-UTF-8) bytes."""
        return self.dtype not in ("FP16", "BF16", "BYTES")

    def batched_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, *self.dims)


@dataclass(frozen=True)
class Tolerance:
    """Pass criteria for one output; elementwise |served - ref| <= atol + rtol * |ref| (numpy.allclose)."""

    atol: float
    rtol: float
    min_cosine: float
    min_top1_agreement: float
    min_top5_agreement: float


@dataclass(frozen=True)
class ModelSpec:
    """A served model: the network's tensors plus how this variant is exported and served."""

    name: str
    network: str
    reference: str
    format: str
    precision: str
    artifact: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    tolerance: Tolerance
    labels_file: Path | None = None
    signature: str = "serving_default"
    dynamic_batching: Mapping[str, Any] = field(default_factory=dict)
    instance_count: int = 1
    parity: Mapping[str, Any] = field(default_factory=dict)
    network_cfg: Mapping[str, Any] = field(default_factory=dict, repr=False)  # the resolved conf/network entry
    tensorrt: Mapping[str, Any] = field(default_factory=dict)  # build settings of a TensorRT model
    ensemble: Mapping[str, Any] = field(default_factory=dict)  # classifier and top_k of an ensemble
    extra_config: str = ""  # config.pbtxt fields merged into the generated config (checked by protobuf)

    @property
    def tensors(self) -> tuple[TensorSpec, ...]:
        return self.inputs + self.outputs

    def input(self, name: str) -> TensorSpec:
        for tensor in self.inputs:
            if tensor.name == name:
                return tensor
        raise ConfigError(f"model {self.name!r} has no input {name!r}")


def _tensors(items: Any, where: str) -> tuple[TensorSpec, ...]:
    if not items:
        raise ConfigError(f"{where}: at least one tensor is required")
    tensors = []
    for item in items:
        dtype = str(item["dtype"]).upper()
        if dtype not in TRITON_TO_NUMPY:
            raise ConfigError(f"{where}: tensor {item['name']!r} has unknown dtype {dtype!r}")
        dims = tuple(int(d) for d in item["dims"])
        if any(d == 0 or d < -1 for d in dims):
            raise ConfigError(f"{where}: tensor {item['name']!r} has invalid dims {list(dims)}")
        layout = item.get("layout")
        if layout is not None and (layout not in LAYOUTS or len(dims) != 3):
            raise ConfigError(f"{where}: tensor {item['name']!r} layout must be one of {', '.join(LAYOUTS)} "
                              f"on 3 dims, got {layout!r} on {list(dims)}")
        tensors.append(TensorSpec(str(item["name"]), dtype, dims, bool(item.get("labels", False)), layout))
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: duplicate tensor names {names}")
    return tuple(tensors)


def network_tensors(network: Mapping[str, Any]) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Inputs and outputs of a network config (`conf/network/*.yaml`)."""
    where = f"network {network.get('name', '?')!r}"
    return _tensors(network.get("inputs"), where), _tensors(network.get("outputs"), where)


def require_reference(network: Mapping[str, Any], reference: str, command: str) -> None:
    """Stages are framework-specific: refuse a network of another framework with a pointer to the right one."""
    if network.get("reference") != reference:
        raise ConfigError(
            f"{command} handles {reference} networks; network {network.get('name')!r} is a "
            f"{network.get('reference')} network"
        )


def _choice(value: Any, allowed: tuple[str, ...], what: str, model: str) -> str:
    if value not in allowed:
        raise ConfigError(f"model {model!r}: {what} must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def plain(cfg: Any) -> Any:
    """A resolved plain-Python copy of an OmegaConf node (interpolations such as `${paths.x}` applied)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def _artifact(cfg: Mapping[str, Any], network: Mapping[str, Any], fmt: str, model: str) -> Path:
    """The model's own `artifact` (TensorRT plans are per served model), else the network's for its format."""
    if fmt == "ensemble":
        return Path()  # an ensemble has no artifact of its own: its steps do
    path = cfg.get("artifact") or (network.get("artifacts") or {}).get(fmt)
    if not path:
        raise ConfigError(f"model {model!r}: network {network['name']!r} declares no {fmt!r} artifact")
    return Path(str(path))


def model_spec(name: str, cfg: Mapping[str, Any]) -> ModelSpec:
    """Build and validate the spec of served model `name` from its composed config (`conf/model/<name>.yaml`)."""
    try:
        return _model_spec(name, plain(cfg))
    except (KeyError, TypeError, ValueError) as exc:  # a missing key or a value of the wrong type
        what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ConfigError(f"model {name!r}: invalid config ({what})") from exc


def _model_spec(name: str, cfg: dict[str, Any]) -> ModelSpec:
    if cfg.get("name", name) != name:
        raise ConfigError(f"model {name!r}: its config names it {cfg['name']!r}; the two must agree")
    network = cfg["network"]
    inputs, outputs = network_tensors(network)
    if cfg.get("inputs") or cfg.get("outputs"):  # a model with its own interface (an ensemble)
        inputs, outputs = network_tensors({"name": name, "inputs": cfg.get("inputs"), "outputs": cfg.get("outputs")})
    max_batch_size = int(cfg["max_batch_size"])
    if max_batch_size < 0:
        raise ConfigError(f"model {name!r}: max_batch_size must be >= 0, got {max_batch_size}")
    instance_count = int(cfg.get("instance_count", 1))
    if instance_count < 1:
        raise ConfigError(f"model {name!r}: instance_count must be >= 1, got {instance_count}")
    tol = cfg["tolerance"]
    labels = network.get("labels_file")
    return ModelSpec(
        name=name,
        network=str(network["name"]),
        reference=_choice(network["reference"], REFERENCES, "network.reference", name),
        format=_choice(cfg["format"], FORMATS, "format", name),
        precision=_choice(cfg["precision"], PRECISIONS, "precision", name),
        artifact=_artifact(cfg, network, cfg["format"], name),
        inputs=inputs,
        outputs=outputs,
        max_batch_size=max_batch_size,
        tolerance=Tolerance(
            atol=float(tol["atol"]),
            rtol=float(tol["rtol"]),
            min_cosine=float(tol["min_cosine"]),
            min_top1_agreement=float(tol["min_top1_agreement"]),
            min_top5_agreement=float(tol["min_top5_agreement"]),
        ),
        labels_file=Path(str(labels)) if labels else None,
        signature=str(network.get("signature", "serving_default")),
        dynamic_batching=dict(cfg.get("dynamic_batching") or {}),
        instance_count=instance_count,
        parity=dict(cfg.get("parity") or {}),
        network_cfg=network,
        tensorrt=dict(cfg.get("tensorrt") or {}),
        ensemble=dict(cfg.get("ensemble") or {}),
        extra_config=str(cfg.get("extra_config") or ""),
    )


def served_specs(models_cfg: Mapping[str, Any]) -> dict[str, ModelSpec]:
    """Specs of every model in a catalog's `models` (`conf/catalog/*.yaml`)."""
    return {name: model_spec(name, cfg) for name, cfg in models_cfg.items()}
