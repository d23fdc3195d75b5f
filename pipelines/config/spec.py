"""The model spec (`conf/model/<name>.yaml`): how a variant of a network is exported, served and checked.

Repository assembly, the Triton client, parity, quantization and the TensorRT build read a `ModelSpec`;
it carries its network's spec (`pipelines/config/network.py`), its tensors (`tensors.py`), its
tolerance or lossy bounds (`tolerances.py`) and its build settings (TensorRT, quantization). It is
built and validated here, and no other module reads a YAML key of it, so a setting is never typed twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.config.network import PARITY_INPUTS, NetworkSpec, network_from_plain
from pipelines.config.preprocessing import ImageLimits, image_limits
from pipelines.config.spec_yaml import known_keys, validated
from pipelines.config.tensors import TensorSpec, tensor_specs
from pipelines.config.tolerances import (
    LossyBounds,
    Tolerance,
    lossy_bounds_from,
    lossy_problems,
    tolerance_from,
    tolerance_problems,
)
from pipelines.core.errors import ConfigError, checked_choice, checked_number

FORMATS = ("savedmodel", "onnx", "tensorrt", "ensemble", "python")  # python: an ensemble's own steps
PRECISIONS = ("fp32", "fp16", "int8")
LOSSY = ("fp16", "int8")  # precisions judged by what the model is for, against the FP32 framework model
# what calibrates an INT8 model: MNIST training digits, image-like tensors (another seed than parity's), photographs
CALIBRATION_INPUTS = ("mnist_train", "imagenet_like", "sample_images")
QUANT_FORMATS = ("QDQ", "QOperator")  # onnxruntime.quantization.QuantFormat
ACTIVATION_TYPES = ("uint8", "int8")  # uint8 (U8S8): ONNX Runtime's fast CPU kernels; int8 symmetric: TensorRT's
HARDWARE_LEVELS = ("none", "ampere_plus")  # TensorRT hardware compatibility


@dataclass(frozen=True)
class Quantization:
    """How the quantize stage builds a lossy ONNX model from its network's FP32 export.

    FP16: onnxconverter-common with FP32 inputs and outputs kept. INT8: ONNX Runtime's `quantize_static`
    over a declared calibration set (MinMax), weights signed per channel; `activations` uint8 is the format
    ONNX Runtime runs fast on CPU (U8S8), int8 with `symmetric` the one TensorRT builds explicit INT8 from.
    """

    source: str = "onnx"  # the network artifact it is built from
    calibration: str = "mnist_train"
    calibration_samples: int = 256
    calibration_seed: int = 1  # imagenet_like: a seed other than parity's (0), so calibration never sees them
    format: str = "QDQ"
    activations: str = "uint8"
    symmetric: bool = False
    per_channel: bool = True


@dataclass(frozen=True)
class DynamicBatching:
    preferred_batch_size: tuple[int, ...] = ()
    max_queue_delay_microseconds: int = 0


@dataclass(frozen=True)
class ParitySettings:
    """What parity sends: batch sizes (max_batch_size is always added), samples, a concurrent burst."""

    batch_sizes: tuple[int, ...] = (1,)
    samples: int | None = None  # None: max_batch_size
    concurrent_requests: int = 0
    inputs: str | None = None  # another kind than the network's parity_inputs


@dataclass(frozen=True)
class TensorRTSettings:
    """How a TensorRT model's engine is built from its network's artifact."""

    source: str = "onnx"
    min_batch: int = 1
    opt_batch: int | None = None  # None: half of max_batch_size
    workspace_mib: int = 2048
    version_compatible: bool = False
    hardware_compatibility: str = "none"


@dataclass(frozen=True)
class EnsembleSettings:
    classifier: str  # a served model of the same catalog
    image_limits: ImageLimits  # what its pre-processing step accepts
    top_k: int = 5
    decode_instances: int = 2  # pre-processing instances: a request decoding images cannot hold up every other


@dataclass(frozen=True)
class ModelSpec:
    """A served model: a network, and how this variant is exported, served and checked."""

    name: str
    network: NetworkSpec
    format: str
    precision: str
    artifact: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    tolerance: Tolerance
    dynamic_batching: DynamicBatching | None = None
    instance_count: int = 1
    parity: ParitySettings = field(default_factory=ParitySettings)
    tensorrt: TensorRTSettings | None = None
    ensemble: EnsembleSettings | None = None
    extra_config: str = ""  # config.pbtxt fields added to the generated config (checked by protobuf)
    output_tolerance: Mapping[str, Tolerance] = field(default_factory=dict)  # per output, over `tolerance`
    lossy: LossyBounds | None = None  # FP16/INT8: against the FP32 framework model (`tolerance`: its own file)
    quantization: Quantization | None = None  # an FP16/INT8 ONNX model: how the quantize stage builds it

    @property
    def is_lossy(self) -> bool:
        return self.precision in LOSSY

    def tolerance_for(self, output: str) -> Tolerance:
        """An output's own tolerance where the model declares one, else the model's."""
        return self.output_tolerance.get(output, self.tolerance)

    @property
    def tensors(self) -> tuple[TensorSpec, ...]:
        return self.inputs + self.outputs

    @property
    def reference(self) -> str:
        return self.network.reference

    @property
    def labels_file(self) -> Path | None:
        return self.network.labels_file


def model_spec(name: str, cfg: Mapping[str, Any]) -> ModelSpec:
    """Build and validate the spec of served model `name` from its composed config (`conf/model/<name>.yaml`)."""
    return validated(f"model {name!r}", lambda plain_cfg: _model_spec(name, plain_cfg), cfg)


def _model_spec(name: str, cfg: dict[str, Any]) -> ModelSpec:
    where = f"model {name!r}"
    known_keys(cfg, ModelSpec, where, apart=("network",))  # a network checks its own keys
    if cfg.get("name", name) != name:
        raise ConfigError(f"{where}: its config names it {cfg['name']!r}; the two must agree")
    network = network_from_plain(cfg["network"])
    inputs, outputs = network.inputs, network.outputs
    if cfg.get("inputs") or cfg.get("outputs"):  # a model with its own interface (an ensemble)
        inputs, outputs = tensor_specs(cfg.get("inputs"), where), tensor_specs(cfg.get("outputs"), where)
    fmt = checked_choice(cfg["format"], FORMATS, "format", where)
    max_batch_size = int(cfg["max_batch_size"])
    if max_batch_size < 0:
        raise ConfigError(f"{where}: max_batch_size must be >= 0, got {max_batch_size}")
    if fmt != "ensemble" and network.batch_axis != (max_batch_size > 0):
        raise ConfigError(
            f"{where}: max_batch_size {max_batch_size} needs a network "
            + (
                "without a batch axis (batch_axis: false)"
                if network.batch_axis
                else f"with a batch axis: network {network.name!r} has none, so max_batch_size must be 0"
            )
        )
    instance_count = int(cfg.get("instance_count", 1))
    if instance_count < 1:
        raise ConfigError(f"{where}: instance_count must be >= 1, got {instance_count}")
    tol, batching, parity = cfg["tolerance"], cfg.get("dynamic_batching"), cfg.get("parity") or {}
    trt, ens = cfg.get("tensorrt"), cfg.get("ensemble")
    if fmt == "tensorrt" and not trt:
        raise ConfigError(f"{where}: a TensorRT model needs its `tensorrt:` build settings")
    if fmt == "ensemble" and not (ens and ens.get("classifier")):
        raise ConfigError(f"{where}: ensemble.classifier (a served model) is required")
    samples = parity.get("samples")
    spec = ModelSpec(
        name=name,
        network=network,
        format=fmt,
        precision=checked_choice(cfg["precision"], PRECISIONS, "precision", where),
        artifact=Path()
        if fmt == "ensemble"
        # an ensemble's steps have the artifacts
        else (Path(str(cfg["artifact"])) if cfg.get("artifact") else network.artifact(fmt)),
        inputs=inputs,
        outputs=outputs,
        max_batch_size=max_batch_size,
        tolerance=tolerance_from(tol),
        dynamic_batching=None
        if not batching
        else DynamicBatching(
            tuple(int(b) for b in batching.get("preferred_batch_size", [])),
            int(batching.get("max_queue_delay_microseconds", 0)),
        ),
        instance_count=instance_count,
        parity=ParitySettings(
            batch_sizes=tuple(int(b) for b in parity.get("batch_sizes", [1])),
            samples=None if samples is None else int(samples),
            concurrent_requests=int(parity.get("concurrent_requests", 0)),
            inputs=None
            if parity.get("inputs") is None
            else checked_choice(parity["inputs"], PARITY_INPUTS, "parity.inputs", where),
        ),
        tensorrt=None
        if not trt
        else TensorRTSettings(
            source=str(trt.get("source", "onnx")),
            min_batch=int(trt.get("min_batch", 1)),
            opt_batch=None if trt.get("opt_batch") is None else int(trt["opt_batch"]),
            workspace_mib=int(trt.get("workspace_mib", 2048)),
            version_compatible=bool(trt.get("version_compatible", False)),
            hardware_compatibility=checked_choice(
                str(trt.get("hardware_compatibility", "none")),
                HARDWARE_LEVELS,
                "tensorrt.hardware_compatibility",
                where,
            ),
        ),
        ensemble=None
        if not ens
        else EnsembleSettings(
            str(ens["classifier"]),
            image_limits(ens["image_limits"]),
            int(ens.get("top_k", EnsembleSettings.top_k)),
            checked_number(
                ens.get("decode_instances", EnsembleSettings.decode_instances),
                f"{where}: ensemble.decode_instances",
                int,
                1,
            ),
        ),
        extra_config=str(cfg.get("extra_config") or ""),
        output_tolerance={str(k): tolerance_from({**tol, **v}) for k, v in (cfg.get("output_tolerance") or {}).items()},
        lossy=None if not cfg.get("lossy") else lossy_bounds_from(cfg["lossy"]),
        quantization=_quantization(cfg.get("quantization"), where),
    )
    _check_lossy(spec, where)
    unknown = sorted(set(spec.output_tolerance) - {t.name for t in outputs})
    if unknown:
        raise ConfigError(
            f"{where}: output_tolerance names {unknown}, which are not outputs {[t.name for t in outputs]}"
        )
    _check_numbers(spec, where)
    return spec


def _quantization(cfg: dict[str, Any] | None, where: str) -> Quantization | None:
    if not cfg:
        return None
    q = Quantization(
        source=str(cfg.get("source", Quantization.source)),
        calibration=checked_choice(
            cfg.get("calibration", Quantization.calibration), CALIBRATION_INPUTS, "quantization.calibration", where
        ),
        calibration_samples=checked_number(
            cfg.get("calibration_samples", Quantization.calibration_samples),
            f"{where}: quantization.calibration_samples",
            int,
            1,
        ),
        calibration_seed=int(cfg.get("calibration_seed", Quantization.calibration_seed)),
        format=checked_choice(cfg.get("format", Quantization.format), QUANT_FORMATS, "quantization.format", where),
        activations=checked_choice(
            cfg.get("activations", Quantization.activations), ACTIVATION_TYPES, "quantization.activations", where
        ),
        symmetric=bool(cfg.get("symmetric", Quantization.symmetric)),
        per_channel=bool(cfg.get("per_channel", Quantization.per_channel)),
    )
    if q.symmetric and q.activations != "int8":
        raise ConfigError(f"{where}: quantization.symmetric needs activations int8 (a uint8 zero point is never 0)")
    return q


def _check_lossy(spec: ModelSpec, where: str) -> None:
    """A lossy ONNX model is built by the quantize stage and judged against the FP32 framework model."""
    if spec.is_lossy and spec.format == "onnx":
        if spec.quantization is None:
            raise ConfigError(
                f"{where}: a {spec.precision} ONNX model needs its `quantization:` settings (how the "
                "quantize stage builds it from the FP32 export)"
            )
        if spec.lossy is None:
            raise ConfigError(
                f"{where}: a {spec.precision} model needs `lossy:` bounds (how far it may be from "
                "the FP32 framework model)"
            )
    if spec.precision == "int8" and spec.format == "tensorrt" and spec.lossy is None:
        raise ConfigError(f"{where}: an INT8 engine needs `lossy:` bounds (how far it may be from the FP32 model)")
    if spec.quantization is not None and not (spec.is_lossy and spec.format == "onnx"):
        raise ConfigError(
            f"{where}: `quantization:` builds FP16/INT8 ONNX models; this one is {spec.format} {spec.precision}"
        )
    if spec.lossy is not None and not spec.is_lossy:
        raise ConfigError(f"{where}: `lossy:` bounds judge FP16/INT8 models; this one is {spec.precision}")
    if spec.lossy is not None and spec.format not in ("onnx", "tensorrt"):  # parity runs its file in ONNX Runtime
        raise ConfigError(
            f"{where}: `lossy:` bounds judge FP16/INT8 ONNX models and TensorRT engines built from "
            f"Q/DQ ONNX; this one is {spec.format}"
        )
    bad = [] if spec.lossy is None else lossy_problems(spec.lossy)
    if bad:
        raise ConfigError(f"{where}: " + "; ".join(bad))


def _check_numbers(spec: ModelSpec, where: str) -> None:
    """Settings that would weaken or skip the check are refused here, where every entry point builds the spec."""
    parity = spec.parity
    problems = [
        problem
        for prefix, tol in (
            ("tolerance", spec.tolerance),
            *((f"output_tolerance.{k}", v) for k, v in spec.output_tolerance.items()),
        )
        for problem in tolerance_problems(prefix, tol)
    ]
    if parity.samples is not None and parity.samples < 1:
        problems.append(f"parity.samples must be >= 1, got {parity.samples}")
    limit = spec.max_batch_size or 1  # max_batch_size 0: one unbatched request at a time
    bad = [b for b in parity.batch_sizes if not 1 <= b <= limit]
    if bad or not parity.batch_sizes:
        problems.append(
            f"parity.batch_sizes must be non-empty, each within 1..{limit} (max_batch_size), "
            f"got {list(parity.batch_sizes)}"
        )
    if parity.concurrent_requests < 0:
        problems.append(f"parity.concurrent_requests must be >= 0, got {parity.concurrent_requests}")
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))


def served_specs(models_cfg: Mapping[str, Any]) -> dict[str, ModelSpec]:
    """Specs of every model in a catalog's `models` (`conf/catalog/*.yaml`)."""
    return {name: model_spec(name, cfg) for name, cfg in models_cfg.items()}
