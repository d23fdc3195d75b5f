"""`dvc repro` end to end in a temporary copy of the project (small training settings)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, run_cmd

pytestmark = pytest.mark.pipeline

STAGES = ["prepare", "train", "export_mnist", "export_resnet50", "repository", "parity"]


def test_dvc_repro_runs_every_stage(pipeline_run: tuple[Path, subprocess.CompletedProcess]) -> None:
    workspace, result = pipeline_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for stage in STAGES:
        assert f"Running stage '{stage}'" in result.stdout
    assert "parity passed for: mnist_savedmodel, mnist_onnx, resnet50_onnx" in result.stdout


def test_pipeline_outputs_and_metrics(workspace: Path) -> None:
    metrics = json.loads((workspace / "reports/train/metrics.json").read_text())
    assert metrics["epochs"] == 2 and 0 < metrics["test_accuracy"] <= 1
    assert (workspace / "reports/train/history.csv").read_text().splitlines()[0].startswith("epoch,")
    exports = json.loads((workspace / "reports/export/mnist.json").read_text())
    assert exports["max_abs_diff"]["savedmodel"] <= 1e-5 and exports["max_abs_diff"]["onnx"] <= 1e-5
    for flavour in ("native", "python"):
        for model in ("mnist_savedmodel", "mnist_onnx", "resnet50_onnx"):
            assert (workspace / "model_repository" / flavour / model / "config.pbtxt").is_file()
    assert len((workspace / "model_repository/native/resnet50_onnx/labels.txt").read_text().splitlines()) == 1000
    for model in ("mnist_savedmodel", "mnist_onnx", "resnet50_onnx"):
        assert json.loads((workspace / f"reports/parity/{model}.json").read_text())["passed"]


def test_second_repro_changes_nothing(workspace: Path) -> None:
    result = run_cmd([str(BIN / "dvc"), "repro"], workspace, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Running stage" not in result.stdout
    assert "Data and pipelines are up to date" in result.stdout
    status = run_cmd([str(BIN / "dvc"), "status"], workspace, timeout=120)
    assert "up to date" in status.stdout, status.stdout


def test_changed_param_reruns_only_what_depends_on_it(workspace: Path) -> None:
    result = run_cmd([str(BIN / "dvc"), "status", "export_resnet50"], workspace, timeout=120)
    assert "up to date" in result.stdout
    conf = workspace / "conf" / "export_mnist.yaml"
    original = conf.read_text()
    try:
        conf.write_text(original.replace("digits: 256", "digits: 128"))
        status = run_cmd([str(BIN / "dvc"), "status"], workspace, timeout=120).stdout
        assert "export_mnist" in status and "export_resnet50" not in status and "prepare" not in status
    finally:
        conf.write_text(original)
