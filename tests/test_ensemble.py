"""The ensemble's parts and configs, derived from the specs (no server needed)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pipelines.config import ensemble_parts
from pipelines.config.spec import served_specs
from pipelines.core.errors import ConfigError
from pipelines.model_repository import assembly, triton_config

from conftest import ROOT, compose_config

EXPECTED = ROOT / "tests" / "expected"


@pytest.fixture
def catalog():
    return served_specs(compose_config("repository").models)


def test_parts_take_tensor_names_from_the_classifier(catalog) -> None:
    parts = ensemble_parts.parts(catalog["resnet50_ensemble"], catalog)
    classifier = catalog[parts.ensemble.ensemble.classifier]
    assert parts.classifier is classifier
    assert parts.preprocess.outputs[0].name == classifier.inputs[0].name
    assert parts.postprocess.inputs[0].name == classifier.outputs[0].name
    assert parts.image.dtype == "BYTES" and parts.labels.dtype == "BYTES" and parts.probabilities.dtype == "FP32"


def test_ensemble_config_equals_the_hand_written_one(catalog) -> None:
    expected = triton_config.parse_config((EXPECTED / "resnet50_ensemble.config.pbtxt").read_text())
    generated = triton_config.ensemble(ensemble_parts.parts(catalog["resnet50_ensemble"], catalog))
    assert generated == expected, triton_config.to_text(generated)


def test_step_configs_carry_their_settings(catalog) -> None:
    parts = ensemble_parts.parts(catalog["resnet50_ensemble"], catalog)
    pre = triton_config.ensemble_step(parts.preprocess, assembly.step_settings(parts, "preprocess"))
    # torchvision's evaluation transform of resnet50's IMAGENET1K_V2 weights (resize 232, not 256), as the network
    # config states it
    assert json.loads(pre.parameters[triton_config.STEP_SETTINGS].string_value) == {
        "resize": 232,
        "crop": 224,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        # image_limits in conf/common.yaml: what the step accepts
        "limits": {
            "max_bytes": 20971520,
            "max_width": 10000,
            "max_height": 10000,
            "max_pixels": 40000000,
            "max_aspect": 20.0,
            "max_request_pixels": 100000000,
            "client_pixels_per_s": 40000000,
        },
    }
    assert [(g.kind, g.count) for g in pre.instance_group] == [(pre.instance_group[0].KIND_CPU, 2)]  # decode_instances
    post = triton_config.ensemble_step(parts.postprocess, assembly.step_settings(parts, "postprocess"))
    assert json.loads(post.parameters[triton_config.STEP_SETTINGS].string_value) == {"top_k": 5, "labels": "labels.txt"}
    assert post.backend == "python" and [o.name for o in post.output] == ["probabilities", "labels"]


def test_ensemble_needs_its_classifier_in_the_catalog(catalog) -> None:
    without = {k: v for k, v in catalog.items() if k != "resnet50_onnx"}
    with pytest.raises(ConfigError, match="does not serve"):
        ensemble_parts.parts(catalog["resnet50_ensemble"], without)


def test_top_k_must_match_output_dims(catalog) -> None:
    spec = dataclasses.replace(
        catalog["resnet50_ensemble"], ensemble=dataclasses.replace(catalog["resnet50_ensemble"].ensemble, top_k=3)
    )
    with pytest.raises(ConfigError, match=r"dims \[3\]"):
        ensemble_parts.parts(spec, catalog)


def test_batch_beyond_the_classifier_is_refused(catalog) -> None:
    spec = dataclasses.replace(catalog["resnet50_ensemble"], max_batch_size=64)
    with pytest.raises(ConfigError, match="exceeds"):
        ensemble_parts.parts(spec, catalog)


def test_gpu_profile_ensemble_classifies_with_the_tensorrt_engine() -> None:
    gpu = served_specs(compose_config("repository", ["catalog=gpu"]).models)
    parts = ensemble_parts.parts(gpu["resnet50_ensemble"], gpu)
    assert parts.classifier.format == "tensorrt"
    assert parts.preprocess.outputs[0].name == parts.classifier.inputs[0].name


def test_an_ensemble_over_a_lossy_classifier_is_refused(catalog) -> None:
    """Its reference is the classifier's FP32 framework model at the ensemble's FP32 tolerance: it would fail on
    exactly what the precision is allowed to cost."""
    spec = catalog["resnet50_ensemble"]
    over_int8 = dataclasses.replace(spec, ensemble=dataclasses.replace(spec.ensemble, classifier="resnet50_onnx_int8"))
    with pytest.raises(ConfigError, match="classifier 'resnet50_onnx_int8' is int8; an ensemble is proven against"):
        ensemble_parts.parts(over_int8, catalog)
