"""Blame the first layer: the debug copy exposes every activation, and the comparison names the first one off."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from test_quantization import images, run, small_cnn

from pipelines.artifacts import quantization
from pipelines.comparison import localize
from pipelines.config.spec import Quantization


def test_the_debug_copy_exposes_every_activation_and_no_weight(tmp_path: Path) -> None:
    import onnx

    small_cnn(tmp_path / "fp32.onnx")
    exposed = localize.expose(tmp_path / "fp32.onnx", tmp_path / "debug.onnx")
    # the graph written by hand: Conv -> Relu -> Flatten -> Gemm (the last is already an output)
    assert [(e.op, e.tensor.name, e.tensor.dims) for e in exposed] == [  # the model's own output compared last
        ("Conv", "conv", (4, 8, 8)),
        ("Relu", "relu", (4, 8, 8)),
        ("Flatten", "flat", (256,)),
        ("Gemm", "logits", (10,)),
    ]
    assert [o.name for o in onnx.load(str(tmp_path / "debug.onnx")).graph.output] == ["logits", "conv", "relu", "flat"]
    x = images(2, 3)
    assert np.array_equal(run(tmp_path / "debug.onnx", x), run(tmp_path / "fp32.onnx", x))  # the same model
    quantization.to_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", "image", images(32, 1), Quantization())
    names = [e.tensor.name for e in localize.expose(tmp_path / "int8.onnx", tmp_path / "int8_debug.onnx")]
    assert "relu_DequantizeLinear_Output" in names and not any("conv_w" in n for n in names)  # weights are not


def layers(exposed_names: list[str], offsets: dict[str, float]) -> localize.Localization:
    exposed = [
        localize.Exposed(localize.TensorSpec(n, "FP32", (3,)), i, f"node_{n}", "Op")
        for i, n in enumerate(exposed_names)
    ]
    reference = {n.removesuffix(localize.DEQUANTIZED): np.array([[1.0, -2.0, 4.0]]) for n in exposed_names}
    served = {n: np.array([[1.0, -2.0, 4.0]]) + offsets.get(n, 0.0) for n in exposed_names}
    return localize.compare("m", "ref", exposed, served, reference, bound=0.1)


def test_the_first_tensor_over_the_bound_is_blamed() -> None:
    result = layers(["a", "b", "c", "d"], {"b": 0.2, "c": 0.8, "d": 2.0})  # b: 0.2 / 4 = 0.05, c: 0.2, d: 0.5
    assert [round(layer.relative, 3) for layer in result.layers] == [0.0, 0.05, 0.2, 0.5]
    assert result.first.tensor == "c" and result.first.node == "node_c" and result.first.index == 2
    assert "<- first over the bound" in result.table() and result.to_dict()["first_over_bound"]["tensor"] == "c"


def test_a_quantized_activation_is_judged_by_what_its_dequantize_gives_back() -> None:
    """The quantizer leaves a dropped Relu's name on the Conv before it: the raw tensor is pre-activation, and
    only its DequantizeLinear copy is the activation the float model computes."""
    result = layers(["x", "x" + localize.DEQUANTIZED], {"x": 5.0})  # the raw one is far off, its dequantized copy not
    assert [(layer.tensor, layer.node, layer.relative) for layer in result.layers] == [("x", "node_x", 0.0)]
    assert result.first is None and "no tensor over the bound" in result.table()
