"""FP16 and INT8 models built with onnxconverter-common and ONNX Runtime's quantizer, read back with `onnx`.

A small CNN written node by node is the source; what each format must hold is checked in the written
graph itself (tensor types, QuantizeLinear zero points), as Triton and TensorRT would read it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.artifacts import quantization
from pipelines.config.spec import Quantization

FLOAT, FLOAT16, INT8, UINT8 = 1, 10, 3, 2  # onnx.TensorProto element types


def small_cnn(path: Path) -> None:
    """image [N,1,8,8] -> Conv(4, 3x3) -> Relu -> Flatten -> Gemm(10) -> logits [N,10], seeded weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "conv_b"),
        numpy_helper.from_array(rng.normal(0, 0.1, (256, 10)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, 10).astype(np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("Flatten", ["relu"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "small_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def run(path: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"image": images})[0]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "fp32.onnx"
    small_cnn(path)
    return path


def images(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((count, 1, 8, 8)).astype(np.float32)


def zero_points(path: Path) -> dict[str, tuple[int, list[int]]]:
    """Each quantized tensor's zero point: (element type, values), by the tensor's name; QDQ stores weights
    quantized already (`<name>_quantized`, dequantized in the graph), activations are quantized in it."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    init = {i.name: i for i in model.graph.initializer}
    return {
        node.input[0].removesuffix("_quantized"): (
            init[node.input[2]].data_type,
            numpy_helper.to_array(init[node.input[2]]).ravel().tolist(),
        )
        for node in model.graph.node
        if node.op_type in ("QuantizeLinear", "DequantizeLinear")
    }


def test_fp16_keeps_fp32_inputs_and_outputs(source: Path, tmp_path: Path) -> None:
    import onnx

    target = tmp_path / "fp16.onnx"
    quantization.to_fp16(source, target)
    model = onnx.load(str(target))
    assert [v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)] == [FLOAT, FLOAT]
    assert {i.data_type for i in model.graph.initializer} == {FLOAT16}  # every weight is FP16
    x = images(16, 1)
    assert np.max(np.abs(run(target, x) - run(source, x))) < 1e-2


def test_int8_for_the_cpu_has_unsigned_activations_and_signed_weights(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "int8.onnx"
    quantization.to_int8(source, target, "image", images(64, 1), Quantization(activations="uint8"))
    points = zero_points(target)
    assert points["image"][0] == UINT8 and points["conv_w"][0] == INT8  # U8S8: ONNX Runtime's fast CPU kernels
    assert set(points["conv_w"][1]) == {0} and len(points["conv_w"][1]) == 4  # per channel, symmetric weights
    x = images(16, 2)
    fp32, int8 = run(source, x).ravel(), run(target, x).ravel()
    assert fp32 @ int8 / np.linalg.norm(fp32) / np.linalg.norm(int8) > 0.98  # the same function, 8 bits coarser


def test_int8_for_tensorrt_is_symmetric_signed(source: Path, tmp_path: Path) -> None:
    """TensorRT builds explicit INT8 from QDQ with signed INT8 and zero point 0 on every tensor."""
    target = tmp_path / "int8_trt.onnx"
    quantization.to_int8(source, target, "image", images(64, 1), Quantization(activations="int8", symmetric=True))
    points = zero_points(target)
    assert {"image", "conv_w", "fc_w"} <= set(points) and not {"conv_b", "fc_b"} & set(points)  # biases stay float
    assert all(kind == INT8 and set(values) == {0} for kind, values in points.values()), points


def test_a_calibration_that_saw_nothing_breaks_the_model(source: Path, tmp_path: Path) -> None:
    """Calibrated on all-zero images, the input's range collapses: real images come out far from FP32."""
    good, broken = tmp_path / "good.onnx", tmp_path / "broken.onnx"
    quantization.to_int8(source, good, "image", images(64, 1), Quantization())
    quantization.to_int8(source, broken, "image", np.zeros((64, 1, 8, 8), np.float32), Quantization())
    x = images(16, 2)
    fp32 = run(source, x)
    good_error, broken_error = (float(np.mean(np.abs(run(path, x) - fp32))) for path in (good, broken))
    assert broken_error > 4 * good_error, (broken_error, good_error)


def test_a_calibration_set_that_does_not_fit_the_input_is_one_line(tmp_path: Path) -> None:
    """MNIST digits cannot calibrate a 3x224x224 classifier: refused before the quantizer sees them."""
    import dataclasses

    from pipelines.config.spec import model_spec
    from pipelines.core.errors import ConfigError
    from pipelines.data import digits

    from conftest import compose_config

    blank = np.zeros((4, 28, 28), np.uint8)
    digits.save(digits.Mnist(blank, np.arange(4), blank, np.arange(4)), tmp_path / "mnist.npz")
    spec = model_spec("resnet50_onnx_int8", compose_config("parity", ["model=resnet50_onnx_int8"]).model)
    spec = dataclasses.replace(spec, quantization=Quantization(calibration="mnist_train", calibration_samples=4))
    with pytest.raises(
        ConfigError,
        match=r"gives float32 samples of shape \[28, 28, 1\]; input 'input' takes FP32 "
        r"\[3, 224, 224\]",
    ):
        quantization.calibration_set(spec, str(tmp_path / "mnist.npz"))
