"""The label audit: a labels file against torchvision's own category names, which the export did not write."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipelines.config.network import network_spec
from pipelines.data import labels

from conftest import compose_config

# torchvision's IMAGENET1K categories begin so (its `_meta.py`), written here by hand
FIRST = ["tench", "goldfish", "great white shark", "tiger shark"]


def resnet50(labels_file: Path):
    network = network_spec(compose_config("export_classifier", ["network=resnet50"]).network)
    return dataclasses.replace(network, labels_file=labels_file)


def test_the_expected_names_are_torchvisions(tmp_path: Path) -> None:
    names = labels.torchvision_categories(resnet50(tmp_path / "labels.txt"))
    assert names[:4] == FIRST and len(names) == 1000


@pytest.mark.parametrize(
    ("corrupt", "problem"),
    [
        (lambda names: names, ""),
        (
            lambda names: names[1:] + names[:1],
            "differs from torchvision's resnet50 IMAGENET1K_V2 categories in 1000 of "
            "1000 classes (class 0 is 'goldfish', should be 'tench')",
        ),
        (lambda names: names[:-1], "has 999 names, torchvision's resnet50 IMAGENET1K_V2 categories 1000"),
        (
            lambda names: [names[1], names[0], *names[2:]],
            "in 2 of 1000 classes (class 0 is 'goldfish', should be 'tench')",
        ),
    ],
)
def test_a_labels_file_is_audited_name_by_name(tmp_path: Path, corrupt, problem: str) -> None:
    path = tmp_path / "labels.txt"
    network = resnet50(path)
    path.write_text("\n".join(corrupt(labels.torchvision_categories(network))) + "\n")
    audit = labels.audit_labels(network)
    assert audit.problem.endswith(problem) if problem else audit.problem == ""
    assert audit.expected[:4] == FIRST


def test_a_network_without_torchvision_metadata_has_only_its_file(tmp_path: Path) -> None:
    network = dataclasses.replace(resnet50(tmp_path / "labels.txt"), labels_from=None)
    assert labels.audit_labels(network) == labels.LabelAudit("the labels file", None)
