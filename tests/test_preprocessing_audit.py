"""The pre-processing constants of conf/ against torchvision's own evaluation transform of the weights they name."""

from __future__ import annotations

import dataclasses

import pytest

from pipelines.config.network import network_spec
from pipelines.data import preprocessing_audit

from conftest import compose_config

# torchvision's published recipes (its models' `_meta` / weights docs), written here by hand
RECIPES = {
    "resnet50": {"resize": 232, "crop": 224},  # IMAGENET1K_V2
    "densenet121": {"resize": 256, "crop": 224},  # IMAGENET1K_V1
    "mobilenet_v2": {"resize": 256, "crop": 224},
}
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def network(name: str, *overrides: str):
    return network_spec(compose_config("export_classifier", [f"network={name}", *overrides]).network)


@pytest.mark.parametrize("name", list(RECIPES))
def test_the_classifiers_constants_are_their_weights_recipe(name: str) -> None:
    expected = preprocessing_audit.torchvision_transform(network(name))
    assert expected == {**RECIPES[name], "mean": MEAN, "std": STD, "interpolation": "bilinear"}
    assert preprocessing_audit.audit_preprocessing(network(name)).problems == ()


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (
            ["network.preprocessing.mean=[0.406,0.456,0.485]"],  # BGR order: before, parity and the gate passed
            "preprocessing.mean is [0.406, 0.456, 0.485], torchvision's resnet50 IMAGENET1K_V2 transform has "
            "[0.485, 0.456, 0.406]",
        ),
        (["network.preprocessing.resize=256"], "preprocessing.resize is 256, torchvision's resnet50 IMAGENET1K_V2"),
        (["network.preprocessing.crop=256"], "preprocessing.crop is 256, torchvision's resnet50 IMAGENET1K_V2"),
        (["network.preprocessing.std=[1,1,1]"], "preprocessing.std is [1, 1, 1], torchvision's"),
    ],
)
def test_a_wrong_constant_is_named(overrides: list[str], problem: str) -> None:
    (found,) = preprocessing_audit.audit_preprocessing(network("resnet50", *overrides)).problems
    assert found.startswith(problem) and "\n" not in found


def test_a_network_without_metadata_or_preprocessing_is_not_audited() -> None:
    assert preprocessing_audit.audit_preprocessing(dataclasses.replace(network("resnet50"), labels_from=None)) is None
    assert preprocessing_audit.audit_preprocessing(dataclasses.replace(network("resnet50"), preprocessing=None)) is None
