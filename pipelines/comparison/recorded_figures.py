"""Error figures as the committed reports record them: at a precision that does not flip between CPUs.

Two CPUs (or two runs) differ in the last float32 bits: a max_abs of 2^-23 on one is 2^-22 on the other. Each error
figure is recorded as an upper bound, the power of two at or above it, and no lower than `NOISE` (8 float32 steps at
1.0); 0 stays 0 (bit-identical). A cosine is recorded to 9 decimals. A rerun elsewhere then moves a figure by one
step at most, which the gate tolerates (`tolerance_growth` 2: more than twice the baseline fails), while a real
regression, two steps or more, fails. The verdict is judged on the exact figures; the printed table shows them.
"""

from __future__ import annotations

import math
from typing import Any

NOISE = 2.0**-20  # about 9.5e-7: below it, float32 rounding of outputs near 1
ERRORS = ("max_abs", "mean_abs", "max_rel", "needed_atol", "needed_rtol", "median_abs", "p99_abs")
WORST = ("worst_index", "worst_served", "worst_reference")  # which element is worst flips with the last bits
COSINE_DECIMALS = 9


def error_figure(value: float) -> float:
    """The power of two at or above `value` (at least NOISE); 0 and non-finite values as they are."""
    if not value or not math.isfinite(value):
        return value
    return 2.0 ** math.ceil(math.log2(max(abs(value), NOISE)))


def recorded(figures: dict[str, Any], keep_worst: bool) -> dict[str, Any]:
    """`figures` (an output's metrics as a dict) as recorded: errors as bounds, the cosine rounded, and the worst
    element only where it is needed (a failed output: where to look)."""
    out = {}
    for key, value in figures.items():
        if key in WORST and not keep_worst:
            continue
        if key in ERRORS and isinstance(value, float):
            out[key] = error_figure(value)
        elif key == "cosine" and isinstance(value, float):
            out[key] = round(value, COSINE_DECIMALS)
        else:
            out[key] = value
    return out
