"""Atomic outputs: a failure leaves the previous artifact untouched and no temporary behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipelines.atomic import atomic_path, write_json


def test_file_replaced_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
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
    with pytest.raises(ValueError):
        with atomic_path(target, directory=True) as tmp:
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
    with pytest.raises(OSError, match="simulated"):
        with atomic_path(target, directory=True) as tmp:
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
