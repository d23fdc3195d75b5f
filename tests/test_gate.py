"""The merge gate: this run's parity figures against a baseline's, on hand-made figures and a real git+DVC repo."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from evaluate import gate as gate_cli
from pipelines.merge_gate.rules import Thresholds, judge_gate, judge_serving

from conftest import BIN, compose_config, git, tool_env

LIMITS = Thresholds(accuracy_drop=0.005, tolerance_growth=2.0, tolerance_floor=1e-6)
MNIST = {
    "passed": True,
    "protocols_agree": True,
    "max_abs": 6e-7,
    "needed_atol": 0.0,
    "framework_accuracy": 0.976,
    "served_accuracy": 0.976,
}
RESNET = {"passed": True, "protocols_agree": True, "max_abs": 3.2e-5, "needed_atol": 2.0e-5}
BASELINE = {"mnist_onnx": MNIST, "resnet50_onnx": RESNET}


def test_the_same_figures_pass() -> None:
    verdict = judge_gate(BASELINE, BASELINE, LIMITS)
    assert verdict.passed and verdict.failures == []
    text = verdict.markdown("gate")
    assert text.startswith("### gate: PASS") and "| mnist_onnx | framework_accuracy | 0.976 | 0.976 | 0 |" in text


@pytest.mark.parametrize(
    ("model", "change", "reason"),
    [
        ("resnet50_onnx", {"passed": False}, "resnet50_onnx: fails parity"),
        (
            "mnist_onnx",
            {"served_accuracy": 0.975},
            "mnist_onnx: served accuracy 0.9750 differs from the framework's 0.976",
        ),
        (
            "mnist_onnx",
            {"framework_accuracy": 0.96, "served_accuracy": 0.96},
            "mnist_onnx: framework accuracy fell by 0.0160 (more than 0.005)",
        ),
        ("resnet50_onnx", {"needed_atol": 4.5e-5}, "resnet50_onnx: needed tolerance 4.5e-05 is over 4e-05"),
        ("mnist_onnx", {"needed_atol": 3e-6}, "mnist_onnx: needed tolerance 3e-06 is over 2e-06"),  # from 0: the floor
        ("mnist_onnx", {"protocols_agree": False}, "mnist_onnx: protocols disagree"),
    ],
)
def test_a_worse_run_fails_for_its_reason(model: str, change: dict, reason: str) -> None:
    now = {**BASELINE, model: {**BASELINE[model], **change}}
    verdict = judge_gate(BASELINE, now, LIMITS)
    assert not verdict.passed and any(f.startswith(reason) for f in verdict.failures), verdict.failures
    assert "**FAIL**" in verdict.markdown("gate")


def test_small_changes_within_thresholds_pass() -> None:
    now = {
        "mnist_onnx": {**MNIST, "framework_accuracy": 0.972, "served_accuracy": 0.972, "needed_atol": 1.9e-6},
        "resnet50_onnx": {**RESNET, "needed_atol": 3.9e-5},
    }
    assert judge_gate(BASELINE, now, LIMITS).passed


def test_a_model_gone_fails_and_a_new_one_passes() -> None:
    verdict = judge_gate(BASELINE, {"mnist_onnx": MNIST, "densenet121_onnx": RESNET}, LIMITS)
    assert verdict.failures == ["resnet50_onnx: served in the baseline, gone now"]
    assert "| densenet121_onnx | needed_atol | - | 2e-05 |" in verdict.markdown("gate")


def write(repo: Path, figures: dict, profile: str = "parity_metrics") -> None:
    directory = repo / "reports" / profile
    directory.mkdir(parents=True, exist_ok=True)
    for model, values in figures.items():
        (directory / f"{model}.json").write_text(json.dumps(values))


SERVING = {"grpc_vs_in_process": 1.5, "c4_vs_in_process": 1.1, "c8_vs_flask": 3.0}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"grpc_vs_in_process": 4.6}, "mnist_onnx: grpc_vs_in_process 4.6 is over 3x the baseline's 1.5"),
        ({"c8_vs_flask": 0.9}, "mnist_onnx: c8_vs_flask 0.9 is under 1/3 of the baseline's 3"),
        ({"c4_vs_in_process": 0.3}, "mnist_onnx: c4_vs_in_process 0.3 is under 1/3 of the baseline's 1.1"),
    ],
)
def test_serving_costs_fail_only_beyond_the_growth_allowed(change: dict, reason: str) -> None:
    noisy = {"grpc_vs_in_process": 4.4, "c4_vs_in_process": 0.4, "c8_vs_flask": 1.1}
    assert judge_serving({"mnist_onnx": SERVING}, {"mnist_onnx": noisy}, LIMITS).passed  # within 3x either way
    verdict = judge_serving({"mnist_onnx": SERVING}, {"mnist_onnx": {**SERVING, **change}}, LIMITS)
    assert verdict.failures == [reason]
    assert judge_serving({}, {"mnist_onnx": SERVING}, LIMITS).passed  # nothing to compare with: reported only


def test_a_serving_figure_gone_null_fails() -> None:
    """A benchmark that measured nothing has null figures: before, the gate skipped them and passed."""
    dead = dict.fromkeys(SERVING)
    verdict = judge_serving({"mnist_onnx": SERVING}, {"mnist_onnx": dead}, LIMITS)
    assert not verdict.passed
    assert "mnist_onnx: grpc_vs_in_process: no figure now (the baseline's 1.5): nothing answered" in verdict.failures


def test_the_gate_reads_the_merge_base_through_git_and_dvc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A real repository: main commits accepted figures; a branch's run got worse; the gate says so (exit 1)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=repo, check=True, env=tool_env())
    write(repo, BASELINE)
    write(repo, {"mnist_onnx": {**MNIST, "needed_atol": 1e-3}}, "parity_gpu_metrics")  # same name, GPU profile
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "accepted run")
    git(repo, "checkout", "-q", "-b", "feature")
    git(repo, "commit", "-q", "--allow-empty", "-m", "a change")
    write(repo, {"mnist_onnx": {**MNIST, "framework_accuracy": 0.95, "served_accuracy": 0.95}})
    (repo / "reports" / "parity_metrics" / "resnet50_onnx.json").unlink()  # and resnet50 no longer served
    monkeypatch.chdir(repo)
    cfg = compose_config("gate", [f"output={tmp_path / 'gate.md'}"])
    assert gate_cli.run(cfg) == 1
    table = (tmp_path / "gate.md").read_text()
    assert table.startswith("### Parity gate against merge-base (") and ": FAIL" in table.splitlines()[0]
    assert "parity_metrics/mnist_onnx: framework accuracy fell by 0.0260" in table
    assert "parity_metrics/resnet50_onnx: served in the baseline, gone now" in table
    # the GPU profile's figures for a model of the same name are their own rows, judged against their own baseline
    assert "| parity_gpu_metrics/mnist_onnx | needed_atol | 0.001 | 0.001 | 0 |" in table
    assert table in capsys.readouterr().out
    write(repo, BASELINE)  # the branch's run as good as main's
    assert gate_cli.run(cfg) == 0
    # another run's project tree works as a baseline too (e.g. a downloaded CI artifact)
    cfg = compose_config("gate", [f"baseline_dir={repo}", f"output={tmp_path / 'g.md'}"])
    assert gate_cli.run(cfg) == 0


def test_a_baseline_that_does_not_exist_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.core.errors import ConfigError

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "feature")
    write(repo, BASELINE)
    monkeypatch.chdir(repo)
    with pytest.raises(ConfigError, match="no branch 'main' or origin/main"):
        gate_cli.run(compose_config("gate", [f"output={tmp_path / 'g.md'}"]))


def test_every_documented_baseline_fails_a_worse_run_and_an_empty_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/ci-gate.md's forms: a revision, a project tree, a metrics directory (before, the documented
    `baseline_dir=/tmp/main-reports/parity_metrics` found nothing there and passed: "nothing to compare")."""
    from pipelines.core.errors import ConfigError

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=repo, check=True, env=tool_env())
    write(repo, BASELINE)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "accepted run")
    shutil.copytree(repo / "reports", tmp_path / "artifact" / "reports")  # a CI run's uploaded project tree
    shutil.copytree(repo / "reports", tmp_path / "main-reports")  # its reports/ downloaded, as docs/ci-gate.md shows
    write(repo, {"mnist_onnx": {**MNIST, "framework_accuracy": 0.95, "served_accuracy": 0.95}})  # this run: worse
    monkeypatch.chdir(repo)
    out = f"output={tmp_path / 'g.md'}"
    for baseline in (
        "baseline=HEAD",
        f"baseline_dir={tmp_path / 'artifact'}",
        f"baseline_dir={tmp_path / 'main-reports' / 'parity_metrics'}",
    ):
        assert gate_cli.run(compose_config("gate", [baseline, out])) == 1, baseline
        assert "mnist_onnx: framework accuracy fell by 0.0260" in (tmp_path / "g.md").read_text(), baseline
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"has no parity figures .* baseline=none for a project's first proof"):
        gate_cli.run(compose_config("gate", [f"baseline_dir={empty}", out]))
    (empty / "mnist_onnx.json").write_text(json.dumps(MNIST))  # figures in a directory named like no metrics dir
    with pytest.raises(ConfigError, match="named like none of the metrics directories"):
        gate_cli.run(compose_config("gate", [f"baseline_dir={empty}", out]))
    # a project's first proof: nothing to compare with, every model must still pass
    assert gate_cli.run(compose_config("gate", ["baseline=none", out])) == 0
    write(repo, {"mnist_onnx": {**MNIST, "passed": False}})
    assert gate_cli.run(compose_config("gate", ["baseline=none", out])) == 1


INT8 = {
    "passed": True,
    "protocols_agree": True,
    "max_abs": 0.0,
    "needed_atol": 0.0,
    "framework_accuracy": 0.978,
    "served_accuracy": 0.981,
    "accuracy_drop": -0.003,
}


def test_a_lossy_model_is_gated_on_its_drop_from_fp32() -> None:
    """Served accuracy differs from the FP32 model's by what the precision costs (parity holds it to its own
    file's); the gate fails when that drop grows by more than the threshold."""
    baseline = {"mnist_onnx_int8": INT8}
    assert judge_gate(baseline, baseline, LIMITS).passed  # served above the FP32 framework's accuracy: no failure
    worse = {**INT8, "served_accuracy": 0.97, "accuracy_drop": 0.008}
    assert judge_gate(baseline, {"mnist_onnx_int8": worse}, LIMITS).failures == [
        "mnist_onnx_int8: the drop from the FP32 model's accuracy grew by 0.0110 to 0.0080 (more than 0.005)"
    ]
    small = {**INT8, "served_accuracy": 0.977, "accuracy_drop": 0.001}
    assert judge_gate(baseline, {"mnist_onnx_int8": small}, LIMITS).passed  # grew by 0.004: within the threshold
    assert not judge_gate(baseline, {"mnist_onnx_int8": {**INT8, "passed": False}}, LIMITS).passed
