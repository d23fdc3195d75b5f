"""Die with any ancestor: a killed `dvc`, `make` or CI step takes this process, and its Triton, down.

The kernel's parent-death signal covers only the direct parent, and `dvc repro` runs a stage as a
grandchild or deeper. So every entry point notes its ancestors at start (pid and start time, from
/proc) and a daemon thread checks them once a second; when one has ended, the main thread gets
SIGTERM, which unwinds as an interruption: servers are stopped, scratch removed, no report written.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

POLL_S = 1.0


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a running process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    if fields[0] in ("Z", "X"):  # ended, not yet reaped
        return None
    return int(fields[1]), int(fields[19])


def ancestors(pid: int | None = None) -> list[tuple[int, int]]:
    """(pid, start time) of every ancestor of `pid` (default: this process) up to, not including, init."""
    chain = []
    stat = _stat(pid or os.getpid())
    while stat is not None and stat[0] > 1:
        parent = stat[0]
        stat = _stat(parent)
        if stat is None:
            break
        chain.append((parent, stat[1]))
    return chain


def ended(chain: list[tuple[int, int]]) -> int | None:
    """The first ancestor of `chain` that is no longer the same running process, or None."""
    for pid, started in chain:
        stat = _stat(pid)
        if stat is None or stat[1] != started:
            return pid
    return None


def watch(on_end=None) -> threading.Thread | None:
    """Start the watch (Linux only; elsewhere a no-op). `on_end(pid)` defaults to SIGTERM to this process."""
    if not Path("/proc/self/stat").exists():
        return None
    chain = ancestors()

    def notify(pid: int) -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    def loop() -> None:
        stop = threading.Event()
        while not stop.wait(POLL_S):
            pid = ended(chain)
            if pid is not None:
                (on_end or notify)(pid)
                return

    thread = threading.Thread(target=loop, name="lifeline", daemon=True)
    thread.start()
    return thread
