"""Atomic outputs: a stage that fails never leaves a half-written artifact where DVC or Triton would read it."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipelines.core import scratch


@contextlib.contextmanager
def atomic_path(
    target: str | Path, *, directory: bool = False, suffix: str = ".tmp", private: bool = False
) -> Iterator[Path]:
    """Yield a temporary sibling of `target`; on success it replaces `target` in one rename.

    On failure the temporary is removed and `target` is left as it was. `suffix` is for writers
    that insist on a file extension (Keras wants `.keras`); `private` keeps a file the owner's alone (a secret).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}."  # hidden siblings, git-ignored (.gitignore: .*.tmp, .*.old-*)
    scratch.sweep(target.parent, prefix)  # what a killed writer left
    scratch.sweep(target.parent, prefix + "old-")
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=scratch.owned_prefix(prefix), suffix=suffix, dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=scratch.owned_prefix(prefix), suffix=suffix, dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if not private:
            os.chmod(tmp, (0o777 if directory else 0o666) & ~_umask())  # mkstemp/mkdtemp make them private
        if directory:
            _replace_dir(tmp, target)
        else:
            os.replace(tmp, target)
    except BaseException:
        scratch.remove_path(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace_dir(tmp: Path, target: Path) -> None:
    """Swap a finished directory into place; the old one is removed only after the swap."""
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-")
        scratch.remove_path(old)
        os.replace(target, old)
        try:
            os.replace(tmp, target)
        except BaseException:
            os.replace(old, target)  # put the previous directory back
            raise
        scratch.remove_path(old)
    else:
        os.replace(tmp, target)


def write_text(target: str | Path, text: str, private: bool = False) -> Path:
    with atomic_path(target, private=private) as tmp:
        tmp.write_text(text)
    return Path(target)


def write_json(target: str | Path, data: Any) -> Path:
    return write_text(target, json.dumps(data, indent=2, sort_keys=False) + "\n")


def prune_reports(directories: list[Path], served: set[str], keep: tuple[str, ...] = ()) -> None:
    """Remove the `<model>.json` reports of models no longer served, after a model=all run has written every
    served one (reports persist between runs: DVC's `persist: true`)."""
    for directory in directories:
        for path in Path(directory).glob("*.json"):
            if path.stem not in served and path.name not in keep:
                path.unlink()
