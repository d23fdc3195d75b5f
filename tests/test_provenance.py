"""Parity vouches only for what it checked: the current exports, with the checks conf/ defines."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from pipelines.comparison import job as parity_job
from pipelines.config import selection
from pipelines.config.spec import model_spec, served_specs
from pipelines.core import cli
from pipelines.core.errors import ArtifactError
from pipelines.model_repository import assembly

from conftest import compose_config


def onnx_spec(tmp_path: Path):
    export = tmp_path / "models" / "model.onnx"
    export.parent.mkdir(parents=True)
    export.write_bytes(b"the current export")
    return dataclasses.replace(
        model_spec("mnist_onnx", compose_config("parity", ["model=mnist_onnx"]).model), artifact=export
    )


def test_the_served_copy_must_be_the_current_export(tmp_path: Path) -> None:
    spec = onnx_spec(tmp_path)
    served = tmp_path / "repo" / "mnist_onnx" / "1" / "model.onnx"
    served.parent.mkdir(parents=True)
    served.write_bytes(b"the current export")
    (record,) = assembly.provenance(spec, {}, tmp_path / "repo")
    assert record == {
        "served": "mnist_onnx/1/model.onnx",
        "source": spec.artifact.as_posix(),
        "sha256": hashlib.sha256(b"the current export").hexdigest(),
    }
    spec.artifact.write_bytes(b"a newer export")  # exported again, repository not rebuilt
    with pytest.raises(ArtifactError, match=r"model.onnx is not the current .*rebuild the repository"):
        assembly.provenance(spec, {}, tmp_path / "repo")
    served.unlink()
    with pytest.raises(ArtifactError, match="not found: rebuild the repository"):
        assembly.provenance(spec, {}, tmp_path / "repo")
    # a remote server's repository cannot be read: the source is recorded, nothing compared
    assert assembly.provenance(spec, {}, None)[0]["sha256"] == hashlib.sha256(b"a newer export").hexdigest()


def test_the_ensemble_serves_the_current_step_code(tmp_path: Path) -> None:
    catalog = served_specs(compose_config("repository").models)
    # the classifier's export and labels exist only after the export stage: stand-ins for them here
    classifier = catalog["resnet50_onnx"]
    export, labels = tmp_path / "export" / "model.onnx", tmp_path / "export" / "labels.txt"
    export.parent.mkdir()
    export.write_bytes(b"resnet50 export")
    labels.write_text("".join(f"class {i}\n" for i in range(1000)))
    network = dataclasses.replace(classifier.network, labels_file=labels)
    catalog = {**catalog, "resnet50_onnx": dataclasses.replace(classifier, artifact=export, network=network)}
    repo = tmp_path / "repo"
    sources = {rel.as_posix(): src for rel, src in assembly.served_copies(catalog["resnet50_ensemble"], catalog)}
    # by hand: what assembly copies for the ensemble (docs/repository.md)
    assert set(sources) == {
        "resnet50_ensemble_preprocess/1/model.py",
        "resnet50_ensemble_preprocess/1/images.py",
        "resnet50_ensemble_postprocess/1/model.py",
        "resnet50_ensemble_postprocess/1/images.py",
        "resnet50_ensemble_postprocess/1/labels.txt",
        "resnet50_onnx/1/model.onnx",
        "resnet50_onnx/labels.txt",
    }
    assert sources["resnet50_ensemble_preprocess/1/model.py"].name == "preprocess.py"
    for rel, src in sources.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_bytes(src.read_bytes())
    records = assembly.provenance(catalog["resnet50_ensemble"], catalog, repo)
    assert {r["source"] for r in records} >= {
        "serve/ensemble_steps/preprocess.py",
        "serve/ensemble_steps/postprocess.py",
        "pipelines/data/images.py",
    }
    (repo / "resnet50_onnx/labels.txt").write_text("relabelled\n")
    with pytest.raises(ArtifactError, match=r"resnet50_onnx/labels\.txt is not the current"):
        assembly.provenance(catalog["resnet50_ensemble"], catalog, repo)
    (repo / "resnet50_onnx/labels.txt").write_bytes(labels.read_bytes())
    (repo / "resnet50_ensemble_postprocess/1/model.py").write_text("# edited by hand\n")
    with pytest.raises(ArtifactError, match=r"postprocess/1/model\.py is not the current serve/ensemble_steps"):
        assembly.provenance(catalog["resnet50_ensemble"], catalog, repo)


@pytest.mark.parametrize(
    ("overrides", "change"),
    [
        (["model.tolerance.atol=1.0"], "mnist_onnx.tolerance.atol: 0.0001 -> 1.0"),
        (["model.parity.samples=64"], "mnist_onnx.parity.samples: 1000 -> 64"),
        (["model.parity.concurrent_requests=0"], "mnist_onnx.parity.concurrent_requests: 32 -> 0"),
        (["protocols=[grpc]"], "protocols ['http', 'http_json', 'grpc'] -> ['grpc']"),
        # before: each of these checked something else and wrote the tracked verdict
        (["model_repository=/tmp/elsewhere"], "model_repository model_repository -> /tmp/elsewhere"),
        (["paths.model_repository=/tmp/elsewhere"], "model_repository model_repository -> /tmp/elsewhere"),
        (["server=remote"], "server.kind local -> remote"),
        (["server=docker"], "server.kind local -> docker"),
        (["server.extra_args=['--log-info=true']"], "server.extra_args [] -> ['--log-info=true']"),
        (["balancer=nginx"], "balancer.kind none -> nginx"),
        (["paths.data=data/other.npz"], "paths.data data/mnist.npz -> data/other.npz"),
    ],
)
@pytest.mark.parametrize("as_command", [False, True], ids=["run", "command"])
def test_a_changed_check_never_writes_the_tracked_reports(
    overrides: list[str], change: str, as_command: bool, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    if as_command:  # as `python -m evaluate.parity` runs it: hydra_main recorded its overrides
        monkeypatch.setattr(cli, "_COMMAND", ["parity", ["model=mnist_onnx", "reuse=true", *overrides]])
    cfg = compose_config("parity", ["model=mnist_onnx", *overrides])
    specs = selection.selected(cfg)
    where = parity_job.tracked_or_adhoc(cfg, specs, parity_job.profile_paths(cfg, specs)[1])
    assert where == parity_job.ParityReports(Path("reports/parity_adhoc"), Path("reports/parity_adhoc/metrics"))
    out = capsys.readouterr().out
    assert change in out and "not to the tracked reports/parity/" in out


def test_the_configured_command_is_not_composed_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m evaluate.parity model=all reuse=true` (the DVC stage) chose nothing conf/ does not define: its
    config is conf/'s, and a second composition (7 s with 77 models) is spared."""
    cfg = compose_config("parity", ["model=all", "reuse=true"])
    monkeypatch.setattr(cli, "_COMMAND", ["parity", ["model=all", "reuse=true"]])
    monkeypatch.setattr(parity_job, "compose", lambda *a: pytest.fail("composed again"))
    tracked = parity_job.ParityReports(Path("reports/parity"), Path("reports/parity_metrics"))
    assert parity_job.tracked_or_adhoc(cfg, selection.selected(cfg), tracked) == tracked


def test_the_configured_check_writes_the_tracked_reports(tmp_path: Path) -> None:
    tracked = parity_job.ParityReports(Path("reports/parity"), Path("reports/parity_metrics"))
    # how the server is run, not what it serves: ports, timeouts, logs, the account
    for overrides in ([], ["server.http_port=8000", "server.startup_timeout_s=5", "paths.logs=/tmp/x", "reuse=true"]):
        cfg = compose_config("parity", ["model=all", *overrides])
        assert parity_job.tracked_or_adhoc(cfg, selection.selected(cfg), tracked) == tracked, overrides
    # a directory of the user's choosing is theirs: a changed check is written where they said
    cfg = compose_config(
        "parity",
        [
            "model=mnist_onnx",
            "model.tolerance.atol=1.0",
            f"paths.parity_reports={tmp_path}",
            f"paths.parity_metrics={tmp_path / 'figures'}",
        ],
    )
    specs = selection.selected(cfg)
    chosen = parity_job.ParityReports(tmp_path, tmp_path / "figures")
    assert parity_job.tracked_or_adhoc(cfg, specs, parity_job.profile_paths(cfg, specs)[1]) == chosen
    chosen = parity_job.ParityReports(tmp_path, tmp_path / "metrics")
    # only the full reports' directory chosen: the headline figures go along, not into the tracked metrics
    cfg = compose_config("parity", ["model=mnist_onnx", f"paths.parity_reports={tmp_path}"])
    specs = selection.selected(cfg)
    assert parity_job.tracked_or_adhoc(cfg, specs, parity_job.profile_paths(cfg, specs)[1]) == chosen


# mnist_onnx's config.pbtxt as docs/repository.md describes it, written by hand
MNIST_ONNX_CONFIG = """\
name: "mnist_onnx"
platform: "onnxruntime_onnx"
max_batch_size: 64
input { name: "image" data_type: TYPE_FP32 format: FORMAT_NHWC dims: [28, 28, 1] }
output { name: "probabilities" data_type: TYPE_FP32 dims: [10] }
instance_group { count: 1 }
default_model_filename: "model.onnx"
dynamic_batching { preferred_batch_size: [16, 64] max_queue_delay_microseconds: 100 }
"""


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        # before: only name, max_batch_size, tensors and format were compared; this one passed parity, 8x slower
        (
            ("max_queue_delay_microseconds: 100", "max_queue_delay_microseconds: 5000000"),
            "dynamic_batching.max_queue_delay_microseconds: 5000000, expected 100",
        ),
        (("instance_group { count: 1 }", "instance_group { count: 4 }"), "instance_group[0].count: 4, expected 1"),
        (
            ("default_model_filename", "response_cache { enable: true }\ndefault_model_filename"),
            "response_cache.enable: True, expected False",
        ),
    ],
)
def test_a_config_edited_by_hand_is_refused_naming_the_field(tmp_path: Path, edit: tuple[str, str], field: str) -> None:
    catalog = served_specs(compose_config("parity", ["model=all"]).models)
    config = tmp_path / "repo" / "mnist_onnx" / "config.pbtxt"
    config.parent.mkdir(parents=True)
    config.write_text(MNIST_ONNX_CONFIG)
    assembly.check_configs(catalog["mnist_onnx"], catalog, tmp_path / "repo")  # what the spec generates
    config.write_text(MNIST_ONNX_CONFIG.replace(*edit))
    with pytest.raises(ArtifactError, match="is not what the spec generates") as refused:
        assembly.check_configs(catalog["mnist_onnx"], catalog, tmp_path / "repo")
    assert field in str(refused.value) and "dvc repro repository" in str(refused.value)
