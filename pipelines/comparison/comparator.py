"""Accuracy parity between the framework and a running Triton: run, then compare, then judge.

1. run: build the inputs (real digits, image-like tensors, a user's sample or inputs generated from
   the spec), run the reference (the framework, or an added model's own source), send the same inputs
   to Triton over every protocol (several batch sizes, all samples in max_batch_size chunks, each
   other size of an open dimension, and a concurrent burst the dynamic batcher can merge);
2. compare: per protocol and output, error metrics against the reference (`pipelines.comparison.output_metrics`);
3. judge: tolerance gates, protocols agreeing bit for bit, served accuracy equal to the framework's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.comparison import lossy, output_metrics
from pipelines.comparison.parity_report import (
    ClassificationCheck,
    OutputResult,
    ParityReport,
    PreprocessingCheck,
    ProtocolResult,
)
from pipelines.config.spec import ModelSpec
from pipelines.core.errors import ConfigError, DataError
from pipelines.data import images, labels, parity_inputs, preprocessing_audit
from pipelines.model_repository import ensemble, standins
from pipelines.runners import reference, runtimes
from pipelines.serving.endpoints import Endpoints
from pipelines.serving.served_model import BURST, PROTOCOLS, ServedModel, parse_classes

log = logging.getLogger(__name__)
Arrays = dict[str, np.ndarray]
CLASS_COUNT = 5  # top-k asked of Triton's classification extension
ALL_SAMPLES = "all_samples"  # the case that sends every sample in max_batch_size chunks


@dataclass
class Case:
    """The first samples of a model's inputs, sent as `requests` (the batch sizes of the requests that carry them).

    Every case is a prefix of the same samples, so one framework run over all of them is every case's reference.
    """

    name: str
    inputs: Arrays
    requests: list[int]
    reference: Arrays = field(default_factory=dict)
    own: bool = False  # samples of their own (other sizes of open dimensions), not a prefix of the others

    @property
    def size(self) -> int:
        return sum(self.requests)


@dataclass
class Prepared:
    """Everything on the framework side of one model, ready before any server is involved."""

    spec: ModelSpec
    cases: list[Case]  # the last one is ALL_SAMPLES
    burst: Case | None
    truth: np.ndarray | None  # the samples' true classes, where known (served accuracy)
    parts: ensemble.Parts | None = None  # an ensemble's steps, to check its server-side pre-processing
    class_names: list[str] | None = None  # what a labelled output's classes are called, one name per class
    reference: str = ""  # what computed the reference, as the report names it
    fp32: Arrays | None = None  # a lossy model: the FP32 framework model's outputs on all samples
    label_audit: labels.LabelAudit | None = None  # the labels file against names the export did not write
    constants_audit: preprocessing_audit.PreprocessingAudit | None = None  # conf/'s pre-processing vs the source's

    @property
    def accuracy_key(self) -> str:
        """What the served accuracy must equal: the framework's, or a lossy model's own file in process."""
        return "framework" if self.fp32 is None else lossy.OWN_FILE


class Ragged(list):
    """One tensor of several requests whose answers differ in shape beyond the batch axis (an unbatched model's
    data-dependent output: NonZero's indices, TopK's with k an input): each request's array, kept apart and compared
    request by request, as no array can hold them."""

    def samples(self) -> int:
        return sum(len(a) for a in self)


def _slice(arrays: Mapping[str, Any], start: int, stop: int) -> Arrays:
    return {k: _ragged_slice(v, start, stop) if isinstance(v, Ragged) else v[start:stop] for k, v in arrays.items()}


def _ragged_slice(ragged: Ragged, start: int, stop: int) -> Ragged:
    """The requests' arrays holding samples start..stop (every case's requests are a prefix of the same samples)."""
    kept, first = Ragged(), 0
    for array in ragged:
        if start <= first and first + len(array) <= stop:
            kept.append(array)
        first += len(array)
    return kept


def _chunks(total: int, size: int) -> list[int]:
    return [min(size, total - start) for start in range(0, total, size)]


def prepare(spec: ModelSpec, data_path: str, catalog: Mapping[str, ModelSpec] | None = None) -> Prepared:
    """Inputs and framework outputs for every case of `spec.parity` (`conf/model/*.yaml`).

    `catalog`: the served models, where an ensemble finds its classifier.
    """
    settings = spec.parity
    max_batch = max(spec.max_batch_size, 1)
    batch_sizes = sorted(set(settings.batch_sizes) | {max_batch})
    batch_sizes = [b for b in batch_sizes if 1 <= b <= max_batch]
    burst = settings.concurrent_requests if spec.max_batch_size > 0 else 0  # no batch axis: nothing to merge
    count = max(settings.samples or max_batch, *batch_sizes, burst)
    sampled = parity_inputs.for_model(spec, count, data_path)
    total = sampled.count
    if total < max(batch_sizes) and (spec.parity.inputs or spec.network.parity_inputs) == "npz":
        log.info("%s: the sample holds %d samples: batch sizes above it are not sent", spec.name, total)
        batch_sizes = sorted({min(b, total) for b in batch_sizes})  # a user's small sample: as large as it has
    if total < max(batch_sizes):
        raise DataError(f"{spec.name}: only {total} input samples for batch size {max(batch_sizes)}")
    samples = sampled.arrays
    cases = [Case(f"batch_{b}", _slice(samples, 0, b), [b]) for b in batch_sizes]
    for tag, group in sampled.groups.items():  # other sizes of the open dimensions: requests of their own
        size = min(len(next(iter(group.values()))), max_batch)
        cases.append(
            Case(f"shape_{tag}", _slice(group, 0, size), [1] * size if spec.max_batch_size == 0 else [size], own=True)
        )
    cases.append(Case(ALL_SAMPLES, samples, _chunks(total, max_batch)))
    burst = min(burst, total)
    burst_case = Case(f"burst_{burst}", _slice(samples, 0, burst), [1] * burst) if burst > 0 else None
    parts = ensemble.parts(spec, catalog or {}) if spec.format == "ensemble" else None
    labelled = any(t.labels for t in spec.outputs) and spec.labels_file is not None
    # the labels Triton answers with and the pre-processing constants (the classifier's, for an ensemble) against
    # torchvision's own metadata
    audited = parts.classifier.network if parts else spec.network
    audit = labels.audit(audited) if labelled or parts else None
    constants = preprocessing_audit.audit(audited)
    names = None
    if labelled:
        names = audit.expected if audit is not None and audit.expected is not None else labels.read(spec.network)
    judged_lossy = spec.lossy is not None  # its own file runs here, in ONNX Runtime; the FP32 model apart
    if parts:
        run_reference, described = reference.load_ensemble(parts), spec.reference
    elif judged_lossy:
        own, described = runtimes.own_file(spec)
        run_reference = unbatched(spec, own)
    else:
        run_reference, described = unbatched(spec, reference.load(spec)), ""
    everything = concat([run_reference(part) for part in _requests(cases[-1])])  # once per distinct input
    # named once it ran: onnx.reference hands a model it cannot run to ONNX Runtime, and the name says so
    described = described or reference.describe(spec.network)
    log.info("%s: reference (%s) on %d samples", spec.name, described, total)
    fp32 = None
    if judged_lossy:
        log.info("%s: FP32 %s on %d samples", spec.name, reference.describe(spec.network), total)
        run_fp32 = unbatched(spec, reference.load(spec))
        fp32 = concat([run_fp32(part) for part in _requests(cases[-1])])
    for case in [*cases, *([burst_case] if burst_case else [])]:
        case.reference = (
            concat([run_reference(p) for p in _requests(case)]) if case.own else _slice(everything, 0, case.size)
        )
    return Prepared(spec, cases, burst_case, sampled.labels, parts, names, described, fp32, audit, constants)


def unbatched(spec: ModelSpec, run: Callable[[Arrays], Arrays]) -> Callable[[Arrays], Arrays]:
    """A model without a batch axis (max_batch_size 0) takes one sample as it is: batch-first requests of one
    sample lose their first axis on the way in and get it back on the way out."""
    if spec.max_batch_size > 0:
        return run

    def one(arrays: Arrays) -> Arrays:
        (count,) = {len(v) for v in arrays.values()}
        if count != 1:
            raise ValueError(f"{spec.name} has no batch axis: one sample per request, got {count}")
        return {k: np.asarray(v)[None] for k, v in run({k: v[0] for k, v in arrays.items()}).items()}

    return one


def _spans(case: Case) -> list[tuple[int, int]]:
    """(start, stop) of each request of the case, in samples: every case is a prefix of the same samples,
    so equal spans are the same request (`batch_8` and the first chunk of `all_samples`)."""
    spans, start = [], 0
    for size in case.requests:
        spans.append((start, start + size))
        start += size
    return spans


def _requests(case: Case) -> list[Arrays]:
    """The case's inputs split into the requests that carry them."""
    return [_slice(case.inputs, start, stop) for start, stop in _spans(case)]


def concat(parts: list[Mapping[str, Any]]) -> Arrays:
    """Each tensor of several requests' arrays, joined along the batch axis; kept apart (`Ragged`) where the
    requests' answers differ in shape beyond it."""
    joined: Arrays = {}
    for key in parts[0]:
        arrays = [a for p in parts for a in (p[key] if isinstance(p[key], Ragged) else [p[key]])]
        same = len({np.shape(a)[1:] for a in arrays}) == 1
        joined[key] = np.concatenate(arrays) if same else Ragged(arrays)
    return joined


def _request_pairs(got: Any, ref: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """(served, reference) request by request where either is `Ragged`, else the one pair."""
    if not isinstance(got, Ragged) and not isinstance(ref, Ragged):
        return [(got, ref)]
    lengths = [len(a) for a in (ref if isinstance(ref, Ragged) else got)]
    split = lambda x: list(x) if isinstance(x, Ragged) else np.split(x, np.cumsum(lengths)[:-1])  # noqa: E731
    return list(zip(split(got), split(ref), strict=True))  # the same requests on both sides, or a bug of ours


def _equal(a: Any, b: Any) -> bool:
    """Two answers alike in every element (and, `Ragged`, request by request)."""
    if isinstance(a, Ragged) or isinstance(b, Ragged):
        return isinstance(a, Ragged) and isinstance(b, Ragged) and len(a) == len(b) and all(map(_equal, a, b))
    return bool(np.array_equal(a, b))


@dataclass
class Served:
    """What Triton returned, and what else was measured on the way.

    outputs[protocol][case][tensor]: each case's outputs over each protocol;
    classifications[protocol][output]: the classification extension's "score:index:label" strings
    for every sample of a labelled output; burst: the concurrent single-sample gRPC requests' outputs.
    """

    outputs: dict[str, dict[str, Arrays]]
    classifications: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    burst: Arrays | None = None
    batching: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    preprocessing: PreprocessingCheck | None = None
    backend: dict[str, Any] = field(default_factory=dict)  # what ran the model, from the config Triton serves


def skipped_protocols(spec: ModelSpec, protocols: list[str]) -> dict[str, str]:
    """Protocols a model's tensors cannot use, with the reason (JSON carries no FP16/BF16 or raw bytes)."""
    unsafe = [t.name for t in spec.tensors if not t.json_safe]
    if "http_json" in protocols and unsafe:
        kinds = sorted({t.dtype for t in spec.tensors if not t.json_safe})
        return {
            "http_json": f"tensors {unsafe} ({'/'.join(kinds)}) cannot travel as JSON, which carries no FP16 "
            "or BF16 and BYTES only as UTF-8 text: checked over binary HTTP and gRPC"
        }
    return {}


def served_by(model: ServedModel, config: Any, local: bool) -> dict[str, Any]:
    """What ran a model (and, for an ensemble, each of its steps), as Triton reports it."""
    backend = standins.served_by(config, local)
    if config.platform == "ensemble":
        backend["steps"] = {
            step.model_name: standins.served_by(model.served_config(step.model_name), local)
            for step in config.ensemble_scheduling.step
        }
    return backend


def collect(prepared: Prepared, endpoints: Endpoints, protocols: list[str], local: bool = False) -> Served:
    """Send every case over every usable protocol, ask for classifications, burst, check pre-processing.

    `local`: the server runs in this environment (its stand-ins' runtime versions are ours).
    """
    spec = prepared.spec
    skipped = skipped_protocols(spec, protocols)
    protocols = [p for p in protocols if p not in skipped]
    served: dict[str, dict[str, Arrays]] = {p: {} for p in protocols}
    burst = prepared.burst
    preprocessing = _check_preprocessing(prepared, endpoints) if prepared.parts is not None else None
    with ServedModel(spec, endpoints) as model:
        backend = served_by(model, model.check_ready(), local)
        all_samples = _case(prepared, ALL_SAMPLES)
        for protocol in protocols:
            start = time.perf_counter()
            answers: dict[tuple[int, int], Arrays] = {}  # each distinct request sent once per protocol
            infer = unbatched(spec, lambda arrays, protocol=protocol: model.infer(protocol, arrays))
            for case in prepared.cases:
                if case.own:
                    served[protocol][case.name] = concat([infer(part) for part in _requests(case)])
                    continue
                for span in _spans(case):
                    if span not in answers:
                        answers[span] = infer(_slice(all_samples.inputs, *span))
                served[protocol][case.name] = concat([answers[span] for span in _spans(case)])
            log.info(
                "%s: %s, %d cases in %d requests, %.2f s",
                spec.name,
                protocol,
                len(prepared.cases),
                len(answers),
                time.perf_counter() - start,
            )
        classifications: dict[str, dict[str, np.ndarray]] = {}
        for tensor in (t for t in spec.outputs if t.labels):
            for protocol in protocols:
                classes = [model.classify(protocol, part, tensor.name, CLASS_COUNT) for part in _requests(all_samples)]
                classifications.setdefault(protocol, {})[tensor.name] = np.concatenate(classes)
        batching: dict[str, Any] = {}
        burst_outputs = None
        if burst is not None:
            parts = prepared.parts  # an ensemble has no batcher of its own: each of its steps must merge the burst
            batched = [parts.preprocess.name, parts.classifier.name, parts.postprocess.name] if parts else [spec.name]
            refused = model.statistics_refused(batched[0])
            before = {name: model.settled_counts(name) for name in batched} if refused is None else {}
            outputs = model.burst(burst.inputs)
            burst_outputs = concat(outputs)
            if refused is not None:  # behind a front, or without the operator key: outputs checked, not counted
                log.warning("%s: the burst's executions are not counted: %s", spec.name, refused)
                batching = {"requests": len(outputs), "merged": None, "not_counted": refused}
            else:
                counted = {name: model.counts_after(before[name], len(outputs), name) for name in batched}
                # the report keeps whether the batcher merged them, not the count (timing decides it: 2 one run, 3
                # the next), so identical runs leave the committed report unchanged; the log has the count
                batching = {
                    "requests": min(r for r, _ in counted.values()),
                    "merged": all(executions < requests for requests, executions in counted.values()),
                }
                for name, (requests, executions) in counted.items():
                    log.info("%s: burst of %d requests ran in %d executions", name, requests, executions)
    return Served(served, classifications, burst_outputs, batching, skipped, preprocessing, backend)


def _check_preprocessing(prepared: Prepared, endpoints: Endpoints) -> PreprocessingCheck:
    """The ensemble's server-side pre-processing step against the client-side one, on the same image bytes."""
    parts = prepared.parts
    assert parts is not None
    settings = parts.ensemble.network.require_preprocessing("the ensemble's pre-processing check").settings()
    images_in = _case(prepared, ALL_SAMPLES).inputs[parts.image.name]
    expected = np.stack([images.preprocess(item, settings) for item in images_in.reshape(-1)])
    (out,) = parts.preprocess.outputs
    with ServedModel(parts.preprocess, endpoints) as step:
        got = np.concatenate(
            [
                step.infer("grpc", {parts.image.name: images_in[i : i + parts.ensemble.max_batch_size]})[out.name]
                for i in range(0, len(images_in), parts.ensemble.max_batch_size)
            ]
        )
    max_abs = float(np.max(np.abs(got.astype(np.float64) - expected)))
    return PreprocessingCheck(parts.preprocess.name, len(got), max_abs, bool(max_abs <= prepared.spec.tolerance.atol))


def _by_shape(pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(served, reference) of each case, concatenated where their samples have the same shape: an output whose
    dimensions follow an open input dimension has one shape per size sent."""
    groups: dict[tuple, list[tuple[np.ndarray, np.ndarray]]] = {}
    for got, ref in pairs:
        groups.setdefault((got.shape[1:], ref.shape[1:]), []).append((got, ref))
    return [(np.concatenate([g for g, _ in group]), np.concatenate([r for _, r in group])) for group in groups.values()]


def _is_scores(spec: ModelSpec, tensor: Any) -> bool:
    """Per-class scores get ranking metrics; an ensemble's outputs are already its top-k."""
    return spec.format != "ensemble" and tensor.name == spec.network.class_output


def _exact(got: np.ndarray, ref: np.ndarray) -> tuple[OutputResult, str]:
    """Integer, bool and string outputs (labels, class indices) are compared for equality, row by row;
    with the first differing element, where one does."""
    if got.shape != ref.shape:
        return OutputResult(
            len(ref), False, mismatched_samples=len(ref)
        ), f"shape {list(got.shape)}, the reference's {list(ref.shape)}"
    rows = np.array([np.array_equal(a, b) for a, b in zip(got.reshape(len(got), -1), ref.reshape(len(ref), -1))])
    result = OutputResult(len(rows), bool(rows.all()), mismatched_samples=int(np.sum(~rows)))
    if result.passed:
        return result, ""
    index = tuple(int(i) for i in np.argwhere(got != ref)[0])
    return result, f"first at {list(index)}: served {got[index]!r}, reference {ref[index]!r}"


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
        cases = list(by_case)
        for tensor in spec.outputs:
            pairs = _by_shape(
                [
                    pair
                    for c in cases
                    for pair in _request_pairs(by_case[c][tensor.name], _case(prepared, c).reference[tensor.name])
                ]
            )
            unequal = [(got.shape, ref.shape) for got, ref in pairs if got.shape != ref.shape]
            if unequal:  # that output's failure, not the run's: nothing element by element to compare
                misshapen.add(protocol)
                outputs[tensor.name] = OutputResult(sum(len(ref) for _, ref in pairs), False)
                failures.append(
                    f"{protocol} {tensor.name}: Triton answered shape {list(unequal[0][0])}, the reference "
                    f"{list(unequal[0][1])}"
                )
                continue
            if tensor.exact:
                checked = [_exact(got, ref) for got, ref in pairs]
                wrong = [where for result_, where in checked if not result_.passed]
                outputs[tensor.name] = OutputResult(
                    sum(r.samples for r, _ in checked),
                    not wrong,
                    mismatched_samples=sum(r.mismatched_samples or 0 for r, _ in checked),
                )
                if wrong:
                    failures.append(
                        f"{protocol} {tensor.name}: {outputs[tensor.name].mismatched_samples} "
                        f"samples differ from the reference's ({wrong[0]})"
                    )
                continue
            tol = spec.tolerance_for(tensor.name)
            metrics = output_metrics.merged(
                [output_metrics.compare_output(got, ref, tol, classes=_is_scores(spec, tensor)) for got, ref in pairs]
            )
            verdict = output_metrics.judge(metrics, tol)
            failures += [f"{protocol} {tensor.name}: {f}" for f in verdict.failures]
            outputs[tensor.name] = OutputResult(metrics.samples, verdict.passed, metrics)
        protocols[protocol] = ProtocolResult({c: _count(next(iter(by_case[c].values()))) for c in cases}, outputs)
    served = {p: by_case for p, by_case in served.items() if p not in misshapen}  # what the checks below can read
    audit = prepared.label_audit
    if audit is not None and audit.problem:
        failures.append(f"labels: {audit.problem}")
    constants = prepared.constants_audit
    failures += [f"pre-processing constants: {problem}" for problem in (constants.problems if constants else ())]
    if result.preprocessing and not result.preprocessing.passed:
        failures.append(f"server-side pre-processing differs from the client's by {result.preprocessing.max_abs:.3g}")
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
        preprocessing=result.preprocessing,
        failures=failures,
        lossy=cost,
        labels=None
        if audit is None
        else {"source": audit.source, "passed": not audit.problem, "problem": audit.problem},
        constants=None if constants is None else constants.as_dict(),
    )


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
        reference.describe(spec.network),
        protocol,
        stats,
        spec.lossy,
        fp32_accuracy,
        served_accuracy,
        lossy.judge(stats, spec.lossy, fp32_accuracy, served_accuracy),
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


def _count(answer: Any) -> int:
    """The samples an answer holds."""
    return answer.samples() if isinstance(answer, Ragged) else len(answer)


def _case(prepared: Prepared, name: str) -> Case:
    for case in [*prepared.cases, *([prepared.burst] if prepared.burst else [])]:
        if case.name == name:
            return case
    raise KeyError(name)


def _agreement(prepared: Prepared, served: dict[str, dict[str, Arrays]]) -> dict[str, bool]:
    """Every protocol must return exactly what HTTP binary returned for the same requests."""
    if "http" not in served:
        return {}
    base = served["http"]
    return {
        protocol: all(
            _equal(by_case[c.name][t.name], base[c.name][t.name]) for c in prepared.cases for t in prepared.spec.outputs
        )
        for protocol, by_case in served.items()
        if protocol != "http"
    }


def _accuracy(prepared: Prepared, served: dict[str, dict[str, Arrays]]) -> dict[str, float] | None:
    name = prepared.spec.network.class_output
    if prepared.truth is None or name is None:
        return None
    truth = prepared.truth
    framework = _case(prepared, ALL_SAMPLES).reference[name]
    result = {prepared.accuracy_key: _class_accuracy(framework, truth)}
    for protocol, by_case in served.items():
        result[protocol] = _class_accuracy(by_case[ALL_SAMPLES][name], truth)
    return result


def _class_accuracy(scores: np.ndarray, truth: np.ndarray) -> float:
    """The share of samples whose highest score is their true class."""
    return float(np.mean(np.argmax(scores, axis=-1) == truth))


def check_protocols(protocols: list[str]) -> list[str]:
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise ConfigError(f"protocols must be a non-empty subset of {list(PROTOCOLS)}, got {protocols}")
    return protocols
