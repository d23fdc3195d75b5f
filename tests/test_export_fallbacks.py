"""The fallbacks public models need on their way through `python -m export.add` and its export: the TorchScript ONNX
exporter where the dynamo one fails on a torch.export program (transformers' T5), and ONNX Runtime as the reference
where onnx.reference cannot run an ONNX source (torchvision's RAFT: GridSample's opset-16 "bilinear")."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from pipelines.artifacts import writing
from pipelines.config.tensors import TensorSpec
from pipelines.core.errors import ArtifactError
from pipelines.runners import reference


def distances_program() -> Any:
    """[batch, points, 3] -> [batch, points * points]: `aten.cdist` has no translation in torch 2.13's dynamo
    exporter (it fails at its step 3/3) and one in the TorchScript exporter; the view, the arange and the slice take
    the open sizes, which the TorchScript fallback must keep open."""
    import torch

    class Distances(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.rand(256))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            flat, pairs = torch.cdist(x, x).view(x.shape[0], -1), x.shape[1] * x.shape[1]
            return flat + torch.arange(pairs) * self.scale[:pairs]

    batch, points = torch.export.Dim("batch", min=1, max=16), torch.export.Dim("points", min=2, max=16)
    example = (torch.rand(2, 5, 3),)
    return torch.export.export(Distances().eval(), example, dynamic_shapes={"x": {0: batch, 1: points}})


DISTANCE_IN, DISTANCE_OUT = (TensorSpec("x", "FP32", (-1, 3)),), (TensorSpec("d", "FP32", (-1,)),)


def test_a_program_the_dynamo_exporter_fails_on_is_exported_by_the_torchscript_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """T5 (transformers 5.25) stopped the export: the dynamo exporter fails on it. The TorchScript exporter, on the
    program's module, writes a file whose open dimensions stay open: it matches the program at other sizes."""
    program = distances_program()
    target = tmp_path / "distances.onnx"
    example = {"x": np.random.default_rng(0).random((2, 5, 3), dtype=np.float32)}
    with caplog.at_level(logging.WARNING, logger=writing.__name__):
        writing.torch_onnx(program, example, DISTANCE_IN, DISTANCE_OUT, 17, target)
    assert "written by the TorchScript exporter" in caplog.text  # the dynamo exporter did fail on it
    served = reference.onnxruntime_runner(target, DISTANCE_IN, DISTANCE_OUT)
    source = reference.torch_runner(program.module(), SimpleNamespace(inputs=DISTANCE_IN, outputs=DISTANCE_OUT))
    for batch, points in [(1, 4), (3, 7)]:
        x = {"x": np.random.default_rng(batch).random((batch, points, 3), dtype=np.float32)}
        want, got = source(x)["d"], served(x)["d"]
        assert got.shape == want.shape == (batch, points * points)
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_when_both_exporters_fail_the_error_names_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    def refuse(*args: Any, dynamo: bool, **kwargs: Any) -> None:
        raise RuntimeError("no decomposition\ndetails" if dynamo else "no symbolic\ndetails")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    example = {"x": np.zeros((2, 5, 3), np.float32)}
    with pytest.raises(ArtifactError, match=r"^torch.onnx.export failed: dynamo: no decomposition; TorchScript: no "):
        writing.torch_onnx(distances_program(), example, DISTANCE_IN, DISTANCE_OUT, 17, tmp_path / "d.onnx")


def one_node_model(path: Path, node: onnx.NodeProto, inputs: list[Any], output: Any, opset: int) -> Path:
    model = helper.make_model(
        helper.make_graph([node], "m", inputs, [output]), opset_imports=[helper.make_opsetid("", opset)]
    )
    model.ir_version = 8
    onnx.save(model, path)
    return path


def network(path: Path, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]) -> Any:
    return SimpleNamespace(source=path, inputs=inputs, outputs=outputs, reference="onnx")


def test_an_onnx_model_onnx_reference_cannot_run_has_onnx_runtime_as_its_named_reference(tmp_path: Path) -> None:
    """RAFT: onnx 1.23's onnx.reference refuses opset 16's GridSample mode "bilinear" (onnx/onnx#8431), and the add
    failed suggesting value ranges. ONNX Runtime is the reference, named so before the first run."""
    path = one_node_model(
        tmp_path / "warp.onnx",
        helper.make_node("GridSample", ["image", "grid"], ["warped"], mode="bilinear", align_corners=0),
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 2, 5, 6]),
            helper.make_tensor_value_info("grid", TensorProto.FLOAT, ["N", 4, 3, 2]),
        ],
        helper.make_tensor_value_info("warped", TensorProto.FLOAT, ["N", 2, 4, 3]),
        16,
    )
    inputs = (TensorSpec("image", "FP32", (2, 5, 6)), TensorSpec("grid", "FP32", (4, 3, 2)))
    outputs = (TensorSpec("warped", "FP32", (2, 4, 3)),)
    described = reference.describe_reference(network(path, inputs, outputs))
    assert described.startswith("onnx (onnxruntime") and "GridSample mode 'bilinear': onnx/onnx#8431" in described
    rng = np.random.default_rng(0)
    arrays = {
        "image": rng.random((3, 2, 5, 6), np.float32),
        "grid": rng.uniform(-1, 1, (3, 4, 3, 2)).astype(np.float32),
    }
    ours = reference.reference_runner(network(path, inputs, outputs))(arrays)["warped"]
    np.testing.assert_allclose(ours, reference.onnxruntime_runner(path, inputs, outputs)(arrays)["warped"], atol=1e-6)


def test_what_onnx_reference_says_it_lacks_at_run_time_falls_back_and_bad_inputs_do_not(tmp_path: Path) -> None:
    """A refusal found only by running (LayerNormalization with stash_type=0: NotImplementedError) turns the
    reference to ONNX Runtime, and its name with it; an input the model cannot take stays the model's error."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    node = helper.make_node("LayerNormalization", ["x", "x"], ["y"], axis=-1, stash_type=0)
    path = one_node_model(
        tmp_path / "norm.onnx", node, [x], helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4]), 17
    )
    inputs, outputs = (TensorSpec("x", "FP32", (4,)),), (TensorSpec("y", "FP32", (4,)),)
    arrays = {"x": np.random.default_rng(0).random((2, 4), np.float32)}
    ours = reference.reference_runner(network(path, inputs, outputs))(arrays)["y"]
    np.testing.assert_allclose(ours, reference.onnxruntime_runner(path, inputs, outputs)(arrays)["y"], atol=1e-6)
    assert "onnx.reference cannot run it: LayerNormalization not implemented" in reference.onnx_runtime_name(path)

    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 2])
    table = helper.make_tensor("table", TensorProto.FLOAT, [3, 2], np.arange(6, dtype=np.float32))
    gather = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["rows"])],
        "m",
        [ids],
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["N", 2, 2])],
        [table],
    )
    lookup = helper.make_model(gather, opset_imports=[helper.make_opsetid("", 17)])
    lookup.ir_version = 8
    onnx.save(lookup, tmp_path / "lookup.onnx")
    spec = network(tmp_path / "lookup.onnx", (TensorSpec("ids", "INT64", (2,)),), (TensorSpec("rows", "FP32", (2, 2)),))
    with pytest.raises(IndexError):
        reference.reference_runner(spec)({"ids": np.array([[0, 7]], np.int64)})
    assert reference.describe_reference(spec) == "onnx (onnx.reference)"


def test_an_onnx_reference_bug_where_onnx_runtime_runs_the_same_inputs_falls_back(tmp_path: Path) -> None:
    """onnx 1.23's GatherElements on an Expand that broadcasts its first axis fails inside numpy ("cannot reshape
    array"; RoBERTa's position ids as the TorchScript exporter writes them): ONNX Runtime runs the same inputs, so
    the error is onnx.reference's, and ONNX Runtime becomes the reference, named so. An index out of range fails in
    both: the inputs' fault, raised as it was."""
    nodes = [
        helper.make_node("Expand", ["table", "shape"], ["wide"]),
        helper.make_node("GatherElements", ["wide", "idx"], ["y"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "m",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, ["N", 7])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, ["N", 7])],
        [
            helper.make_tensor("table", TensorProto.INT64, [1, 80], np.arange(80, dtype=np.int64)),
            helper.make_tensor("shape", TensorProto.INT64, [2], np.array([2, 1], np.int64)),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "gather.onnx")
    spec = network(tmp_path / "gather.onnx", (TensorSpec("idx", "INT64", (7,)),), (TensorSpec("y", "INT64", (7,)),))
    arrays = {"idx": np.random.default_rng(0).integers(0, 80, (2, 7))}
    assert reference.describe_reference(spec) == "onnx (onnx.reference)"  # nothing known before it runs
    np.testing.assert_array_equal(reference.reference_runner(spec)(arrays)["y"], arrays["idx"])  # the table is 0..79
    assert "onnx.reference cannot run it: ValueError: cannot reshape array" in reference.describe_reference(spec)

    onnx.save(model, tmp_path / "again.onnx")  # another file: no fallback remembered for it
    spec = network(tmp_path / "again.onnx", (TensorSpec("idx", "INT64", (7,)),), (TensorSpec("y", "INT64", (7,)),))
    with pytest.raises(IndexError):  # onnx.reference's own error, as it raised it
        reference.reference_runner(spec)({"idx": np.full((2, 7), 99, np.int64)})
    assert reference.describe_reference(spec) == "onnx (onnx.reference)"
