"""config.pbtxt generation through the model-config protobuf, checked against hand-written configs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from pipelines.config.spec import model_spec
from pipelines.core.errors import ConfigError
from pipelines.model_repository import triton_config

from conftest import compose_config

EXPECTED = Path(__file__).resolve().parent / "expected"


def spec_of(model: str, *overrides: str):
    return model_spec(model, compose_config("parity", [f"model={model}", *overrides]).model)


@pytest.mark.parametrize("model", ["resnet50_onnx", "mnist_savedmodel"])
def test_generated_config_equals_the_hand_written_one(model: str) -> None:
    expected = triton_config.parse_config((EXPECTED / f"{model}.config.pbtxt").read_text())
    generated = triton_config.model_config(spec_of(model))
    assert generated == expected, triton_config.to_text(generated)


def test_instance_kind_is_set_as_asked() -> None:
    config = triton_config.model_config(spec_of("resnet50_onnx"), "KIND_CPU")
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU


def test_extra_config_is_merged_and_checked_by_the_protobuf_parser() -> None:
    extra = 'parameters { key: "intra_op_thread_count" value { string_value: "1" } }\nmodel_warmup { name: "w" }'
    config = triton_config.model_config(spec_of("mnist_onnx", f"+model.extra_config='{extra}'"))
    assert config.parameters["intra_op_thread_count"].string_value == "1"
    assert config.model_warmup[0].name == "w"
    with pytest.raises(ConfigError, match="extra_config does not parse"):
        triton_config.model_config(spec_of("mnist_onnx", "+model.extra_config='no_such_field: 1'"))


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("instance_group { count: 2 }", "instance_group"),  # would add a second group, not change the count
        ('input { name: "image" data_type: TYPE_FP32 dims: [784] }', "input"),
        ("max_batch_size: 4", "max_batch_size"),
        ('parameters { key: "TF_SIGNATURE_DEF" value { string_value: "other" } }', "parameter TF_SIGNATURE_DEF"),
    ],
)
def test_extra_config_cannot_set_what_the_spec_owns(extra: str, field: str) -> None:
    with pytest.raises(ConfigError, match=f"extra_config sets {field}, which come"):
        triton_config.model_config(spec_of("mnist_savedmodel", f"+model.extra_config='{extra}'"))


def test_mismatches_name_every_difference() -> None:
    spec = spec_of("resnet50_onnx")
    config = triton_config.model_config(spec)
    config.max_batch_size = 4
    config.input[0].name = "pixels"
    config.output[0].data_type = mc.TYPE_FP16
    problems = triton_config.config_mismatches(config, spec)
    assert any("max_batch_size is 4" in p for p in problems)
    assert any("inputs are" in p and "pixels" in p for p in problems)
    assert any("outputs are" in p and "FP16" in p for p in problems)
    config = triton_config.model_config(spec)
    config.input[0].format = mc.ModelInput.FORMAT_NHWC
    assert triton_config.config_mismatches(config, spec) == ["input 'input' format is NHWC, spec says NCHW"]


def test_unparseable_text_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="does not parse"):
        triton_config.parse_config('name: "x"\nmax_batch_size: "eight"\n')


def test_preferred_batch_beyond_max_is_rejected() -> None:
    with pytest.raises(ConfigError, match="preferred_batch_size"):
        triton_config.model_config(spec_of("resnet50_onnx", "model.max_batch_size=2", "model.parity.batch_sizes=[1]"))


def test_unbatched_model_gets_no_dynamic_batching() -> None:
    spec = dataclasses.replace(spec_of("mnist_onnx"), max_batch_size=0)
    assert not triton_config.model_config(spec).HasField("dynamic_batching")


def test_unknown_instance_kind_is_rejected() -> None:
    with pytest.raises(ConfigError, match="instance_kind"):
        triton_config.model_config(spec_of("mnist_onnx"), "KIND_TPU")


def test_a_layout_needs_three_dims() -> None:
    with pytest.raises(ConfigError, match="layout must be one of NCHW, NHWC; got 'NCW'"):
        spec_of("mnist_onnx", "model.network.inputs.0.layout=NCW")
    with pytest.raises(ConfigError, match=r"layout NCHW needs 3 dims, got \[10\]"):
        spec_of("mnist_onnx", "+model.network.outputs.0.layout=NCHW")


def test_a_per_sample_scalar_is_declared_dims_1_reshaped_to_nothing() -> None:
    """Triton refuses a tensor without dims ("model output 'label' must specify 'dims'"); its idiom for an argmax
    or a score per sample is dims [1] with an empty reshape (Triton's model_configuration.md, "Reshape")."""
    base = spec_of("mnist_onnx")
    scalar = dataclasses.replace(base.outputs[0], name="label", dtype="INT64", dims=(), labels=False)
    spec = dataclasses.replace(base, outputs=(base.outputs[0], scalar))
    config = triton_config.model_config(spec)
    hand_written = triton_config.parse_config(
        'name: "x" output { name: "label" data_type: TYPE_INT64 dims: [ 1 ] reshape: { shape: [ ] } }'
    )
    assert config.output[1] == hand_written.output[0]
    assert config.output[0].dims == [10] and not config.output[0].HasField("reshape")
    assert triton_config.config_mismatches(config, spec) == []
    config.output[1].ClearField("reshape")  # dims [1] alone: the model's [N] is not what the config says
    assert triton_config.config_mismatches(config, spec) == [
        "outputs are {'probabilities': 'FP32 [10]', 'label': 'INT64 [1]'}, "
        "spec says {'probabilities': 'FP32 [10]', 'label': 'INT64 [1] reshaped to []'}"
    ]
