"""What each stand-in backend refuses, through real repository assembly (no server needed).

Each field below would make Triton's own backend serve the model differently (an accelerator,
XLA, CUDA graphs, ragged or stateful batching...), and the stand-in cannot do the same, so the
repository must refuse it in one line that names the field, and write nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from omegaconf import OmegaConf
from tritonclient.grpc import model_config_pb2 as mc

from pipelines.config.spec import model_spec
from pipelines.core.errors import ConfigError
from pipelines.model_repository import assembly, standins, triton_config

from conftest import compose_config

ORT_TRT_EP = 'optimization { execution_accelerators { gpu_execution_accelerator { name: "tensorrt" } } }'
REFUSED = [
    ("mnist_onnx", ORT_TRT_EP, "optimization.execution_accelerators.gpu_execution_accelerator.name"),
    (
        "mnist_onnx",
        'optimization { execution_accelerators { cpu_execution_accelerator { name: "openvino" } } }',
        "optimization.execution_accelerators.cpu_execution_accelerator.name",
    ),
    ("mnist_onnx", 'parameters { key: "enable_mem_arena" value { string_value: "0" } }', "['enable_mem_arena']"),
    ("mnist_onnx", "sequence_batching { max_sequence_idle_microseconds: 1000 }", "sequence_batching"),
    ("mnist_savedmodel", "optimization { graph { level: 1 } }", "optimization.graph.level"),
    (
        "mnist_savedmodel",
        'parameters { key: "MAX_SESSION_SHARE_COUNT" value { string_value: "2" } }',
        "['MAX_SESSION_SHARE_COUNT']",
    ),
    (
        "mnist_savedmodel",
        'batch_input { kind: BATCH_ELEMENT_COUNT target_name: "n" data_type: TYPE_FP32 }',
        "batch_input",
    ),
    ("mnist_trt", "optimization { cuda { graphs: true } }", "optimization.cuda.graphs"),
    (
        "mnist_trt",
        'parameters { key: "execution_context_allocation_strategy" value { string_value: "STATIC" } }',
        "['execution_context_allocation_strategy']",
    ),
    ("mnist_trt", "model_transaction_policy { decoupled: true }", "model_transaction_policy.decoupled"),
]
HONOURED = [
    (
        "mnist_onnx",
        'parameters { key: "intra_op_thread_count" value { string_value: "1" } } '
        'parameters { key: "execution_mode" value { string_value: "0" } } optimization { graph { level: 2 } }',
    ),
    (
        "mnist_savedmodel",
        'parameters { key: "TF_NUM_INTRA_THREADS" value { string_value: "1" } } '
        'parameters { key: "TF_GRAPH_TAG" value { string_value: "serve" } }',
    ),
    (
        "mnist_onnx",
        'model_warmup { name: "zeros" batch_size: 1 inputs { key: "image" value { data_type: TYPE_FP32 '
        "dims: [28, 28, 1] zero_data: true } } } response_cache { enable: true }",
    ),
]


def spec_with(model: str, extra: str):
    cfg = compose_config("parity", ["catalog=gpu", f"model={model}"])
    OmegaConf.update(cfg, "model.extra_config", extra, force_add=True)  # what `+model.extra_config=...` does
    return model_spec(model, cfg.model)


@pytest.mark.parametrize(("model", "extra", "field"), REFUSED)
def test_assembly_refuses_what_the_standin_cannot_honour(tmp_path: Path, model: str, extra: str, field: str) -> None:
    spec = spec_with(model, extra)
    backend = standins.backend_of(triton_config.model_config(spec))
    with pytest.raises(ConfigError) as info:
        assembly.assemble([spec], tmp_path / "repo")
    message = str(info.value)
    assert field in message and f"the {backend} stand-in" in message and "\n" not in message
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize(("model", "extra"), HONOURED)
def test_fields_the_standin_honours_are_not_refused(model: str, extra: str) -> None:
    assert standins.refusals(triton_config.model_config(spec_with(model, extra))) == []


# Fields extra_config may not set (the spec owns them), so only a hand-edited config.pbtxt reaches a stand-in with them
HAND_EDITED = [
    ("mnist_onnx", 'cc_model_filenames { key: "8.0" value: "model_sm80.onnx" }', ["cc_model_filenames"]),
    ("mnist_onnx", "instance_group { kind: KIND_MODEL }", ["instance_group.kind KIND_MODEL"]),
    ("mnist_trt", 'instance_group { kind: KIND_GPU profile: "1" }', ["instance_group.profile"]),
    ("mnist_trt", "instance_group { kind: KIND_CPU }", ["instance_group.kind KIND_CPU"]),
    (
        "mnist_savedmodel",
        'platform: "tensorflow_graphdef"',
        ["platform tensorflow_graphdef (it serves tensorflow_savedmodel)"],
    ),
    ("mnist_trt", 'cc_model_filenames { key: "8.0" value: "model_sm80.plan" }', []),  # honoured
]


@pytest.mark.parametrize(("model", "edit", "refused"), HAND_EDITED)
def test_rules_for_hand_edited_fields(model: str, edit: str, refused: list[str]) -> None:
    config = triton_config.model_config(spec_with(model, ""))
    if edit.startswith("instance_group"):
        config.ClearField("instance_group")
    text_format.Merge(edit, config)
    assert standins.refusals(config) == refused


def test_a_reshape_is_refused_except_a_per_sample_scalars() -> None:
    """A reshape to other dims is refused (not checked against Triton's backends here). The empty one that serves a
    per-sample scalar as dims [1] is honoured: the embedded Triton hands the stand-in [N] and the client [N, 1]
    (tests/test_byom_pipeline.py's scores_onnx), as its own backends do."""
    config = triton_config.model_config(spec_with("mnist_onnx", ""))
    config.input[0].reshape.shape.extend([784])
    config.output[0].reshape.shape.extend([10, 1])
    assert standins.refusals(config) == ["input.reshape.shape", "output.reshape.shape"]
    config.input[0].reshape.ClearField("shape")
    config.output[0].reshape.ClearField("shape")
    assert config.input[0].HasField("reshape") and standins.refusals(config) == []


def test_every_generated_config_is_servable_by_its_standin() -> None:
    gpu = compose_config("repository", ["catalog=gpu"])
    for name, cfg in gpu.models.items():
        spec = model_spec(name, cfg)
        if spec.format != "ensemble":
            assert standins.refusals(triton_config.model_config(spec)) == [], name


def test_models_of_triton_itself_are_never_refused() -> None:
    python_step = mc.ModelConfig(name="pre", backend="python", optimization={"cuda": {"graphs": True}})
    assert standins.refusals(python_step) == []
    assert standins.refusals(mc.ModelConfig(name="e", platform="ensemble")) == []


def test_served_by_tells_a_standin_from_tritons_own_backend() -> None:
    """Triton reports runtime "model.py" for a Python-based backend and no runtime for its C++ backends."""
    standin = mc.ModelConfig(platform="onnxruntime_onnx", backend="onnxruntime", runtime="model.py")
    described = standins.served_by(standin, local=True)
    assert described["backend"] == "onnxruntime" and described["runtime"] == "model.py"
    assert described["implementation"].startswith("onnxruntime stand-in (model.py): ONNX Runtime 1.")
    native = standins.served_by(mc.ModelConfig(platform="tensorflow_savedmodel", backend="tensorflow"))
    assert native["implementation"] == "Triton's own tensorflow backend"
    assert standins.served_by(mc.ModelConfig(backend="python"))["implementation"] == "Triton's Python backend"


def test_served_by_names_what_ran_each_step_of_an_ensemble() -> None:
    ensemble = mc.ModelConfig(platform="ensemble")
    for name in ("pre", "classify"):
        ensemble.ensemble_scheduling.step.add(model_name=name)
    steps = {
        "pre": mc.ModelConfig(backend="python"),
        "classify": mc.ModelConfig(platform="tensorflow_savedmodel", backend="tensorflow"),
    }
    described = standins.served_by(ensemble, step_config=steps.__getitem__)
    assert described["implementation"] == "Triton's ensemble scheduler"
    assert {step: b["implementation"] for step, b in described["steps"].items()} == {
        "pre": "Triton's Python backend",
        "classify": "Triton's own tensorflow backend",
    }
    assert "steps" not in standins.served_by(ensemble)  # no step configs asked for
