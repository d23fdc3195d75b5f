"""How far a floating-point output is from its reference, in figures, and judging them against a tolerance.

As in Polygraphy, measuring and deciding are separate: `compare_output` only measures, `judge_output` only decides,
and both results serialise to JSON. The figures also say which tolerance would have been needed. `widen` is where
every floating-point comparison starts (parity, lossy judging, localize, the export self-check).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from pipelines.config.tolerances import Tolerance
from pipelines.data.images import top_k

REL_EPSILON = 1e-6  # keeps the relative error finite where the reference is ~0


@dataclass(frozen=True)
class OutputMetrics:
    """How far served values are from the reference, over all samples of one output."""

    samples: int
    nonfinite: int  # NaN/inf elements, served or reference: always a failure; metrics cover the finite rest
    max_abs: float
    mean_abs: float
    max_rel: float
    cosine: float
    top1_agreement: float | None
    top5_agreement: float | None
    needed_atol: float  # smallest atol that passes at the configured rtol
    needed_rtol: float | None  # smallest rtol that passes at the configured atol (None: none does, ref is 0)
    worst_index: list[int] = field(default_factory=list)  # the element furthest outside the tolerance (or off most)
    worst_served: float = 0.0
    worst_reference: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class OutputVerdict:
    """One output's metrics judged against its tolerance: passed, or every gate it broke, one line each."""

    passed: bool
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Widened:
    """Served and reference values as float64, NaN/inf elements (on either side) zeroed, and where they were."""

    served: np.ndarray
    reference: np.ndarray
    finite: np.ndarray
    nonfinite: int


def widen(served: np.ndarray, reference: np.ndarray) -> Widened:
    """Both sides as float64 with the elements that are NaN/inf on either side set to 0 (and counted): the figures
    cover the finite rest, and a non-finite element is a failure of its own."""
    if served.shape != reference.shape:
        raise ValueError(f"shape mismatch: served {served.shape} vs reference {reference.shape}")
    s, r = served.astype(np.float64), reference.astype(np.float64)
    finite = np.isfinite(s) & np.isfinite(r)
    nonfinite = int(finite.size - np.count_nonzero(finite))
    if nonfinite:
        s, r = np.where(finite, s, 0.0), np.where(finite, r, 0.0)
    return Widened(s, r, finite, nonfinite)


def min_cosine(served: np.ndarray, reference: np.ndarray) -> float:
    """The lowest cosine similarity of a sample (batch first, flattened): identical zero samples 1, a zero sample
    against a non-zero one 0 (an output collapsed by a broken scale is as far as it gets). Samples of one element
    (a per-sample score) are one vector over the batch: the cosine of two numbers is only their signs, which
    rounding flips near zero."""
    flat_s, flat_r = served.reshape(len(served), -1), reference.reshape(len(reference), -1)
    if flat_s.shape[1] == 1:
        flat_s, flat_r = flat_s.reshape(1, -1), flat_r.reshape(1, -1)
    norms = np.linalg.norm(flat_s, axis=1) * np.linalg.norm(flat_r, axis=1)
    dots = np.sum(flat_s * flat_r, axis=1)
    cosine = np.where(
        norms > 0, dots / np.where(norms > 0, norms, 1), np.where(np.all(flat_s == flat_r, axis=1), 1.0, 0.0)
    )
    return float(cosine.min(initial=1.0))


def agreement(served: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Top-1 and top-5 agreement of class scores (last axis): the same first class; the same five, any order."""
    top1 = float(np.mean(top_k(served, 1)[1] == top_k(reference, 1)[1]))
    k = min(5, served.shape[-1])
    same5 = [
        set(a) == set(b) for a, b in zip(top_k(served, k)[1].reshape(-1, k), top_k(reference, k)[1].reshape(-1, k))
    ]
    return top1, float(np.mean(same5))


def compare_output(served: np.ndarray, reference: np.ndarray, tol: Tolerance, classes: bool) -> OutputMetrics:
    """Metrics of `served` against `reference` (same shape, batch first). `classes`: last axis is class scores."""
    widened = widen(served, reference)
    s, r, nonfinite = widened.served, widened.reference, widened.nonfinite
    diff = np.abs(s - r)
    mag = np.abs(r)
    top1, top5 = agreement(s, r) if classes else (None, None)
    excess = diff - (tol.atol + tol.rtol * mag)
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(excess)), excess.shape)) if excess.size else ()
    return OutputMetrics(
        samples=len(s),
        nonfinite=nonfinite,
        max_abs=float(diff.max(initial=0.0)),
        mean_abs=float(diff.mean()) if diff.size else 0.0,
        max_rel=float((diff / (mag + REL_EPSILON)).max(initial=0.0)),
        cosine=min_cosine(s, r),
        top1_agreement=top1,
        top5_agreement=top5,
        needed_atol=float(np.maximum(diff - tol.rtol * mag, 0).max(initial=0.0)),
        needed_rtol=_needed_rtol(diff, mag, tol.atol),
        worst_index=list(worst),
        worst_served=float(s[worst]) if worst else 0.0,
        worst_reference=float(r[worst]) if worst else 0.0,
    )


def merged(parts: list[OutputMetrics]) -> OutputMetrics:
    """One output's metrics over groups of samples of different shapes: the worst of each figure (the worst
    element from the group that needs the largest atol), means weighted by samples."""
    if len(parts) == 1:
        return parts[0]
    worst = max(parts, key=lambda m: m.needed_atol)
    samples = sum(m.samples for m in parts)

    def lowest(values: list[float | None]) -> float | None:
        return None if any(v is None for v in values) else min(values)  # type: ignore[type-var]

    rtols = [m.needed_rtol for m in parts]
    return OutputMetrics(
        samples=samples,
        nonfinite=sum(m.nonfinite for m in parts),
        max_abs=max(m.max_abs for m in parts),
        mean_abs=sum(m.mean_abs * m.samples for m in parts) / max(samples, 1),
        max_rel=max(m.max_rel for m in parts),
        cosine=min(m.cosine for m in parts),
        top1_agreement=lowest([m.top1_agreement for m in parts]),
        top5_agreement=lowest([m.top5_agreement for m in parts]),
        needed_atol=worst.needed_atol,
        needed_rtol=None if any(r is None for r in rtols) else max(rtols),  # type: ignore[type-var]
        worst_index=worst.worst_index,
        worst_served=worst.worst_served,
        worst_reference=worst.worst_reference,
    )


def _needed_rtol(diff: np.ndarray, mag: np.ndarray, atol: float) -> float | None:
    excess = np.maximum(diff - atol, 0)
    if np.any((excess > 0) & (mag == 0)):
        return None  # an element off where the reference is exactly 0: no relative tolerance covers it
    nonzero = mag > 0
    return float((excess[nonzero] / mag[nonzero]).max(initial=0.0))


def judge_output(metrics: OutputMetrics, tol: Tolerance) -> OutputVerdict:
    """Pass when every element is within atol + rtol*|ref| and the similarity and ranking gates hold."""
    failures = []
    if metrics.nonfinite:
        failures.append(f"{metrics.nonfinite} NaN/inf values")
    if metrics.needed_atol > tol.atol:
        by_rtol = "no rtol suffices" if metrics.needed_rtol is None else f"or rtol {metrics.needed_rtol:.3g}"
        failures.append(
            f"values off by up to {metrics.max_abs:.3g} (needs atol {metrics.needed_atol:.3g} at rtol {tol.rtol:g}, "
            f"{by_rtol} at atol {tol.atol:g}); worst element {metrics.worst_index}: served "
            f"{metrics.worst_served:.7g}, reference {metrics.worst_reference:.7g}"
        )
    if metrics.cosine < tol.min_cosine:
        failures.append(f"cosine similarity {metrics.cosine:.6f} < {tol.min_cosine}")
    if metrics.top1_agreement is not None and metrics.top1_agreement < tol.min_top1_agreement:
        failures.append(f"top-1 agreement {metrics.top1_agreement:.4f} < {tol.min_top1_agreement}")
    if metrics.top5_agreement is not None and metrics.top5_agreement < tol.min_top5_agreement:
        failures.append(f"top-5 agreement {metrics.top5_agreement:.4f} < {tol.min_top5_agreement}")
    return OutputVerdict(passed=not failures, failures=failures)
