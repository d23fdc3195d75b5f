"""Parity's compare-and-judge step and its report, on hand-made served outputs (no server, no framework).

Each served result below is built by hand from the reference, so what must pass and what must fail,
and why, is known independently of the code under test.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipelines.comparison import lossy, parity_judge, parity_run
from pipelines.comparison.parity_cases import ALL_SAMPLES, Case, Prepared, Served
from pipelines.config.spec import model_spec
from pipelines.outputs.answers import Ragged, concat, identical, request_pairs, take

from conftest import compose_config

SERVER = {"kind": "local", "description": "test", "triton_version": "2.51.0"}
BACKEND = {"platform": "onnxruntime_onnx", "backend": "onnxruntime", "runtime": "model.py", "implementation": "test"}


def mnist_like() -> Prepared:
    """Four samples of a 10-class softmax output, sent as batch_1 and as all samples in two requests."""
    spec = model_spec("mnist_onnx", compose_config("parity", ["model=mnist_onnx"]).model)
    (inp,), (out,) = spec.inputs, spec.outputs
    probabilities = np.full((4, 10), 0.01, dtype=np.float32)
    for row, digit in enumerate([3, 1, 4, 1]):
        probabilities[row, digit] = 0.91
    inputs = {inp.name: np.zeros((4, *inp.dims), dtype=np.float32)}
    cases = [
        Case("batch_1", {inp.name: inputs[inp.name][:1]}, [1], {out.name: probabilities[:1]}),
        Case(ALL_SAMPLES, inputs, [2, 2], {out.name: probabilities}),
    ]
    burst = Case("burst_2", {inp.name: inputs[inp.name][:2]}, [1, 1], {out.name: probabilities[:2]})
    return Prepared(spec, cases, burst, truth=np.array([3, 1, 4, 7]))


def served_copy(prepared: Prepared, protocols=("http", "http_json", "grpc")) -> Served:
    outputs = {p: {c.name: {k: v.copy() for k, v in c.reference.items()} for c in prepared.cases} for p in protocols}
    burst = {k: v.copy() for k, v in prepared.burst.reference.items()}
    return Served(outputs, burst=burst, batching={"requests": 2, "merged": True}, backend=BACKEND)


def test_exact_copies_pass_with_framework_accuracy() -> None:
    prepared = mnist_like()
    report = parity_judge.evaluate(prepared, served_copy(prepared), SERVER)
    assert report.passed and report.failures == []
    assert report.accuracy == {"framework": 0.75, "http": 0.75, "http_json": 0.75, "grpc": 0.75}  # 3 of 4 right
    assert report.protocol_agreement == {"http_json": True, "grpc": True}
    assert set(report.protocols) == {"http", "http_json", "grpc", "grpc_burst"}
    assert report.protocols["http"].cases == {"batch_1": 1, ALL_SAMPLES: 4}
    assert report.protocols["grpc_burst"].outputs["probabilities"].samples == 2
    text = report.table()
    assert "RESULT: PASS" in text and "served by: test" in text and "accuracy: framework 0.7500" in text


def test_one_protocol_off_fails_with_the_tolerance_it_needed() -> None:
    prepared = mnist_like()
    served = served_copy(prepared)
    served.outputs["grpc"][ALL_SAMPLES]["probabilities"][2, 4] += 0.01
    report = parity_judge.evaluate(prepared, served, SERVER)
    assert not report.passed
    grpc = report.protocols["grpc"].outputs["probabilities"]
    assert grpc.metrics.max_abs == pytest.approx(0.01, rel=1e-3) and not grpc.passed
    assert grpc.metrics.needed_atol == pytest.approx(
        0.01 - 1e-3 * 0.91, rel=1e-3
    )  # atol that rtol 1e-3 leaves to cover
    assert report.protocols["http"].outputs["probabilities"].passed
    assert report.protocol_agreement == {"http_json": True, "grpc": False}
    assert "grpc results differ from http binary" in report.failures
    assert any(f.startswith("grpc probabilities: values off by up to 0.01") for f in report.failures)
    assert "RESULT: FAIL" in report.table()


def test_an_answer_of_another_shape_fails_that_output_only() -> None:
    """skl2onnx's 2-target MLPRegressor declares [N, 1] and answers [2N, 1] (the corpus trial): that output fails,
    named with both shapes, and the report is still written (it was a ValueError that ended the whole run)."""
    prepared = mnist_like()
    served = served_copy(prepared)
    doubled = served.outputs["grpc"][ALL_SAMPLES]["probabilities"]
    served.outputs["grpc"][ALL_SAMPLES]["probabilities"] = np.concatenate([doubled, doubled])
    report = parity_judge.evaluate(prepared, served, SERVER)
    assert not report.passed and not report.protocols["grpc"].outputs["probabilities"].passed
    assert "grpc probabilities: Triton answered shape [9, 10], the reference [5, 10]" in report.failures  # both cases
    assert report.protocols["http"].outputs["probabilities"].passed
    assert "RESULT: FAIL" in report.table()


def test_served_accuracy_below_the_framework_fails() -> None:
    prepared = mnist_like()
    served = served_copy(prepared)
    for protocol in served.outputs.values():  # every protocol predicts 0 instead of 3 for the first digit
        protocol[ALL_SAMPLES]["probabilities"][0] = np.roll(protocol[ALL_SAMPLES]["probabilities"][0], -3)
    report = parity_judge.evaluate(prepared, served, SERVER)
    assert report.accuracy["grpc"] == 0.5 and report.accuracy["framework"] == 0.75
    assert "served accuracy over grpc is 0.5000, framework 0.7500" in report.failures


def labelled_prepared() -> Prepared:
    """A 6-class labelled output (a ResNet50 spec with its logits cut to 6 classes)."""
    spec = model_spec("resnet50_onnx", compose_config("parity", ["model=resnet50_onnx"]).model)
    out = dataclasses.replace(spec.outputs[0], dims=(6,))
    spec = dataclasses.replace(spec, outputs=(out,))
    logits = np.array([[0.5, 3.0, -1.0, 2.0, 1.0, 0.0], [4.0, 1.5, 2.5, -2.0, 0.25, 3.5]], dtype=np.float32)
    inputs = {spec.inputs[0].name: np.zeros((2, 3, 224, 224), dtype=np.float32)}
    cases = [Case(ALL_SAMPLES, inputs, [2], {out.name: logits})]
    return Prepared(spec, cases, None, None, class_names=["ant", "bee", "cat", "dog", "eel", "fox"])


def strings(rows: list[list[str]]) -> np.ndarray:
    return np.array([[s.encode() for s in row] for row in rows], dtype=np.object_)


# Triton's classification extension for the logits above: "score:index:label", best first, k = 5
TOP5 = [
    ["3.000000:1:bee", "2.000000:3:dog", "1.000000:4:eel", "0.500000:0:ant", "0.000000:5:fox"],
    ["4.000000:0:ant", "3.500000:5:fox", "2.500000:2:cat", "1.500000:1:bee", "0.250000:4:eel"],
]


def test_classification_strings_that_match_the_raw_logits_pass() -> None:
    prepared = labelled_prepared()
    served = served_copy_without_burst(prepared)
    served.classifications = {"http": {"logits": strings(TOP5)}}
    report = parity_judge.evaluate(prepared, served, SERVER)
    assert report.passed, report.failures
    assert report.classification["http"]["logits"].passed


@pytest.mark.parametrize(
    ("row", "position", "wrong", "problem"),
    [
        (0, 0, "3.000000:1:cat", "labels differ from the labels"),
        (1, 0, "4.000000:2:cat", "top-k classes differ"),
        (1, 1, "3.400000:5:fox", "scores differ from the raw values by 0.1"),
    ],
)
def test_classification_strings_that_disagree_fail(row: int, position: int, wrong: str, problem: str) -> None:
    prepared = labelled_prepared()
    served = served_copy_without_burst(prepared)
    rows = [list(r) for r in TOP5]
    rows[row][position] = wrong
    served.classifications = {"http": {"logits": strings(rows)}}
    report = parity_judge.evaluate(prepared, served, SERVER)
    assert not report.passed
    assert report.classification["http"]["logits"].problem.startswith(problem)


def served_copy_without_burst(prepared: Prepared) -> Served:
    outputs = {"http": {c.name: {k: v.copy() for k, v in c.reference.items()} for c in prepared.cases}}
    return Served(outputs, backend=BACKEND)


def test_the_reference_runs_once_per_distinct_input(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Every case is a prefix of the same samples: one framework pass per max_batch_size chunk serves them all."""
    from pipelines.runners import reference

    spec = model_spec("resnet50_onnx", compose_config("parity", ["model=resnet50_onnx"]).model)
    labels = tmp_path / "labels.txt"  # the export stage writes it; this test runs without one
    labels.write_text("".join(f"class {i}\n" for i in range(1000)))
    spec = dataclasses.replace(spec, network=dataclasses.replace(spec.network, labels_file=labels))
    calls: list[int] = []

    def fake_framework(arrays):  # a sample's "logits": its mean pixel in every class, known without a framework
        (x,) = arrays.values()
        calls.append(len(x))
        return {"logits": np.repeat(x.reshape(len(x), -1).mean(axis=1, keepdims=True), 1000, axis=1)}

    monkeypatch.setattr(reference, "reference_runner", lambda _spec: fake_framework)
    prepared = parity_run.prepare(spec, "unused.npz")
    assert calls == [spec.max_batch_size]  # 8 samples, max_batch_size 8: one pass (before: one per request per case)
    for case in [*prepared.cases, prepared.burst]:
        (x,) = case.inputs.values()
        np.testing.assert_array_equal(case.reference["logits"][:, 0], x.reshape(len(x), -1).mean(axis=1))


def test_reports_survive_json_both_ways() -> None:
    """What the parity stage writes reads back as the same typed report (a CI gate reads these files)."""
    import json

    from pipelines.comparison.parity_report import ParityReport

    prepared = labelled_prepared()
    served = served_copy_without_burst(prepared)
    rows = [list(r) for r in TOP5]
    rows[0][0] = "3.000000:1:cat"
    served.classifications = {"http": {"logits": strings(rows)}}
    report = parity_judge.evaluate(prepared, served, SERVER)
    data = json.loads(json.dumps(report.to_dict()))
    # the file's layout, as written by hand: what reports/parity/<model>.json holds
    assert set(data) == {
        "model",
        "network",
        "format",
        "precision",
        "reference",
        "passed",
        "failures",
        "tolerance",
        "server",
        "served_by",
        "protocols",
        "protocol_agreement",
        "classification",
        "accuracy",
        "dynamic_batching",
        "skipped_protocols",
        "preprocessing",
        "artifacts",
    }
    assert (
        data["passed"] is False
        and data["classification"]["http"]["logits"]["problem"] == "labels differ from the labels"
    )
    assert set(data["protocols"]["http"]["outputs"]["logits"]) == {
        "samples",
        "nonfinite",
        "max_abs",
        "mean_abs",
        "max_rel",
        "cosine",
        "top1_agreement",
        "top5_agreement",
        "needed_atol",
        "needed_rtol",
        "passed",  # the values passed (the labels did not): no worst element (a failed output's says where to look)
    }
    again = ParityReport.from_dict(data)
    assert again.to_dict() == data and again.passed == report.passed  # the recorded form reads back as itself


def test_headline_figures_are_the_worst_cases() -> None:
    """What `dvc metrics show` and the gate see of a report: a handful of figures, worst over protocols."""
    prepared = mnist_like()
    report = parity_judge.evaluate(prepared, served_copy(prepared), SERVER)
    assert report.headline() == {
        "passed": True,
        "protocols_agree": True,
        "max_abs": 0.0,
        "needed_atol": 0.0,
        "framework_accuracy": 0.75,
        "served_accuracy": 0.75,
    }
    served = served_copy(prepared)
    served.outputs["grpc"][ALL_SAMPLES]["probabilities"][2, 4] += 0.01
    figures = parity_judge.evaluate(prepared, served, SERVER).headline()
    assert figures["passed"] is False and figures["protocols_agree"] is False
    # recorded as upper bounds on a power-of-two grid (comparison/recorded_figures.py): 0.01 -> 2^-7 = 0.0078 < 0.01
    assert figures["max_abs"] == 2**-6 and figures["needed_atol"] == 2**-6  # 0.01 and 0.0091: the power of two above


def test_tied_scores_may_be_ranked_either_way() -> None:
    """INT8 logits tie often: Triton may pick either of two equal scores for the k-th place, and both are right."""
    prepared = labelled_prepared()
    logits = prepared.cases[0].reference["logits"]
    logits[0] = [0.5, 3.0, 0.5, 2.0, 1.0, 0.0]  # classes 0 and 2 tie for 4th place
    served = served_copy_without_burst(prepared)
    rows = [["3.000000:1:bee", "2.000000:3:dog", "1.000000:4:eel", "0.500000:2:cat", "0.500000:0:ant"], TOP5[1]]
    served.classifications = {"http": {"logits": strings(rows)}}
    assert parity_judge.evaluate(prepared, served, SERVER).passed
    rows[0][4] = "0.500000:2:cat"  # the same class twice is not a top-5
    served.classifications = {"http": {"logits": strings(rows)}}
    assert not parity_judge.evaluate(prepared, served, SERVER).classification["http"]["logits"].passed


def lossy_mnist(shift: float) -> Prepared:
    """mnist_like as the INT8 model: its own file's outputs are the strict reference; the FP32 model's differ
    from them by `shift` moved from each sample's top class to class 0 (known error statistics)."""
    prepared = mnist_like()
    spec = model_spec("mnist_onnx_int8", compose_config("parity", ["model=mnist_onnx_int8"]).model)
    own = prepared.cases[-1].reference["probabilities"]
    fp32 = own.copy()
    fp32[np.arange(4), own.argmax(axis=1)] -= shift
    fp32[:, 0] += shift
    return dataclasses.replace(prepared, spec=spec, fp32={"probabilities": fp32})


def test_a_lossy_model_is_judged_against_both_references_apart() -> None:
    prepared = lossy_mnist(0.02)
    report = parity_judge.evaluate(prepared, served_copy(prepared), SERVER)
    assert report.passed, report.failures
    assert report.accuracy == {"own_file": 0.75, "http": 0.75, "http_json": 0.75, "grpc": 0.75}
    stats = report.lossy.outputs["probabilities"]
    # per sample two of ten elements differ by 0.02: max 0.02, mean 0.004, median 0, p99 0.02
    assert (stats.max_abs, stats.median_abs, stats.p99_abs) == pytest.approx((0.02, 0.0, 0.02), abs=1e-7)
    assert stats.mean_abs == pytest.approx(0.004, abs=1e-7) and stats.top1_agreement == 1.0
    assert report.lossy.fp32_accuracy == report.lossy.served_accuracy == 0.75 and report.lossy.accuracy_drop == 0
    headline = report.headline()
    assert headline["framework_accuracy"] == headline["served_accuracy"] == 0.75 and headline["accuracy_drop"] == 0
    assert "vs FP32 keras" in report.table()
    again = type(report).from_dict(report.to_dict())  # the lossy figures read back as recorded: bounds, 2^-5 > 0.02
    assert again.lossy.to_dict() == report.lossy.to_dict() and again.lossy.outputs["probabilities"].max_abs == 2**-5


def test_a_lossy_model_far_from_fp32_fails_with_each_broken_bound() -> None:
    prepared = lossy_mnist(0.6)  # moves the FP32 model's top class of the samples to class 0 (0.91 - 0.6 < 0.41)
    report = parity_judge.evaluate(prepared, served_copy(prepared), SERVER)
    assert not report.passed and report.lossy.outputs["probabilities"].top1_agreement == 0.0
    failures = [f for f in report.failures if f.startswith("vs FP32 keras: ")]
    assert any("max |error| 0.6 > 0.5" in f for f in failures), failures
    assert any("top-1 agreement 0.0000 < 0.99" in f for f in failures)
    # the FP32 model now says 0 for every digit: one right of four, the served model three: a gain, no drop
    assert report.lossy.fp32_accuracy == 0.0 and report.lossy.accuracy_drop == -0.75
    # the strict check against its own file still passes: serving added nothing, the precision costs this much
    assert all(o.passed for p in report.protocols.values() for o in p.outputs.values())


def test_a_lossy_model_whose_accuracy_drops_or_turns_nan_fails() -> None:
    prepared = lossy_mnist(0.0)
    fp32 = prepared.fp32["probabilities"]
    fp32[3] = np.roll(fp32[3], 6)  # the FP32 model gets sample 3's 7 right: 4 of 4, the served model 3 of 4
    served = served_copy(prepared)
    report = parity_judge.evaluate(prepared, served, SERVER)
    assert report.lossy.fp32_accuracy == 1.0 and report.lossy.served_accuracy == 0.75
    assert any("accuracy 0.7500 is 0.2500 below the FP32 model's 1.0000" in f for f in report.failures)
    for protocol in served.outputs.values():
        protocol[ALL_SAMPLES]["probabilities"][1, 1] = np.nan
    assert any("NaN/Inf" in f for f in parity_judge.evaluate(prepared, served, SERVER).failures)


def test_an_output_collapsed_to_zero_is_as_far_as_cosine_goes() -> None:
    """A broken scale can zero a whole output: its cosine with the FP32 model's is 0, never a perfect 1."""
    fp32 = np.array([[1.0, 3.0, -2.0], [0.0, 0.0, 0.0]])
    stats = lossy.error_stats(np.zeros_like(fp32), fp32, classes=False)
    assert stats.cosine == 0.0  # sample 0: zero against non-zero; sample 1: both zero, alike
    assert lossy.error_stats(fp32[1:], fp32[1:], classes=False).cosine == 1.0


def test_a_drop_exactly_at_the_bound_passes() -> None:
    bounds = model_spec("mnist_onnx_int8", compose_config("parity", ["model=mnist_onnx_int8"]).model).lossy
    assert 0.978 - 0.973 > 0.005  # in floating point
    assert lossy.judge_lossy({}, bounds, 0.978, 0.973) == []
    assert lossy.judge_lossy({}, bounds, 0.978, 0.972)[0].startswith("accuracy 0.9720 is 0.0060 below")


def test_answers_of_other_shapes_per_request_are_kept_apart_and_compared_request_by_request() -> None:
    """An unbatched model's data-dependent output (NonZero: [2, K], K per sample) cannot be one array: `concat`
    keeps each request's answer, a prefix of samples takes whole requests, and pairs are made request by request."""
    answers = [{"idx": np.zeros((1, 2, k), np.int64)} for k in (3, 5, 3)]
    joined = concat(answers)["idx"]
    assert isinstance(joined, Ragged) and [a.shape for a in joined] == [(1, 2, 3), (1, 2, 5), (1, 2, 3)]
    assert concat(answers[:1])["idx"].shape == (1, 2, 3)  # one shape: an array, as before
    assert [a.shape[2] for a in take({"idx": joined}, 0, 2)["idx"]] == [3, 5]
    pairs = request_pairs(joined, concat(answers)["idx"])
    assert len(pairs) == 3 and all(g.shape == r.shape for g, r in pairs)
    assert identical(joined, concat(answers)["idx"])
    assert not identical(joined, concat([answers[0], answers[2], answers[1]])["idx"])
