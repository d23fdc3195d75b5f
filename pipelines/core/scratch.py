"""Scratch directories and files that no exit path leaves behind for long.

Each is named after the process that owns it (`<prefix><pid>-<random>`). A normal or failing
exit removes it; a process killed outright (SIGKILL, a lost machine) cannot, so every start
first sweeps the entries whose owner is no longer running.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def owned_prefix(prefix: str) -> str:
    """The name prefix of this process's scratch entries."""
    return f"{prefix}{os.getpid()}-"


def sweep(parent: Path, prefix: str, before_removal: Callable[[Path], object] | None = None) -> list[Path]:
    """Remove the entries `<prefix><pid>-...` in `parent` whose owning process has ended; returns them.

    `before_removal(entry)` runs first, e.g. to stop what a killed owner left running from there.
    """
    pattern = re.compile(re.escape(prefix) + r"(\d+)-")
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in Path(parent).iterdir():
            match = pattern.match(entry.name)
            if match and not pid_alive(int(match.group(1))):
                if before_removal is not None:
                    before_removal(entry)
                remove_path(entry)
                removed.append(entry)
    return removed


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def scratch_dir(parent: Path, prefix: str, before_removal: Callable[[Path], object] | None = None) -> Iterator[Path]:
    """A fresh directory `<parent>/<prefix><pid>-<random>`, removed on the way out, stale ones swept first.

    `before_removal` runs on each directory, this one and stale ones, before it is removed.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    sweep(parent, prefix, before_removal)
    path = Path(tempfile.mkdtemp(prefix=owned_prefix(prefix), dir=parent))
    try:
        yield path
    finally:
        if before_removal is not None:
            before_removal(path)
        remove_path(path)
