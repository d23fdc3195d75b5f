"""The model spec rejects what Triton or the exporters would choke on, with one-line reasons."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from pipelines.config.spec import model_spec
from pipelines.config.spec_yaml import plain_node
from pipelines.core.errors import ConfigError

from conftest import compose_config


@pytest.fixture
def mnist_cfg() -> dict:
    return plain_node(compose_config("parity", ["model=mnist_onnx"]).model)


def test_spec_reads_tensors_from_the_network(mnist_cfg: dict) -> None:
    spec = model_spec("mnist_onnx", mnist_cfg)
    (image,) = spec.inputs
    assert image.name == mnist_cfg["network"]["inputs"][0]["name"]
    assert image.numpy_dtype == np.float32
    assert image.dims == (28, 28, 1) and image.layout == "NHWC"
    assert spec.network.scores == "probabilities" and spec.network.preprocessing is None
    assert spec.artifact.name == "model.onnx"
    assert spec.tolerance.atol == mnist_cfg["tolerance"]["atol"]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("network", "inputs", 0, "dtype"), "FLOAT", "unknown dtype"),
        (("network", "inputs", 0, "dims"), [28, 0, 1], "invalid dims"),
        (("format",), "pickle", "format must be one of"),
        (("precision",), "int4", "precision must be one of"),
        (("max_batch_size",), -1, "max_batch_size"),
        (("instance_count",), 0, "instance_count"),
        (("network", "reference"), "jax", "network 'mnist': reference must be one of keras, torch, tensorflow"),
        (("network", "scores"), "logprobs", "scores must be one of logits, probabilities"),
        (("parity", "inputs"), "noise", "parity.inputs must be one of"),
        (("parity", "samples"), "many", "invalid config"),
        # settings that would silently weaken the check (each tried by an operator, and once accepted)
        (("tolerance", "atol"), -1, r"tolerance.atol must be a finite number >= 0, got -1"),
        (("tolerance", "atol"), float("inf"), r"tolerance.atol must be a finite number >= 0, got inf"),
        (("tolerance", "rtol"), -0.1, r"tolerance.rtol must be a finite number >= 0"),
        (("tolerance", "min_cosine"), 1.5, r"tolerance.min_cosine must be within 0..1"),
        (("parity", "samples"), 0, r"parity.samples must be >= 1, got 0"),
        (("parity", "batch_sizes"), [-3, 0], r"parity.batch_sizes must be non-empty, each within 1..64"),
        (("parity", "batch_sizes"), [65], r"within 1..64 \(max_batch_size\), got \[65\]"),
        (("parity", "batch_sizes"), [], r"parity.batch_sizes must be non-empty"),
        (("parity", "concurrent_requests"), -5, r"parity.concurrent_requests must be >= 0, got -5"),
        # what `python -m export.add` writes, edited by hand
        (("network", "class_output"), "logits", r"class_output 'logits' is not one of its outputs \['probabilities'\]"),
        (("network", "batch_axis"), False, r"max_batch_size 64 needs a network with a batch axis"),
        (("max_batch_size",), 0, r"max_batch_size 0 needs a network without a batch axis"),
        (("output_tolerance",), {"logits": {"atol": 1}}, r"output_tolerance names \['logits'\], which are not outputs"),
        (
            ("output_tolerance",),
            {"probabilities": {"atol": -1}},
            r"output_tolerance.probabilities.atol must be a finite",
        ),
        (("network", "sampling"), {"value_ranges": {"pixels": [0, 1]}}, r"value_ranges names \['pixels'\]"),
        (("network", "sampling"), {"value_ranges": {"image": [1, 1]}}, r"low < high, got image=\[1.0, 1.0\]"),
        (("network", "sampling"), {"dim_sizes": []}, r"sampling.dim_sizes a non-empty list"),
    ],
)
def test_invalid_values_are_config_errors(mnist_cfg: dict, path: tuple, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        model_spec("mnist_onnx", changed(mnist_cfg, path, value))


def changed(cfg: dict, path: tuple, value: object) -> dict:
    """A copy of a model's config with the value at `path` (keys and list indices) replaced."""
    cfg = copy.deepcopy(cfg)
    node = cfg
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return cfg


def test_duplicate_tensor_names_are_rejected(mnist_cfg: dict) -> None:
    cfg = copy.deepcopy(mnist_cfg)
    cfg["network"]["outputs"].append(dict(cfg["network"]["outputs"][0]))
    with pytest.raises(ConfigError, match="duplicate"):
        model_spec("mnist_onnx", cfg)


def test_missing_artifact_for_format_is_rejected(mnist_cfg: dict) -> None:
    cfg = copy.deepcopy(mnist_cfg)
    del cfg["network"]["artifacts"]["onnx"]
    with pytest.raises(ConfigError, match="declares no 'onnx' artifact"):
        model_spec("mnist_onnx", cfg)


def test_an_output_tolerance_overrides_only_what_it_names(mnist_cfg: dict) -> None:
    cfg = copy.deepcopy(mnist_cfg)
    cfg["output_tolerance"] = {"probabilities": {"atol": 0.5}}
    spec = model_spec("mnist_onnx", cfg)
    own = spec.tolerance_for("probabilities")
    assert own.atol == 0.5 and own.rtol == spec.tolerance.rtol and own.min_cosine == spec.tolerance.min_cosine
    assert spec.network.class_output == "probabilities"  # the one output of class scores, by default


@pytest.fixture
def int8_cfg() -> dict:
    return plain_node(compose_config("parity", ["model=mnist_onnx_int8"]).model)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("quantization",), None, r"a int8 ONNX model needs its `quantization:` settings"),
        (("lossy",), None, r"a int8 model needs `lossy:` bounds"),
        (("quantization", "calibration"), "test_digits", r"quantization.calibration must be one of mnist_train"),
        (("quantization", "activations"), "int4", r"quantization.activations must be one of uint8, int8"),
        (("quantization", "symmetric"), True, r"symmetric needs activations int8"),
        (("quantization", "calibration_samples"), 0, r"calibration_samples must be >= 1"),
        (("quantization", "format"), "qdq", r"quantization.format must be one of QDQ, QOperator"),
        (("quantization", "per_chanel"), True, r"unknown key quantization.per_chanel"),
        (("lossy", "max_accuracy_drop"), 1.5, r"lossy.max_accuracy_drop must be within 0..1"),
        (("lossy", "min_top1_agreement"), -0.1, r"lossy.min_top1_agreement must be within 0..1"),
        (("lossy", "max_p99_abs"), float("inf"), r"lossy.max_p99_abs must be a finite number >= 0"),
        (("lossy", "max_abs"), -1, r"lossy.max_abs must be a finite number >= 0"),
        (("precision",), "fp32", r"`quantization:` builds FP16/INT8 ONNX models; this one is onnx fp32"),
    ],
)
def test_a_lossy_model_needs_settings_that_hold(int8_cfg: dict, path: tuple, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        model_spec("mnist_onnx_int8", changed(int8_cfg, path, value))


def test_lossy_bounds_on_an_fp32_model_are_refused(mnist_cfg: dict, int8_cfg: dict) -> None:
    with pytest.raises(ConfigError, match=r"`lossy:` bounds judge FP16/INT8 models; this one is fp32"):
        model_spec("mnist_onnx", {**mnist_cfg, "lossy": int8_cfg["lossy"]})


def test_lossy_bounds_need_a_file_onnx_runtime_can_run(int8_cfg: dict) -> None:
    """Parity runs a lossy model's own file in ONNX Runtime: an FP16 SavedModel has no such file."""
    cfg = {**changed(int8_cfg, ("format",), "savedmodel"), "quantization": None, "artifact": "models/x"}
    with pytest.raises(ConfigError, match="`lossy:` bounds judge FP16/INT8 ONNX models and TensorRT engines"):
        model_spec("mnist_onnx_int8", cfg)
