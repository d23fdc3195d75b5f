"""The one output validator: a model's answers against a reference's, output by output, typed.

As Polygraphy's compare functions do, `validate_output` only compares: what passes is judged apart, by each check
against its own rule (parity: `metrics.judge_output` against the spec's tolerance; lossy judging: its `lossy:`
bounds; the export self-check: its limit; localize: a relative error). Answers may be batch first or request by
request (`answers.Ragged`, for a model without a batch axis); an answer of another shape than the reference's is
named, not compared; integer, bool and string outputs (`TensorSpec.exact`) compare for equality, row by row, and
floating-point ones by their differences (`metrics.compare_output`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.config.spec import TensorSpec, Tolerance
from pipelines.outputs.answers import Pair, by_shape
from pipelines.outputs.metrics import OutputMetrics, compare_output, merged

# measuring only: the figures against no tolerance (needed_atol is the largest difference)
MEASURE = Tolerance(atol=0.0, rtol=0.0, min_cosine=-1.0, min_top1_agreement=0.0, min_top5_agreement=0.0)


@dataclass(frozen=True)
class ShapeMismatch:
    """The first pair whose served answer has another shape than the reference's: nothing element by element."""

    pair: int  # its position among the pairs compared (the sample, for a model run one sample per request)
    served: tuple[int, ...]
    reference: tuple[int, ...]


@dataclass(frozen=True)
class ExactComparison:
    """An integer, bool or string output compared for equality, sample by sample."""

    mismatched_samples: int
    differing_elements: int
    first: str  # the first differing element and both values ("": none differs)


@dataclass(frozen=True)
class OutputComparison:
    """One output over every pair: its samples, then a shape mismatch, or the exact comparison, or the metrics."""

    samples: int
    shape: ShapeMismatch | None = None
    exact: ExactComparison | None = None
    metrics: OutputMetrics | None = None
    scale: float = 0.0  # floating-point outputs: the largest finite |reference| element


def validate_output(
    tensor: TensorSpec, pairs: list[Pair], tol: Tolerance = MEASURE, classes: bool = False
) -> OutputComparison:
    """Compare one output's (served, reference) pairs (`answers.request_pairs`, maybe joined `answers.by_shape`).

    `tol`: what the figures that depend on a tolerance (needed atol and rtol, the worst element) are measured
    against; `classes`: the output's last axis holds class scores (top-1 and top-5 agreement).
    """
    samples = sum(len(ref) for _, ref in pairs)
    mismatch = first_mismatch(pairs)
    if mismatch is not None:
        return OutputComparison(samples, shape=mismatch)
    if tensor.exact:
        return OutputComparison(samples, exact=_exact(pairs))
    joined = by_shape(pairs)
    metrics = merged([compare_output(got, ref, tol, classes) for got, ref in joined])
    return OutputComparison(samples, metrics=metrics, scale=max((_largest(ref) for _, ref in joined), default=0.0))


def first_mismatch(pairs: list[Pair]) -> ShapeMismatch | None:
    """The first pair whose answers differ in shape (None: every pair can be compared element by element)."""
    for index, (got, ref) in enumerate(pairs):
        if got.shape != ref.shape:
            return ShapeMismatch(index, got.shape, ref.shape)
    return None


def _largest(reference: np.ndarray) -> float:
    """The largest finite |element|."""
    values = np.abs(reference.astype(np.float64))
    return float(np.max(values[np.isfinite(values)], initial=0.0))


def _exact(pairs: list[Pair]) -> ExactComparison:
    """Equality, row by row (one row per sample); with the first differing element, where one does."""
    mismatched = differing = 0
    first = ""
    for got, ref in pairs:
        rows = np.array([np.array_equal(a, b) for a, b in zip(got.reshape(len(got), -1), ref.reshape(len(ref), -1))])
        mismatched += int(np.sum(~rows)) if rows.size else 0
        unequal = np.argwhere(got != ref)
        differing += len(unequal)
        if len(unequal) and not first:
            index = tuple(int(i) for i in unequal[0])
            first = f"first at {list(index)}: served {got[index]!r}, reference {ref[index]!r}"
    return ExactComparison(mismatched, differing, first)
