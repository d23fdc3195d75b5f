"""`dvc repro` end to end in a temporary copy of the project (small training settings)."""

from __future__ import annotations

import concurrent.futures
import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

import user_models
from conftest import (
    AFTER_BUILD,
    BIN,
    USER_MODELS,
    command_line,
    compose_config,
    file_hashes,
    git,
    job_result,
    run_cmd,
    tool_env,
    wait_until,
)

pytestmark = pytest.mark.pipeline

CPU_MODELS = list(compose_config("repository").models)
CLASSIFIERS = [m.removesuffix("_onnx") for m in CPU_MODELS if m.endswith("_onnx") and not m.startswith("mnist")]
STAGES = [
    "prepare",
    "train",
    "export_mnist",
    *[f"export_classifier@{c}" for c in CLASSIFIERS],
    *[f"export_added@{n}" for n in user_models.MODELS],
    "repository",
    "parity",
    "benchmark",
]
# what the workspace serves besides CPU_MODELS: tests/user_models.py's models, added before its `dvc repro`
ADDED = [
    "twoin_savedmodel",
    "twoin_onnx",
    "sigmodel_savedmodel",
    "sigmodel_onnx",
    "text_onnx",
    "scripted_onnx",
    "argmax_onnx",
    "scores_onnx",
    "strings_savedmodel",
    "strings_onnx",
]


def test_dvc_repro_runs_every_stage(pipeline_run: tuple[Path, subprocess.CompletedProcess]) -> None:
    _workspace, result = pipeline_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for stage in STAGES:
        assert f"Running stage '{stage}'" in result.stdout
    assert f"parity passed for: {', '.join(CPU_MODELS + ADDED)}" in result.stdout


def test_pipeline_outputs_and_metrics(workspace: Path) -> None:
    metrics = json.loads((workspace / "reports/train/metrics.json").read_text())
    assert set(metrics) == {"test_accuracy", "test_loss"} and 0 < metrics["test_accuracy"] <= 1
    assert (workspace / "reports/train/history.csv").read_text().splitlines()[0].startswith("epoch,")
    exports = json.loads((workspace / "reports/export/mnist.json").read_text())
    limit = compose_config("export_mnist").verify.max_abs_diff
    assert exports["max_abs_diff"]["savedmodel"] <= limit and exports["max_abs_diff"]["onnx"] <= limit
    for model in CPU_MODELS:  # one repository, the models at its top level, as Triton expects
        assert (workspace / "model_repository" / model / "config.pbtxt").is_file()
    assert not (workspace / "model_repository" / "python").exists()
    for classifier in CLASSIFIERS:
        labels = workspace / "model_repository" / f"{classifier}_onnx" / "labels.txt"
        assert len(labels.read_text().splitlines()) == 1000
    for model in CPU_MODELS:
        assert json.loads((workspace / f"reports/parity/{model}.json").read_text())["passed"]


def test_reports_are_the_same_for_two_identical_runs(workspace: Path) -> None:
    """Committed with the code, reports must not differ by where or when they were made."""
    marks = [str(workspace), socket.gethostname(), time.strftime("%Y-%m-%d"), time.strftime("%Y%m%d")]
    for path in (workspace / "reports").rglob("*"):
        if path.is_file():
            text = png_text(path) if path.suffix == ".png" else path.read_text()
            assert not [m for m in marks if m in text], f"{path.relative_to(workspace)} names its host, path or date"


def png_text(path: Path) -> str:
    """A plot's text: its metadata chunks (software, dates) and nothing of its compressed pixels."""
    from PIL import Image

    with Image.open(path) as image:
        return " ".join(f"{k} {v}" for k, v in image.text.items())


def test_metrics_fit_a_pull_request_comment(workspace: Path) -> None:
    """A few headline figures per model, in two tables as the gate shows them (training and parity; serving cost),
    no warning about the GPU profile's reports on a CPU host."""
    groups = {
        # by hand: the train metrics and the parity headline figures (parity_report.headline)
        ("reports/train/metrics.json", "reports/parity_metrics"): {
            "Path",
            "test_accuracy",
            "test_loss",
            "passed",
            "protocols_agree",
            "max_abs",
            "needed_atol",
            "framework_accuracy",
            "served_accuracy",
            "accuracy_drop",
        },
        # the benchmark's ratios (benchmark_report.headline); c8_vs_flask too where Flask is measured, which
        # conftest.SMALL leaves out of the test copy's benchmark stage
        ("reports/benchmark_metrics",): {"Path", "grpc_vs_in_process", "c4_vs_in_process"},
    }
    for targets, expected in groups.items():
        shown = run_cmd([str(BIN / "dvc"), "metrics", "show", "--md", *targets], workspace, timeout=120)
        assert shown.returncode == 0 and "WARNING" not in shown.stdout + shown.stderr, shown.stderr
        header = shown.stdout.splitlines()[0]
        assert {c.strip() for c in header.strip("|").split("|")} == expected, header
        assert max(len(line) for line in shown.stdout.splitlines()) < 220
        for model in CPU_MODELS:
            assert f"{targets[-1]}/{model}.json" in shown.stdout


def stages_to_run(workspace: Path) -> list[str]:
    """Stages `dvc repro --dry` would run: those whose own deps or params changed (downstream stages then
    run only if those outputs change)."""
    out = run_cmd([str(BIN / "dvc"), "repro", "--dry"], workspace, timeout=120).stdout
    return [line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")]


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        ("conf/export_mnist.yaml", "digits: 256", "digits: 128", ["export_mnist"]),
        ("conf/model/mnist_onnx.yaml", "samples: 1000", "samples: 500", ["repository", "parity", "benchmark"]),
        ("conf/tolerance/fp32.yaml", "atol: 1.0e-4", "atol: 2.0e-4", ["parity"]),
    ],
)
def test_a_change_reruns_exactly_what_depends_on_it(
    workspace: Path, file: str, old: str, new: str, expected: list[str]
) -> None:
    conf = workspace / file
    original = conf.read_text()
    assert old in original
    try:
        conf.write_text(original.replace(old, new))
        assert stages_to_run(workspace) == expected
    finally:
        conf.write_text(original)  # and then nothing is left to run: the next test


def test_second_repro_changes_nothing(workspace: Path) -> None:
    """After the edits above were undone too: DVC compares contents, not times."""
    result = run_cmd([str(BIN / "dvc"), "repro"], workspace, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Running stage" not in result.stdout
    assert "Data and pipelines are up to date" in result.stdout
    status = run_cmd([str(BIN / "dvc"), "status", "dvc.yaml"], workspace, timeout=120)  # the CPU profile
    assert "up to date" in status.stdout, status.stdout


def test_a_killed_parity_stage_leaves_the_tracked_reports(workspace: Path, tmp_path: Path) -> None:
    """DVC deletes a stage's outputs before running it: before `persist: true`, `kill -9` of `dvc repro parity`
    left the working tree with no parity report at all. Now the last ones stay, byte for byte."""
    import psutil

    copy = shutil.copytree(workspace, tmp_path / "workspace", symlinks=True)
    tracked = [copy / "reports" / "parity", copy / "reports" / "parity_metrics"]
    for report in tracked[0].glob("*.json"):  # no proof to keep (reuse=true): the stage proves every model again
        data = json.loads(report.read_text())
        data.pop("proof_key", None)
        report.write_text(json.dumps(data, indent=2) + "\n")
    before = [file_hashes(d) for d in tracked]
    assert all(before)
    with open(tmp_path / "repro.out", "wb") as out:
        dvc = subprocess.Popen(
            [str(BIN / "dvc"), "repro", "-f", "-s", "parity"],
            cwd=copy,
            env=tool_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def stage_server() -> bool:
        """The stage runs and its Triton is starting: DVC has long since handled the stage's outputs."""
        assert dvc.poll() is None, (tmp_path / "repro.out").read_text()
        children = psutil.Process(dvc.pid).children(recursive=True)
        return any(command_line(p.pid).split(" ")[0].endswith("tritonserver") for p in children)

    wait_until(stage_server, 180, "the parity stage's tritonserver started")
    left = psutil.Process(dvc.pid).children(recursive=True)
    dvc.kill()
    dvc.wait()
    psutil.wait_procs(left, timeout=30)  # every process of the stage goes with it (pipelines.core.lifeline)
    assert [file_hashes(d) for d in tracked] == before


def make_ci(repo: Path) -> subprocess.CompletedProcess:
    return run_cmd(["make", "ci", f"VENV={BIN.parent}"], repo, timeout=900)


def run_ci_twice(repo: Path, scratch: Path) -> dict[str, Any]:
    """The CI job twice on `repo`, a copy of the built workspace made a git repository: the accepted run on main,
    and, at the same time in a copy, a branch whose change makes the ensemble's server-side pre-processing drift.
    Each run: its result, the gate's table, and whether `dvc plots diff` was written; and the perturbed run's
    parity report of the ensemble.

    Run beside the other tests (conftest.AFTER_BUILD): most of it waits on DVC and git, one process at a time."""
    git(repo, "checkout", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "the accepted run, reports committed with the code")
    branch = shutil.copytree(repo, scratch / "branch", symlinks=True)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        perturbed = pool.submit(perturbed_ci_run, branch)
        accepted = make_ci(repo)
        runs = {
            "accepted": (
                accepted,
                (repo / "reports" / "gate" / "gate.md").read_text(),
                (repo / "reports" / "gate" / "plots" / "index.html").is_file(),
            )
        }
        return {**runs, **perturbed.result()}


def perturbed_ci_run(repo: Path) -> dict[str, Any]:
    gate = repo / "reports" / "gate" / "gate.md"
    git(repo, "checkout", "-q", "-b", "drift")
    step = repo / "serve" / "ensemble_steps" / "preprocess.py"
    text = step.read_text()
    line = "batch = self.images.preprocess_request(encoded, self.settings, charge).astype(np.float32)"
    assert line in text
    step.write_text(text.replace(line, line + " * 1.01"))
    # and an added model "retrained" into one that gets every label of its sample wrong
    shutil.copy2(repo / USER_MODELS / user_models.WORSE, repo / USER_MODELS / "scripted.pt")
    # committed without `dvc repro`: the pre-commit hook refuses it; forced past it, CI stops before reproducing
    hooks = run_cmd([str(BIN / "pre-commit"), "install"], repo, timeout=120)
    assert hooks.returncode == 0, hooks.stdout + hooks.stderr
    message = "a change that perturbs a served model, and a worse model of a user's own"
    refused = commit(repo, "-qam", message)
    forced = commit(repo, "-qam", message, "--no-verify")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    unreproduced = make_ci(repo)
    unreproduced_table = gate.read_text() if gate.is_file() else "(no table)"
    # as the message says: `dvc repro` (it records the failed proofs), then commit the lock with the reports
    repro = run_cmd([str(BIN / "dvc"), "repro"], repo, timeout=900)
    git(repo, "add", "-A")
    accepted_commit = commit(repo, "-qm", "dvc repro: the lock and the reports of that change")
    before = gate.stat().st_mtime_ns if gate.is_file() else None  # the lock check's table, above
    perturbed = make_ci(repo)
    written = gate.is_file() and gate.stat().st_mtime_ns != before  # this run's own table, not a copied one
    report = repo / "reports" / "parity" / "resnet50_ensemble.json"
    return {
        "refused_commit": refused,
        "unreproduced": unreproduced,
        "unreproduced_table": unreproduced_table,
        "repro": repro,
        "reproduced_commit": accepted_commit,
        "perturbed": (perturbed, gate.read_text() if written else "(the gate wrote no table)", None),
        "perturbed_report": json.loads(report.read_text()) if report.is_file() else {},
    }


def commit(repo: Path, *args: str) -> subprocess.CompletedProcess:
    """`git commit` as a contributor runs it: through the pre-commit hook, when one is installed."""
    identity = ["-c", "user.email=ci@example.com", "-c", "user.name=ci"]
    env = {**tool_env(), "VENV": str(BIN.parent)}  # the hook's `make lock-check` runs with this environment
    return subprocess.run(
        ["git", *identity, "commit", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=300, check=False
    )


AFTER_BUILD["ci_runs"] = run_ci_twice


@pytest.fixture
def ci_runs(workspace: Path) -> dict[str, Any]:
    return job_result("ci_runs")


def test_make_ci_passes_then_fails_on_a_perturbed_model(ci_runs) -> None:
    """The CI job on the real pipeline: the accepted run on main passes the gate; a change that makes the
    ensemble's server-side pre-processing drift, and a worse model of a user's own, fails it, and the table names
    the models and the figures."""
    accepted, table, plots = ci_runs["accepted"]
    assert accepted.returncode == 0, accepted.stdout[-3000:] + accepted.stderr[-3000:]
    assert table.startswith("### Parity gate against merge-base (") and "PASS" in table.splitlines()[0]
    assert "#### `dvc metrics diff" in table and "(no metric changed)" in table  # the same run as the commit
    assert plots  # dvc plots diff, for the artifacts

    perturbed, table, _ = ci_runs["perturbed"]
    assert ci_runs["repro"].returncode == 0, ci_runs["repro"].stdout[-3000:]  # the failed proofs are recorded
    assert "parity FAILED for: resnet50_ensemble" in ci_runs["repro"].stdout
    assert ci_runs["reproduced_commit"].returncode == 0, ci_runs["reproduced_commit"].stdout[-3000:]
    assert perturbed.returncode != 0
    assert "FAIL" in table.splitlines()[0], perturbed.stdout[-3000:] + perturbed.stderr[-3000:]
    assert "| parity_metrics/resnet50_ensemble | passed | yes | no |" in table
    assert "parity_metrics/resnet50_ensemble: fails parity" in table
    dvc_row = r"\| reports/parity_metrics/{}\.json +\| passed"  # DVC pads its columns to the longest path shown
    assert re.search(dvc_row.format("resnet50_ensemble"), table)  # and dvc metrics diff shows it
    # an added model is gated like the demo models: its accuracy on its own labelled sample fell from 1 to 0
    assert "| parity_metrics/scripted_onnx | framework_accuracy | 1 | 0 |" in table
    assert re.search(r"\| reports/parity_metrics/scripted_onnx\.json +\| framework_accuracy", table)


def test_a_change_committed_without_dvc_repro_is_refused_before_anything_runs(ci_runs) -> None:
    """The committed dvc.lock must record the commit's own code: the pre-commit hook refuses the commit, and `make ci`
    on it (committed past the hook) fails at its first step, naming the stages and the change, and reproduces
    nothing. Once `dvc repro` refreshed the lock, the hook lets the commit through (asserted above)."""
    for result in (ci_runs["refused_commit"], ci_runs["unreproduced"]):
        out = result.stdout + result.stderr
        assert result.returncode != 0, out[-3000:]
        assert "dvc.lock does not record this commit's code and params" in out, out[-3000:]
        assert re.search(r"  serve/ensemble_steps: changed for repository, parity, benchmark\n", out), out[-3000:]
        assert re.search(r"  byom/scripted\.pt: changed for export_added@scripted\n", out), out[-3000:]
        assert "run `dvc repro dvc.yaml`, then commit dvc.lock" in out
        assert "Running stage" not in out
    refused = ci_runs["refused_commit"]
    assert "dvc.lock records this commit's code and params" in refused.stdout + refused.stderr  # the hook's name
    assert ci_runs["unreproduced_table"].startswith("### Lock check: **FAIL**")  # what CI posts, in place of the gate's


def test_server_side_preprocessing_drift_is_named_in_the_report(ci_runs) -> None:
    """The perturbed run above: the ensemble's own pre-processing step, asked directly, differs from the client's
    reference (the classification may or may not change), and the report says so."""
    report = ci_runs["perturbed_report"]
    assert report, "the perturbed run wrote no parity report for resnet50_ensemble"
    assert not report["passed"] and not report["preprocessing"]["passed"]
    assert report["preprocessing"]["max_abs"] > 0.01  # 1% of a normalised pixel, up to 2.6
    assert any("pre-processing differs" in f for f in report["failures"]), report["failures"]


def test_the_gate_on_the_real_reports(workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unchanged passes; a parity failure or a missing model fails (exit 1); a missing or unreadable baseline is
    one line (exit 2 from the command)."""
    import shutil

    from evaluate import gate as gate_cli
    from pipelines.core.errors import ArtifactError, ConfigError

    real = workspace / "reports" / "parity_metrics"
    baseline, now = tmp_path / "baseline", tmp_path / "now"  # two runs' project trees
    shutil.copytree(real, baseline / "reports" / "parity_metrics")
    shutil.copytree(real, now / "reports" / "parity_metrics")
    figures = now / "reports" / "parity_metrics"
    monkeypatch.chdir(now)

    def gate(*overrides: str) -> int:
        cfg = compose_config("gate", [f"baseline_dir={baseline}", f"output={tmp_path / 'gate.md'}", *overrides])
        return gate_cli.run(cfg)

    assert gate() == 0
    failing = json.loads((figures / "mnist_onnx.json").read_text())
    (figures / "mnist_onnx.json").write_text(json.dumps({**failing, "passed": False}))
    assert gate() == 1 and "parity_metrics/mnist_onnx: fails parity" in (tmp_path / "gate.md").read_text()
    (figures / "mnist_onnx.json").write_text(json.dumps(failing))
    (figures / "densenet121_onnx.json").unlink()
    assert gate() == 1
    assert "parity_metrics/densenet121_onnx: served in the baseline, gone now" in (tmp_path / "gate.md").read_text()
    with pytest.raises(ConfigError, match="is not a directory"):
        gate(f"baseline_dir={tmp_path / 'nowhere'}")
    (baseline / "reports" / "parity_metrics" / "mnist_onnx.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"mnist_onnx\.json is not readable JSON"):
        gate()
