"""Least privilege for what we launch: a server started by root runs as an unprivileged account instead.

Triton and nginx parse what clients send; neither needs root (their ports are above 1024). When the
launching process is root and `server.run_as` names an account (`nobody` by default), the embedded
Triton and the nginx front each run as that account, provided it can read what they need (the model
repository, the server's files and the Python its stubs run; nginx's log directory): where it cannot
(a Python installed under a home directory only root may enter) that one keeps the launching user,
and says so. Anyone else launches as themselves.
"""

from __future__ import annotations

import functools
import logging
import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
_SAID: set[tuple[str, Path]] = set()


@dataclass(frozen=True)
class Account:
    """Who a launched process runs as (`subprocess.Popen(user=..., group=..., extra_groups=[])`)."""

    name: str
    uid: int
    gid: int

    def popen_args(self) -> dict:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def give(self, *paths: Path) -> None:
        """Hand a scratch directory or file of ours to the account (it writes logs, temp files and its pid there)."""
        for path in paths:
            os.chown(path, self.uid, self.gid)


def unprivileged(name: str | None, needs: Sequence[Path], what: str) -> Account | None:
    """The account to launch `what` as: None when we are not root, `name` is unset, or the account cannot read
    `needs` (each a file or directory, checked as that account would open it)."""
    if os.geteuid() != 0 or not name:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        log.warning("server.run_as=%s: no such account here; %s runs as root", name, what)
        return None
    account = Account(name, entry.pw_uid, entry.pw_gid)
    unreadable = [path for path in needs if not _readable_by(account, Path(path))]
    if unreadable and (what, unreadable[0]) not in _SAID:
        _SAID.add((what, unreadable[0]))  # once a process: every launch here would say the same
        log.warning(
            "%s runs as root: account %s cannot read %s (make it readable to it, or set server.run_as)",
            what,
            name,
            unreadable[0],
        )
    return None if unreadable else account


@functools.lru_cache(maxsize=64)
def _readable_by(account: Account, path: Path) -> bool:
    """Whether `account` can read `path` (and list it, for a directory): asked of the kernel, as that account."""
    test = shutil.which("test") or "/usr/bin/test"
    try:
        executable = path.is_dir() or bool(path.stat().st_mode & 0o100)  # a directory to enter, a program to run
    except OSError:
        return False
    checks = ["-r", str(path), *(["-a", "-x", str(path)] if executable else [])]
    try:
        proc = subprocess.run([test, *checks], **account.popen_args(), capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0
