"""Artifact signatures read from real ONNX files, checked against the spec."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from pipelines.artifacts import io_signature, writing
from pipelines.config.network import NetworkSpec
from pipelines.config.spec import ModelSpec
from pipelines.config.tensors import TensorSpec
from pipelines.config.tolerances import Tolerance
from pipelines.core.errors import ArtifactError


def identity_onnx(path: Path, batch: str | int = "batch", elem: int = TensorProto.FLOAT) -> Path:
    """A real ONNX model: out = Identity(x), x of shape [batch, 4]."""
    x = helper.make_tensor_value_info("x", elem, [batch, 4])
    y = helper.make_tensor_value_info("y", elem, [batch, 4])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def spec_for(path: Path, **changes) -> ModelSpec:
    network = NetworkSpec("identity", "torch", (TensorSpec("x", "FP32", (4,)),), (TensorSpec("y", "FP32", (4,)),), {})
    spec = ModelSpec(
        name="identity",
        network=network,
        format="onnx",
        precision="fp32",
        artifact=path,
        inputs=(TensorSpec("x", "FP32", (4,)),),
        outputs=(TensorSpec("y", "FP32", (4,)),),
        max_batch_size=8,
        tolerance=Tolerance(1e-4, 1e-3, 0.9999, 1.0, 1.0),
    )
    return dataclasses.replace(spec, **changes)


def test_matching_onnx_passes(tmp_path: Path) -> None:
    path = identity_onnx(tmp_path / "m.onnx")
    signature = io_signature.check_signature(spec_for(path))
    assert signature.inputs == (io_signature.ArtifactTensor("x", "FP32", (-1, 4)),)


def test_fixed_batch_dimension_cannot_be_batched(tmp_path: Path) -> None:
    path = identity_onnx(tmp_path / "m.onnx", batch=1)
    with pytest.raises(ArtifactError, match="no dynamic batch dimension"):
        io_signature.check_signature(spec_for(path))
    io_signature.check_signature(
        spec_for(
            path,
            max_batch_size=0,
            inputs=(TensorSpec("x", "FP32", (1, 4)),),
            outputs=(TensorSpec("y", "FP32", (1, 4)),),
        )
    )


def test_wrong_dtype_and_name_are_reported(tmp_path: Path) -> None:
    path = identity_onnx(tmp_path / "m.onnx", elem=TensorProto.FLOAT16)
    with pytest.raises(ArtifactError, match="dtype is FP16, spec says FP32"):
        io_signature.check_signature(spec_for(path))
    with pytest.raises(ArtifactError, match=r"inputs are \['x'\], spec says \['image'\]"):
        io_signature.check_signature(
            spec_for(identity_onnx(tmp_path / "n.onnx"), inputs=(TensorSpec("image", "FP32", (4,)),))
        )


def test_wrong_dims_are_reported(tmp_path: Path) -> None:
    path = identity_onnx(tmp_path / "m.onnx")
    with pytest.raises(ArtifactError, match=r"dims are \[4\], spec says \[5\]"):
        io_signature.check_signature(spec_for(path, outputs=(TensorSpec("y", "FP32", (5,)),)))


def test_missing_and_corrupt_files_are_artifact_errors(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not found"):
        io_signature.onnx_signature(tmp_path / "absent.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"definitely not protobuf \xff\xfe")
    with pytest.raises(ArtifactError, match="not a readable ONNX model"):
        io_signature.onnx_signature(bad)
    with pytest.raises(ArtifactError, match="not a SavedModel"):
        io_signature.savedmodel_signature(tmp_path, "serving_default")


def test_the_self_check_compares_outputs_whose_length_follows_the_data_sample_by_sample() -> None:
    """An unbatched model's output whose length depends on the data (NonZero, TopK with k an input) has another
    shape for each sample: compared one sample at a time (stacking them was a ValueError, exit 3)."""
    inputs = {"x": np.array([[0, 3, 0, 1], [5, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float32)}
    nonzero = [TensorSpec("where", "INT64", (-1,))]

    def source(feeds: dict) -> dict:
        return {"where": np.flatnonzero(feeds["x"])}

    check = writing.self_check("the onnx export", source, source, inputs, nonzero, 1e-4, batched=False)
    assert check.samples == 3 and check.max_abs_diff == {"where": 0.0}

    def off_by_one(feeds: dict) -> dict:
        return {"where": np.flatnonzero(feeds["x"])[:1]}

    with pytest.raises(ArtifactError, match=r"output 'where' has shape \[1\], the source's \[2\] for sample 0"):
        writing.self_check("the onnx export", source, off_by_one, inputs, nonzero, 1e-4, batched=False)


def test_an_fp16_output_may_differ_by_its_own_rounding() -> None:
    """Half an FP16 step near 1 (4.9e-4) is the FP16 output's own rounding, not the export's fault; more is."""
    inputs = {"x": np.ones((2, 3), dtype=np.float32)}
    half = [TensorSpec("y", "FP16", (3,))]

    def source(feeds: dict) -> dict:
        return {"y": feeds["x"].astype(np.float16)}

    def rounded(feeds: dict) -> dict:
        return {"y": (feeds["x"] + 4.9e-4).astype(np.float32)}  # what a float32 step before the cast gives

    assert writing.self_check("the onnx export", source, rounded, inputs, half, 1e-4).max_abs_diff["y"] < 5e-4

    def wrong(feeds: dict) -> dict:
        return {"y": (feeds["x"] + 3e-3).astype(np.float16)}

    with pytest.raises(ArtifactError, match="differs from its source in output 'y'"):
        writing.self_check("the onnx export", source, wrong, inputs, half, 1e-4)
    fp32 = [TensorSpec("y", "FP32", (3,))]
    with pytest.raises(ArtifactError, match=r"by 0\.000[45]\d* > 0\.0001"):  # the FP32 limit stays the FP32 limit
        writing.self_check("the onnx export", source, rounded, inputs, fp32, 1e-4)


def test_an_export_that_answers_nan_where_its_source_does_not_is_refused() -> None:
    """NaN differs from every value: the self-check compares as parity does, which counts NaN/inf apart (its plain
    max |difference| was NaN, which no limit is under, and the export passed)."""
    inputs = {"x": np.ones((2, 3), dtype=np.float32)}
    fp32 = [TensorSpec("y", "FP32", (3,))]

    def source(feeds: dict) -> dict:
        return {"y": feeds["x"]}

    def broken(feeds: dict) -> dict:
        return {"y": np.where(np.arange(3) == 1, np.nan, feeds["x"]).astype(np.float32)}

    with pytest.raises(ArtifactError, match=r"or its source gives 2 NaN/inf values in output 'y'"):
        writing.self_check("the onnx export", source, broken, inputs, fp32, 1e-4)


def test_an_export_that_is_not_valid_onnx_is_one_line() -> None:
    """tf2onnx writes a Bitcast for a Keras argmax that opset 17 lacks: ONNX's checker refuses it, in one line (it was
    a traceback, exit 3)."""
    graph = helper.make_graph(
        [helper.make_node("Bitcast", ["x"], ["y"], to=TensorProto.INT32)],
        "bitcast",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ArtifactError, match=r"^tf2onnx's export is not valid ONNX: No Op registered for Bitcast"):
        writing.require_valid_onnx(model, "tf2onnx's export")
