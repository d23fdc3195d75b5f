"""Artifact signatures read from real ONNX files, checked against the spec."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from pipelines.artifacts import io_signature
from pipelines.config.spec import ModelSpec, NetworkSpec, TensorSpec, Tolerance
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
    signature = io_signature.check(spec_for(path))
    assert signature.inputs == (io_signature.ArtifactTensor("x", "FP32", (-1, 4)),)


def test_fixed_batch_dimension_cannot_be_batched(tmp_path: Path) -> None:
    path = identity_onnx(tmp_path / "m.onnx", batch=1)
    with pytest.raises(ArtifactError, match="no dynamic batch dimension"):
        io_signature.check(spec_for(path))
    io_signature.check(
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
        io_signature.check(spec_for(path))
    with pytest.raises(ArtifactError, match=r"inputs are \['x'\], spec says \['image'\]"):
        io_signature.check(spec_for(identity_onnx(tmp_path / "n.onnx"), inputs=(TensorSpec("image", "FP32", (4,)),)))


def test_wrong_dims_are_reported(tmp_path: Path) -> None:
    path = identity_onnx(tmp_path / "m.onnx")
    with pytest.raises(ArtifactError, match=r"dims are \[4\], spec says \[5\]"):
        io_signature.check(spec_for(path, outputs=(TensorSpec("y", "FP32", (5,)),)))


def test_missing_and_corrupt_files_are_artifact_errors(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not found"):
        io_signature.onnx_signature(tmp_path / "absent.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"definitely not protobuf \xff\xfe")
    with pytest.raises(ArtifactError, match="not a readable ONNX model"):
        io_signature.onnx_signature(bad)
    with pytest.raises(ArtifactError, match="not a SavedModel"):
        io_signature.savedmodel_signature(tmp_path, "serving_default")
