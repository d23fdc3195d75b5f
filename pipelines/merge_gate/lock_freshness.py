"""Does the committed `dvc.lock` record this commit's own code and params? The check CI runs first.

A proof is only this commit's proof when `dvc.lock` was written by `dvc repro` on the code and params the commit
holds. DVC says which dependencies differ from the lock (`dvc status --json`); what counts here is what git tracks
(code, config, params, the committed reports) and each stage's command. Outputs absent from a fresh clone, and
dependencies that are other stages' outputs, are not a staleness: they are what `dvc repro` or `dvc pull` make.
What a fresh clone cannot hash, the lock itself says: each dependency that another stage makes, or that a `.dvc`
file tracks (a user's model, `dvc add`ed), must be recorded with the hash its maker recorded (a lock merged by hand,
a model retrained and `dvc add`ed again without `dvc repro`, are not). A dependency nothing makes and nothing
tracks is missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipelines.core.errors import ConfigError, HostError
from pipelines.merge_gate.baseline_check import git


@dataclass(frozen=True)
class StaleEntry:
    """One way a stage's lock entry no longer matches the tree: `what` is a path (with the params that changed) or
    the stage's command."""

    stage: str
    what: str


@dataclass(frozen=True)
class Made:
    """Every path a stage's lock entry or a `.dvc` file records as made or tracked, with its hash."""

    hashes: dict[str, str | None]  # path -> md5
    makers: dict[str, str]  # path -> the stage that makes it, or its .dvc file

    def made(self, path: str) -> bool:
        """`path` is made by a stage or tracked by DVC (itself, or inside such a folder)."""
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.hashes)


def made_by(lock: Mapping[str, Any], dvc_files: Mapping[str, Mapping[str, Any]]) -> Made:
    """The outputs `lock` (a parsed dvc.lock) records, and the paths the `.dvc` files (path -> parsed file) track."""
    hashes: dict[str, str | None] = {}
    makers: dict[str, str] = {}
    for stage, entry in (lock.get("stages") or {}).items():
        for out in entry.get("outs") or []:
            hashes[out["path"]], makers[out["path"]] = out.get("md5"), stage
    for dvc_file, tracked in dvc_files.items():
        for out in tracked.get("outs") or []:
            path = (Path(dvc_file).parent / out["path"]).as_posix().removeprefix("./")
            hashes[path], makers[path] = out.get("md5"), dvc_file
    return Made(hashes, makers)


def unmatched(lock: Mapping[str, Any], made: Made) -> list[StaleEntry]:
    """Dependencies recorded with another hash than the one their maker recorded."""
    found = []
    for stage, entry in (lock.get("stages") or {}).items():
        for dep in entry.get("deps") or []:
            path = dep["path"]
            if path in made.hashes and dep.get("md5") != made.hashes[path]:
                found.append(StaleEntry(stage, f"{path} (recorded as another version than {made.makers[path]}'s)"))
    return found


def stale_entries(status: Mapping[str, Any], tracked: Callable[[str], bool], made: Made) -> list[StaleEntry]:
    """The entries of DVC's status (`dvc status --json`) that say the lock is not the tree's, in DVC's order."""
    found: list[StaleEntry] = []
    for stage, changes in status.items():
        for change in changes:
            if change == "changed command":
                found.append(StaleEntry(stage, "the stage's cmd"))
            elif change == "always changed":
                continue  # a stage without dependencies: nothing recorded to be stale
            elif isinstance(change, Mapping):
                for kind, paths in change.items():
                    if kind in ("changed deps", "changed outs"):
                        found += [StaleEntry(stage, what) for what in _changed(paths, tracked)]
                    if kind == "changed deps":
                        found += [
                            StaleEntry(stage, f"{path} (missing: no stage makes it, and neither git nor DVC tracks it)")
                            for path, state in paths.items()
                            if state == "deleted" and not made.made(path)
                        ]
    return found


def _changed(paths: Mapping[str, Any], tracked: Callable[[str], bool]) -> Iterable[str]:
    for path, state in paths.items():
        if isinstance(state, Mapping):  # a params file: {param: "modified" | "new" | "deleted"}
            names = sorted(str(p) for p in state)
            yield f"{path} ({', '.join(names)})"
        elif state == "new" or (state == "modified" and tracked(path)):  # "new": not in the lock
            yield path


def dvc_status(dvc_file: str) -> dict[str, Any]:
    """`dvc status --json <dvc_file>`: per stage, what differs from its lock entry."""
    if not Path(dvc_file).is_file():
        raise ConfigError(f"{dvc_file} not found: run from the project's root")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "dvc", "status", "--json", dvc_file],  # this environment's DVC, on PATH or not
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise HostError(f"dvc status {dvc_file} took over 5 minutes") from exc
    if "No module named dvc" in proc.stderr:
        raise HostError(f"DVC is not installed for {sys.executable}: `make setup` (the check runs with .venv's)")
    if proc.returncode != 0:
        raise ConfigError(f"dvc status {dvc_file}: {(proc.stderr.strip().splitlines() or ['failed'])[-1]}")
    return json.loads(proc.stdout or "{}")


def git_files() -> set[str]:
    return {f for f in git("ls-files", "-z").split("\0") if f}


def git_tracked(files: set[str]) -> Callable[[str], bool]:
    """Whether git tracks a path (a file, or a folder with a tracked file in it)."""
    folders = {str(parent) for f in files for parent in Path(f).parents}
    return lambda path: path.rstrip("/") in files or path.rstrip("/") in folders


def read_made(dvc_file: str, files: set[str]) -> tuple[dict[str, Any], Made]:
    """The parsed lock of `dvc_file` and what it and the git-tracked `.dvc` files record as made."""
    lock_path = Path(dvc_file).with_suffix(".lock")
    try:
        lock = yaml.safe_load(lock_path.read_text()) if lock_path.is_file() else {}
        tracked = {f: yaml.safe_load(Path(f).read_text()) or {} for f in sorted(files) if f.endswith(".dvc")}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{lock_path} or a .dvc file does not read as YAML: {exc}") from None
    return lock or {}, made_by(lock or {}, tracked)


def message(entries: list[StaleEntry], dvc_file: str) -> str:
    """One line per changed thing, with the stages whose lock entry it makes stale, then what to run."""
    by_what: dict[str, list[str]] = {}
    for entry in entries:
        by_what.setdefault(entry.what, []).append(entry.stage)
    lock = str(Path(dvc_file).with_suffix(".lock"))
    lines = [f"{lock} does not record this commit's code and params (the committed proof is not this commit's):"]
    lines += [f"  {what}: changed for {_stages(stages)}" for what, stages in by_what.items()]
    lines.append(f"run `dvc repro {dvc_file}`, then commit {lock} with the reports it rewrites")
    lines.append("(DVC hashes whole folders: a file git does not track inside one counts too; `git status` shows it)")
    return "\n".join(lines)


def _stages(stages: list[str], shown: int = 6) -> str:
    named = ", ".join(stages[:shown])
    return named if len(stages) <= shown else f"{named} and {len(stages) - shown} more stage(s)"
