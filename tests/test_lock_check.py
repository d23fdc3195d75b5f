"""The lock check (`python -m evaluate.lock_check`, `make lock-check`) on a small DVC project of its own, with the
real git and DVC: fresh in a fresh clone, stale for a code, params or command change, never for outputs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, git

DVC_YAML = """\
stages:
  make_data:
    cmd: python make_data.py
    deps: [make_data.py]
    outs: [data.txt]
  score:
    cmd: python score.py
    deps: [score.py, data.txt, source.txt]
    params: [params.yaml: [scale]]
    outs:
      - report.json:
          cache: false
"""


def lock_check(project: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "evaluate.lock_check"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose `dvc repro` was committed (report.json with it, data.txt in DVC's cache, source.txt `dvc add`ed),
    cloned: its data and source are absent, as in CI's clean clone."""
    origin = tmp_path_factory.mktemp("origin")
    git(origin, "init", "-q")
    (origin / "make_data.py").write_text("open('data.txt', 'w').write('1 2 3')\n")
    (origin / "score.py").write_text(
        "import json, yaml\nscale = yaml.safe_load(open('params.yaml'))['scale']\n"
        "json.dump({'sum': scale * sum(map(int, open('data.txt').read().split()))}, open('report.json', 'w'))\n"
    )
    (origin / "params.yaml").write_text("scale: 2\nunread: 1\n")
    (origin / "dvc.yaml").write_text(DVC_YAML)
    (origin / "source.txt").write_text("a user's model, tracked by DVC")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=origin, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", "source.txt"], cwd=origin, check=True)
    repro = subprocess.run(
        [sys.executable, "-m", "dvc", "repro"], cwd=origin, capture_output=True, text=True, check=False
    )
    assert repro.returncode == 0, repro.stderr
    git(origin, "add", "-A")
    git(origin, "commit", "-qm", "the proof, with its lock")
    target = tmp_path_factory.mktemp("clone") / "project"
    git(origin.parent, "clone", "-q", str(origin), str(target))
    return target


@pytest.fixture
def project(clone: Path):
    yield clone
    git(clone, "checkout", "-q", "--", ".")  # each test's change undone
    git(clone, "clean", "-qfdx")  # data.txt too: DVC git-ignores its outputs


def test_a_fresh_clone_is_fresh_though_its_outputs_are_absent(project: Path) -> None:
    assert not (project / "data.txt").exists() and not (project / "source.txt").exists()
    result = lock_check(project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "dvc.yaml: the lock records this commit's code and params"


def test_a_code_change_names_each_stage_it_makes_stale(project: Path) -> None:
    with (project / "score.py").open("a") as f:
        f.write("# a change\n")
    result = lock_check(project)
    assert result.returncode == 1
    assert "  score.py: changed for score\n" in result.stdout
    assert "run `dvc repro dvc.yaml`, then commit dvc.lock" in result.stdout
    assert "make_data" not in result.stdout  # the other stage's lock entry still holds
    table = (project / "reports" / "gate" / "gate.md").read_text()  # where CI posts the gate's table
    assert table.startswith("### Lock check: **FAIL**") and "  score.py: changed for score" in table


def test_a_param_change_names_the_param_and_an_unread_one_nothing(project: Path) -> None:
    (project / "params.yaml").write_text("scale: 2\nunread: 5\n")
    assert lock_check(project).returncode == 0  # the stage does not read it (DVC's params list)
    (project / "params.yaml").write_text("scale: 3\nunread: 1\n")
    result = lock_check(project)
    assert result.returncode == 1 and "  params.yaml (scale): changed for score\n" in result.stdout


def test_a_changed_command_is_stale(project: Path) -> None:
    (project / "dvc.yaml").write_text(DVC_YAML.replace("cmd: python score.py", "cmd: python score.py --fast"))
    result = lock_check(project)
    assert result.returncode == 1 and "  the stage's cmd: changed for score\n" in result.stdout


def test_a_committed_report_edited_by_hand_is_stale_but_other_outputs_are_not(project: Path) -> None:
    (project / "data.txt").write_text("4 5 6")  # an output git does not track, made otherwise: dvc repro's to redo
    assert lock_check(project).returncode == 0
    (project / "report.json").write_text('{"sum": 100}')  # the committed proof, not what the lock records
    result = lock_check(project)
    assert result.returncode == 1 and "  report.json: changed for score\n" in result.stdout


def test_a_source_added_again_without_dvc_repro_is_stale(project: Path) -> None:
    """A retrained model `dvc add`ed and committed without `dvc repro`: absent from the clone, its .dvc file says."""
    tracked = project / "source.txt.dvc"
    tracked.write_text(re.sub(r"md5: \w+", "md5: 0123456789abcdef0123456789abcdef", tracked.read_text()))
    result = lock_check(project)
    assert result.returncode == 1
    assert "  source.txt (recorded as another version than source.txt.dvc's): changed for score\n" in result.stdout


def test_a_lock_merged_by_hand_is_stale(project: Path) -> None:
    """The lock records score's input as another data.txt than the one make_data's entry records."""
    lock = project / "dvc.lock"
    text = lock.read_text()
    made = re.search(r"outs:\n    - path: data.txt\n      hash: md5\n      md5: (\w+)", text)
    assert made, text
    lock.write_text(text[: made.start(1)] + "0123456789abcdef" * 2 + text[made.end(1) :])  # make_data's entry, edited
    result = lock_check(project)
    assert result.returncode == 1
    assert "  data.txt (recorded as another version than make_data's): changed for score\n" in result.stdout


def test_a_dependency_nothing_makes_is_missing(project: Path) -> None:
    git(project, "rm", "-q", "score.py")
    result = lock_check(project)
    assert result.returncode == 1
    assert (
        "  score.py (missing: no stage makes it, and neither git nor DVC tracks it): changed for score" in result.stdout
    )


def test_not_a_dvc_project_is_a_usage_error(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    result = lock_check(tmp_path)
    assert result.returncode == 2 and result.stdout + result.stderr
    assert "Traceback" not in result.stderr
