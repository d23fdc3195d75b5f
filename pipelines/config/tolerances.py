"""How close a served model must be to its reference: an FP32 model's `Tolerance` (per output, elementwise and
by ranking) and an FP16/INT8 model's `LossyBounds` (task accuracy and error statistics against FP32).

Parity and its reports judge by these types; a value that would weaken or skip the check (negative,
infinite, a fraction outside 0..1) is named here, and the model spec refuses it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Tolerance:
    """Pass criteria for one output; elementwise |served - ref| <= atol + rtol * |ref| (numpy.allclose)."""

    atol: float
    rtol: float
    min_cosine: float
    min_top1_agreement: float
    min_top5_agreement: float


@dataclass(frozen=True)
class LossyBounds:
    """How far an FP16 or INT8 model may be from the FP32 framework model, judged by what the model is for.

    Task accuracy on labelled samples (`max_accuracy_drop`, a fraction: 0.005 is half a point), agreement of
    the predicted classes, and error statistics in Polygraphy's terms (max, mean, median and the 99th
    percentile of |served - FP32|, each bounded on its own). NaN or Inf always fail.
    """

    max_accuracy_drop: float
    min_top1_agreement: float
    min_top5_agreement: float
    min_cosine: float
    max_abs: float
    max_mean_abs: float
    max_median_abs: float
    max_p99_abs: float


def tolerance_from(cfg: Mapping[str, Any]) -> Tolerance:
    """A `tolerance:` section (a preset from conf/tolerance/, or an output's own over it), typed."""
    return Tolerance(
        float(cfg["atol"]),
        float(cfg["rtol"]),
        float(cfg["min_cosine"]),
        float(cfg["min_top1_agreement"]),
        float(cfg["min_top5_agreement"]),
    )


def lossy_bounds_from(cfg: Mapping[str, Any]) -> LossyBounds:
    """A `lossy:` section (a preset from conf/lossy/), typed."""
    return LossyBounds(**{k: float(v) for k, v in cfg.items()})


def tolerance_problems(prefix: str, tol: Tolerance) -> list[str]:
    """What in `tol` would weaken the check, each as `<prefix>.<key> must be ...`."""
    problems = [
        f"{prefix}.{k} must be a finite number >= 0, got {v}"
        for k, v in (("atol", tol.atol), ("rtol", tol.rtol))
        if not 0 <= v < math.inf
    ]
    problems += [
        f"{prefix}.{k} must be within 0..1, got {v}"
        for k, v in tol.__dict__.items()
        if k.startswith("min_") and not 0 <= v <= 1
    ]
    return problems


def lossy_problems(bounds: LossyBounds) -> list[str]:
    """What in `bounds` would weaken the check: fractions outside 0..1, error bounds negative or infinite."""
    problems = [
        f"lossy.{k} must be within 0..1, got {v}"
        for k, v in bounds.__dict__.items()
        if (k.startswith("min_") or k == "max_accuracy_drop") and not 0 <= v <= 1
    ]
    problems += [
        f"lossy.{k} must be a finite number >= 0, got {v}"
        for k, v in bounds.__dict__.items()
        if k.startswith("max_") and not 0 <= v < math.inf
    ]
    return problems
