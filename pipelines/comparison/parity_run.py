"""Parity's running half, the only one that runs models and sends requests: it produces outputs and judges nothing.

`prepare` builds a model's inputs (real digits, image-like tensors, a user's sample or inputs generated from the
spec) and runs its reference (the framework, or an added model's own source) on them; `collect` sends the same
inputs to Triton over every protocol (several batch sizes, all samples in max_batch_size chunks, each other size of
an open dimension, and a concurrent burst the dynamic batcher can merge) and runs an ensemble's server-side
pre-processing. `parity_judge` turns what they return into the report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from pipelines.comparison.parity_cases import ALL_SAMPLES, CLASS_COUNT, Case, Prepared, Served, StepAnswer
from pipelines.config import ensemble_parts
from pipelines.config.spec import ModelSpec
from pipelines.core.errors import ConfigError, DataError
from pipelines.data import images, labels, parity_inputs, preprocessing_audit
from pipelines.model_repository import standins
from pipelines.outputs.answers import Arrays, concat, take, unbatched
from pipelines.runners import reference, runtimes
from pipelines.serving.endpoints import Endpoints
from pipelines.serving.served_model import PROTOCOLS, ServedModel

log = logging.getLogger(__name__)


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
    cases = [Case(f"batch_{b}", take(samples, 0, b), [b]) for b in batch_sizes]
    for tag, group in sampled.groups.items():  # other sizes of the open dimensions: requests of their own
        size = min(len(next(iter(group.values()))), max_batch)
        cases.append(
            Case(f"shape_{tag}", take(group, 0, size), [1] * size if spec.max_batch_size == 0 else [size], own=True)
        )
    cases.append(Case(ALL_SAMPLES, samples, _chunks(total, max_batch)))
    burst = min(burst, total)
    burst_case = Case(f"burst_{burst}", take(samples, 0, burst), [1] * burst) if burst > 0 else None
    parts = ensemble_parts.parts(spec, catalog or {}) if spec.format == "ensemble" else None
    labelled = any(t.labels for t in spec.outputs) and spec.labels_file is not None
    # the labels Triton answers with and the pre-processing constants (the classifier's, for an ensemble) against
    # torchvision's own metadata
    audited = parts.classifier.network if parts else spec.network
    audit = labels.audit_labels(audited) if labelled or parts else None
    constants = preprocessing_audit.audit_preprocessing(audited)
    names = None
    if labelled:
        names = audit.expected if audit is not None and audit.expected is not None else labels.read_labels(spec.network)
    judged_lossy = spec.lossy is not None  # its own file runs here, in ONNX Runtime; the FP32 model apart
    if parts:
        run_reference, described = reference.load_ensemble(parts), spec.reference
    elif judged_lossy:
        own, described = runtimes.own_file(spec)
        run_reference = unbatched(spec, own)
    else:
        run_reference, described = unbatched(spec, reference.reference_runner(spec)), ""
    everything = concat([run_reference(part) for part in cases[-1].split()])  # once per distinct input
    # named once it ran: onnx.reference hands a model it cannot run to ONNX Runtime, and the name says so
    described = described or reference.describe_reference(spec.network)
    log.info("%s: reference (%s) on %d samples", spec.name, described, total)
    fp32 = None
    if judged_lossy:
        log.info("%s: FP32 %s on %d samples", spec.name, reference.describe_reference(spec.network), total)
        run_fp32 = unbatched(spec, reference.reference_runner(spec))
        fp32 = concat([run_fp32(part) for part in cases[-1].split()])
    for case in [*cases, *([burst_case] if burst_case else [])]:
        case.reference = (
            concat([run_reference(p) for p in case.split()]) if case.own else take(everything, 0, case.size)
        )
    return Prepared(spec, cases, burst_case, sampled.labels, parts, names, described, fp32, audit, constants)


def check_protocols(protocols: list[str]) -> list[str]:
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise ConfigError(f"protocols must be a non-empty subset of {list(PROTOCOLS)}, got {protocols}")
    return protocols


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


def collect(prepared: Prepared, endpoints: Endpoints, protocols: list[str], local: bool = False) -> Served:
    """Send every case over every usable protocol, ask for classifications, burst, run the pre-processing step.

    `local`: the server runs in this environment (its stand-ins' runtime versions are ours).
    """
    spec = prepared.spec
    skipped = skipped_protocols(spec, protocols)
    protocols = [p for p in protocols if p not in skipped]
    served: dict[str, dict[str, Arrays]] = {p: {} for p in protocols}
    burst = prepared.burst
    preprocessing = preprocessing_step(prepared, endpoints) if prepared.parts is not None else None
    with ServedModel(spec, endpoints) as model:
        backend = standins.served_by(model.check_ready(), local, model.served_config)
        all_samples = prepared.case(ALL_SAMPLES)
        for protocol in protocols:
            start = time.perf_counter()
            answers: dict[tuple[int, int], Arrays] = {}  # each distinct request sent once per protocol
            infer = unbatched(spec, lambda arrays, protocol=protocol: model.infer(protocol, arrays))
            for case in prepared.cases:
                if case.own:
                    served[protocol][case.name] = concat([infer(part) for part in case.split()])
                    continue
                for span in case.spans():
                    if span not in answers:
                        answers[span] = infer(take(all_samples.inputs, *span))
                served[protocol][case.name] = concat([answers[span] for span in case.spans()])
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
                classes = [model.classify(protocol, part, tensor.name, CLASS_COUNT) for part in all_samples.split()]
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


def preprocessing_step(prepared: Prepared, endpoints: Endpoints) -> StepAnswer:
    """The ensemble's server-side pre-processing step and the client-side one, on the same image bytes."""
    parts = prepared.parts
    assert parts is not None
    settings = parts.ensemble.network.require_preprocessing("the ensemble's pre-processing check").settings()
    images_in = prepared.case(ALL_SAMPLES).inputs[parts.image.name]
    expected = np.stack([images.preprocess(item, settings) for item in images_in.reshape(-1)])
    (out,) = parts.preprocess.outputs
    with ServedModel(parts.preprocess, endpoints) as step:
        got = np.concatenate(
            [
                step.infer("grpc", {parts.image.name: images_in[i : i + parts.ensemble.max_batch_size]})[out.name]
                for i in range(0, len(images_in), parts.ensemble.max_batch_size)
            ]
        )
    return StepAnswer(parts.preprocess.name, got, expected)
