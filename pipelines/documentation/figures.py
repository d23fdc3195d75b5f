"""The figures in docs/, rendered from the committed reports, never typed by hand.

A document marks each generated table with `<!-- figures:<name> -->` ... `<!-- /figures -->`;
`render` replaces what is between the marks with the table `FIGURES[name]` renders from the reports
(`python -m evaluate.doc_figures`, `make docs`). tests/test_docs.py fails when a document's tables are not
what the committed reports give, so a report and the prose that quotes it cannot drift apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pipelines.comparison.parity_report import ParityReport
from pipelines.core.errors import ArtifactError
from pipelines.performance.benchmark_report import recorded_precisions

T = TypeVar("T")
MARK = re.compile(r"(<!-- figures:(?P<name>[a-z_]+) -->\n)(?P<body>.*?)(<!-- /figures -->)", re.S)


@dataclass(frozen=True)
class CommittedReports:
    """Where the committed reports are."""

    hardening: Path  # reports/hardening.json
    benchmark: Path  # reports/benchmark/: one JSON per model
    parity: Path  # reports/parity/: one JSON per model
    compatibility: Path | None = None  # reports/compatibility.json: the corpus run (tests/test_corpus.py)


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: no readable report ({exc}); run the stage that writes it") from None


def _report(path: Path, parse: Callable[[dict[str, Any]], T]) -> T:
    """A report read by `parse`; one written by another version (a key missing or malformed) is the user's to redo."""
    data = _read(path)
    try:
        return parse(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ArtifactError(
            f"{path}: not a report this version reads ({type(exc).__name__}: {exc}); run the stage that writes it"
        ) from None


def hardening(reports: CommittedReports) -> str:
    """reports/hardening.json: what each hostile request got, and the good requests beside it."""
    return _report(reports.hardening, _hardening_table)


def _hardening_table(report: dict[str, Any]) -> str:
    rows = [
        "| case | the hostile requests got (rounds/s) | good requests answered | good p50 (x alone) | good p90 "
        "| peak memory of Triton, stubs and nginx (x idle) |",
        "|---|---|---|---:|---:|---:|",
    ]
    idle = {c["good_model"]: c["peak_memory_mb"] for c in report["cases"] if not c["hostile_statuses"]}
    for case in report["cases"]:
        answers = ", ".join(f"{n} x {status}" for status, n in case["hostile_statuses"].items()) or "-"
        if case["hostile_statuses"]:
            answers += f" ({case['hostile_rate']}/s)"
        answered = case["good_requests"] - case["good_failures"]
        slowdown = f" ({case['slowdown_p50']}x)" if case["slowdown_p50"] else ""
        memory = case["peak_memory_mb"] / idle[case["good_model"]] if idle.get(case["good_model"]) else None
        where = " (straight to Triton)" if case["direct"] else ""
        rows.append(
            f"| {case['what']}{where} | {answers} | {answered} of {case['good_requests']} ({case['good_model']}) "
            f"| {case['good_p50_ms']} ms{slowdown} | {case['good_p90_ms']} ms | {case['peak_memory_mb']} MB"
            + (f" ({memory:.2f}x) |" if memory else " |")
        )
    survived = all(case["server_survived"] for case in report["cases"])
    restart = report["restart"]
    rows += [
        "",
        (
            "The server serving at the start was the one serving at the end of every case."
            if survived
            else "A server died during a case: the front let a hostile request through."
        )
        + (
            f" Sent straight to the server's own port, the 90-byte request killed it and supervision had it "
            f"ready again {restart['ready_again_s']} s later."
            if restart["ready_again_s"] is not None
            else " Sent straight to the server's own port, the 90-byte request did not bring it back in time."
        ),
        "",
        "What the front costs a good request (batch 1, p50 straight to Triton, through the front, and through a "
        "bare nginx that only proxies, in turn):",
        "",
        "| model | protocol | requests each | straight to Triton | through the front | cost | bare nginx hop |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for cost in report["front_cost"]:
        rows.append(
            f"| {cost['model']} | {cost['protocol']} | {cost['requests']} | {cost['direct_p50_ms']} ms "
            f"| {cost['front_p50_ms']} ms | {cost['cost_ms']:+.3f} ms ({cost['cost_pct']:+.1f}%) "
            f"| {cost['hop_ms']:+.3f} ms |"
        )
    return "\n".join(rows)


def precision_costs(reports: CommittedReports) -> str:
    """reports/benchmark/: each lossy model beside its FP32 model (size, latency, throughput, as ratios)."""
    records = [_report(p, _benchmark_record) for p in sorted(reports.benchmark.glob("*.json"))]
    return recorded_precisions(records)


def _benchmark_record(data: dict[str, Any]) -> dict[str, Any]:
    """A committed benchmark report (ModelBenchmark.recorded); one with timings in it is of an earlier version."""
    if "points" not in data or any("p50_ms" in p for p in data["points"]):
        raise KeyError("points in ratios")
    return {k: data[k] for k in ("model", "precision", "artifact_bytes")} | {"vs_fp32": data.get("vs_fp32")}


def precision_quality(reports: CommittedReports) -> str:
    """reports/parity/: what each lossy model's served answers lost against its FP32 model."""
    rows = [
        "| model | reference | accuracy, FP32 -> served | top-1 agreement "
        "| max / p99 \\|error\\| vs FP32, at most | verdict |",
        "|---|---|---|---:|---|---|",
    ]
    for path in sorted(reports.parity.glob("*.json")):
        report = _report(path, ParityReport.from_dict)
        lossy = report.lossy
        if lossy is None:
            continue
        output, figures = next(iter(lossy.outputs.items()))
        accuracy = (
            f"{lossy.fp32_accuracy:.3f} -> {lossy.served_accuracy:.3f}"
            if lossy.fp32_accuracy is not None and lossy.served_accuracy is not None
            else "(no labels offline)"
        )
        agreement = "-" if figures.top1_agreement is None else f"{figures.top1_agreement:.3f}"
        rows.append(
            f"| `{report.model}` ({report.precision}) | {lossy.reference} | {accuracy} "
            f"| {agreement} | {figures.max_abs:.2g} / {figures.p99_abs:.2g} ({output}) "
            f"| {'passed' if lossy.passed else 'FAILED'} |"
        )
    return "\n".join(rows)


def compatibility_summary(reports: CommittedReports) -> str:
    """reports/compatibility.json: per family, how many architectures went through and where the others stopped."""
    return _report(_compatibility_path(reports), _summary_table)


def compatibility_models(reports: CommittedReports) -> str:
    """reports/compatibility.json: per model, source, tensors, what was proven, its worst error and times."""
    return _report(_compatibility_path(reports), _models_table)


def _compatibility_path(reports: CommittedReports) -> Path:
    if reports.compatibility is None:
        raise ArtifactError("no compatibility report given (paths.compatibility_report)")
    return reports.compatibility


def _summary_table(report: dict[str, Any]) -> str:
    families: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for name, row in report["models"].items():
        families.setdefault("negative cases" if "negative" in row else row["family"], []).append((name, row))
    rows = ["| family | models | proven | stopped (step: why) |", "|---|---:|---:|---|"]
    for family, members in families.items():
        stopped = [
            f"{name} ({row['stopped']['step']}: {row.get('known', {}).get('owner') or 'expected'})"
            for name, row in members
            if not row["passed"]
        ]
        proven = sum(row["passed"] for _, row in members)
        rows.append(f"| {family} | {len(members)} | {proven} | {', '.join(stopped) or '-'} |")
    rows.append(
        f"| **architectures** | **{report['architectures']}** | **{report['passed']}** "
        f"({100 * report['passed'] / report['architectures']:.0f}%) | |"
    )
    seconds = report.get("seconds") or {}
    if seconds:
        rows += [
            "",
            f"The run: {'adding' if report.get('built_early') else 'building and adding'} the "
            f"{len(report['models'])} models {seconds['build_and_add']:.0f} s"
            + (" (their files built from the session's start)" if report.get("built_early") else "")
            + ", then "
            f"`dvc repro parity` (their exports, the repository, parity) {seconds['dvc_repro_parity']:.0f} s, on 2 "
            "cores shared with the rest of the test suite.",
        ]
    return "\n".join(rows)


def _models_table(report: dict[str, Any]) -> str:
    rows = [
        "| model | source | inputs -> outputs | served as: protocols | worst \\|error\\| | add / export s | outcome |",
        "|---|---|---|---|---:|---|---|",
    ]
    for name, row in report["models"].items():
        served = "; ".join(
            f"{fmt}: {', '.join(s['protocols'])}{' + burst' if s['burst'] else ''}" for fmt, s in row["served"].items()
        )
        worst = [s["max_abs"] for s in row["served"].values() if s.get("max_abs") is not None]
        seconds = row["seconds"]
        times = f"{seconds.get('add', '-')} / {seconds.get('export') or '-'}"
        if row["passed"]:
            outcome = "proven"
        else:
            known = row.get("known") or {}
            why = row.get("negative") or (f"{known['owner']}: {known['why']}" if known else "unexplained")
            upstream = f" ({known['upstream']})" if known.get("upstream") else ""
            outcome = f"stopped at {row['stopped']['step']}: {why}{upstream}"
        tensors = f"{', '.join(row['inputs'])} -> {', '.join(row['outputs'])}".replace("|", "\\|")
        rows.append(
            f"| {name} | {row['source']} | {tensors} | {served or '-'} | {f'{max(worst):.2g}' if worst else '-'} "
            f"| {times} | {outcome} |"
        )
    return "\n".join(rows)


FIGURES: dict[str, Callable[[CommittedReports], str]] = {
    "compatibility_summary": compatibility_summary,
    "compatibility_models": compatibility_models,
    "hardening": hardening,
    "precision_costs": precision_costs,
    "precision_quality": precision_quality,
}


def render(text: str, reports: CommittedReports, where: str = "the document") -> str:
    """The document with every marked table rendered afresh from the reports."""

    def table(match: re.Match) -> str:
        name = match["name"]
        if name not in FIGURES:
            raise ArtifactError(f"{where}: no figures named {name!r} (known: {', '.join(FIGURES)})")
        return f"{match[1]}{FIGURES[name](reports)}\n{match[4]}"

    return MARK.sub(table, text)


def marked(text: str) -> list[str]:
    """The names of the tables a document marks."""
    return [m["name"] for m in MARK.finditer(text)]
