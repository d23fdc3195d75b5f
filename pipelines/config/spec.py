"""The declarative model spec: the one place tensor names, dtypes, dims and tolerances come from.

Training and export read a `NetworkSpec` (`conf/network/*.yaml`: tensors, artifacts,
pre-processing, what the output means); repository assembly, the Triton client, parity and the
TensorRT build read a `ModelSpec` (`conf/model/*.yaml`: how a variant of a network is served and
checked). Both are built and validated here, and no other module reads a YAML key of theirs, so a
tensor name or setting is never typed twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

from pipelines.config import dtypes
from pipelines.core.errors import ConfigError, checked_number

FORMATS = ("savedmodel", "onnx", "tensorrt", "ensemble", "python")  # python: an ensemble's own steps
LAYOUTS = ("NCHW", "NHWC")  # Triton's input `format`: how image clients lay out pixels
PRECISIONS = ("fp32", "fp16", "int8")
LOSSY = ("fp16", "int8")  # precisions judged by what the model is for, against the FP32 framework model
# what calibrates an INT8 model: MNIST training digits, image-like tensors (another seed than parity's), photographs
CALIBRATION_INPUTS = ("mnist_train", "imagenet_like", "sample_images")
QUANT_FORMATS = ("QDQ", "QOperator")  # onnxruntime.quantization.QuantFormat
ACTIVATION_TYPES = ("uint8", "int8")  # uint8 (U8S8): ONNX Runtime's fast CPU kernels; int8 symmetric: TensorRT's
REFERENCE_ARTIFACT = {"keras": "keras", "torch": "state_dict"}  # every other reference runs artifact "source"
# the framework parity compares against: the trained Keras model, a torchvision classifier's state dict, or an
# added model's own source file (`python -m export.add`): a SavedModel, a torch.export program, TorchScript, ONNX
REFERENCES = ("keras", "torch", "tensorflow", "torch_export", "torchscript", "onnx")
SCORES = ("logits", "probabilities")  # what a classifier's output holds
# pipelines/data/parity_inputs.py; npz: the arrays an added network's export stage wrote (the user's sample,
# or generated)
PARITY_INPUTS = ("mnist_test", "imagenet_like", "sample_images", "npz")
HARDWARE_LEVELS = ("none", "ampere_plus")  # TensorRT hardware compatibility


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
        return dtypes.to_numpy(self.dtype)

    @property
    def exact(self) -> bool:
        """Integer, bool and string values compare for equality; only floating-point values get a tolerance."""
        return self.dtype not in dtypes.FLOAT_DTYPES

    @property
    def json_safe(self) -> bool:
        """FP16/BF16 cannot travel as JSON in the KServe v2 protocol, nor can arbitrary (non-UTF-8) bytes."""
        return self.dtype not in ("FP16", "BF16", "BYTES")

    @property
    def reshaped(self) -> bool:
        """A per-sample scalar (an argmax, a score, skl2onnx's `label`): Triton refuses a tensor without dims, so
        its config declares `dims: [1]` with `reshape: { shape: [] }`, and clients send and get [batch, 1]."""
        return not self.dims

    @property
    def served_dims(self) -> tuple[int, ...]:
        """The dims a config declares and clients see (the model's own `dims` unless `reshaped`)."""
        return self.dims or (1,)


@dataclass(frozen=True)
class Tolerance:
    """Pass criteria for one output; elementwise |served - ref| <= atol + rtol * |ref| (numpy.allclose)."""

    atol: float
    rtol: float
    min_cosine: float
    min_top1_agreement: float
    min_top5_agreement: float


@dataclass(frozen=True)
class LossyBounds:
    """How far an FP16 or INT8 model may be from the FP32 framework model, judged by what the model is for.

    Task accuracy on labelled samples (`max_accuracy_drop`, a fraction: 0.005 is half a point), agreement of
    the predicted classes, and error statistics in Polygraphy's terms (max, mean, median and the 99th
    percentile of |served - FP32|, each bounded on its own). NaN or Inf always fail.
    """

    max_accuracy_drop: float
    min_top1_agreement: float
    min_top5_agreement: float
    min_cosine: float
    max_abs: float
    max_mean_abs: float
    max_median_abs: float
    max_p99_abs: float


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
class Preprocessing:
    """torchvision's ImageNet evaluation transform: shorter side to `resize`, centre crop, normalise."""

    resize: int
    crop: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def settings(self) -> dict[str, Any]:
        """Plain values for `images.preprocess`, on the client and in the ensemble's step (as JSON)."""
        return {"resize": self.resize, "crop": self.crop, "mean": list(self.mean), "std": list(self.std)}


@dataclass(frozen=True)
class Sampling:
    """Where an added network's parity inputs come from: the user's sample file, else generated from the spec.

    Generated values are seeded; `value_ranges` bounds an input's values (low inclusive, high exclusive for
    integers), as Polygraphy's `--val-range`; the first of `dim_sizes` fills the dimensions the artifact
    leaves open, and each other size makes samples of its own (parity sends both: the dimension is dynamic).
    """

    sample: Path | None = None
    count: int = 16
    value_ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    dim_sizes: tuple[int, ...] = (8, 13)
    seed: int = 0


@dataclass(frozen=True)
class NetworkSpec:
    """A trained network: its tensors, artifacts by kind (keras, savedmodel, onnx, state_dict) and semantics."""

    name: str
    reference: str  # the framework that parity compares against: keras | torch
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    artifacts: Mapping[str, Path]
    signature: str = "serving_default"  # the SavedModel signature export writes and Triton serves
    scores: str = "logits"  # logits | probabilities (already a softmax)
    parity_inputs: str = "imagenet_like"
    preprocessing: Preprocessing | None = None
    labels_file: Path | None = None
    arch: str | None = None  # torchvision architecture
    labels_from: str | None = None  # torchvision weight enum whose metadata names the classes
    class_output: str | None = None  # the output whose argmax is a class: ranking gates, accuracy on labels
    batch_axis: bool = True  # the tensors' first axis is a batch axis, not part of `dims` (else max_batch_size 0)
    sampling: Sampling | None = None  # an added network's parity inputs (parity_inputs: npz)

    @property
    def source(self) -> Path:
        """The file parity's reference runs: what the user trained (for our own networks, what training wrote)."""
        return self.artifact(REFERENCE_ARTIFACT.get(self.reference, "source"))

    def artifact(self, kind: str) -> Path:
        if kind not in self.artifacts:
            raise ConfigError(f"network {self.name!r} declares no {kind!r} artifact")
        return self.artifacts[kind]

    def require_reference(self, reference: str, command: str) -> None:
        """Stages are framework-specific: refuse a network of another framework with a pointer to the right one."""
        if self.reference != reference:
            raise ConfigError(
                f"{command} handles {reference} networks; network {self.name!r} is a {self.reference} network"
            )

    def require_preprocessing(self, what: str) -> Preprocessing:
        if self.preprocessing is None:
            raise ConfigError(f"network {self.name!r} declares no preprocessing, which {what} needs")
        return self.preprocessing


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
class ImageLimits:
    """What image decoding accepts (`image_limits` in conf/common.yaml), checked from the header before decoding.

    A tiny file can declare a huge or extremely elongated image (a 138-byte PNG of 1x20000 pixels
    resizes to 256x5,120,000): every limit bounds the work one request can cause.
    """

    max_bytes: int  # encoded size
    max_width: int
    max_height: int
    max_pixels: int  # width * height
    max_aspect: float  # longer side / shorter side
    max_request_pixels: int  # all of one request's images together: how long one request may hold a decoder
    client_pixels_per_s: int  # one client's images over time (max_request_pixels at once): what it may hold

    def settings(self) -> dict[str, Any]:
        """Plain values for `images.decode`, on the client and in the ensemble's step (as JSON)."""
        return dict(self.__dict__)


def image_limits(cfg: Mapping[str, Any]) -> ImageLimits:
    """Build and validate the limits (`image_limits` in conf/common.yaml): every one must be positive."""

    def build(c: dict[str, Any]) -> ImageLimits:
        limits = ImageLimits(
            int(c["max_bytes"]),
            int(c["max_width"]),
            int(c["max_height"]),
            int(c["max_pixels"]),
            float(c["max_aspect"]),
            int(c["max_request_pixels"]),
            int(c["client_pixels_per_s"]),
        )
        bad = [f"{k}={v}" for k, v in limits.__dict__.items() if not v > 0]
        if bad or limits.max_aspect < 1:
            raise ConfigError(
                f"image_limits must be positive (max_aspect >= 1), got {', '.join(bad) or limits.max_aspect}"
            )
        return limits

    return _validated("image_limits", build, cfg)


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


def _tensors(items: Any, where: str) -> tuple[TensorSpec, ...]:
    if not items:
        raise ConfigError(f"{where}: at least one tensor is required")
    tensors = []
    for item in items:
        dtype = str(item["dtype"]).upper()
        if dtype not in dtypes.SPEC_DTYPES:
            raise ConfigError(f"{where}: tensor {item['name']!r} has unknown dtype {dtype!r}")
        dims = tuple(int(d) for d in item["dims"])
        if any(d == 0 or d < -1 for d in dims):
            raise ConfigError(f"{where}: tensor {item['name']!r} has invalid dims {list(dims)}")
        layout = item.get("layout")
        if layout is not None and (layout not in LAYOUTS or len(dims) != 3):
            raise ConfigError(
                f"{where}: tensor {item['name']!r} layout must be one of {', '.join(LAYOUTS)} "
                f"on 3 dims, got {layout!r} on {list(dims)}"
            )
        tensors.append(TensorSpec(str(item["name"]), dtype, dims, bool(item.get("labels", False)), layout))
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: duplicate tensor names {names}")
    return tuple(tensors)


def _choice(value: Any, allowed: tuple[str, ...], what: str, where: str) -> str:
    if value not in allowed:
        raise ConfigError(f"{where}: {what} must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def plain(node: object) -> Any:
    """A resolved plain-Python copy of an OmegaConf node (interpolations such as `${paths.x}` applied); anything
    else as it is."""
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node


def _validated(what: str, build: Any, node: object) -> Any:
    """Run a builder on a plain copy; a missing key or a value of the wrong type is a one-line ConfigError."""
    try:
        return build(plain(node))
    except (KeyError, TypeError, ValueError) as exc:
        detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ConfigError(f"{what}: invalid config ({detail})") from exc


def network_spec(cfg: Mapping[str, Any]) -> NetworkSpec:
    """Build and validate a network's spec from its composed config (`conf/network/<name>.yaml`)."""
    return _validated(f"network {plain(cfg).get('name', '?')!r}", _network_spec, cfg)


# Every key a spec reads, per section: any other is refused (a misspelled or `+`-added key would do nothing)
NETWORK_KEYS = {
    "name",
    "reference",
    "inputs",
    "outputs",
    "artifacts",
    "signature",
    "scores",
    "parity_inputs",
    "preprocessing",
    "labels_file",
    "arch",
    "labels_from",
    "class_output",
    "sampling",
    "batch_axis",
}
MODEL_KEYS = {
    "name",
    "network",
    "inputs",
    "outputs",
    "format",
    "precision",
    "artifact",
    "max_batch_size",
    "instance_count",
    "tolerance",
    "output_tolerance",
    "dynamic_batching",
    "parity",
    "tensorrt",
    "ensemble",
    "extra_config",
    "lossy",
    "quantization",
}
SECTION_KEYS = {
    "preprocessing": {"resize", "crop", "mean", "std"},
    "sampling": {"sample", "count", "value_ranges", "dim_sizes", "seed"},
    "tolerance": {"atol", "rtol", "min_cosine", "min_top1_agreement", "min_top5_agreement"},
    "dynamic_batching": {"preferred_batch_size", "max_queue_delay_microseconds"},
    "parity": {"batch_sizes", "samples", "concurrent_requests", "inputs"},
    "tensorrt": {"source", "min_batch", "opt_batch", "workspace_mib", "version_compatible", "hardware_compatibility"},
    "ensemble": {"classifier", "image_limits", "top_k", "decode_instances"},
    "lossy": {
        "max_accuracy_drop",
        "min_top1_agreement",
        "min_top5_agreement",
        "min_cosine",
        "max_abs",
        "max_mean_abs",
        "max_median_abs",
        "max_p99_abs",
    },
    "quantization": {
        "source",
        "calibration",
        "calibration_samples",
        "calibration_seed",
        "format",
        "activations",
        "symmetric",
        "per_channel",
    },
}


def _known_keys(cfg: dict[str, Any], allowed: set[str], where: str) -> None:
    """A key no spec reads is refused, with the keys that are: it would change nothing, silently."""
    for section, value in [(None, cfg), *((k, cfg[k]) for k in SECTION_KEYS if k in allowed and k in cfg)]:
        if not isinstance(value, dict):
            continue
        keys = allowed if section is None else SECTION_KEYS[section]
        unknown = sorted(set(value) - keys)
        if unknown:
            prefix = "" if section is None else f"{section}."
            raise ConfigError(
                f"{where}: unknown key {prefix}{unknown[0]} (misspelled? {prefix or 'its '}keys are: "
                f"{', '.join(sorted(keys))})"
            )


def _network_spec(cfg: dict[str, Any]) -> NetworkSpec:
    where = f"network {cfg['name']!r}"
    _known_keys(cfg, NETWORK_KEYS, where)
    pre = cfg.get("preprocessing")
    labels = cfg.get("labels_file")
    inputs, outputs = _tensors(cfg.get("inputs"), where), _tensors(cfg.get("outputs"), where)
    return NetworkSpec(
        name=str(cfg["name"]),
        reference=_choice(cfg["reference"], REFERENCES, "reference", where),
        inputs=inputs,
        outputs=outputs,
        artifacts={str(k): Path(str(v)) for k, v in (cfg.get("artifacts") or {}).items()},
        signature=str(cfg.get("signature", "serving_default")),
        scores=_choice(cfg.get("scores", "logits"), SCORES, "scores", where),
        parity_inputs=_choice(cfg.get("parity_inputs", "imagenet_like"), PARITY_INPUTS, "parity_inputs", where),
        preprocessing=None
        if pre is None
        else Preprocessing(
            int(pre["resize"]),
            int(pre["crop"]),
            tuple(float(m) for m in pre["mean"]),
            tuple(float(s) for s in pre["std"]),
        ),
        labels_file=Path(str(labels)) if labels else None,
        arch=str(cfg["arch"]) if cfg.get("arch") else None,
        labels_from=str(cfg["labels_from"]) if cfg.get("labels_from") else None,
        class_output=_class_output(cfg, outputs, where),
        sampling=_sampling(cfg.get("sampling"), inputs, where),
        batch_axis=bool(cfg.get("batch_axis", True)),
    )


def _class_output(cfg: dict[str, Any], outputs: tuple[TensorSpec, ...], where: str) -> str | None:
    """The declared class output; by default the only output when it is one vector of class scores."""
    name = cfg.get("class_output")
    if name is None:
        (only, *rest) = outputs
        return only.name if not rest and len(only.dims) == 1 and only.dims[0] > 1 and not only.exact else None
    if name not in {t.name for t in outputs}:
        raise ConfigError(f"{where}: class_output {name!r} is not one of its outputs {[t.name for t in outputs]}")
    return str(name)


def _sampling(cfg: dict[str, Any] | None, inputs: tuple[TensorSpec, ...], where: str) -> Sampling | None:
    if cfg is None:
        return None
    ranges = {str(k): (float(v[0]), float(v[1])) for k, v in (cfg.get("value_ranges") or {}).items()}
    unknown = sorted(set(ranges) - {t.name for t in inputs})
    if unknown:
        raise ConfigError(
            f"{where}: sampling.value_ranges names {unknown}, which are not inputs {[t.name for t in inputs]}"
        )
    empty = [f"{k}={list(v)}" for k, v in ranges.items() if not v[0] < v[1]]
    if empty:
        raise ConfigError(f"{where}: sampling.value_ranges must be [low, high) with low < high, got {', '.join(empty)}")
    sampling = Sampling(
        Path(str(cfg["sample"])) if cfg.get("sample") else None,
        int(cfg.get("count", Sampling.count)),
        ranges,
        tuple(int(d) for d in cfg.get("dim_sizes", Sampling.dim_sizes)),
        int(cfg.get("seed", Sampling.seed)),
    )
    if sampling.count < 1 or not sampling.dim_sizes or min(sampling.dim_sizes) < 1:
        raise ConfigError(f"{where}: sampling.count must be >= 1 and sampling.dim_sizes a non-empty list of sizes >= 1")
    return sampling


def model_spec(name: str, cfg: Mapping[str, Any]) -> ModelSpec:
    """Build and validate the spec of served model `name` from its composed config (`conf/model/<name>.yaml`)."""
    return _validated(f"model {name!r}", lambda plain_cfg: _model_spec(name, plain_cfg), cfg)


def _model_spec(name: str, cfg: dict[str, Any]) -> ModelSpec:
    where = f"model {name!r}"
    _known_keys(cfg, MODEL_KEYS, where)
    if cfg.get("name", name) != name:
        raise ConfigError(f"{where}: its config names it {cfg['name']!r}; the two must agree")
    network = _network_spec(cfg["network"])
    inputs, outputs = network.inputs, network.outputs
    if cfg.get("inputs") or cfg.get("outputs"):  # a model with its own interface (an ensemble)
        inputs, outputs = _tensors(cfg.get("inputs"), where), _tensors(cfg.get("outputs"), where)
    fmt = _choice(cfg["format"], FORMATS, "format", where)
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
        precision=_choice(cfg["precision"], PRECISIONS, "precision", where),
        artifact=Path()
        if fmt == "ensemble"
        # an ensemble's steps have the artifacts
        else (Path(str(cfg["artifact"])) if cfg.get("artifact") else network.artifact(fmt)),
        inputs=inputs,
        outputs=outputs,
        max_batch_size=max_batch_size,
        tolerance=_tolerance(tol),
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
            else _choice(parity["inputs"], PARITY_INPUTS, "parity.inputs", where),
        ),
        tensorrt=None
        if not trt
        else TensorRTSettings(
            source=str(trt.get("source", "onnx")),
            min_batch=int(trt.get("min_batch", 1)),
            opt_batch=None if trt.get("opt_batch") is None else int(trt["opt_batch"]),
            workspace_mib=int(trt.get("workspace_mib", 2048)),
            version_compatible=bool(trt.get("version_compatible", False)),
            hardware_compatibility=_choice(
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
        output_tolerance={str(k): _tolerance({**tol, **v}) for k, v in (cfg.get("output_tolerance") or {}).items()},
        lossy=None if not cfg.get("lossy") else LossyBounds(**{k: float(v) for k, v in cfg["lossy"].items()}),
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
        calibration=_choice(
            cfg.get("calibration", Quantization.calibration), CALIBRATION_INPUTS, "quantization.calibration", where
        ),
        calibration_samples=checked_number(
            cfg.get("calibration_samples", Quantization.calibration_samples),
            f"{where}: quantization.calibration_samples",
            int,
            1,
        ),
        calibration_seed=int(cfg.get("calibration_seed", Quantization.calibration_seed)),
        format=_choice(cfg.get("format", Quantization.format), QUANT_FORMATS, "quantization.format", where),
        activations=_choice(
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
    bounds = spec.lossy
    if bounds is not None:
        bad = [
            f"lossy.{k} must be within 0..1, got {v}"
            for k, v in bounds.__dict__.items()
            if (k.startswith("min_") or k == "max_accuracy_drop") and not 0 <= v <= 1
        ]
        bad += [
            f"lossy.{k} must be a finite number >= 0, got {v}"
            for k, v in bounds.__dict__.items()
            if k.startswith("max_") and not 0 <= v < math.inf
        ]
        if bad:
            raise ConfigError(f"{where}: " + "; ".join(bad))


def _tolerance(tol: Mapping[str, Any]) -> Tolerance:
    return Tolerance(
        float(tol["atol"]),
        float(tol["rtol"]),
        float(tol["min_cosine"]),
        float(tol["min_top1_agreement"]),
        float(tol["min_top5_agreement"]),
    )


def _check_numbers(spec: ModelSpec, where: str) -> None:
    """Settings that would weaken or skip the check are refused here, where every entry point builds the spec."""
    parity = spec.parity
    problems = []
    for prefix, tol in (
        ("tolerance", spec.tolerance),
        *((f"output_tolerance.{k}", v) for k, v in spec.output_tolerance.items()),
    ):
        problems += [
            f"{prefix}.{k} must be a finite number >= 0, got {v}"
            for k, v in (("atol", tol.atol), ("rtol", tol.rtol))
            if not 0 <= v < math.inf
        ]
        problems += [
            f"{prefix}.{k} must be within 0..1, got {v}"
            for k, v in tol.__dict__.items()
            if k.startswith("min_") and not 0 <= v <= 1
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
