"""Error figures as committed reports record them: the same on two CPUs that differ in the last bits, one grid step
apart at most for noise (the gate passes it), and a real regression still fails the real gate."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.comparison.parity_report import OutputResult
from pipelines.comparison.recorded_figures import error_figure
from pipelines.merge_gate.rules import Thresholds, judge_gate
from pipelines.outputs.metrics import OutputMetrics

GATE = Thresholds(accuracy_drop=0.005, tolerance_growth=2.0, tolerance_floor=1e-6)  # conf/gate.yaml's


def test_float32_rounding_noise_records_one_figure() -> None:
    # the issue's example: mnist_onnx_fp16's max_abs was 2.38e-07 in one run and 1.19e-07 in the next
    assert error_figure(2.384185791015625e-07) == error_figure(1.1920928955078125e-07) == 2**-20
    assert error_figure(0.0) == 0.0  # bit-identical stays exact


@pytest.mark.parametrize("value", np.geomspace(1e-6, 10.0, 57).tolist())
def test_a_figure_is_recorded_as_a_bound_within_twice_its_value(value: float) -> None:
    figure = error_figure(value)
    assert value <= figure < 2 * value and np.log2(figure) == int(np.log2(figure))


def headline(needed_atol: float) -> dict:
    return {"passed": True, "protocols_agree": True, "max_abs": needed_atol, "needed_atol": needed_atol}


@pytest.mark.parametrize("exact", [9.0e-7, 1.5e-6, 3.1e-5, 2.0e-3])
def test_noise_moves_a_figure_one_step_which_passes_and_a_regression_fails(exact: float) -> None:
    before = {"m": headline(error_figure(exact))}
    noisy = {"m": headline(error_figure(exact * 1.3))}  # another CPU: at most one step up
    assert judge_gate(before, noisy, GATE).passed
    regressed = {"m": headline(error_figure(exact * 4.2))}  # a real regression: more than 4x
    verdict = judge_gate(before, regressed, GATE)
    assert not verdict.passed and "needed tolerance" in verdict.failures[0]


def test_the_worst_element_is_recorded_for_a_failed_output_only() -> None:
    metrics = OutputMetrics(10, 0, 3e-7, 1e-8, 2e-6, 0.9999999999999998, 1.0, 1.0, 0.0, 0.0, [3, 1], 0.5, 0.5000003)
    passed = OutputResult(10, True, metrics).to_dict()
    assert "worst_index" not in passed and passed["max_abs"] == 2**-20 and passed["cosine"] == 1.0
    failed = OutputResult(10, False, metrics).to_dict()
    assert failed["worst_index"] == [3, 1] and failed["worst_reference"] == 0.5000003
