"""A parity job: what `python -m evaluate.parity` was asked, typed once, and the run that answers it.

`ParityJob.from_cfg` is the one place the parity config is read: the models (the catalog and the chosen
ones), the server and its front, where reports go (tracked, or ad hoc when the settings differ from conf/)
and the localize settings. `check_parity` runs the proof against one server; `localize_model` blames the first
layer of one ONNX model. Neither reads the config again.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import tritonclient.grpc as grpcclient
from omegaconf import DictConfig, ListConfig, OmegaConf
from tritonclient.utils import InferenceServerException

from pipelines.artifacts import export_failure, quantization
from pipelines.comparison import localize, parity_judge, parity_run
from pipelines.comparison.parity_cases import Prepared
from pipelines.comparison.parity_report import ParityReport
from pipelines.config.selection import selected, whole_catalog
from pipelines.config.spec import ModelSpec, served_specs
from pipelines.core.atomic import atomic_path, prune_reports, write_json
from pipelines.core.background import Background
from pipelines.core.cli import compose, run_overrides
from pipelines.core.errors import ArtifactError, ConfigError, DataError, ModelNotServed, ServerError, checked_number
from pipelines.data import parity_inputs
from pipelines.model_repository import assembly, fingerprint
from pipelines.outputs.answers import concat, unbatched
from pipelines.runners.reference import onnxruntime_runner
from pipelines.serving.endpoints import Endpoints
from pipelines.serving.front_settings import FrontSettings
from pipelines.serving.launcher import serve
from pipelines.serving.served_model import ServedModel, server_version
from pipelines.serving.settings import ServerSettings
from pipelines.trt import plans


@dataclasses.dataclass(frozen=True)
class ParityReports:
    """Where a run's reports go: one full report per model, and its headline figures (the DVC metrics)."""

    full: Path
    metrics: Path

    def write(self, report: ParityReport) -> None:
        write_json(self.full / f"{report.model}.json", report.to_dict())
        write_json(self.metrics / f"{report.model}.json", report.headline())


@dataclasses.dataclass(frozen=True)
class Localize:
    """`localize=true`: how many samples to send (one per request) and the relative error a tensor may reach."""

    samples: int
    bound: float


@dataclasses.dataclass(frozen=True)
class ParityJob:
    catalog: Mapping[str, ModelSpec]
    specs: list[ModelSpec]
    whole_catalog: bool  # model=all: reports of models gone from the catalog are pruned
    protocols: list[str]
    server: ServerSettings
    front: FrontSettings
    releases: Mapping[str, Any]  # conf/triton_versions.yaml: which TensorRT each Triton image carries
    repository: Path
    reports: ParityReports
    adhoc: Path  # paths.parity_adhoc
    data: str  # paths.data
    instance_kind: str
    localize: Localize | None
    reuse: bool = False  # keep a passed report whose proof key holds (pipelines/model_repository/fingerprint.py)

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> ParityJob:
        catalog = served_specs(cfg.models)
        specs = selected(cfg, catalog)
        server = ServerSettings.from_cfg(cfg.server)
        server.require_tensorrt_host(specs, cfg.triton_releases)
        localize = None
        if cfg.localize:
            localize = Localize(
                checked_number(cfg.localize_samples, "localize_samples", int, 1),
                checked_number(cfg.localize_bound, "localize_bound", float, 0.0),
            )
        repository, reports = profile_paths(cfg, specs)
        return cls(
            catalog=catalog,
            specs=specs,
            whole_catalog=whole_catalog(cfg),
            protocols=parity_run.check_protocols([str(p) for p in cfg.protocols]),
            server=server,
            front=FrontSettings.from_cfg(cfg.balancer),
            releases=cfg.triton_releases,
            repository=repository,
            reports=reports if localize else tracked_or_adhoc(cfg, specs, reports),
            adhoc=Path(cfg.paths.parity_adhoc),
            data=str(cfg.paths.data),
            instance_kind=str(cfg.instance_kind),
            localize=localize,
            reuse=bool(cfg.get("reuse", False)) and not localize,
        )


def profile_paths(cfg: DictConfig, specs: list[ModelSpec]) -> tuple[Path, ParityReports]:
    """Repository and reports: a TensorRT model chosen by name is served from the GPU profile's repository."""
    if not whole_catalog(cfg) and any(s.format == "tensorrt" for s in specs):
        return Path(cfg.paths.model_repository_gpu), ParityReports(
            Path(cfg.paths.parity_reports_gpu), Path(cfg.paths.parity_metrics_gpu)
        )
    return Path(cfg.model_repository), ParityReports(Path(cfg.parity_reports), Path(cfg.parity_metrics))


# Overrides that choose what conf/ already defines, how much to re-prove or whether a failure stops the command, not
# what is proven: a run given only these is conf/'s own check (the catalog's profile is the one its configured check
# composes)
AS_CONFIGURED = frozenset({"model", "catalog", "reuse", "record_failure"})


# What a run proves besides each model's spec: the protocols, the data, the repository served and which server serves
# it (launched or remote, its image or address, its flags), and whether requests pass a front; where the run's
# differ from conf/'s, it proves something else. Not: ports, timeouts, logs, restarts, the account it runs as.
PROVING = (
    "protocols",
    "paths.data",
    "model_repository",
    "server.kind",
    "server.image",
    "server.http_url",
    "server.grpc_url",
    "server.extra_args",
    "balancer.kind",
    "balancer.replicas",
)


def tracked_or_adhoc(cfg: DictConfig, specs: list[ModelSpec], reports: ParityReports) -> ParityReports:
    """Where reports go: the tracked directories only when the check is the one conf/ defines.

    A run whose model settings or `PROVING` settings differ from conf/ (command-line overrides) proves
    something else: its reports go to `paths.parity_adhoc`, never over the recorded proof. Reports
    sent elsewhere by the user take their headline figures with them.
    """
    if not cfg.get("profile"):
        raise ConfigError("the catalog names no `profile:` (its own name, as conf/catalog/cpu.yaml does)")
    given = run_overrides("parity")
    if given is not None and all(o.lstrip("+~").split("=", 1)[0] in AS_CONFIGURED for o in given):
        configured_cfg = cfg  # the command line chose only these: its config is conf/'s (no second composition)
    else:
        configured_cfg = compose("parity", [f"model={cfg.model.name}", f"catalog={cfg.profile}"])
    configured = {s.name: s for s in selected(configured_cfg)}
    changes = []
    for key in PROVING:
        was, now = (_setting(c, key) for c in (configured_cfg, cfg))
        if was != now:
            changes.append(f"{key} {was} -> {now}")
    for spec in specs:
        changes += (
            differences(configured[spec.name], spec, f"{spec.name}.")
            if spec.name in configured
            else [f"{spec.name} (not in conf/)"]
        )
    tracked = profile_paths(configured_cfg, specs)[1]
    if reports.full.resolve() != tracked.full.resolve():  # the user chose where reports go: the figures go along,
        if reports.metrics.resolve() == tracked.metrics.resolve():  # never into the tracked metrics alone
            return ParityReports(reports.full, reports.full / "metrics")
        return reports
    if not changes:
        return reports
    adhoc = Path(cfg.paths.parity_adhoc)
    print(
        f"note: settings differ from conf/ ({'; '.join(changes)}): reports go to {adhoc}/, not to the "
        f"tracked {reports.full}/",
        flush=True,
    )
    return ParityReports(adhoc, adhoc / "metrics")


def _setting(cfg: DictConfig, key: str) -> Any:
    """`key`'s value in `cfg` as plain data (None where that server kind or front has no such key)."""
    value = OmegaConf.select(cfg, key, default=None)
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def differences(configured: Any, run: Any, prefix: str = "") -> list[str]:
    """'name.field: configured -> run' for every field of two specs (nested dataclasses followed) that differs."""
    if configured == run:
        return []
    if not (dataclasses.is_dataclass(configured) and type(configured) is type(run)):
        return [f"{prefix.rstrip('.')}: {configured!r} -> {run!r}"]
    return [
        change
        for f in dataclasses.fields(configured)
        for change in differences(getattr(configured, f.name), getattr(run, f.name), f"{prefix}{f.name}.")
    ]


def check_parity(job: ParityJob) -> list[ParityReport]:
    """Run parity for the job's models against one server; write and return their reports. A model whose export
    failed (pipelines/artifacts/export_failure.py) fails with the exporter's reason and is not served. With
    `job.reuse`, a passed report whose proof key still holds is kept as it is, and its model is not served."""
    failed = {s.name: reason for s in job.specs if (reason := export_failure.reason(s)) is not None}
    settings = {"protocols": job.protocols, "server": repr(job.server), "front": repr(job.front)}
    keys = {
        s.name: fingerprint.key(s, job.catalog, settings, job.instance_kind, Path(job.data))
        for s in job.specs
        if s.name not in failed
    }
    kept = {
        name: report
        for name, key in keys.items()
        if job.reuse
        and (job.reports.metrics / f"{name}.json").is_file()  # its headline figures too (the DVC metrics)
        and (report := reusable(job.reports.full / f"{name}.json", key)) is not None
    }
    if kept:
        print(
            f"kept {len(kept)} passed report(s) whose proof still holds (reuse=true: nothing they were made from "
            f"changed): {', '.join(kept)}",
            flush=True,
        )
    exported = [s for s in job.specs if s.name in keys and s.name not in kept]
    proving = dataclasses.replace(job, specs=exported, whole_catalog=job.whole_catalog and not kept)
    by_name = {r.model: dataclasses.replace(r, proof_key=keys[r.model]) for r in _proven(proving)} if exported else {}
    for spec in job.specs:
        if spec.name in failed:
            by_name[spec.name] = parity_judge.export_failed(spec, job.server.kind, failed[spec.name])
    results = [kept.get(s.name) or by_name[s.name] for s in job.specs]
    for report in results:
        if report.model not in kept:
            job.reports.write(report)
    if job.whole_catalog:  # the reports kept between runs (DVC's persist): none of a model gone since
        prune_reports([job.reports.full, job.reports.metrics], set(job.catalog))
    return results


def reusable(path: Path, key: str) -> ParityReport | None:
    """The report at `path` when it passed with this proof key; None when it must be made again."""
    try:
        data = json.loads(path.read_text())
        return ParityReport.from_dict(data) if data.get("passed") and data.get("proof_key") == key else None
    except (OSError, ValueError, KeyError, TypeError):  # absent, torn or from an older layout: prove it again
        return None


def _proven(job: ParityJob) -> list[ParityReport]:
    """Every model of `job` served and compared (their exports exist)."""
    served = job.repository if job.server.launched else None  # a remote server's repository cannot be read here

    def provenance() -> dict[str, list[dict[str, str]]]:
        """SHA-256 of what is served; a repository copy that is not the current export, or a config.pbtxt that is
        not the one the spec generates (every field), is refused."""
        records = {s.name: assembly.provenance(s, job.catalog, served) for s in job.specs}
        for spec in job.specs if served is not None else []:
            assembly.check_configs(spec, job.catalog, served, job.instance_kind)
        return records

    # a stale repository is refused before a server is started on it; for a remote server the server comes
    # first: an unreachable one fails in seconds, before any local artifact is read
    checked = provenance() if served is not None else {}

    def prepare() -> list[Prepared | ReferenceFailed]:
        return [_prepared(spec, job) for spec in job.specs]

    early: list[Background[list[Prepared | ReferenceFailed]]] = []

    def loading() -> None:  # the framework references are computed while Triton loads its models
        early.append(Background(prepare, "references"))

    results = []
    server_settings = job.server if job.whole_catalog else job.server.loading_only([s.name for s in job.specs])
    with serve(server_settings, job.repository, job.releases, job.front, started=loading) as endpoints:
        checked = checked or provenance()
        if served is None:  # a remote server: what it reports of each config, in every field the spec sets
            fetch = served_configs(endpoints)
            for spec in job.specs:
                assembly.check_served_configs(spec, job.catalog, fetch, job.instance_kind)
        server = {
            "kind": job.server.kind,
            "description": endpoints.server,
            "triton_version": server_version(endpoints),
        }
        prepared = early[0].result() if early else prepare()  # a remote server: once it answered
        local = job.server.kind == "local"
        for item in prepared:
            try:
                if isinstance(item, ReferenceFailed):
                    report = parity_judge.reference_failed(item.spec, server, item.reason)
                else:
                    collected = parity_run.collect(item, endpoints, job.protocols, local)
                    report = parity_judge.evaluate(item, collected, server)
            except ModelNotServed as exc:  # that model's failure: the others are still proven
                report = parity_judge.not_served(item, server, str(exc))
            report = dataclasses.replace(report, artifacts=checked[item.spec.name])
            if item.spec.format == "tensorrt":  # the proof names the engines it was made with
                engines = {cc: meta for cc, (_, meta) in plans.plans(item.spec.artifact).items()}
                report = dataclasses.replace(report, engines=engines)
            results.append(report)
    return results


@dataclasses.dataclass(frozen=True)
class ReferenceFailed:
    """A model whose inputs or reference could not be made (its source gone or refusing its inputs): that model
    fails with the one-line reason, and every other model is still proven."""

    spec: ModelSpec
    reason: str


def _prepared(spec: ModelSpec, job: ParityJob) -> Prepared | ReferenceFailed:
    try:
        return parity_run.prepare(spec, job.data, job.catalog)
    except (ArtifactError, ConfigError, DataError) as exc:  # the user's files or settings: this model's failure
        return ReferenceFailed(spec, str(exc))


def served_configs(endpoints: Endpoints) -> Callable[[str], Any]:
    """A model name -> the config a running server reports for it (gRPC), in one line when it has none."""
    client = grpcclient.InferenceServerClient(endpoints.grpc)

    def fetch(name: str) -> Any:
        try:
            return client.get_model_config(name).config
        except InferenceServerException as exc:
            raise ServerError(
                f"the server at {endpoints.grpc} has no config for {name!r}: "
                f"{(exc.message() or '').splitlines()[0][:200]}"
            ) from None

    return fetch


def localize_model(job: ParityJob) -> tuple[Any, Path]:
    """Serve the debug copy of one ONNX model from a scratch repository and blame the first layer over the bound.
    Returns the typed result and where its JSON and plot were written."""
    assert job.localize is not None
    if len(job.specs) != 1 or job.specs[0].format != "onnx":
        raise ConfigError("localize=true takes one ONNX model: model=<name> (its debug copy exposes every tensor)")
    if job.server.kind != "local":
        raise ConfigError("localize=true serves a debug copy from a scratch repository: server=local only")
    (spec,) = job.specs
    # the FP32 export for a lossy model (the precision's cost, layer by layer), else the served file itself
    reference_file = quantization.source(spec) if spec.quantization is not None else spec.artifact
    reference_name = f"{reference_file} in onnxruntime"
    batched = spec.max_batch_size > 0
    inputs = parity_inputs.for_model(spec, job.localize.samples, job.data).head(job.localize.samples).arrays
    with tempfile.TemporaryDirectory(prefix="localize-") as tmp:
        work = Path(tmp)
        exposed = localize.expose(spec.artifact, work / "served.onnx", batched)
        reference_exposed = localize.expose(reference_file, work / "reference.onnx", batched)
        debug = localize.debug_spec(spec, work / "served.onnx", exposed)
        assembly.assemble([debug], work / "repository", job.instance_kind)
        run_reference = unbatched(
            spec, onnxruntime_runner(work / "reference.onnx", spec.inputs, [e.tensor for e in reference_exposed])
        )
        samples = [{k: v[i : i + 1] for k, v in inputs.items()} for i in range(len(next(iter(inputs.values()))))]
        reference = concat([run_reference(sample) for sample in samples])
        with (
            serve(job.server, work / "repository", job.releases) as endpoints,
            ServedModel(debug, endpoints) as model,
        ):  # one sample per request: every activation travels back
            infer = unbatched(debug, lambda arrays: model.infer("grpc", arrays))
            served = concat([infer(sample) for sample in samples])
    result = localize.compare(spec.name, reference_name, exposed, served, reference, job.localize.bound)
    if not result.layers:
        raise ArtifactError(f"no tensor of {spec.artifact} has a namesake in {reference_file}: nothing to compare")
    out = job.adhoc / "localize"
    write_json(out / f"{spec.name}.json", result.to_dict())
    with atomic_path(out / f"{spec.name}.png", suffix=".png") as png:
        result.plot(png)
    return result, out
