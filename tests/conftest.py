"""Shared fixtures: config composition, and one real `dvc repro` in a temporary copy of the project.

The pipeline run is session-scoped: the pipeline test checks it, and the integration tests use
its artifacts (trained model, exports, assembled repository) against the real embedded Triton.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
BIN = Path(sys.executable).parent
# what never travels into the temporary project copy: environment, caches and pipeline outputs
TOP_LEVEL_IGNORE = {".git", ".venv", "data", "models", "model_repository", "reports", "logs", "outputs", "multirun"}


def copy_ignore(directory: str, names: list[str]) -> set[str]:
    ignored = {n for n in names if n in ("__pycache__", ".pytest_cache")}
    if Path(directory) == ROOT:
        ignored |= TOP_LEVEL_IGNORE & set(names)
    if Path(directory) == ROOT / ".dvc":
        ignored |= {"cache", "tmp"} & set(names)
    return ignored


def compose_config(name: str, overrides: list[str] | tuple[str, ...] = ()):
    """Compose conf/<name>.yaml as the entry point would, without Hydra's runtime."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


def tool_env() -> dict[str, str]:
    """Environment in which `python` and `dvc` are this interpreter's, as after `source .venv/bin/activate`."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cmd(args: list[str], cwd: Path, timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=timeout)


def copy_project(dest: Path) -> Path:
    shutil.copytree(ROOT, dest, ignore=copy_ignore)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


# Small settings for the test copy: the pipeline must be real, not slow.
SMALL = {
    "conf/train.yaml": {"epochs: 20": "epochs: 2"},
    # the benchmark stage: every model, tiny windows, no Flask (tests/test_benchmark.py measures that path)
    "conf/load/quick.yaml": {"duration_s: 1": "duration_s: 0.2", "warmup_s: 0.3": "warmup_s: 0.05",
                             "measure: [in_process, flask, grpc]": "measure: [in_process, grpc]"},
}


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """A project copy on which `dvc repro` ran once (the pipeline test asserts it succeeded)."""
    workspace = copy_project(tmp_path_factory.mktemp("pipeline") / "project")
    for name, changes in SMALL.items():
        conf = workspace / name
        text = conf.read_text()
        for old, new in changes.items():
            assert old in text, f"{name} no longer has {old!r}: update SMALL"
            text = text.replace(old, new)
        conf.write_text(text)
    result = run_cmd([str(BIN / "dvc"), "repro"], workspace)
    return workspace, result


@pytest.fixture(scope="session")
def workspace(pipeline_run: tuple[Path, subprocess.CompletedProcess]) -> Path:
    """The project copy with every artifact built; skips dependent tests if the pipeline itself failed."""
    path, result = pipeline_run
    if result.returncode != 0:
        pytest.fail(f"dvc repro failed in the test workspace:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return path


@pytest.fixture
def in_workspace(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test from inside the built workspace (config paths are relative to the project root)."""
    monkeypatch.chdir(workspace)
    return workspace
