"""FP16 and INT8 ONNX models from an FP32 export, with the field's libraries: nothing quantized by hand.

FP16: `onnxconverter_common.float16.convert_float_to_float16` with `keep_io_types=True`, so clients
send and receive FP32 as before. INT8: `onnxruntime.quantization.quantize_static` (MinMax
calibration) after `quant_pre_process` (shape inference and the graph clean-up its docs ask for),
over a declared calibration set that parity never sends.
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.config.spec import ModelSpec, Quantization
from pipelines.core.errors import ArtifactError, ConfigError
from pipelines.data import digits, images, parity_inputs

log = logging.getLogger(__name__)
CALIBRATION_BATCH = 8  # samples per calibration run: MinMax keeps running extremes, the batch only sets memory


@dataclass(frozen=True)
class Calibration:
    """The arrays a model is calibrated on, and how a report names them."""

    arrays: np.ndarray
    described: str


def calibration_set(spec: ModelSpec, data_path: str) -> Calibration:
    """The declared calibration samples (`quantization.calibration`) of a single-input image model."""
    q = _settings(spec)
    if len(spec.inputs) != 1:
        raise ConfigError(
            f"{spec.name}: quantization.calibration {q.calibration!r} feeds single-input image models; "
            f"this one has {len(spec.inputs)} inputs"
        )
    calibration = _calibration_set(spec, data_path, q)
    (tensor,) = spec.inputs
    if calibration.arrays.shape[1:] != tensor.dims or calibration.arrays.dtype != tensor.numpy_dtype:
        raise ConfigError(
            f"{spec.name}: quantization.calibration {q.calibration!r} gives {calibration.arrays.dtype} "
            f"samples of shape {list(calibration.arrays.shape[1:])}; input {tensor.name!r} takes "
            f"{tensor.dtype} {list(tensor.dims)}"
        )
    return calibration


def _calibration_set(spec: ModelSpec, data_path: str, q: Quantization) -> Calibration:
    (tensor,) = spec.inputs
    count = q.calibration_samples
    if q.calibration == "mnist_train":
        x_train = digits.load_mnist(data_path).x_train
        if len(x_train) < count:
            raise ConfigError(
                f"{spec.name}: quantization.calibration_samples {count} > the {len(x_train)} MNIST training digits"
            )
        return Calibration(digits.to_model_input(x_train[:count]), f"the first {count} MNIST training digits")
    pre = spec.network.require_preprocessing(f"{q.calibration} calibration")
    if q.calibration == "imagenet_like":
        return Calibration(
            parity_inputs.imagenet_like(tensor, count, list(pre.mean), list(pre.std), seed=q.calibration_seed),
            f"{count} image-like tensors (seed {q.calibration_seed})",
        )
    photos = parity_inputs.sample_images(count).reshape(-1)
    settings = pre.settings()
    return Calibration(
        np.stack([images.preprocess(item, settings) for item in photos]).astype(tensor.numpy_dtype),
        f"{count} scikit-image photographs, pre-processed",
    )


def _settings(spec: ModelSpec) -> Quantization:
    if spec.quantization is None:
        raise ConfigError(f"model {spec.name!r} declares no `quantization:` (it is not an FP16/INT8 ONNX model)")
    return spec.quantization


def source(spec: ModelSpec) -> Path:
    """The FP32 export a lossy model is built from."""
    return spec.network.artifact(_settings(spec).source)


def to_fp16(source_path: Path, target: Path) -> None:
    """FP32 weights and compute to FP16; inputs and outputs stay FP32 (the served interface is unchanged)."""
    import onnx  # lazy: onnx takes ~0.6 s; ONNX work only
    from onnxconverter_common import float16  # lazy: ~0.9 s to import; FP16 conversion only

    with warnings.catch_warnings(record=True) as caught:  # one warning per weight clamped into FP16's range
        warnings.simplefilter("always")
        model = float16.convert_float_to_float16(onnx.load(str(source_path)), keep_io_types=True)
    clamped = sum("truncated" in str(w.message) for w in caught)
    if clamped:
        log.info("%d weights outside FP16's range were clamped into it (onnxconverter-common's min/max)", clamped)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(target))


def to_int8(source_path: Path, target: Path, input_name: str, calibration: np.ndarray, q: Quantization) -> None:
    """Static INT8 quantization with MinMax calibration on `calibration`; weights signed, per channel."""
    import onnx  # lazy: onnx takes ~0.6 s; ONNX work only
    from onnxruntime.quantization import (  # lazy: ONNX Runtime takes ~0.5 s; ONNX runs only
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import (  # lazy: ONNX Runtime takes ~0.5 s; ONNX runs only
        quant_pre_process,
    )

    class Reader(CalibrationDataReader):
        """The calibration arrays in batches, as `quantize_static` pulls them."""

        def __init__(self) -> None:
            self.batches: Iterator[dict[str, np.ndarray]] = iter(
                [
                    {input_name: calibration[i : i + CALIBRATION_BATCH]}
                    for i in range(0, len(calibration), CALIBRATION_BATCH)
                ]
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    reader = Reader()
    activation = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}[q.activations]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer warns on the root logger for every shape tensor it leaves alone
    try:
        with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            quant_pre_process(str(source_path), str(prepared))
            quantize_static(
                str(prepared),
                str(target),
                reader,
                quant_format=getattr(QuantFormat, q.format),
                activation_type=activation,
                weight_type=QuantType.QInt8,
                per_channel=q.per_channel,
                # TensorRT's explicit INT8 keeps biases in float (its parser dequantizes INT8 only)
                extra_options={
                    "ActivationSymmetric": q.symmetric,
                    "WeightSymmetric": True,
                    "QuantizeBias": not q.symmetric,
                },
            )
    finally:
        root.setLevel(level)
    onnx.checker.check_model(str(target), full_check=True)


@dataclass(frozen=True)
class Built:
    """What the quantize stage reports of one model."""

    seconds: float
    source_bytes: int
    bytes: int
    calibration: str | None

    def to_dict(self) -> dict[str, Any]:
        """What the committed report records: no timing (the log line says it), which differs from run to run."""
        return {
            "source_bytes": self.source_bytes,
            "bytes": self.bytes,
            "size_ratio": round(self.bytes / self.source_bytes, 4),
            "calibration": self.calibration,
        }


def build_quantized(spec: ModelSpec, target: Path, data_path: str) -> Built:
    """Write `spec`'s FP16 or INT8 model to `target` from its network's FP32 export."""
    src = source(spec)
    if not src.is_file():
        raise ArtifactError(f"{src} not found: run the export stage first (`dvc repro`)")
    start = time.perf_counter()
    calibration = None
    if spec.precision == "fp16":
        log.info("%s: FP16 from %s (inputs and outputs stay FP32)", spec.name, src)
        to_fp16(src, target)
    elif spec.precision == "int8":
        q = _settings(spec)
        cal = calibration_set(spec, data_path)
        calibration = cal.described
        log.info(
            "%s: INT8 (%s, %s activations%s) from %s, calibrated on %s",
            spec.name,
            q.format,
            q.activations,
            ", symmetric" if q.symmetric else "",
            src,
            calibration,
        )
        to_int8(src, target, spec.inputs[0].name, cal.arrays, q)
    else:
        raise ConfigError(f"model {spec.name!r} is {spec.precision}: the quantize stage builds fp16 and int8 models")
    return Built(time.perf_counter() - start, src.stat().st_size, target.stat().st_size, calibration)
