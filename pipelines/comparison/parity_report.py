"""The parity report: typed results per model, protocol and output; JSON both ways; the printed table.

`parity_judge.evaluate` builds a `ParityReport` (compare and judge in one place); the parity stage
writes `to_dict()` as `reports/parity/<model>.json` and `headline()` (the DVC metrics the gate reads)
as `reports/parity_metrics/<model>.json`; `ParityReport.from_dict` reads a full report back, so a
tool that consumes them works with the same types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from pipelines.comparison.lossy import OWN_FILE, LossyResult
from pipelines.comparison.recorded_figures import error_figure, recorded
from pipelines.config.tolerances import Tolerance
from pipelines.outputs.metrics import OutputMetrics


@dataclass(frozen=True)
class OutputResult:
    """One output over one protocol: error metrics for numbers, an exact row-by-row match for BYTES."""

    samples: int
    passed: bool
    metrics: OutputMetrics | None = None  # None: a BYTES output, compared exactly
    mismatched_samples: int | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.metrics is None:
            return {"samples": self.samples, "mismatched_samples": self.mismatched_samples, "passed": self.passed}
        return {**recorded(self.metrics.to_dict(), keep_worst=not self.passed), "passed": self.passed}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutputResult:
        if "mismatched_samples" in data:
            return cls(int(data["samples"]), bool(data["passed"]), None, int(data["mismatched_samples"]))
        metrics = OutputMetrics(**{f.name: data[f.name] for f in fields(OutputMetrics) if f.name in data})
        return cls(metrics.samples, bool(data["passed"]), metrics)


@dataclass(frozen=True)
class ProtocolResult:
    """Every output of one protocol; `cases`: how many samples each case sent."""

    cases: dict[str, int]
    outputs: dict[str, OutputResult]

    def to_dict(self) -> dict[str, Any]:
        return {"cases": dict(self.cases), "outputs": {k: v.to_dict() for k, v in self.outputs.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProtocolResult:
        return cls(dict(data["cases"]), {k: OutputResult.from_dict(v) for k, v in data["outputs"].items()})


@dataclass(frozen=True)
class ClassificationCheck:
    """Triton's top-k "score:index:label" strings against the raw served output and the labels file."""

    k: int
    samples: int
    max_score_diff: float
    passed: bool
    problem: str = ""


@dataclass(frozen=True)
class PreprocessingCheck:
    """An ensemble's server-side pre-processing step against the client-side one, on the same images."""

    model: str
    samples: int
    max_abs: float
    passed: bool


@dataclass(frozen=True)
class ParityReport:
    """What was checked for one model, against what, on which server, and the verdict with its reasons."""

    model: str
    network: str
    format: str
    precision: str
    reference: str
    tolerance: Tolerance
    server: dict[str, str]  # kind, description, Triton's version (no ports: reruns stay comparable)
    served_by: dict[str, Any]  # what ran the model, from the config Triton serves
    protocols: dict[str, ProtocolResult]
    protocol_agreement: dict[str, bool] = field(default_factory=dict)  # bit-identical to HTTP binary
    classification: dict[str, dict[str, ClassificationCheck]] | None = None
    accuracy: dict[str, float] | None = None  # "framework" and each protocol
    dynamic_batching: dict[str, Any] = field(default_factory=dict)  # requests, merged (fewer executions)
    skipped_protocols: dict[str, str] = field(default_factory=dict)
    preprocessing: PreprocessingCheck | None = None
    failures: list[str] = field(default_factory=list)
    engines: dict[str, Any] | None = None  # TensorRT plans' metadata, per compute capability
    artifacts: list[dict[str, str]] = field(default_factory=list)  # served path, source, SHA-256 of each
    lossy: LossyResult | None = None  # an FP16/INT8 model against the FP32 framework model (the precision's cost)
    labels: dict[str, Any] | None = None  # the label audit: source of the expected names, passed, problem
    constants: dict[str, Any] | None = None  # the pre-processing constants' audit: source, passed, problems
    proof_key: str = ""  # what the verdict was made from (model_repository/fingerprint.py): kept while it holds

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (DVC metrics), error figures as recorded (comparison/recorded_figures.py)."""
        data: dict[str, Any] = {
            "model": self.model,
            "network": self.network,
            "format": self.format,
            "precision": self.precision,
            "reference": self.reference,
            "passed": self.passed,
            "failures": list(self.failures),
            "tolerance": asdict(self.tolerance),
            "server": dict(self.server),
            "served_by": self.served_by,
            "protocols": {k: v.to_dict() for k, v in self.protocols.items()},
            "protocol_agreement": dict(self.protocol_agreement),
            "classification": None
            if self.classification is None
            else {p: {o: asdict(c) for o, c in by_output.items()} for p, by_output in self.classification.items()},
            "accuracy": self.accuracy,
            "dynamic_batching": dict(self.dynamic_batching),
            "skipped_protocols": dict(self.skipped_protocols),
            "preprocessing": None if self.preprocessing is None else asdict(self.preprocessing),
            "artifacts": [dict(a) for a in self.artifacts],
        }
        if self.engines is not None:
            data["engines"] = self.engines
        if self.lossy is not None:
            data["lossy"] = self.lossy.to_dict()
        if self.labels is not None:
            data["labels"] = dict(self.labels)
        if self.constants is not None:
            data["constants"] = dict(self.constants)
        if self.proof_key:
            data["proof_key"] = self.proof_key
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParityReport:
        classification = data.get("classification")
        preprocessing = data.get("preprocessing")
        return cls(
            model=data["model"],
            network=data["network"],
            format=data["format"],
            precision=data["precision"],
            reference=data["reference"],
            tolerance=Tolerance(**data["tolerance"]),
            server=dict(data["server"]),
            served_by=dict(data["served_by"]),
            protocols={k: ProtocolResult.from_dict(v) for k, v in data["protocols"].items()},
            protocol_agreement=dict(data.get("protocol_agreement") or {}),
            classification=None
            if classification is None
            else {
                p: {o: ClassificationCheck(**c) for o, c in by_output.items()}
                for p, by_output in classification.items()
            },
            accuracy=data.get("accuracy"),
            dynamic_batching=dict(data.get("dynamic_batching") or {}),
            skipped_protocols=dict(data.get("skipped_protocols") or {}),
            preprocessing=None if preprocessing is None else PreprocessingCheck(**preprocessing),
            failures=list(data.get("failures") or []),
            engines=data.get("engines"),
            artifacts=[dict(a) for a in data.get("artifacts") or []],
            lossy=LossyResult.from_dict(data["lossy"]) if data.get("lossy") else None,
            labels=dict(data["labels"]) if data.get("labels") else None,
            constants=dict(data["constants"]) if data.get("constants") else None,
            proof_key=str(data.get("proof_key") or ""),
        )

    def headline(self) -> dict[str, Any]:
        """The few figures declared as DVC metrics, so `dvc metrics show` and `diff` fit a pull-request comment.

        Worst cases over every protocol and numeric output; accuracies where the inputs carry labels.
        """
        numeric = [o.metrics for p in self.protocols.values() for o in p.outputs.values() if o.metrics is not None]
        figures: dict[str, Any] = {
            "passed": self.passed,
            "protocols_agree": all(self.protocol_agreement.values()),
            "max_abs": error_figure(max((m.max_abs for m in numeric), default=0.0)),
            "needed_atol": error_figure(max((m.needed_atol for m in numeric), default=0.0)),
        }
        strict = "framework" if self.lossy is None else OWN_FILE  # what the served accuracy must equal (else: FAIL)
        served = [v for k, v in (self.accuracy or {}).items() if k != strict]
        if self.accuracy and served:
            # a lossy model's framework is the FP32 model, and its figure is what the precision costs against it
            figures["framework_accuracy"] = self.accuracy[strict] if self.lossy is None else self.lossy.fp32_accuracy
            figures["served_accuracy"] = min(served)
            if self.lossy is not None:
                figures["accuracy_drop"] = self.lossy.accuracy_drop
        return figures

    def table(self) -> str:
        """The human-readable summary printed after a check."""
        tol, server, backend = self.tolerance, self.server, self.served_by
        lines = [
            f"Parity: {self.model} ({self.format}, {self.precision}) vs {self.reference}"
            f"   tolerance atol={tol.atol:g} rtol={tol.rtol:g} cosine>={tol.min_cosine}",
            (
                f"served by: {backend['implementation']} (platform {backend['platform']}) on "
                f"{server['description']}, Triton {server['triton_version']}"
                if backend
                else "served by: nothing"
            ),
            f"{'protocol':<10} {'output':<14} {'samples':>7} {'max_abs':>9} {'mean_abs':>9} {'max_rel':>9} "
            f"{'cosine':>10} {'top1':>6} {'top5':>6} {'need_atol':>9}  result",
        ]
        for protocol, entry in self.protocols.items():
            for output, result in entry.outputs.items():
                lines.append(f"{protocol:<10} {output:<14} {result.samples:>7} " + _row(result))
        for protocol, by_output in (self.classification or {}).items():
            for output, check in by_output.items():
                lines.append(
                    f"classification {protocol} {output}: top-{check.k} labels and scores "
                    f"{'match the raw output' if check.passed else 'DIFFER: ' + check.problem}"
                )
        lines += [f"{protocol} skipped: {why}" for protocol, why in self.skipped_protocols.items()]
        if self.labels is not None:
            lines.append(
                f"labels: as {self.labels['source']}"
                if self.labels["passed"]
                else f"labels DIFFER: {self.labels['problem']}"
            )
        if self.constants is not None:
            lines += (
                [f"pre-processing constants: as {self.constants['source']}"]
                if self.constants["passed"]
                else [f"pre-processing constant DIFFERS: {problem}" for problem in self.constants["problems"]]
            )
        if self.preprocessing:
            p = self.preprocessing
            lines.append(
                f"server-side pre-processing ({p.model}) vs client-side on {p.samples} images: "
                f"max abs {p.max_abs:.3g} {'ok' if p.passed else 'FAIL'}"
            )
        if self.protocol_agreement:
            same = ", ".join(f"{p} {'identical' if ok else 'DIFFERENT'}" for p, ok in self.protocol_agreement.items())
            lines.append(f"vs http binary: {same}")
        for step, step_backend in (backend.get("steps") or {}).items():
            lines.append(f"ensemble step {step}: {step_backend['implementation']}")
        if self.accuracy:
            lines.append("accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in self.accuracy.items()))
        if self.lossy is not None:
            lines += self.lossy.lines()
        if self.dynamic_batching:
            b = self.dynamic_batching
            verdict = {True: "merged into fewer executions", False: "ran one execution each"}.get(
                b["merged"], f"not counted ({b.get('not_counted')})"
            )
            lines.append(f"dynamic batching: {b['requests']} concurrent requests {verdict}")
        lines.append(f"RESULT: {'PASS' if self.passed else 'FAIL'}")
        lines += [f"  - {f}" for f in self.failures]
        return "\n".join(lines)


def _row(result: OutputResult) -> str:
    verdict = "ok" if result.passed else "FAIL"
    m = result.metrics
    if m is None:  # BYTES output, compared exactly
        match = "exact match" if result.passed else f"mismatched: {result.mismatched_samples}"
        return f"{match:<64}  {verdict}"  # the verdict under `result`
    top1 = "-" if m.top1_agreement is None else f"{m.top1_agreement:.3f}"
    top5 = "-" if m.top5_agreement is None else f"{m.top5_agreement:.3f}"
    return (
        f"{m.max_abs:>9.2e} {m.mean_abs:>9.2e} {m.max_rel:>9.2e} {m.cosine:>10.7f} {top1:>6} {top5:>6} "
        f"{m.needed_atol:>9.2e}  {verdict}"
    )
