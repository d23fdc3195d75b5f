"""Shared fixtures: config composition, and one real `dvc repro` in a temporary copy of the project.

The pipeline run is session-scoped and starts with the session, in the background: the tests that need
no pipeline run first, meanwhile. The pipeline test checks it, and the integration tests use its artifacts
(trained model, exports, assembled repository) against the real embedded Triton; long jobs on it
(AFTER_BUILD) run beside them, and the tests that only talk to a server share one (`running_triton`).
"""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipelines.core import cli
from pipelines.core.background import Background

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
    """Compose conf/<name>.yaml as the entry point would, without Hydra's runtime: a copy of its own for each
    caller (a composition costs Hydra 0.2 s of CPU, and the suite asks for the same ones hundreds of times)."""
    return copy.deepcopy(_composed(name, tuple(overrides)))


@functools.cache
def _composed(name: str, overrides: tuple[str, ...]):
    return _library_compose(name, list(overrides))  # under the library's lock: a background thread composes too


_library_compose = cli.compose  # the original: tests/test_cli.py replaces cli.compose with compose_config


def tool_env() -> dict[str, str]:
    """Environment in which `python` and `dvc` are this interpreter's, as after `source .venv/bin/activate`."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def entry_config(path: Path) -> str | None:
    """The primary Hydra config an entry-point module composes (`hydra_main("<name>", ...)`), None if none."""
    found = re.search(r'hydra_main\("(\w+)"', path.read_text())
    return found.group(1) if found else None


def git(repo: Path, *args: str) -> str:
    """git in `repo` with a committer identity (CI machines have none)."""
    return subprocess.run(
        ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def run_cmd(args: list[str], cwd: Path, timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=timeout, check=False)


def copy_project(dest: Path) -> Path:
    shutil.copytree(ROOT, dest, ignore=copy_ignore)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


# Small settings for the test copy: the pipeline must be real, not slow.
SMALL = {
    "conf/train.yaml": {"epochs: 8": "epochs: 2"},
    # the classifiers' parity on 4 images, not 8 (their JSON requests and bursts are most of parity's time)
    **{
        f"conf/model/{m}.yaml": {"  samples: 8": "  samples: 4"}
        for m in ("resnet50_onnx", "densenet121_onnx", "mobilenet_v2_onnx", "resnet50_ensemble")
    },
    # the benchmark stage: every model, tiny windows, no Flask (tests/test_benchmark.py measures that path)
    "conf/load/quick.yaml": {
        "duration_s: 0.8": "duration_s: 0.2",
        "warmup_s: 0.2": "warmup_s: 0.05",
        "measure: [in_process, flask, grpc]": "measure: [in_process, grpc]",
    },
}


USER_MODELS = "byom"  # the workspace folder of tests/user_models.py's models (and byom_perturbed/, their variants)
PIPELINE_FIXTURES = {"pipeline_run", "workspace", "in_workspace"}
# The build is the session's longest path: its end starts the AFTER_BUILD jobs, and the tests that need it wait for
# it. Once it runs, the test process and all it starts (not the build) run at this niceness, taking what it leaves.
BUILD_FIRST = 10


def needs_pipeline(item: pytest.Item) -> bool:
    return bool(PIPELINE_FIXTURES & set(getattr(item, "fixturenames", ())))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that need no pipeline first: they run while the project copy's `dvc repro` runs beside them;
    the ones that wait for an AFTER_BUILD job last: the others run while it does."""

    def group(item: pytest.Item) -> int:
        if set(AFTER_BUILD) & set(getattr(item, "fixturenames", ())):
            return 2
        return int(needs_pipeline(item))

    items.sort(key=group)  # stable: each group keeps its files' order


_BUILD_PIDS: list[int] = []  # the background `dvc repro`: its stages run servers of their own


def own_processes() -> list:
    """This test process's descendants, less the background pipeline build's."""
    import psutil

    mine = psutil.Process().children(recursive=True)  # first: a process the build starts later is in neither
    build: set[int] = set()
    for pid in _BUILD_PIDS:
        try:
            root = psutil.Process(pid)
            build |= {root.pid, *(c.pid for c in root.children(recursive=True))}
        except psutil.NoSuchProcess:
            continue
    return [p for p in mine if p.pid not in build]


class PipelineBuild:
    """`dvc repro` in a project copy with SMALL settings, started in the background, waited for once."""

    def __init__(self, parent: Path, after: Callable[[Path], None]):
        self.workspace = copy_project(parent / "project")
        for name, changes in SMALL.items():
            conf = self.workspace / name
            text = conf.read_text()
            for old, new in changes.items():
                assert old in text, f"{name} no longer has {old!r}: update SMALL"
                text = text.replace(old, new)
            conf.write_text(text)
        self.out, self.err = parent / "repro.out", parent / "repro.err"  # files: a full pipe would stall it
        # the models of a user's own (tests/user_models.py), added as a user adds them, then one `dvc repro` for all
        # (made while DVC builds the demo exports instead, it took 40 s longer: TensorFlow's and PyTorch's thread
        # pools spin against each other on 2 cores)
        script = f"{sys.executable} tests/user_models.py {USER_MODELS} --add && exec {BIN / 'dvc'} repro"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:  # a session of its own: stopped as a group
            self.proc = subprocess.Popen(
                ["bash", "-c", script],
                cwd=self.workspace,
                env=tool_env(),
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _BUILD_PIDS.append(self.proc.pid)
        self._after = after
        self._finished = Background(self._finish, "pipeline build")
        self.result: subprocess.CompletedProcess | None = None

    def _finish(self) -> subprocess.CompletedProcess:
        """Once `dvc repro` ends: its result; when it passed, `after` runs on the workspace before any test sees it."""
        self.proc.wait()
        result = subprocess.CompletedProcess(
            self.proc.args,
            self.proc.returncode,
            self.out.read_text(errors="replace"),
            self.err.read_text(errors="replace"),
        )
        if result.returncode == 0:
            self._after(self.workspace)
        return result

    def wait(self, timeout: float = 1200) -> subprocess.CompletedProcess:
        if self.result is None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.stop()
                raise
            self.result = self._finished.result()
        return self.result

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # every stage stops its server and cleans up (pipelines.core.cli)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="session", autouse=True)
def pipeline_build(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Started with the session when any selected test needs the pipeline: the other tests run meanwhile."""
    if not any(needs_pipeline(item) for item in request.session.items):
        yield None
        return
    used = {name for item in request.session.items for name in getattr(item, "fixturenames", ())}

    def start_jobs(workspace: Path) -> None:  # the AFTER_BUILD jobs a selected test waits for
        for name, job in AFTER_BUILD.items():
            if name in used:
                scratch = tmp_path_factory.mktemp(name)
                clone = shutil.copytree(workspace, scratch / "workspace", symlinks=True)
                _JOBS[name] = Background(lambda job=job, clone=clone, scratch=scratch: job(clone, scratch), name)

    build = PipelineBuild(tmp_path_factory.mktemp("pipeline"), start_jobs)
    os.nice(BUILD_FIRST)
    yield build
    build.stop()


@pytest.fixture(scope="session")
def pipeline_run(pipeline_build: PipelineBuild | None) -> tuple[Path, subprocess.CompletedProcess]:
    """A project copy on which `dvc repro` ran once (the pipeline test asserts it succeeded)."""
    assert pipeline_build is not None, "conftest.needs_pipeline missed this test"
    return pipeline_build.workspace, pipeline_build.wait()


# Long jobs that run beside the other tests: a fixture name -> job(copy, scratch), `copy` a copy of the built
# workspace taken before any test touches it. They start in a thread as soon as the pipeline is built (the tests
# that need no pipeline may still be running), when a selected test uses that fixture, which then waits for the
# job's result (see `job_result`).
AFTER_BUILD: dict[str, Callable[[Path, Path], Any]] = {}
_JOBS: dict[str, Any] = {}


@pytest.fixture(scope="session")
def workspace(pipeline_run: tuple[Path, subprocess.CompletedProcess]) -> Path:
    """The project copy with every artifact built; skips dependent tests if the pipeline itself failed."""
    path, result = pipeline_run
    if result.returncode != 0:
        pytest.fail(f"dvc repro failed in the test workspace:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return path


def job_result(name: str) -> Any:
    """What the AFTER_BUILD job `name` returned (its exception raised here), once it is done."""
    return _JOBS[name].result()


@pytest.fixture
def in_workspace(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test from inside the built workspace (config paths are relative to the project root)."""
    monkeypatch.chdir(workspace)
    return workspace


def file_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file under `root` but Python's bytecode caches."""
    import hashlib

    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="session")
def repository_before_serving(workspace: Path) -> dict[str, str]:
    """The workspace repository's files before the shared server (`running_triton`) first loaded them."""
    return file_hashes(workspace / "model_repository")


@pytest.fixture(scope="session")
def running_triton(
    workspace: Path, repository_before_serving: dict[str, str], tmp_path_factory: pytest.TempPathFactory
):
    """One embedded Triton on the workspace's CPU repository, shared by every test that only talks to it."""
    from pipelines.serving.launcher import serve
    from pipelines.serving.settings import ServerSettings

    local = compose_config("triton", [f"paths.logs={tmp_path_factory.mktemp('triton-logs')}"])
    with serve(ServerSettings.from_cfg(local.server), workspace / local.model_repository) as endpoints:
        yield endpoints


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.05) -> Any:
    """Poll `predicate` until it returns something true, and return that; fail naming `what` after `timeout_s`."""
    import time

    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(interval_s)  # the polling interval, not a wait for anything
    return value


def server_process(http: str) -> Any:
    """The tritonserver listening at `http` (host:port), among every one this test session started."""
    import psutil

    port = http.rsplit(":", 1)[1]

    def listening(process: Any) -> bool:
        words = command_line(process.pid).split()  # empty for a zombie another test's server left until reaped
        return bool(words) and Path(words[0]).name == "tritonserver" and f"--http-port={port}" in words

    (found,) = [p for p in psutil.Process().children(recursive=True) if listening(p)]
    return found


def command_line(pid: int) -> str:
    """A process's command line, words separated by spaces; empty once it is gone or a zombie (psutil raises for
    those: a server that ended in another test and was not yet reaped failed a test that only looked)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""
