"""Die with any ancestor: a killed `dvc`, `make` or CI step takes this process, and its Triton, down.

The kernel's parent-death signal covers only the direct parent, and `dvc repro` runs a stage as a
grandchild or deeper. So every entry point notes its ancestors at start (pid and start time, from
/proc) and a daemon thread checks them once a second; when one has ended, the main thread gets
SIGTERM, which unwinds as an interruption: servers are stopped, scratch removed, no report written.
A process started to outlive its launcher (nohup, setsid, TRAIN_TO_TRITON_LIFELINE=0) is not watched.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
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


def detached() -> bool:
    """Started to outlive its launcher: under nohup (SIGHUP ignored), as a session leader (setsid), or
    opted out with TRAIN_TO_TRITON_LIFELINE=0. Such a process (a server left running) is not watched."""
    return (
        signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        or os.getsid(0) == os.getpid()
        or os.environ.get("TRAIN_TO_TRITON_LIFELINE") == "0"
    )


def watch(on_end: Callable[[int], None]) -> threading.Event | None:
    """Call `on_end(pid)` (from a daemon thread) when an ancestor has ended; set the returned event to stop.

    None where there is nothing to watch: no /proc (not Linux), or a detached process.
    """
    if not Path("/proc/self/stat").exists() or detached():
        return None
    chain = ancestors()
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(POLL_S):
            pid = ended(chain)
            if pid is not None:
                stop.set()
                on_end(pid)

    threading.Thread(target=loop, name="lifeline", daemon=True).start()
    return stop
