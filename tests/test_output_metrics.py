"""Comparison metrics and the judge: what they measure, and that the reported needed tolerance is exact."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.config.tensors import TensorSpec
from pipelines.config.tolerances import Tolerance
from pipelines.outputs.answers import Ragged, request_pairs
from pipelines.outputs.metrics import compare_output, judge_output, merged
from pipelines.outputs.validator import ExactComparison, ShapeMismatch, validate_output

STRICT = Tolerance(atol=1e-4, rtol=1e-3, min_cosine=0.99999, min_top1_agreement=1.0, min_top5_agreement=1.0)


@pytest.fixture
def logits() -> np.ndarray:
    return np.random.default_rng(0).normal(0, 5, (16, 100)).astype(np.float32)


def test_identical_outputs_pass_with_zero_error(logits: np.ndarray) -> None:
    m = compare_output(logits.copy(), logits, STRICT, classes=True)
    assert (m.nonfinite, m.max_abs, m.mean_abs, m.max_rel, m.needed_atol, m.needed_rtol) == (0, 0, 0, 0, 0, 0)
    assert m.cosine == pytest.approx(1.0) and m.top1_agreement == 1.0 and m.top5_agreement == 1.0
    assert judge_output(m, STRICT).passed


def test_error_where_reference_is_zero_has_no_sufficient_rtol() -> None:
    m = compare_output(np.array([[1.0, 0.5]]), np.array([[0.0, 0.5]]), STRICT, classes=False)
    assert m.needed_rtol is None
    assert "no rtol suffices" in judge_output(m, STRICT).failures[0]


def test_metrics_measure_a_known_offset(logits: np.ndarray) -> None:
    served = logits.astype(np.float64) + 0.01
    m = compare_output(served, logits, STRICT, classes=True)
    assert m.max_abs == pytest.approx(0.01)
    assert m.mean_abs == pytest.approx(0.01)
    expected_atol = np.max(0.01 - STRICT.rtol * np.abs(logits.astype(np.float64)))
    assert m.needed_atol == pytest.approx(max(expected_atol, 0))
    verdict = judge_output(m, STRICT)
    assert not verdict.passed
    assert "needs atol" in verdict.failures[0]


def test_needed_tolerances_are_exactly_sufficient(logits: np.ndarray) -> None:
    served = logits + np.random.default_rng(1).normal(0, 1e-3, logits.shape).astype(np.float32)
    m = compare_output(served, logits, STRICT, classes=True)
    loose = Tolerance(m.needed_atol, STRICT.rtol, 0.0, 0.0, 0.0)
    tight = Tolerance(m.needed_atol * 0.99, STRICT.rtol, 0.0, 0.0, 0.0)
    assert judge_output(m, loose).passed
    assert not judge_output(m, tight).passed
    by_rtol = Tolerance(STRICT.atol, m.needed_rtol * 1.0001, 0.0, 0.0, 0.0)
    assert judge_output(compare_output(served, logits, by_rtol, classes=True), by_rtol).passed


def test_swapped_top_class_breaks_top1_agreement() -> None:
    ref = np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]], dtype=np.float32)
    served = np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]], dtype=np.float32)
    m = compare_output(served, ref, STRICT, classes=True)
    assert m.top1_agreement == 0.5
    assert m.top5_agreement == 1.0  # only 3 classes: the top-3 sets still agree
    failures = judge_output(m, STRICT).failures
    assert any("top-1 agreement 0.5000" in f for f in failures)


def test_scaled_output_fails_cosine_free_but_value_gate(logits: np.ndarray) -> None:
    m = compare_output(logits * 2, logits, STRICT, classes=True)
    assert m.cosine == pytest.approx(1.0, abs=1e-9)  # same direction ...
    assert not judge_output(m, STRICT).passed  # ... but not the same values


def test_non_class_outputs_skip_ranking(logits: np.ndarray) -> None:
    m = compare_output(logits, logits, STRICT, classes=False)
    assert m.top1_agreement is None and m.top5_agreement is None


def test_shape_mismatch_is_refused(logits: np.ndarray) -> None:
    with pytest.raises(ValueError, match="shape mismatch"):
        compare_output(logits[:2], logits, STRICT, classes=True)


def test_nan_outputs_fail_and_stay_valid_json(logits: np.ndarray) -> None:
    served = logits.copy()
    served[0, 0] = np.nan
    served[1, 1] = np.inf
    m = compare_output(served, logits, STRICT, classes=True)
    assert m.nonfinite == 2
    assert "2 NaN/inf values" in judge_output(m, STRICT).failures[0]
    assert "NaN" not in json.dumps(m.to_dict()) and "Infinity" not in json.dumps(m.to_dict())


def test_metrics_serialise_to_json(logits: np.ndarray) -> None:
    m = compare_output(logits + 1e-5, logits, STRICT, classes=True)
    assert json.loads(json.dumps(m.to_dict()))["max_abs"] == pytest.approx(m.max_abs)


def test_the_worst_element_is_named_and_groups_of_other_shapes_merge_to_their_worst() -> None:
    """By hand: the element furthest outside atol + rtol*|ref| is reported with both values; over two groups of
    samples of different shapes (an output that follows an open input dimension), each figure is the worst."""
    ref_a = np.array([[1.0, 2.0], [3.0, 4.0]])
    got_a = ref_a + np.array([[0.0, 0.0], [0.5, 0.0]])  # off by 0.5 at [1, 0]
    ref_b = np.array([[10.0, 10.0, 10.0]])
    got_b = ref_b + np.array([[0.0, 2.0, 0.0]])  # off by 2.0 at [0, 1]
    a, b = compare_output(got_a, ref_a, STRICT, classes=False), compare_output(got_b, ref_b, STRICT, classes=False)
    assert (a.worst_index, a.worst_served, a.worst_reference) == ([1, 0], 3.5, 3.0)
    assert "worst element [1, 0]: served 3.5, reference 3" in judge_output(a, STRICT).failures[0]
    both = merged([a, b])
    assert both.samples == 3 and both.max_abs == 2.0 and both.worst_index == [0, 1] and both.worst_served == 12.0
    assert both.needed_atol == pytest.approx(2.0 - 1e-3 * 10) and both.cosine == min(a.cosine, b.cosine)
    assert merged([a]) is a


def test_per_sample_scalars_are_one_vector_for_the_cosine() -> None:
    """A score per sample: near zero, rounding flips a sign, which a per-sample cosine would read as -1."""
    reference = np.array([[3.0], [1e-9], [-2.0]])
    served = np.array([[3.0], [-1e-9], [-2.0]])
    metrics = compare_output(served, reference, STRICT, classes=False)
    assert metrics.cosine == pytest.approx(1.0) and judge_output(metrics, STRICT).passed
    assert compare_output(-served, reference, STRICT, classes=False).cosine == pytest.approx(-1.0)


def test_the_validator_names_a_shape_compares_integers_exactly_and_floats_by_their_differences() -> None:
    """One validator for every check: request by request where an unbatched model's answers differ in shape
    (`Ragged`), exact for an integer output, metrics (NaN/inf counted apart) for a floating-point one."""
    indices = TensorSpec("idx", "INT64", (-1,))
    ragged = Ragged([np.array([[0, 2]]), np.array([[1]])])
    assert validate_output(indices, request_pairs(ragged, ragged)).exact == ExactComparison(0, 0, "")
    off = validate_output(indices, request_pairs(Ragged([np.array([[0, 3]]), np.array([[1]])]), ragged)).exact
    assert off == ExactComparison(1, 1, "first at [0, 1]: served 3, reference 2")
    shorter = validate_output(indices, request_pairs(Ragged([np.array([[0, 2]]), np.array([[1, 4]])]), ragged))
    assert shorter.shape == ShapeMismatch(1, (1, 2), (1, 1)) and shorter.samples == 2
    scores = TensorSpec("y", "FP32", (2,))
    reference = np.array([[1.0, -4.0], [2.0, np.inf]])
    compared = validate_output(scores, request_pairs(reference + 0.5, reference))
    assert compared.metrics.max_abs == 0.5 and compared.metrics.nonfinite == 1 and compared.scale == 4.0
