"""The merge gate: this run's parity headline figures against a baseline's, judged by thresholds.

DVC's `metrics diff` shows differences but never fails (DVC issue 10408); this is the part that
fails. Inputs are the headline figures the parity stage writes (`ParityReport.headline`), one
mapping per model; the verdict and a Markdown table come out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipelines.performance.benchmark_report import COST_RATIOS, GAIN_RATIOS

Headlines = Mapping[str, Mapping[str, Any]]  # model -> its headline figures


@dataclass(frozen=True)
class Thresholds:
    """How much worse than the baseline a run may be (`thresholds` in conf/gate.yaml)."""

    accuracy_drop: float  # framework accuracy may fall this much (a lossy model's drop from FP32 grow this much)
    tolerance_growth: float  # needed_atol may grow to this factor of the baseline's ...
    tolerance_floor: float  # ... counted from at least this (from a baseline of 0 any noise is infinite growth)
    serving_cost_growth: float = 3.0  # the benchmark's cost ratios may worsen by this factor (timings are noisy)


@dataclass(frozen=True)
class GateRow:
    model: str
    figure: str
    baseline: Any
    now: Any
    verdict: str = "ok"  # ok | FAIL


@dataclass
class GateVerdict:
    rows: list[GateRow] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def markdown(self, title: str) -> str:
        lines = [
            f"### {title}: {'PASS' if self.passed else 'FAIL'}",
            "",
            "| model | figure | baseline | now | change | |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            lines.append(
                f"| {r.model} | {r.figure} | {_table_cell(r.baseline)} | {_table_cell(r.now)} | "
                f"{_change(r.baseline, r.now)} | {'' if r.verdict == 'ok' else '**' + r.verdict + '**'} |"
            )
        if self.failures:
            lines += ["", "Failed because:", *[f"- {f}" for f in self.failures]]
        return "\n".join(lines) + "\n"


FIGURES = (
    "passed",
    "protocols_agree",
    "framework_accuracy",
    "served_accuracy",
    "accuracy_drop",
    "needed_atol",
    "max_abs",
)


def judge_gate(baseline: Headlines, now: Headlines, limits: Thresholds) -> GateVerdict:
    """Every figure of every model in either run, and why the run fails (if it does)."""
    verdict = GateVerdict()
    for model in sorted(set(baseline) | set(now)):
        before, after = baseline.get(model), now.get(model)
        if after is None:
            verdict.failures.append(f"{model}: served in the baseline, gone now")
            verdict.rows.append(GateRow(model, "served", True, False, "FAIL"))
            continue
        failed: dict[str, str] = {}
        if not after.get("passed", False):
            failed["passed"] = "fails parity"
        if after.get("protocols_agree") is False:
            failed["protocols_agree"] = "protocols disagree"
        # served accuracy must equal the framework's; a lossy model's (one with an `accuracy_drop`) is the FP32
        # model's minus the drop its precision costs, and must equal its own file's, which parity's verdict holds
        lossy = "accuracy_drop" in after
        if "served_accuracy" in after and not lossy and after["served_accuracy"] != after.get("framework_accuracy"):
            failed["served_accuracy"] = (
                f"served accuracy {after['served_accuracy']:.4f} differs from the "
                f"framework's {after.get('framework_accuracy')}"
            )
        if before is not None:
            if "framework_accuracy" in before and "framework_accuracy" in after:
                drop = before["framework_accuracy"] - after["framework_accuracy"]
                if drop > limits.accuracy_drop:
                    failed["framework_accuracy"] = (
                        f"framework accuracy fell by {drop:.4f} (more than {limits.accuracy_drop:g})"
                    )
            if before.get("accuracy_drop") is not None and after.get("accuracy_drop") is not None:
                growth = after["accuracy_drop"] - before["accuracy_drop"]
                if growth > limits.accuracy_drop:  # the precision costs more accuracy than it did
                    failed["accuracy_drop"] = (
                        f"the drop from the FP32 model's accuracy grew by {growth:.4f} "
                        f"to {after['accuracy_drop']:.4f} (more than {limits.accuracy_drop:g})"
                    )
            if "needed_atol" in before and "needed_atol" in after:
                allowed = max(float(before["needed_atol"]), limits.tolerance_floor) * limits.tolerance_growth
                if float(after["needed_atol"]) > allowed:
                    failed["needed_atol"] = (
                        f"needed tolerance {after['needed_atol']:.3g} is over {allowed:.3g} "
                        f"({limits.tolerance_growth:g}x the baseline's {before['needed_atol']:.3g})"
                    )
        for figure in FIGURES:
            if figure in after or (before and figure in before):
                verdict.rows.append(
                    GateRow(
                        model,
                        figure,
                        None if before is None else before.get(figure),
                        after.get(figure),
                        "FAIL" if figure in failed else "ok",
                    )
                )
        verdict.failures += [f"{model}: {reason}" for reason in failed.values()]
    return verdict


def judge_serving(baseline: Headlines, now: Headlines, limits: Thresholds) -> GateVerdict:
    """The benchmark's ratios against the baseline's: only a large regression fails (machines and load vary)."""
    verdict = GateVerdict()
    growth = limits.serving_cost_growth
    for model in sorted(set(baseline) | set(now)):
        before, after = baseline.get(model) or {}, now.get(model)
        if after is None:
            continue  # not benchmarked in this run: nothing to judge
        failed = {}
        for figure in (*COST_RATIOS, *GAIN_RATIOS):
            if before.get(figure) is not None and after.get(figure) is None:
                failed[figure] = f"{figure}: no figure now (the baseline's {before[figure]:.3g}): nothing answered"
        for figure in COST_RATIOS:
            b, a = before.get(figure), after.get(figure)
            if b and a is not None and a > b * growth:
                failed[figure] = f"{figure} {a:.3g} is over {growth:g}x the baseline's {b:.3g}"
        for figure in GAIN_RATIOS:
            b, a = before.get(figure), after.get(figure)
            if b and a is not None and a < b / growth:
                failed[figure] = f"{figure} {a:.3g} is under 1/{growth:g} of the baseline's {b:.3g}"
        for figure in dict.fromkeys([*before, *after]):  # the headline's figures, in its order
            verdict.rows.append(
                GateRow(model, figure, before.get(figure), after.get(figure), "FAIL" if figure in failed else "ok")
            )
        verdict.failures += [f"{model}: {reason}" for reason in failed.values()]
    return verdict


def _table_cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _change(before: Any, after: Any) -> str:
    if isinstance(before, bool) or isinstance(after, bool) or before is None or after is None:
        return "" if before == after or before is None else "changed"
    delta = float(after) - float(before)
    return "0" if delta == 0 else f"{delta:+.3g}"
