"""A benchmark job: what `python -m evaluate.benchmark` was asked, typed once, the run that answers it, its reports.

`BenchmarkJob.from_cfg` is the one place the benchmark config is read: the load settings, the models
(the catalog and the measured ones), the server and its front, the inputs and where reports go.
`measure_benchmarks` runs every path for every model against one server; `write_benchmarks` writes the reports. Neither
reads the config again.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from pipelines.artifacts import export_failure
from pipelines.config.selection import selected, whole_catalog
from pipelines.config.spec import ModelSpec, served_specs
from pipelines.core.atomic import atomic_path, prune_reports, write_json, write_text
from pipelines.model_repository import fingerprint
from pipelines.performance.benchmark_report import ModelBenchmark, fp32_of, plot, precisions
from pipelines.performance.measured_paths import measure_flask, measure_in_process, measure_triton, server_memory
from pipelines.performance.measurement import Bench, LoadSettings, benchmark_inputs
from pipelines.serving.front_settings import FrontSettings
from pipelines.serving.launcher import serve
from pipelines.serving.settings import ServerSettings


@dataclasses.dataclass(frozen=True)
class BenchmarkJob:
    load: LoadSettings
    catalog: Mapping[str, ModelSpec]
    specs: list[ModelSpec]  # the measured ones: every model with a batch axis among those chosen
    unbatched: list[str]  # chosen but not measured: every path sends batches (batch 1 and max_batch_size)
    export_failed: list[str]  # chosen but not measured: their export failed (parity fails them with the reason)
    whole_catalog: bool  # model=all: reports of models gone from the catalog are pruned
    server: ServerSettings
    front: FrontSettings
    releases: Mapping[str, Any]  # conf/triton_versions.yaml
    repository: Path
    data: str  # paths.data: the parity inputs every path is sent
    logs: Path
    models: DictConfig  # the run's models config, handed to the Flask baseline's process as YAML
    reports: Path  # committed: ratios (ModelBenchmark.recorded)
    metrics: Path
    host: Path  # this host's timings, tables and plot (not committed)
    keys: Mapping[str, str] = dataclasses.field(default_factory=dict)  # each measured model's proof key
    kept: list[str] = dataclasses.field(default_factory=list)  # reuse=true: reports kept, their key unchanged

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> BenchmarkJob:
        catalog = served_specs(cfg.models)
        chosen = with_fp32_models(selected(cfg, catalog), catalog)
        failed = {s.name for s in chosen if export_failure.reason(s) is not None}
        server = launched_server(ServerSettings.from_cfg(cfg.server))
        server.require_tensorrt_host(chosen, cfg.triton_releases)
        load, front = LoadSettings.from_cfg(cfg.load), FrontSettings.from_cfg(cfg.balancer)
        measured = [s for s in chosen if s.max_batch_size > 0 and s.name not in failed]
        settings = {"load": repr(load), "server": repr(server), "front": repr(front)}
        keys = {
            s.name: fingerprint.key(s, catalog, settings, str(cfg.instance_kind), Path(cfg.paths.data))
            for s in measured
        }
        reports = Path(cfg.load.reports)
        metrics = Path(cfg.load.metrics)
        host = Path(cfg.load.host_reports)
        holds = {
            s.name
            for s in measured
            if cfg.reuse
            and (metrics / f"{s.name}.json").is_file()  # its headline ratios too (the DVC metrics)
            and _recorded_key(reports, s.name) == keys[s.name]
        }
        # a lossy model's gains over its FP32 model are ratios of one run: a network's precisions are measured together
        again = {(s.network.name, s.format) for s in measured if s.name not in holds}
        kept = [s.name for s in measured if s.name in holds and (s.network.name, s.format) not in again]
        return cls(
            load=load,
            catalog=catalog,
            specs=[s for s in measured if s.name not in kept],
            unbatched=[s.name for s in chosen if s.max_batch_size == 0],
            export_failed=[s.name for s in chosen if s.name in failed],
            whole_catalog=whole_catalog(cfg),
            server=server,
            front=front,
            releases=cfg.triton_releases,
            repository=Path(cfg.model_repository),
            data=str(cfg.paths.data),
            logs=Path(cfg.paths.logs),
            models=cfg.models,
            reports=reports,
            metrics=metrics,
            host=host,
            keys=keys,
            kept=kept,
        )


def with_fp32_models(chosen: list[ModelSpec], catalog: Mapping[str, ModelSpec]) -> list[ModelSpec]:
    """`chosen` and the FP32 model of each lossy one among them: its gains over it are ratios of one run."""
    lossy = {(s.network.name, s.format) for s in chosen if s.precision and s.precision != "fp32"}
    names = {s.name for s in chosen}
    return chosen + [
        s
        for s in catalog.values()
        if s.precision == "fp32" and (s.network.name, s.format) in lossy and s.name not in names
    ]


def _recorded_key(reports: Path, model: str) -> str | None:
    """The proof key a model's benchmark report records; None when there is no readable report."""
    try:
        return json.loads((reports / f"{model}.json").read_text()).get("proof_key")
    except (OSError, ValueError, AttributeError):
        return None


def launched_server(server: ServerSettings) -> ServerSettings:
    """The server with explicit model control, so the batching-off variant can be loaded in place, and its
    statistics open: perf_analyzer reads them over gRPC, where it sends no header (its `-H` is HTTP-only). The
    benchmark's server lives on loopback for the run only; every other API stays behind the operator key."""
    explicit = server.loading_only(["*"])
    if explicit.flags is None or not explicit.launched:  # remote: launched elsewhere, with its own options
        return explicit
    restricted = tuple(api for api in explicit.flags.restricted_apis if api != "statistics")
    return dataclasses.replace(explicit, flags=dataclasses.replace(explicit.flags, restricted_apis=restricted))


def measure_benchmarks(job: BenchmarkJob) -> list[ModelBenchmark]:
    """Every chosen path of every model: the local ones first, one model at a time, then Triton's on one server."""
    settings, specs = job.load, job.specs
    if not specs:  # every report kept (reuse=true): no server to start
        return []
    kind = job.server.kind
    here = kind != "remote" and job.front.kind == "none"  # the server is this host's own, unbalanced
    bench = Bench(settings, specs, dict(job.catalog))
    arrays = {spec.name: benchmark_inputs(spec, job.data) for spec in specs}
    try:
        for spec in specs:
            if spec.format == "tensorrt":
                local_paths = [p for p in ("in_process", "flask") if p in settings.measure]
                bench.skip(
                    spec,
                    " and ".join(local_paths) or "in_process",
                    "a TensorRT engine runs in process only with TensorRT here",
                    sum(bench.latency_points(spec, p) for p in local_paths),
                )
                continue
            if "in_process" in settings.measure:
                measure_in_process(bench, spec, arrays[spec.name])
            if "flask" in settings.measure:
                measure_flask(bench, spec, arrays[spec.name], job.logs, job.models)
        with serve(job.server, job.repository, job.releases, job.front) as endpoints:
            for spec in specs:
                measure_triton(bench, spec, arrays[spec.name], endpoints, same_host=here, can_reload=here)
            memory = server_memory(endpoints, specs) if kind == "local" else {}
            description = endpoints.server
    finally:
        bench.progress.close()
    return [
        ModelBenchmark(
            s.name,
            s.format,
            description,
            settings.__dict__ | {"concurrency": list(settings.concurrency), "measure": list(settings.measure)},
            bench.points[s.name],
            bench.memory[s.name] | memory.get(s.name, {}),
            bench.cross[s.name],
            bench.skipped[s.name],
            s.network.name,
            s.precision,
            artifact_bytes(s),
            job.keys.get(s.name, ""),
        )
        for s in specs
    ]


def write_benchmarks(
    results: list[ModelBenchmark], out: Path, metrics: Path, host: Path, served: set[str] | None = None
) -> None:
    """Each model's committed report (ratios), headline and this host's report (timings); then the table, plot and
    curves of every model this host measured, in `host`. `served` (a model=all run): the reports of any other model,
    kept from an earlier run (DVC's persist), go."""
    for result in results:
        write_json(host / f"{result.model}.json", result.to_dict())
    if served is not None:
        prune_reports([out, metrics, host], served, keep=("curves.json",))
    if not results:  # every report kept (reuse=true): nothing measured, and this host may have no timings at all
        return
    everything = [
        ModelBenchmark.from_dict(json.loads(p.read_text()))
        for p in sorted(host.glob("*.json"))
        if p.name != "curves.json"
    ]
    for result in results:  # a lossy model's gains over its FP32 model, measured in this run (BenchmarkJob.kept)
        write_json(out / f"{result.model}.json", result.recorded(fp32_of(result, results)))
        write_json(metrics / f"{result.model}.json", result.headline())
    write_json(host / "curves.json", [row for r in everything for row in r.curve()])
    compared = precisions(everything)
    write_text(
        host / "benchmark.md",
        "# Serving benchmark\n\n"
        + (compared + "\n\n" if compared else "")
        + "\n\n".join(r.table() for r in everything)
        + "\n",
    )
    with atomic_path(host / "benchmark.png", suffix=".png") as tmp:
        plot(everything, tmp)


def artifact_bytes(spec: ModelSpec) -> int | None:
    """The served file's size on disk (a SavedModel: its directory), where it is one here."""
    path = spec.artifact
    if spec.format == "ensemble" or not path.exists():
        return None
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
