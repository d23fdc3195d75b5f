"""The whole process tree goes together: killing any ancestor stops the run and its Triton, with no report."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.core import lifeline

from conftest import command_line, tool_env, wait_until

# the grandparent test starts the real parity and Triton: integration; the others are quick


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def attached() -> None:
    """preexec_fn: SIGHUP back to its default, in case this test runs under nohup (then every child is detached)."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def test_ancestors_are_this_process_chain() -> None:
    chain = lifeline.ancestors()
    assert chain and chain[0][0] == os.getppid()
    assert lifeline.ended(chain) is None


@pytest.mark.integration
def test_killing_a_grandparent_stops_parity_and_its_triton(in_workspace: Path, tmp_path: Path) -> None:
    """grandparent (killed with SIGKILL) -> parent shell (alive) -> parity -> tritonserver."""
    reports, logs, repository = tmp_path / "reports", tmp_path / "logs", tmp_path / "repository"
    shutil.copytree(in_workspace / "model_repository" / "mnist_onnx", repository / "mnist_onnx")  # one model: quick
    parity = (
        f"{sys.executable} -m evaluate.parity model=mnist_onnx model_repository={repository} "
        f"paths.parity_reports={reports} paths.logs={logs} > {tmp_path / 'out.txt'} 2>&1; true"
    )
    grandparent = subprocess.Popen(
        ["bash", "-c", f"bash -c '{parity}'; true"],
        cwd=in_workspace,
        env=tool_env(),
        start_new_session=True,
        preexec_fn=attached,  # noqa: PLW1509
    )
    try:
        parent = wait_until(lambda: children(grandparent.pid), 30, "the parent shell")[0]
        python = wait_until(lambda: children(parent), 30, "the parity process")[0]
        triton = wait_until(
            lambda: [c for c in children(python) if "tritonserver" in command_line(c)], 120, "tritonserver"
        )[0]
        os.kill(grandparent.pid, signal.SIGKILL)
        grandparent.wait()
        started = time.monotonic()
        wait_until(lambda: not command_line(python) and not command_line(triton), 30, "parity and tritonserver to stop")
        stopped_in = time.monotonic() - started
    finally:  # whatever happened, nothing of the test outlives it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(grandparent.pid, signal.SIGKILL)
    out = (tmp_path / "out.txt").read_text()
    assert f"an ancestor process (pid {grandparent.pid}) ended: stopped" in out, out[-2000:]
    assert not reports.exists() or not list(reports.iterdir())  # no report vouches for an unfinished run
    print(f"parity and its Triton stopped {stopped_in:.1f} s after the grandparent was killed")


@pytest.mark.integration
def test_killing_parity_kills_its_triton_at_once(in_workspace: Path, tmp_path: Path) -> None:
    """`kill -9` of parity: its server goes by the kernel's SIGKILL (its parent-death signal), not through Triton's
    own shutdown on SIGTERM, which unloaded every model first and kept it 5-6 s."""
    logs, repository = tmp_path / "logs", tmp_path / "repository"
    shutil.copytree(in_workspace / "model_repository" / "mnist_onnx", repository / "mnist_onnx")
    with open(tmp_path / "out.txt", "wb") as out:
        python = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "evaluate.parity",
                "model=mnist_onnx",
                f"model_repository={repository}",
                f"paths.parity_reports={tmp_path / 'reports'}",
                f"paths.logs={logs}",
            ],
            cwd=in_workspace,
            env=tool_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        triton = wait_until(
            lambda: [c for c in children(python.pid) if "tritonserver" in command_line(c)], 120, "tritonserver"
        )[0]
        wait_until(
            lambda: (
                list(logs.glob("triton-*.log"))
                and "Started GRPCInferenceService" in next(logs.glob("triton-*.log")).read_text(errors="replace")
            ),
            120,
            "Triton ready",
        )
        python.kill()
        python.wait()
        started = time.monotonic()
        wait_until(lambda: not command_line(triton), 30, "tritonserver to stop")
        stopped_in = time.monotonic() - started
    finally:
        with contextlib.suppress(ProcessLookupError):
            python.kill()
    log = next(logs.glob("triton-*.log")).read_text(errors="replace")
    assert "Signal (15) received" not in log and "successfully unloaded" not in log, log[-2000:]
    print(f"tritonserver gone {stopped_in:.1f} s after parity was killed")


def test_a_second_sigterm_does_not_cut_the_clean_up_short(tmp_path: Path) -> None:
    """The whole tree gets SIGTERM from a CI cancel, then the ancestors' end sends another: clean-up runs on."""
    from conftest import ROOT

    code = (
        "import time\nfrom pipelines.core import cli\ncli._terminate_on_sigterm()\n"
        "try:\n    print('ready', flush=True)\n    time.sleep(30)\n"
        "except cli.Terminated:\n    print('unwinding', flush=True)\n    time.sleep(1.5)\n"
        "    print('cleaned up', flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=tool_env(), stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout.readline().strip() == "unwinding"
    proc.send_signal(signal.SIGTERM)  # during the clean-up
    out, _ = proc.communicate(timeout=30)
    assert out.strip() == "cleaned up"


def test_a_detached_process_is_not_watched() -> None:
    """A server meant to outlive its shell (nohup, setsid, or the opt-out) keeps running when the shell ends."""
    from conftest import ROOT

    probe = [sys.executable, "-c", "from pipelines.core import lifeline; print(lifeline.detached())"]

    def run(cmd: list[str], **env: str) -> str:
        return subprocess.run(
            cmd,
            cwd=ROOT,
            env={**tool_env(), **env},
            capture_output=True,
            text=True,
            timeout=60,
            preexec_fn=attached,
            check=False,
        ).stdout.strip()

    assert run(probe) == "False"
    assert run(["nohup", *probe]) == "True"
    assert run(["setsid", "--wait", *probe]) == "True"
    assert run(probe, TRAIN_TO_TRITON_LIFELINE="0") == "True"
