"""config.pbtxt generation through the model-config protobuf, and its validation against the spec."""

from __future__ import annotations

import dataclasses

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from conftest import compose_config
from pipelines import triton_config
from pipelines.errors import ConfigError
from pipelines.spec import model_spec


def spec_of(model: str, *overrides: str):
    return model_spec(model, compose_config("parity", [f"model={model}", *overrides]).model)


def test_native_onnx_config_matches_triton_platform_and_spec() -> None:
    spec = spec_of("resnet50_onnx")
    config = triton_config.build(spec, "native", "KIND_GPU")
    assert config.platform == "onnxruntime_onnx"
    assert config.default_model_filename == "model.onnx"
    assert config.max_batch_size == spec.max_batch_size
    assert [i.name for i in config.input] == [t.name for t in spec.inputs]
    assert list(config.input[0].dims) == list(spec.inputs[0].dims)
    assert config.input[0].data_type == mc.TYPE_FP32
    assert config.output[0].label_filename == triton_config.LABELS_FILENAME
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert list(config.dynamic_batching.preferred_batch_size) == list(spec.dynamic_batching["preferred_batch_size"])


def test_native_savedmodel_names_its_signature() -> None:
    spec = spec_of("mnist_savedmodel")
    config = triton_config.build(spec, "native")
    assert config.platform == "tensorflow_savedmodel"
    assert config.default_model_filename == "model.savedmodel"
    assert config.parameters["TF_SIGNATURE_DEF"].string_value == spec.signature
    assert not config.output[0].label_filename  # MNIST has no labels file


def test_python_flavour_runs_the_same_artifact_on_cpu() -> None:
    spec = spec_of("mnist_savedmodel")
    config = triton_config.build(spec, "python", "KIND_GPU")
    assert config.backend == "python" and not config.platform
    assert config.parameters["runtime"].string_value == "tensorflow"
    assert config.parameters["artifact"].string_value == "model.savedmodel"
    assert config.parameters["signature"].string_value == spec.signature
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU


def test_text_round_trips_through_the_parser() -> None:
    spec = spec_of("mnist_onnx")
    config = triton_config.build(spec, "native")
    assert triton_config.parse(triton_config.to_text(config)) == config


def test_mismatches_name_every_difference() -> None:
    spec = spec_of("mnist_onnx")
    config = triton_config.build(spec, "native")
    config.max_batch_size = 8
    config.input[0].name = "pixels"
    config.output[0].data_type = mc.TYPE_FP16
    problems = triton_config.mismatches(config, spec)
    assert any("max_batch_size is 8" in p for p in problems)
    assert any("inputs are" in p and "pixels" in p for p in problems)
    assert any("outputs are" in p and "FP16" in p for p in problems)


def test_unparseable_text_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="does not parse"):
        triton_config.parse('name: "x"\nmax_batch_size: "eight"\n')


def test_preferred_batch_beyond_max_is_rejected() -> None:
    spec = spec_of("resnet50_onnx", "model.max_batch_size=2")
    with pytest.raises(ConfigError, match="preferred_batch_size"):
        triton_config.build(spec, "native")


def test_unbatched_model_gets_no_dynamic_batching() -> None:
    spec = dataclasses.replace(spec_of("mnist_onnx"), max_batch_size=0)
    config = triton_config.build(spec, "native")
    assert not config.HasField("dynamic_batching")


@pytest.mark.parametrize(("flavour", "kind"), [("docker", "KIND_AUTO"), ("native", "KIND_TPU")])
def test_unknown_flavour_or_kind_is_rejected(flavour: str, kind: str) -> None:
    with pytest.raises(ConfigError):
        triton_config.build(spec_of("mnist_onnx"), flavour, kind)
