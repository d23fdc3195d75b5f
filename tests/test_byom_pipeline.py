"""Models of a user's own through the real pipeline: added (tests/user_models.py), then `dvc repro` beside the
demo models (conftest's build), served by the embedded Triton and proven over HTTP, JSON and gRPC; and an export
that writes slightly other weights than the source's fails parity, naming the output and the worst element."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from test_pipeline import ADDED, CPU_MODELS

from pipelines.model_repository import triton_config

import user_models
from conftest import AFTER_BUILD, USER_MODELS, job_result, run_cmd

pytestmark = pytest.mark.pipeline

# served model -> (reference, the outputs compared exactly, accuracy reported)
EXPECTED = {
    "twoin_savedmodel": ("keras", (), True),
    "twoin_onnx": ("keras", (), True),
    "sigmodel_savedmodel": ("tensorflow", (), False),
    "sigmodel_onnx": ("tensorflow", (), False),
    "text_onnx": ("torch_export", (), False),
    "scripted_onnx": ("torchscript", (), True),
    "argmax_onnx": ("onnx (onnx.reference)", ("index", "positive", "tag_out"), False),  # INT64, BOOL, BYTES
    "scores_onnx": ("onnx (onnx.reference)", ("label",), False),  # per-sample scalars, batched
    "strings_savedmodel": ("keras", (), False),  # a string input per sample (BYTES)
    "strings_onnx": ("keras", (), False),
}
NO_JSON = {
    "argmax_onnx",
    "strings_savedmodel",
    "strings_onnx",
}  # BYTES: checked over binary HTTP and gRPC (JSON carries only UTF-8 text)


def test_every_kind_of_model_passes_parity_over_each_protocol(workspace: Path) -> None:
    assert sorted(EXPECTED) == sorted(ADDED)
    for model, (reference, exact, accuracy) in EXPECTED.items():
        report = json.loads((workspace / "reports" / "parity" / f"{model}.json").read_text())
        assert report["passed"] and report["reference"] == reference, (model, report["failures"])
        assert ({"http", "grpc"} if model in NO_JSON else {"http", "http_json", "grpc"}) <= set(report["protocols"])
        assert all(report["protocol_agreement"].values())
        for protocol in ("http", "grpc"):
            for output in exact:  # compared exactly: no numeric figures
                result = report["protocols"][protocol]["outputs"][output]
                assert result["passed"] and result["mismatched_samples"] == 0 and "max_abs" not in result
        assert (report["accuracy"] is not None) == accuracy, model
        headline = json.loads((workspace / "reports" / "parity_metrics" / f"{model}.json").read_text())
        assert headline["passed"] and ("served_accuracy" in headline) == accuracy
    text = json.loads((workspace / "reports" / "parity" / "text_onnx.json").read_text())
    assert "grpc_burst" in text["protocols"] and text["dynamic_batching"]["requests"] == 8
    assert text["protocols"]["grpc"]["cases"]["shape_13"] == 8  # the open sequence length sent at a second size
    argmax = json.loads((workspace / "reports" / "parity" / "argmax_onnx.json").read_text())
    assert "grpc_burst" not in argmax["protocols"]  # no batch axis: one sample per request, nothing to merge
    assert "tag', 'tag_out'] (BYTES) cannot travel as JSON" in argmax["skipped_protocols"]["http_json"]
    served = (workspace / "model_repository" / "argmax_onnx" / "config.pbtxt").read_text()
    assert served.count("data_type: TYPE_STRING") == 2 and "data_type: TYPE_BOOL" in served
    config = (workspace / "model_repository" / "text_onnx" / "config.pbtxt").read_text()
    assert "dims: -1" in config and "data_type: TYPE_INT64" in config  # the open sequence length, served dynamic
    assert "max_batch_size: 0" not in config
    assert "max_batch_size" not in (workspace / "model_repository" / "argmax_onnx" / "config.pbtxt").read_text()
    # per-sample scalars: declared [1] and reshaped to [] (Triton refuses a tensor without dims), proven per sample
    scores = json.loads((workspace / "reports" / "parity" / "scores_onnx.json").read_text())
    assert scores["protocols"]["grpc"]["outputs"]["score"]["samples"] > 1
    served = triton_config.parse_config((workspace / "model_repository" / "scores_onnx" / "config.pbtxt").read_text())
    declared = {t.name: (list(t.dims), t.HasField("reshape") and list(t.reshape.shape)) for t in served.output}
    assert declared == {"Y": ([3], False), "label": ([1], []), "score": ([1], [])}
    assert [(t.name, list(t.dims), list(t.reshape.shape)) for t in served.input if t.HasField("reshape")] == [
        ("shift", [1], [])
    ]
    # a folder of photos, through the ensemble's pre-processing: one sample each, the input laid out NHWC
    for model in ("sigmodel_savedmodel", "sigmodel_onnx"):
        cnn = json.loads((workspace / "reports" / "parity" / f"{model}.json").read_text())
        assert cnn["protocols"]["http"]["cases"]["all_samples"] == len(user_models.PHOTOS)
        assert "format: FORMAT_NHWC" in (workspace / "model_repository" / model / "config.pbtxt").read_text()


def parity_on_perturbed_sources(clone: Path, scratch: Path) -> dict[str, Any]:
    """The served exports stay (provenance still matches), the sources become the same models with slightly
    other weights: parity for the added models alone (the server loads only them) must fail for each of them."""
    perturbed = scratch / "perturbed"
    made = run_cmd([sys.executable, "tests/user_models.py", str(perturbed), "--perturb"], clone, timeout=300)
    assert made.returncode == 0, made.stderr
    for item in perturbed.iterdir():
        target = clone / USER_MODELS / item.name
        if target.is_dir():
            shutil.rmtree(target)
        shutil.copytree(item, target) if item.is_dir() else shutil.copy2(item, target)
    others = [f"~models.{m}" for m in CPU_MODELS]
    flags = ["--model-control-mode=explicit", *(f"--load-model={m}" for m in ADDED)]
    loaded = "server.extra_args=[" + ",".join(f"'{flag}'" for flag in flags) + "]"
    run = run_cmd([sys.executable, "-m", "evaluate.parity", "model=all", *others, loaded], clone, timeout=600)
    # Triton's flags are a proving setting (pipelines/comparison/job.py: PROVING): the reports are ad hoc
    reports = {m: json.loads((clone / "reports" / "parity_adhoc" / f"{m}.json").read_text()) for m in ADDED}
    return {"run": run, "reports": reports}


AFTER_BUILD["export_bugs"] = parity_on_perturbed_sources


@pytest.fixture
def export_bugs(workspace: Path) -> dict[str, Any]:
    return job_result("export_bugs")


def test_an_export_with_other_weights_fails_parity_naming_output_and_element(export_bugs: dict[str, Any]) -> None:
    run, reports = export_bugs["run"], export_bugs["reports"]
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"parity FAILED for: {', '.join(ADDED)}" in run.stdout
    for model, report in reports.items():
        assert not report["passed"], model
        failure = report["failures"][0]
        assert "worst element [" in failure and ": values off by up to" in failure, (model, failure)
