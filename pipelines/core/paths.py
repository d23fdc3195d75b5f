"""Where the project is, and a path as messages, reports and spec files show it: relative to the project where it
lies inside it (so two clones' records compare equal and messages stay short), else absolute."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def project_path(path: str | Path) -> str:
    """`path` relative to the project (POSIX separators) where it lies inside it; else its absolute path."""
    resolved = Path(path).resolve()
    return resolved.relative_to(PROJECT_ROOT).as_posix() if resolved.is_relative_to(PROJECT_ROOT) else str(resolved)
