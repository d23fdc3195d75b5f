"""Parity's judging half: what `parity_run` returned, compared and judged into the model's report. It sends nothing.

1. compare: per protocol and output, the served answers against the reference's with the one output validator
   (`pipelines.outputs.validator`: a typed result per output, exact for integer, bool and string outputs);
2. judge: the spec's tolerance gates (`pipelines.outputs.metrics.judge_output`), a lossy model's `lossy:` bounds
   (`lossy.judge_lossy`), protocols agreeing bit for bit, the classification extension agreeing with the raw
   output, the server-side pre-processing with the client's, and served accuracy equal to the framework's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipelines.comparison import lossy
from pipelines.comparison.parity_cases import ALL_SAMPLES, CLASS_COUNT, Prepared, Served, StepAnswer
from pipelines.comparison.parity_report import (
    ClassificationCheck,
    OutputResult,
    ParityReport,
    PreprocessingCheck,
    ProtocolResult,
)
from pipelines.config.spec import ModelSpec, TensorSpec
from pipelines.data import images
from pipelines.outputs.answers import Arrays, by_shape, identical, request_pairs, samples
from pipelines.outputs.metrics import judge_output
from pipelines.outputs.validator import validate_output
from pipelines.runners import reference
from pipelines.serving.served_model import BURST, parse_classes


def _report(spec: ModelSpec, reference: str, server: Mapping[str, str], **found: Any) -> ParityReport:
    """A model's report: what was checked against what (from its spec), on which server, and what was `found`."""
    return ParityReport(
        model=spec.name,
        network=spec.network.name,
        format=spec.format,
        precision=spec.precision,
        reference=reference or spec.reference,
        tolerance=spec.tolerance,
        server=dict(server),
        **found,
    )


def not_served(prepared: Prepared, server: Mapping[str, str], reason: str) -> ParityReport:
    """The report of a model the server did not load: failed, with Triton's reason, nothing compared."""
    return _report(prepared.spec, prepared.reference, server, served_by={}, protocols={}, failures=[reason])


def reference_failed(spec: ModelSpec, server: Mapping[str, str], reason: str) -> ParityReport:
    """The report of a model whose inputs or framework reference could not be made: failed, nothing compared."""
    return _report(spec, "", server, served_by={}, protocols={}, failures=[f"its reference could not run: {reason}"])


def export_failed(spec: ModelSpec, server_kind: str, reason: str) -> ParityReport:
    """The report of a model whose export failed: failed, with the exporter's reason; never served."""
    server = {"kind": server_kind, "description": "", "triton_version": ""}
    return _report(spec, "", server, served_by={}, protocols={}, failures=[f"its export failed: {reason}"])


def _is_scores(spec: ModelSpec, tensor: Any) -> bool:
    """Per-class scores get ranking metrics; an ensemble's outputs are already its top-k."""
    return spec.format != "ensemble" and tensor.name == spec.network.class_output


def _judged_output(
    prepared: Prepared, protocol: str, by_case: Mapping[str, Arrays], tensor: TensorSpec
) -> tuple[OutputResult, list[str], bool]:
    """One output over every case of one protocol, compared and judged: its result, its failures, and whether an
    answer had another shape than the reference's (nothing element by element to compare)."""
    spec = prepared.spec
    pairs = [
        pair
        for c in by_case
        for pair in request_pairs(by_case[c][tensor.name], prepared.case(c).reference[tensor.name])
    ]
    tol = spec.tolerance_for(tensor.name)
    compared = validate_output(tensor, by_shape(pairs), tol, classes=_is_scores(spec, tensor))
    where = f"{protocol} {tensor.name}"
    if compared.shape is not None:  # that output's failure, not the run's
        shapes = f"{list(compared.shape.served)}, the reference {list(compared.shape.reference)}"
        return OutputResult(compared.samples, False), [f"{where}: Triton answered shape {shapes}"], True
    if compared.exact is not None:
        wrong = compared.exact.mismatched_samples
        failures = [f"{where}: {wrong} samples differ from the reference's ({compared.exact.first})"] if wrong else []
        return OutputResult(compared.samples, not wrong, mismatched_samples=wrong), failures, False
    assert compared.metrics is not None
    verdict = judge_output(compared.metrics, tol)
    failures = [f"{where}: {f}" for f in verdict.failures]
    return OutputResult(compared.metrics.samples, verdict.passed, compared.metrics), failures, False


def evaluate(prepared: Prepared, result: Served, server: Mapping[str, str]) -> ParityReport:
    """Compare and judge, in one place: every failure of the model is listed in the report's `failures`.

    `server`: what served (kind, description, Triton's version), recorded with the proof.
    """
    spec = prepared.spec
    served = result.outputs
    failures: list[str] = []
    protocols: dict[str, ProtocolResult] = {}
    compared = dict(served)
    misshapen: set[str] = set()  # protocols with an answer of another shape than the reference's
    if result.burst is not None and prepared.burst is not None:  # reported beside the protocols
        compared[BURST] = {prepared.burst.name: result.burst}
    for protocol, by_case in compared.items():
        outputs: dict[str, OutputResult] = {}
        for tensor in spec.outputs:
            outputs[tensor.name], failed, misshaped = _judged_output(prepared, protocol, by_case, tensor)
            failures += failed
            if misshaped:
                misshapen.add(protocol)
        protocols[protocol] = ProtocolResult({c: samples(next(iter(by_case[c].values()))) for c in by_case}, outputs)
    served = {p: by_case for p, by_case in served.items() if p not in misshapen}  # what the checks below can read
    audit = prepared.label_audit
    if audit is not None and audit.problem:
        failures.append(f"labels: {audit.problem}")
    constants = prepared.constants_audit
    failures += [f"pre-processing constants: {problem}" for problem in (constants.problems if constants else ())]
    preprocessing = _preprocessing(prepared, result.preprocessing)
    if preprocessing and not preprocessing.passed:
        failures.append(f"server-side pre-processing differs from the client's by {preprocessing.max_abs:.3g}")
    classification = _classification(
        prepared, served, {p: c for p, c in result.classifications.items() if p not in misshapen}
    )
    for protocol, by_output in (classification or {}).items():
        for output, check in by_output.items():
            if not check.passed:
                failures.append(
                    f"{protocol} {output}: classification extension disagrees with the raw output ({check.problem})"
                )
    agreement = _agreement(prepared, served)
    failures += [f"{p} results differ from http binary" for p, same in agreement.items() if not same]
    accuracy = _accuracy(prepared, served)
    key = prepared.accuracy_key
    if accuracy:
        failures += [
            f"served accuracy over {p} is {acc:.4f}, {key.replace('_', ' ')} {accuracy[key]:.4f}"
            for p, acc in accuracy.items()
            if p != key and acc != accuracy[key]
        ]
    cost = _lossy(prepared, served)
    if cost is not None:
        failures += [f"vs FP32 {cost.reference}: {f}" for f in cost.failures]
    return _report(
        prepared.spec,
        prepared.reference,
        server,
        served_by=result.backend,
        protocols=protocols,
        protocol_agreement=agreement,
        classification=classification,
        accuracy=accuracy,
        dynamic_batching=result.batching,
        skipped_protocols=result.skipped,
        preprocessing=preprocessing,
        failures=failures,
        lossy=cost,
        labels=None
        if audit is None
        else {"source": audit.source, "passed": not audit.problem, "problem": audit.problem},
        constants=None if constants is None else constants.as_dict(),
    )


def _preprocessing(prepared: Prepared, answer: StepAnswer | None) -> PreprocessingCheck | None:
    """The ensemble's server-side pre-processing against the client's, within the model's atol."""
    if answer is None or prepared.parts is None:
        return None
    (out,) = prepared.parts.preprocess.outputs
    metrics = validate_output(out, [(answer.served, answer.client)]).metrics
    if metrics is None:  # another shape than the client's
        return PreprocessingCheck(answer.step, len(answer.served), float("inf"), False)
    passed = not metrics.nonfinite and metrics.max_abs <= prepared.spec.tolerance.atol
    return PreprocessingCheck(answer.step, len(answer.served), metrics.max_abs, passed)


def _lossy(prepared: Prepared, served: dict[str, dict[str, Arrays]]) -> lossy.LossyResult | None:
    """A lossy model's served outputs against the FP32 framework model's, judged by its `lossy:` bounds."""
    spec, fp32 = prepared.spec, prepared.fp32
    if fp32 is None or spec.lossy is None or not served:
        return None
    protocol = "http" if "http" in served else next(iter(served))
    outputs = served[protocol][ALL_SAMPLES]
    stats = {
        t.name: lossy.error_stats(outputs[t.name], fp32[t.name], classes=_is_scores(spec, t))
        for t in spec.outputs
        if not t.exact
    }
    name = spec.network.class_output
    fp32_accuracy = served_accuracy = None
    if prepared.truth is not None and name is not None:
        fp32_accuracy = _class_accuracy(fp32[name], prepared.truth)
        served_accuracy = _class_accuracy(outputs[name], prepared.truth)
    return lossy.LossyResult(
        reference.describe_reference(spec.network),
        protocol,
        stats,
        spec.lossy,
        fp32_accuracy,
        served_accuracy,
        lossy.judge_lossy(stats, spec.lossy, fp32_accuracy, served_accuracy),
    )


def _classification(
    prepared: Prepared, served: dict[str, dict[str, Arrays]], classifications: dict[str, dict[str, np.ndarray]]
) -> dict[str, dict[str, ClassificationCheck]] | None:
    """Triton's top-k strings must name the same classes, labels and scores as the raw served output."""
    labelled = [t for t in prepared.spec.outputs if t.labels]
    if not labelled:
        return None
    names = prepared.class_names or []
    result: dict[str, dict[str, ClassificationCheck]] = {}
    for protocol, by_output in classifications.items():
        for tensor in labelled:
            strings = by_output[tensor.name]
            raw = served[protocol][ALL_SAMPLES][tensor.name]
            parsed = [parse_classes(row) for row in strings]
            scores = np.array([[score for score, _, _ in row] for row in parsed])
            indices = np.array([[index for _, index, _ in row] for row in parsed])
            chosen = np.take_along_axis(raw, indices, axis=1)
            problem = ""
            # the k largest values, where ties may be broken either way (INT8 logits tie often): distinct classes
            # whose raw scores are the row's k largest
            if any(len(set(row)) != len(row) for row in indices.tolist()) or not np.array_equal(
                np.sort(chosen, axis=1), np.sort(images.top_k(raw, CLASS_COUNT)[0], axis=1)
            ):
                problem = "top-k classes differ"
            elif names and any(label != names[index] for row in parsed for _, index, label in row):
                problem = "labels differ from " + (
                    prepared.label_audit.source if prepared.label_audit else "the labels"
                )
            score_diff = float(np.max(np.abs(scores - np.take_along_axis(raw, indices, axis=1))))
            if not problem and score_diff > 1e-6 * max(1.0, float(np.abs(raw).max())):  # printed with 6 decimals
                problem = f"scores differ from the raw values by {score_diff:.3g}"
            result.setdefault(protocol, {})[tensor.name] = ClassificationCheck(
                k=CLASS_COUNT, samples=len(strings), max_score_diff=score_diff, passed=not problem, problem=problem
            )
    return result


def _agreement(prepared: Prepared, served: dict[str, dict[str, Arrays]]) -> dict[str, bool]:
    """Every protocol must return exactly what HTTP binary returned for the same requests."""
    if "http" not in served:
        return {}
    base = served["http"]
    return {
        protocol: all(
            identical(by_case[c.name][t.name], base[c.name][t.name])
            for c in prepared.cases
            for t in prepared.spec.outputs
        )
        for protocol, by_case in served.items()
        if protocol != "http"
    }


def _accuracy(prepared: Prepared, served: dict[str, dict[str, Arrays]]) -> dict[str, float] | None:
    name = prepared.spec.network.class_output
    if prepared.truth is None or name is None:
        return None
    truth = prepared.truth
    framework = prepared.case(ALL_SAMPLES).reference[name]
    result = {prepared.accuracy_key: _class_accuracy(framework, truth)}
    for protocol, by_case in served.items():
        result[protocol] = _class_accuracy(by_case[ALL_SAMPLES][name], truth)
    return result


def _class_accuracy(scores: np.ndarray, truth: np.ndarray) -> float:
    """The share of samples whose highest score is their true class."""
    return float(np.mean(np.argmax(scores, axis=-1) == truth))
