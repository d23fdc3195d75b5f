"""`python -m evaluate.benchmark model=<name>|all`: what serving costs next to running the model in process.

For each model, on the same inputs: the served file in its own runtime here (ONNX Runtime,
TensorFlow), the same runtime behind a one-process Flask server, and Triton over HTTP, gRPC and
gRPC with system shared memory; latency at batch 1 and `max_batch_size`, closed-loop throughput at
each concurrency, Triton with its dynamic batcher on and off, Triton's own breakdown of where the
time goes, memory, and perf_analyzer's figures beside ours. Writes reports/benchmark/: one JSON
report per model, headline ratios (DVC metrics), the latency-throughput curves (DVC plots), a PNG
and a Markdown table. Exit 0, or 2 on usage and environment errors.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import http.client
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from pipelines.config.selection import require_gpu_host, selected
from pipelines.config.spec import ModelSpec, served_specs
from pipelines.core import scratch
from pipelines.core.atomic import atomic_path, prune_reports, write_json, write_text
from pipelines.core.cli import CONF_DIR, hydra_main
from pipelines.core.errors import ConfigError, HostError, ServerError, checked_number
from pipelines.data import parity_inputs
from pipelines.performance import flask_wire, load, perf_analyzer
from pipelines.performance.benchmark_report import (
    BREAKDOWN,
    HEADLINE_POINTS,
    PATH_NAMES,
    CrossCheck,
    ModelBenchmark,
    Point,
    plot,
    precisions,
)
from pipelines.runners import runtimes
from pipelines.serving.balancer import FrontSettings
from pipelines.serving.launcher import Endpoints, free_port, serve
from pipelines.serving.served_model import ServedModel
from pipelines.serving.settings import ServerSettings

log = logging.getLogger(__name__)
PATHS = tuple(PATH_NAMES)  # in_process, flask, http, grpc, shm


@dataclass(frozen=True)
class Settings:
    """`conf/load/*.yaml`: what to measure and how long, checked (one-line ConfigErrors)."""

    warmup_s: float
    duration_s: float
    concurrency: tuple[int, ...]
    measure: tuple[str, ...]
    headline_only: bool
    batching_off: bool
    perf_analyzer: bool
    perf_analyzer_interval_ms: int

    @classmethod
    def from_cfg(cls, cfg: Any) -> Settings:
        number = lambda key, minimum: checked_number(cfg[key], key, float, minimum)  # noqa: E731

        levels = list(cfg.concurrency or [])
        if not levels or not all(isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= 256 for c in levels):
            raise ConfigError(f"concurrency must be a list of integers 1..256; got {levels!r}")
        paths = [str(p) for p in cfg.measure or []]
        unknown = [p for p in paths if p not in PATHS]
        if unknown or not paths:
            raise ConfigError(f"measure must name some of {', '.join(PATHS)}; got {paths!r}")
        return cls(
            number("warmup_s", 0.0),
            number("duration_s", 0.1),
            tuple(sorted(set(levels))),
            tuple(paths),
            bool(cfg.get("headline_only", False)),
            bool(cfg.batching_off),
            bool(cfg.perf_analyzer),
            checked_number(cfg.perf_analyzer_interval_ms, "perf_analyzer_interval_ms", int, 100),
        )


class Progress:
    """One bar over every measurement, saying which one runs (tqdm, on stderr)."""

    def __init__(self, total: int):
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="point", dynamic_ncols=True, file=sys.stderr)

    def step(self, what: str) -> None:
        self.bar.set_description(what)

    def done(self) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def inputs_for(spec: ModelSpec, data: str) -> dict[str, np.ndarray]:
    """`max_batch_size` samples of the model's parity inputs: every path gets the same ones."""
    return parity_inputs.for_model(spec, max(spec.max_batch_size, 1), data).arrays


def batch_of(arrays: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    return {k: v[:size] for k, v in arrays.items()}


def point(
    path: str,
    batch: int,
    concurrency: int,
    result: load.LoadResult,
    batching: bool | None = None,
    server_ms: dict[str, float] | None = None,
) -> Point:
    return Point(
        path,
        batch,
        concurrency,
        batching,
        result.requests,
        result.per_second(batch),
        result.percentile_ms(50),
        result.percentile_ms(90),
        result.percentile_ms(99),
        result.failures,
        server_ms or {},
    )


class Bench:
    """One run: settings, progress, and the points collected per model."""

    def __init__(self, settings: Settings, specs: list[ModelSpec], catalog: dict[str, ModelSpec]):
        self.settings, self.catalog = settings, catalog
        self.points: dict[str, list[Point]] = {s.name: [] for s in specs}
        self.skipped: dict[str, dict[str, str]] = {s.name: {} for s in specs}
        self.memory: dict[str, dict[str, float]] = {s.name: {} for s in specs}
        self.cross: dict[str, list[CrossCheck]] = {s.name: [] for s in specs}
        total = sum(
            sum(self.latency_points(s, p) for p in settings.measure)
            + (len(settings.concurrency) if settings.batching_off else 0)
            for s in specs
        )
        self.progress = Progress(total)

    def sweep(
        self,
        spec: ModelSpec,
        path: str,
        make_sender: Callable[[int, contextlib.ExitStack], Callable[[], Any]],
        concurrency: tuple[int, ...] | None = None,
        batching: bool | None = None,
        stats: Callable[[], list[dict]] | None = None,
    ) -> None:
        """Latency at batch 1 and max_batch_size (one at a time), then throughput at each concurrency (batch 1)."""
        s = self.settings
        for batch, level in self.plan(spec, path, concurrency):
            self.progress.step(
                f"{spec.name}: {path}{' (batching off)' if batching is False else ''} batch {batch} x{level}"
            )
            with contextlib.ExitStack() as clients:  # each worker's client, closed after the point
                before: list[Any] = []  # Triton's statistics where the counted window opens, not before the warm-up
                result = load.closed_loop(
                    lambda batch=batch, clients=clients: make_sender(batch, clients),
                    level,
                    s.warmup_s,
                    s.duration_s,
                    on_begin=(lambda before=before: before.append(stats())) if stats else None,
                )
                server_ms = breakdown(before[0], landed(stats, before[0], result.requests)) if stats else None
            if result.failures:
                log.warning(
                    "%s %s: %d requests failed, first: %s", spec.name, path, result.failures, result.first_failure
                )
            self.points[spec.name].append(point(path, batch, level, result, batching, server_ms))
            self.progress.done()

    def plan(self, spec: ModelSpec, path: str, concurrency: tuple[int, ...] | None = None) -> list[tuple[int, int]]:
        """(batch, concurrency) of each point: batch 1 and max_batch_size one at a time (unless a sweep's
        concurrency 1 measures it already), then batch 1 at each concurrency; only the latter when given levels.
        `headline_only`: just the points the headline ratios read (HEADLINE_POINTS; none for other paths)."""
        if self.settings.headline_only:
            return [(1, c) for c in HEADLINE_POINTS.get(path, ())]
        levels = concurrency or self.settings.concurrency
        latency = [] if concurrency else sorted({(1, 1), (max(spec.max_batch_size, 1), 1)} - {(1, c) for c in levels})
        return latency + [(1, c) for c in levels]

    def latency_points(self, spec: ModelSpec, path: str) -> int:
        """How many points one path's sweep measures for `spec`."""
        return len(self.plan(spec, path))

    def skip(self, spec: ModelSpec, what: str, why: str, points: int = 0) -> None:
        self.skipped[spec.name][what] = why
        for _ in range(points):
            self.progress.done()


def landed(stats: Callable[[], list[dict]], before: list[dict], answered: int, timeout_s: float = 2.0) -> list[dict]:
    """Triton's statistics once the answered requests are in them: Triton records a request after answering it,
    so a read right after the last answer can miss it. At once when they count `answered` more requests than
    `before`; else (answers that landed while `before` was read count in neither) once two reads agree."""

    def successes(snapshot: list[dict]) -> int:
        return sum(int(s["inference_stats"]["success"]["count"]) for s in snapshot)

    deadline = time.monotonic() + timeout_s
    after = stats()
    while successes(after) - successes(before) < answered and time.monotonic() < deadline:
        time.sleep(0.02)
        again = stats()
        if successes(again) == successes(after) > successes(before):
            return again
        after = again
    return after


def breakdown(before: list[dict] | None, after: list[dict]) -> dict[str, float]:
    """Triton's average per request (ms) over the window: queue, input copy, inference, output copy."""
    if before is None:
        return {}

    def total(stats: list[dict], key: str) -> tuple[int, int]:
        return (
            sum(int(s["inference_stats"][key]["count"]) for s in stats),
            sum(int(s["inference_stats"][key]["ns"]) for s in stats),
        )

    out = {}
    for key in BREAKDOWN:
        (c0, n0), (c1, n1) = total(before, key), total(after, key)
        out[key] = round((n1 - n0) / (c1 - c0) / 1e6, 4) if c1 > c0 else 0.0
    return out


# --------------------------------------------------------------------------- the paths


def measure_in_process(bench: Bench, spec: ModelSpec, arrays: dict[str, np.ndarray]) -> None:
    import psutil

    before = psutil.Process().memory_info().rss
    run = runtimes.load(spec, bench.catalog)
    run(batch_of(arrays, 1))  # first call: lazy initialisation out of the figures
    bench.memory[spec.name]["in_process (model loaded)"] = (psutil.Process().memory_info().rss - before) / 2**20
    bench.sweep(spec, "in_process", lambda b, _: lambda: run(batch_of(arrays, b)))
    run = None  # the session's memory back before the next model loads
    gc.collect()


@contextlib.contextmanager
def flask_server(spec: ModelSpec, models: Any, logs: Path) -> Iterator[tuple[str, Any]]:
    """The Flask baseline in a process of its own, on the very specs measured here (`models`: the run's models
    config, resolved, as YAML), stopped on the way out."""
    port = free_port()
    logs.mkdir(parents=True, exist_ok=True)
    log_file = logs / f"flask-{spec.name}.log"
    with scratch.scratch_dir(Path(tempfile.gettempdir()), "flask-baseline-") as work, open(log_file, "wb") as fh:
        specs = work / "models.yaml"
        OmegaConf.save(models, specs, resolve=True)
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(CONF_DIR.parent), os.environ.get("PYTHONPATH")]))
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "serve.flask_baseline", spec.name, str(port), str(specs)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        try:
            yield f"127.0.0.1:{port}", wait_for_flask(proc, spec.name, port, log_file)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for_flask(proc: subprocess.Popen, model: str, port: int, log_file: Path, timeout_s: float = 180) -> Any:
    """The baseline's process (psutil) once `/ready` answers; its log's last line if it exits first."""
    import psutil

    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            lines = log_file.read_text(errors="replace").strip().splitlines()
            raise ServerError(f"the Flask baseline for {model} exited: {(lines or ['?'])[-1]} (log: {log_file})")
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/ready")
            if conn.getresponse().status == 200:
                return psutil.Process(proc.pid)
        if time.monotonic() > deadline:
            raise ServerError(f"the Flask baseline for {model} did not start in {timeout_s:g} s (log: {log_file})")
        time.sleep(0.3)


def flask_sender(address: str, arrays: dict[str, np.ndarray], clients: contextlib.ExitStack) -> Callable[[], dict]:
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)  # one kept-alive connection per worker
    clients.callback(conn.close)

    def send() -> dict[str, np.ndarray]:
        conn.request(
            "POST", "/predict", body=flask_wire.dumps(arrays), headers={"Content-Type": "application/octet-stream"}
        )
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise ServerError(f"Flask answered {response.status}")
        return flask_wire.loads(data)

    return send


def measure_flask(bench: Bench, spec: ModelSpec, arrays: dict[str, np.ndarray], logs: Path, models: Any) -> None:
    with flask_server(spec, models, logs) as (address, proc):
        bench.sweep(spec, "flask", lambda b, clients: flask_sender(address, batch_of(arrays, b), clients))
        bench.memory[spec.name]["flask (process)"] = proc.memory_info().rss / 2**20


def measure_triton(
    bench: Bench,
    spec: ModelSpec,
    arrays: dict[str, np.ndarray],
    endpoints: Endpoints,
    same_host: bool,
    can_reload: bool,
) -> None:
    paths = bench.settings.measure
    levels = bench.latency_points(spec, "shm")
    with ServedModel(spec, endpoints) as probe:
        probe.check_ready()
        stats = probe.model_stats
        for path in ("http", "grpc"):
            if path in paths:
                protocol = path
                bench.sweep(
                    spec,
                    path,
                    lambda b, clients, p=protocol: _served_sender(spec, endpoints, p, batch_of(arrays, b), clients),
                    batching=True,
                    stats=stats,
                )
        if "shm" in paths:
            why = None if same_host else "system shared memory needs the server on this host (no balancer, no remote)"
            if why is None and any(t.dtype == "BYTES" for t in spec.tensors):
                why = "BYTES tensors (encoded images) have no fixed size for a shared-memory region"
            if why:
                bench.skip(spec, "shm", why, levels)
            else:
                bench.sweep(
                    spec,
                    "shm",
                    lambda b, clients: clients.enter_context(
                        clients.enter_context(ServedModel(spec, endpoints)).shared_memory(batch_of(arrays, b))
                    ),
                    batching=True,
                    stats=stats,
                )
        if bench.settings.batching_off:
            measure_batching_off(bench, spec, arrays, endpoints, probe, can_reload)
        if bench.settings.perf_analyzer and "grpc" in paths:
            cross_check(bench, spec, endpoints)


def _served_sender(
    spec: ModelSpec, endpoints: Endpoints, protocol: str, arrays: dict[str, np.ndarray], clients: contextlib.ExitStack
) -> Callable[[], Any]:
    model = clients.enter_context(ServedModel(spec, endpoints))  # one per worker: its own connections
    return lambda: model.infer(protocol, arrays)


def measure_batching_off(
    bench: Bench,
    spec: ModelSpec,
    arrays: dict[str, np.ndarray],
    endpoints: Endpoints,
    probe: ServedModel,
    can_reload: bool,
) -> None:
    """The gRPC sweep again with the dynamic batcher off: the model reloaded with that one change, then restored."""
    levels = len(bench.settings.concurrency)
    config = probe.served_config()
    if not config.HasField("dynamic_batching"):
        return bench.skip(
            spec, "batching off", "the model has no dynamic batcher (an ensemble's steps have their own)", levels
        )
    if not can_reload:
        return bench.skip(
            spec, "batching off", "needs a server this command launched (explicit model control, one replica)", levels
        )
    from google.protobuf import json_format

    config.ClearField("dynamic_batching")
    probe.grpc.load_model(spec.name, config=json_format.MessageToJson(config, preserving_proto_field_name=True))
    try:
        bench.sweep(
            spec,
            "grpc",
            lambda b, clients: _served_sender(spec, endpoints, "grpc", batch_of(arrays, b), clients),
            concurrency=bench.settings.concurrency,
            batching=False,
            stats=probe.model_stats,
        )
    finally:
        probe.grpc.load_model(spec.name)  # back to the repository's config


def cross_check(bench: Bench, spec: ModelSpec, endpoints: Endpoints) -> None:
    if any(t.dtype == "BYTES" for t in spec.tensors):
        bench.skipped[spec.name]["perf_analyzer"] = "BYTES inputs (encoded images): random data is not an image"
        return
    bench.progress.step(f"{spec.name}: perf_analyzer")
    rows = []
    for level in bench.settings.concurrency:
        try:
            rows += perf_analyzer.measure(
                spec.name, endpoints.grpc, "grpc", 1, [level], bench.settings.perf_analyzer_interval_ms
            )
        except HostError as exc:
            bench.skipped[spec.name][f"perf_analyzer at concurrency {level}"] = str(exc)
    for row in rows:
        ours = next(
            (
                p
                for p in bench.points[spec.name]
                if p.path == "grpc" and p.batch == 1 and p.concurrency == row.concurrency and p.dynamic_batching
            ),
            None,
        )
        if ours is not None:
            bench.cross[spec.name].append(
                CrossCheck(
                    row.concurrency,
                    round(ours.per_second, 2),
                    round(ours.p50_ms, 3),
                    round(row.per_second, 2),
                    round(row.p50_ms, 3),
                )
            )


def server_memory(endpoints: Endpoints, specs: list[ModelSpec]) -> dict[str, dict[str, float]]:
    """RSS of each launched tritonserver with its backend stubs, and of each model's stub processes."""
    import psutil

    servers = [p for p in psutil.Process().children(recursive=True) if p.name() == "tritonserver"]
    total = sum(p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True)) for p in servers)
    memory = {s.name: {"tritonserver with every model (all replicas)": total / 2**20} for s in specs}
    for server in servers:
        for child in server.children(recursive=True):
            text = " ".join(child.cmdline())
            for spec in specs:
                if f"/{spec.name}/" in text:
                    key = "model's backend stub"
                    memory[spec.name][key] = memory[spec.name].get(key, 0.0) + child.memory_info().rss / 2**20
    return memory


# --------------------------------------------------------------------------- the run


def launched_server(server: ServerSettings) -> ServerSettings:
    """The server with explicit model control, so the batching-off variant can be loaded in place."""
    if not server.launched or server.flags is None:  # remote: launched elsewhere, with its own options
        return server
    explicit = (*server.flags.extra_args, "--model-control-mode=explicit", "--load-model=*")
    return dataclasses.replace(server, flags=dataclasses.replace(server.flags, extra_args=explicit))


def run(cfg: Any) -> int:
    settings = Settings.from_cfg(cfg.load)
    catalog = served_specs(cfg.models)
    specs = selected(cfg, catalog)
    server = launched_server(ServerSettings.from_cfg(cfg.server))
    front = FrontSettings.from_cfg(cfg.balancer)
    require_gpu_host(specs, server, cfg.triton_releases)
    unbatched = [s.name for s in specs if s.max_batch_size == 0]
    if unbatched:  # every path here sends batches (batch 1 and max_batch_size) of the same samples
        print(f"note: not measured: {', '.join(unbatched)} (no batch axis, max_batch_size 0)", flush=True)
        specs = [s for s in specs if s.max_batch_size > 0]
    out = Path(cfg.load.reports)
    kind = server.kind
    balanced = front.kind != "none"
    bench = Bench(settings, specs, catalog)
    arrays = {spec.name: inputs_for(spec, str(cfg.paths.data)) for spec in specs}
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
                measure_flask(bench, spec, arrays[spec.name], Path(cfg.paths.logs), cfg.models)
        with serve(server, cfg.model_repository, cfg.triton_releases, front) as endpoints:
            for spec in specs:
                measure_triton(
                    bench,
                    spec,
                    arrays[spec.name],
                    endpoints,
                    same_host=kind != "remote" and not balanced,
                    can_reload=kind != "remote" and not balanced,
                )
            memory = server_memory(endpoints, specs) if kind == "local" else {}
            description = endpoints.server
    finally:
        bench.progress.close()
    results = [
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
        )
        for s in specs
    ]
    for result in results:
        print(result.table() + "\n", flush=True)
    unanswered = [what for result in results for what in result.unanswered()]
    if unanswered:  # a dead server measures nothing: its null figures must not become the tracked ones
        print(f"benchmark FAILED (reports not written): {'; '.join(unanswered)}", flush=True)
        return 1
    write(results, out, Path(cfg.load.metrics), set(catalog) if str(cfg.model.name) == "all" else None)
    print(
        f"reports: {out}/<model>.json, benchmark.md, benchmark.png, curves.json; headline ratios: {cfg.load.metrics}/",
        flush=True,
    )
    return 0


def write(results: list[ModelBenchmark], out: Path, metrics: Path, served: set[str] | None = None) -> None:
    """Each model's report, headline and curve; then the table and plot of every model reported in `out`.
    `served` (a model=all run): the reports of any other model, kept from an earlier run (DVC's persist), go."""
    for result in results:
        write_json(out / f"{result.model}.json", result.to_dict())
        write_json(metrics / f"{result.model}.json", result.to_dict()["headline"])
    if served is not None:
        prune_reports([out, metrics], served, keep=("curves.json",))
    everything = [
        ModelBenchmark.from_dict(json.loads(p.read_text()))
        for p in sorted(out.glob("*.json"))
        if p.name != "curves.json"
    ]
    write_json(out / "curves.json", [row for r in everything for row in r.curve()])
    compared = precisions(everything)
    write_text(
        out / "benchmark.md",
        "# Serving benchmark\n\n"
        + (compared + "\n\n" if compared else "")
        + "\n\n".join(r.table() for r in everything)
        + "\n",
    )
    with atomic_path(out / "benchmark.png", suffix=".png") as tmp:
        plot(everything, tmp)


def artifact_bytes(spec: ModelSpec) -> int | None:
    """The served file's size on disk (a SavedModel: its directory), where it is one here."""
    path = spec.artifact
    if spec.format == "ensemble" or not path.exists():
        return None
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


main = hydra_main("benchmark", run, __doc__)

if __name__ == "__main__":
    main()
