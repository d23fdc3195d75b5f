"""A launched server's process, whichever kind started it: made to die with its parent, told why it exited (a crash's
C++ exception read from its own lines of the log), and stopped, gracefully or not.

The embedded tritonserver and the `docker run` client are stopped and explained here alike, whichever launcher
started them; the nginx front (and the front-cost benchmark's) is made to die with its parent by the same call.
"""

from __future__ import annotations

import ctypes
import logging
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from pipelines.serving.endpoints import last_log_line

log = logging.getLogger(__name__)


def die_with_parent(cmd: list[str], graceful: bool = True) -> tuple[list[str], Any]:
    """(command, preexec_fn) so that the kernel signals the server if the Python process that started it dies:
    SIGTERM for a server others use (Triton's own shutdown), SIGKILL for one launched for a single command, which
    would be killed at its end anyway (SIGTERM kept it 5-6 s past a `kill -9` of parity, unloading its models).
    util-linux's `setpriv --pdeathsig` sets it in the exec'd server itself; only without setpriv is a
    preexec_fn used (Python code between fork and exec, which a thread of ours makes less safe)."""
    sig = signal.SIGTERM if graceful else signal.SIGKILL
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, "--pdeathsig", sig.name.removeprefix("SIG"), "--", *cmd], None
    libc = ctypes.CDLL("libc.so.6", use_errno=True)  # loaded in the parent: no dlopen after fork

    def preexec() -> None:
        libc.prctl(1, sig)  # PR_SET_PDEATHSIG

    return cmd, preexec


def exit_reason(proc: subprocess.Popen, log_file: Path, since: int = 0) -> str | None:
    """Why a launched server's process is gone (its log's telling line), None while it runs; `since`: where this
    process's lines start in a log that restarts share."""
    if proc.poll() is None:
        return None
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode)
        if sig in CRASH_SIGNALS:  # its own fault: the C++ exception that ended it, where the log has one
            cause = _crash_cause(log_file, since)
            return f"tritonserver crashed ({sig.name}{': ' + cause if cause else ''}; log: {log_file})"
        # killed from outside: its log's last error says nothing about why
        return f"tritonserver was killed ({sig.name}; log: {log_file})"
    return f"tritonserver exited with code {proc.returncode}: {last_log_line(log_file)} (log: {log_file})"


CRASH_SIGNALS = (signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL)


def _crash_cause(log_file: Path, since: int = 0) -> str:
    """The last uncaught C++ exception in the log from byte `since` on (`what():  std::bad_alloc`), or '': an
    earlier crash's, in the lines before, is not this one's."""
    try:
        with open(log_file, "rb") as fh:
            fh.seek(since)
            lines = fh.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    causes = [line.split("what():", 1)[1].strip() for line in lines if "what():" in line]
    return causes[-1] if causes else ""


def stop_process(proc: subprocess.Popen, grace_s: float, graceful: bool = True) -> None:
    """SIGTERM and Triton's own shutdown (models unloaded, 1-4 s), or SIGKILL when nothing more is asked of it."""
    if proc.poll() is not None:
        return
    if not graceful:
        proc.kill()
        proc.wait()
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        log.warning("tritonserver ignored SIGTERM for %g s; killing it", grace_s)
        proc.kill()
        proc.wait()
