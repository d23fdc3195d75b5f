"""FP16 and INT8 models judged by what the model is for: against the FP32 framework model, not elementwise.

A lossy model's served outputs are compared twice, and the report keeps the two apart: with its own
file run in process (serving must add no error: the FP32 tolerance, `parity_judge`), and here with the
FP32 framework model (the cost of the precision): task accuracy on labelled samples, agreement of the
predicted classes, and error statistics in Polygraphy's terms (max, mean, median, 99th percentile of
|error|), each against its own bound (`LossyBounds`). NaN or Inf always fail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pipelines.comparison.recorded_figures import recorded
from pipelines.config.tolerances import LossyBounds
from pipelines.outputs.answers import by_shape, request_pairs
from pipelines.outputs.metrics import agreement, min_cosine, widen
from pipelines.outputs.validator import first_mismatch

OWN_FILE = "own_file"  # a lossy model's strict reference (its file in process), as reports name its accuracy


@dataclass(frozen=True)
class ErrorStats:
    """|served - FP32| over every element of one output, and the lowest per-sample cosine similarity."""

    samples: int
    nonfinite: int
    max_abs: float
    mean_abs: float
    median_abs: float
    p99_abs: float
    cosine: float
    top1_agreement: float | None = None  # class outputs: the predicted class is the FP32 model's
    top5_agreement: float | None = None  # the same five classes, in any order


@dataclass(frozen=True)
class LossyResult:
    """The served model against the FP32 framework model: figures, the bounds, and what broke them."""

    reference: str  # what computed the FP32 outputs
    protocol: str  # whose outputs were judged (every protocol returns the same bits, checked apart)
    outputs: dict[str, ErrorStats]
    bounds: LossyBounds
    fp32_accuracy: float | None = None  # on labelled samples
    served_accuracy: float | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def accuracy_drop(self) -> float | None:
        return accuracy_drop(self.fp32_accuracy, self.served_accuracy)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "protocol": self.protocol,
            "passed": self.passed,
            "fp32_accuracy": self.fp32_accuracy,
            "served_accuracy": self.served_accuracy,
            "accuracy_drop": self.accuracy_drop,
            "bounds": asdict(self.bounds),
            "outputs": {k: recorded(asdict(v), keep_worst=False) for k, v in self.outputs.items()},
            "failures": list(self.failures),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LossyResult:
        return cls(
            data["reference"],
            data["protocol"],
            {k: ErrorStats(**v) for k, v in data["outputs"].items()},
            LossyBounds(**data["bounds"]),
            data.get("fp32_accuracy"),
            data.get("served_accuracy"),
            list(data.get("failures") or []),
        )

    def lines(self) -> list[str]:
        """The report table's rows for the precision's cost."""
        b = self.bounds
        out = [
            f"vs FP32 {self.reference} ({self.protocol}; bounds: max {b.max_abs:g}, mean {b.max_mean_abs:g}, "
            f"median {b.max_median_abs:g}, p99 {b.max_p99_abs:g}, cosine>={b.min_cosine}, "
            f"top1>={b.min_top1_agreement}, top5>={b.min_top5_agreement}, accuracy drop<={b.max_accuracy_drop})"
        ]
        for name, s in self.outputs.items():
            agreement = "" if s.top1_agreement is None else f" top1 {s.top1_agreement:.3f} top5 {s.top5_agreement:.3f}"
            out.append(
                f"  {name}: max {s.max_abs:.3g} mean {s.mean_abs:.3g} median {s.median_abs:.3g} "
                f"p99 {s.p99_abs:.3g} cosine {s.cosine:.6f}{agreement}"
                + (f" non-finite {s.nonfinite}" if s.nonfinite else "")
            )
        if self.accuracy_drop is not None:
            out.append(
                f"  accuracy: FP32 {self.fp32_accuracy:.4f}, served {self.served_accuracy:.4f}, "
                f"drop {self.accuracy_drop:+.4f}"
            )
        return out


def accuracy_drop(fp32_accuracy: float | None, served_accuracy: float | None) -> float | None:
    """FP32 accuracy minus served, in points of accuracy as counted (0.978 - 0.973 is 0.0050000000000000044 in
    floating point: a drop at the bound must not fail on rounding); None without labels."""
    if fp32_accuracy is None or served_accuracy is None:
        return None
    return round(fp32_accuracy - served_accuracy, 9)


def error_stats(served: Any, fp32: Any, classes: bool) -> ErrorStats:
    """Error statistics of one output (batch first, or request by request: `answers.Ragged`); `classes`: its last
    axis holds class scores."""
    pairs = by_shape(request_pairs(served, fp32))
    mismatch = first_mismatch(pairs)
    if mismatch is not None:
        raise ValueError(f"shape mismatch: served {mismatch.served} vs FP32 {mismatch.reference}")
    widened = [widen(got, ref) for got, ref in pairs]
    diff = np.concatenate([np.abs(w.served - w.reference)[w.finite] for w in widened])
    count = sum(len(w.served) for w in widened)
    top1 = top5 = None
    if classes:  # over groups of samples of different shapes: each group's agreement, weighted by its samples
        agreed = np.array([agreement(w.served, w.reference) for w in widened])
        weights = [len(w.served) for w in widened]
        top1, top5 = agreed[0] if len(agreed) == 1 else np.average(agreed, axis=0, weights=weights)
        top1, top5 = float(top1), float(top5)
    return ErrorStats(
        samples=count,
        nonfinite=sum(w.nonfinite for w in widened),
        max_abs=float(diff.max(initial=0.0)),
        mean_abs=float(diff.mean()) if diff.size else 0.0,
        median_abs=float(np.median(diff)) if diff.size else 0.0,
        p99_abs=float(np.percentile(diff, 99)) if diff.size else 0.0,
        cosine=min(min_cosine(w.served, w.reference) for w in widened),
        top1_agreement=top1,
        top5_agreement=top5,
    )


def judge_lossy(
    stats: Mapping[str, ErrorStats],
    bounds: LossyBounds,
    fp32_accuracy: float | None = None,
    served_accuracy: float | None = None,
) -> list[str]:
    """Every bound the figures break, one line each (empty: within every bound)."""
    failures = []
    drop = accuracy_drop(fp32_accuracy, served_accuracy)
    if drop is not None and drop > bounds.max_accuracy_drop:  # what the model is for, first
        failures.append(
            f"accuracy {served_accuracy:.4f} is {drop:.4f} below the FP32 model's {fp32_accuracy:.4f} "
            f"(at most {bounds.max_accuracy_drop:g})"
        )
    for name, s in stats.items():
        if s.nonfinite:
            failures.append(f"{name}: {s.nonfinite} NaN/Inf values")
        for figure, value, bound in (
            ("max |error|", s.max_abs, bounds.max_abs),
            ("mean |error|", s.mean_abs, bounds.max_mean_abs),
            ("median |error|", s.median_abs, bounds.max_median_abs),
            ("p99 |error|", s.p99_abs, bounds.max_p99_abs),
        ):
            if value > bound:
                failures.append(f"{name}: {figure} {value:.3g} > {bound:g}")
        if s.cosine < bounds.min_cosine:
            failures.append(f"{name}: cosine {s.cosine:.6f} < {bounds.min_cosine}")
        for figure, value, bound in (
            ("top-1 agreement", s.top1_agreement, bounds.min_top1_agreement),
            ("top-5 agreement", s.top5_agreement, bounds.min_top5_agreement),
        ):
            if value is not None and value < bound:
                failures.append(f"{name}: {figure} {value:.4f} < {bound}")
    return failures
