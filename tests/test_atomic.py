"""Atomic outputs: a failure leaves the previous artifact untouched and no temporary behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.core import scratch
from pipelines.core.atomic import atomic_path, write_json
from pipelines.serving import embedded


def test_file_replaced_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert list(tmp_path.iterdir()) == [target]


def test_directory_swapped_whole(tmp_path: Path) -> None:
    target = tmp_path / "repo"
    (target / "a").mkdir(parents=True)
    with pytest.raises(ValueError), atomic_path(target, directory=True) as tmp:
        (tmp / "b").mkdir()
        raise ValueError
    assert [p.name for p in target.iterdir()] == ["a"]
    with atomic_path(target, directory=True) as tmp:
        (tmp / "b").mkdir()
    assert [p.name for p in target.iterdir()] == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


def test_failed_swap_puts_the_previous_directory_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "repo"
    (target / "a").mkdir(parents=True)
    real_replace = os.replace
    calls = []

    def replace_failing_on_swap(src, dst):  # the 2nd rename (new dir into place) fails, e.g. EXDEV/EIO
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError("simulated rename failure")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_failing_on_swap)
    with pytest.raises(OSError, match="simulated"), atomic_path(target, directory=True) as tmp:
        (tmp / "b").mkdir()
    assert [p.name for p in target.iterdir()] == ["a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


def test_outputs_get_normal_permissions(tmp_path: Path) -> None:
    write_json(tmp_path / "m.json", {"a": 1})
    assert (tmp_path / "m.json").stat().st_mode & 0o044  # readable by others, unlike mkstemp's 0600


def test_suffix_is_kept_for_picky_writers(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "model.keras", suffix=".keras") as tmp:
        assert tmp.suffix == ".keras"
        tmp.write_text("x")
    assert (tmp_path / "model.keras").read_text() == "x"


def dead_pid() -> int:
    """The pid of a process that has ended (it is not reused within a test's lifetime in practice)."""
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_what_a_killed_writer_left_is_swept_by_the_next_one(tmp_path: Path) -> None:
    target = tmp_path / "model_repository"
    stale = tmp_path / f".model_repository.{dead_pid()}-k1ll3d.tmp"  # a writer killed with SIGKILL left this
    (stale / "mnist_onnx").mkdir(parents=True)
    alive = tmp_path / f".model_repository.{os.getpid()}-w0rk1ng.tmp"  # a writer still at work: untouched
    alive.mkdir()
    with atomic_path(target, directory=True) as tmp:
        (tmp / "x").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, alive.name])


def test_scratch_dirs_are_removed_and_swept(tmp_path: Path) -> None:
    from pipelines.core import scratch

    stale = tmp_path / f"triton-backends-{dead_pid()}-abc"
    stale.mkdir()
    with scratch.scratch_dir(tmp_path, "triton-backends-") as work:
        assert work.name.startswith(f"triton-backends-{os.getpid()}-") and not stale.exists()
        with pytest.raises(RuntimeError), scratch.scratch_dir(tmp_path, "other-") as inner:
            raise RuntimeError("boom")
        assert not inner.exists()
    assert list(tmp_path.iterdir()) == []


def _fake_stub(backends: Path, region: str) -> subprocess.Popen:
    """A process that looks like a Python-backend stub run from `backends`: `<stub> <model file> <shm region>`
    (a copy of the Python interpreter under the stub's name, running a script that waits)."""
    stub = backends / "python" / embedded.STUB
    stub.parent.mkdir(parents=True)
    shutil.copy2(os.path.realpath(sys.executable), stub)
    model = backends / "model.py"
    model.write_text("import time\ntime.sleep(600)\n")
    Path(f"/dev/shm/{region}").write_bytes(b"\0" * 64)
    proc = subprocess.Popen([str(stub), str(model), region], start_new_session=True)
    cmdline = Path(f"/proc/{proc.pid}/cmdline")
    for _ in range(200):  # until the kernel shows its command line (empty for a moment after exec)
        if cmdline.read_bytes():
            break
        time.sleep(0.01)
    return proc


def test_stubs_left_by_a_dead_tritonserver_are_stopped_and_their_shared_memory_freed(tmp_path: Path) -> None:
    region = f"triton_test_shm_region_{os.getpid()}"
    stub = _fake_stub(tmp_path / "backends", region)
    bystander = subprocess.Popen(["sleep", "600"])  # not run from that directory: left alone
    try:
        assert embedded.reap_stubs(tmp_path / "backends") == 1
        assert stub.wait(timeout=10) == -signal.SIGKILL  # it ignored nothing: SIGKILL
        assert not Path(f"/dev/shm/{region}").exists()
        assert bystander.poll() is None
    finally:
        for proc in (stub, bystander):
            proc.kill()
        Path(f"/dev/shm/{region}").unlink(missing_ok=True)


def test_the_next_start_stops_what_a_killed_owner_left_running(tmp_path: Path) -> None:
    child = subprocess.Popen(["true"])  # its pid names the stale directory: an owner that has ended
    child.wait()
    stale = tmp_path / f"triton-backends-{child.pid}-abc"
    region = f"triton_test_shm_region_{os.getpid()}_stale"
    stub = _fake_stub(stale / "backends", region)
    try:
        with scratch.scratch_dir(tmp_path, "triton-backends-", embedded.reap_stubs):
            pass
        assert stub.wait(timeout=10) == -signal.SIGKILL and not stale.exists()
        assert not Path(f"/dev/shm/{region}").exists()
    finally:
        stub.kill()
        Path(f"/dev/shm/{region}").unlink(missing_ok=True)
