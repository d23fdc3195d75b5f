"""The public-architecture corpus (tests/corpus_models.py) through the real pipeline: each model built offline with
random weights, added with `export.add`, then one `dvc repro parity` for all of them in a copy of the built
workspace (each exported by its own export_added stage, one repository, one server; the demo models' proofs are
kept: pipelines/model_repository/fingerprint.py). The outcome of each is compared with the committed
compatibility report (reports/compatibility.json, rendered in docs/compatibility.md);
`T2T_WRITE_COMPATIBILITY=1` writes this run's report there instead (then `make docs`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import corpus_models
import pytest

from conftest import AFTER_BUILD, BIN, ROOT, job_result, run_cmd, tool_env

pytestmark = pytest.mark.pipeline

COMMITTED = ROOT / "reports" / "compatibility.json"
FOLDER = "corpus"  # the workspace folder the corpus is built into
STAGE = re.compile(r"Running stage 'export_added@(\w+)'")


def repro_timed(clone: Path, target: str) -> tuple[subprocess.CompletedProcess, dict[str, float]]:
    """`dvc repro <target>`, and each export_added stage's wall time (from one 'Running stage' line to the next)."""
    seconds: dict[str, float] = {}
    current: tuple[str, float] | None = None
    lines: list[str] = []
    with subprocess.Popen(
        [str(BIN / "dvc"), "repro", target],
        cwd=clone,
        env=tool_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Running stage" in line:
                now = time.perf_counter()
                if current is not None:
                    seconds[current[0]] = round(now - current[1], 2)
                found = STAGE.search(line)
                current = (found.group(1), now) if found else None
    if current is not None:
        seconds[current[0]] = round(time.perf_counter() - current[1], 2)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(lines), ""), seconds


_EARLY: dict[str, tuple[subprocess.Popen, Path]] = {}  # the corpus's files, built from the session's start


@pytest.fixture(scope="session", autouse=True)
def corpus_files_built_early(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """The corpus's files need no pipeline: where the session runs the corpus, their build starts with this
    module's first test (among the first of the session), at the test process's niceness, on what the pipeline
    build leaves, so the job after the build only adds and proves them (the job is the session's last to end)."""
    if not any("corpus" in getattr(item, "fixturenames", ()) for item in request.session.items):
        yield
        return
    folder = tmp_path_factory.mktemp("corpus_files")
    with open(folder.parent / "corpus_files.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "tests/corpus_models.py", str(folder)],
            cwd=ROOT,
            env=tool_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    _EARLY["files"] = (proc, folder)
    yield
    if proc.poll() is None:  # the session ended first (interrupted): the build goes with it
        proc.kill()
        proc.wait()


def corpus_run(clone: Path, scratch: Path) -> dict[str, Any]:
    """Add every corpus model (built here unless built from the session's start), then one `dvc repro parity`: the
    compatibility report of this run."""
    start = time.perf_counter()
    built = []
    if "files" in _EARLY:
        proc, folder = _EARLY["files"]
        if proc.wait(timeout=1800) == 0:
            shutil.copytree(folder, clone / FOLDER)
            built = ["--built"]
    made = run_cmd([sys.executable, "tests/corpus_models.py", FOLDER, "--add", *built], clone, timeout=1800)
    added = time.perf_counter()
    repro, exports = repro_timed(clone, "parity")
    done = time.perf_counter()
    report = corpus_models.compatibility(clone, clone / FOLDER, exports)
    report["seconds"] = {"build_and_add": round(added - start, 1), "dvc_repro_parity": round(done - added, 1)}
    report["built_early"] = bool(built)  # build_and_add: the wait for that build, and the adds
    text = json.dumps(report, indent=1, sort_keys=True) + "\n"
    (scratch / "compatibility.json").write_text(text)
    if os.environ.get("T2T_WRITE_COMPATIBILITY") == "1":
        COMMITTED.write_text(text)
    return {"made": made, "repro": repro, "report": report}


AFTER_BUILD["corpus"] = corpus_run


@pytest.fixture
def corpus(workspace: Path) -> dict[str, Any]:
    return job_result("corpus")


def test_the_corpus_covers_the_families_teams_serve() -> None:
    families = {
        f: [n for n in corpus_models.MODELS if corpus_models.FAMILY[n] == f] for f in set(corpus_models.FAMILY.values())
    }
    architectures = [n for n in corpus_models.MODELS if n not in corpus_models.NEGATIVE]
    assert len(architectures) >= 40
    assert len(families["timm"]) >= 10
    assert {"torchvision", "transformers", "keras", "sklearn", "xgboost", "lightgbm", "onnx"} <= set(families)
    for name, (step, owner, why, _) in corpus_models.KNOWN_FAILURES.items():
        assert name in corpus_models.MODELS and step in corpus_models.STEPS and owner in corpus_models.OWNERS, name
        assert why and "\n" not in why


def test_the_corpus_goes_through_as_the_committed_report_says(corpus: dict[str, Any]) -> None:
    made, repro, report = corpus["made"], corpus["repro"], corpus["report"]
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    # the negative models fail parity: the stage records it (record_failure=true) and says so
    assert repro.returncode == 0 and "parity FAILED for: " in repro.stdout, repro.stdout[-3000:]
    assert report["architectures"] >= 40 and report["passed"] >= 0.95 * report["architectures"], report["passed"]
    committed = json.loads(COMMITTED.read_text())["models"]
    for name, row in report["models"].items():
        outcome = (row["passed"], row.get("stopped", {}).get("step"))
        expected = (committed[name]["passed"], committed[name].get("stopped", {}).get("step"))
        assert outcome == expected, (name, row.get("stopped"), "committed:", expected)
        if name in corpus_models.NEGATIVE:
            assert row["stopped"]["step"] == corpus_models.NEGATIVE[name][0], (name, row["stopped"])
        elif not row["passed"]:  # each failure of an architecture is known, where it happens, with its reason
            assert row["stopped"]["step"] == corpus_models.KNOWN_FAILURES[name][0], (name, row["stopped"])
        else:
            assert name not in corpus_models.KNOWN_FAILURES, f"{name} passes now: take it out of KNOWN_FAILURES"
            for fmt, served in row["served"].items():
                assert served["passed"] and {"http", "grpc"} <= set(served["protocols"]), (name, fmt, served)
