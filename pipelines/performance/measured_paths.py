"""The benchmark's paths, each measured by one function: in process, behind Flask, and Triton over HTTP, gRPC
and gRPC with system shared memory (with its dynamic batcher off too, and perf_analyzer's figures beside ours).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from google.protobuf import json_format
from omegaconf import DictConfig

from pipelines.config.spec import ModelSpec
from pipelines.core.errors import HostError
from pipelines.performance import perf_analyzer
from pipelines.performance.benchmark_report import CrossCheck
from pipelines.performance.flask_process import flask_sender, flask_server
from pipelines.performance.measurement import Bench, batch_of
from pipelines.runners import runtimes
from pipelines.serving.endpoints import Endpoints
from pipelines.serving.served_model import ServedModel


def measure_in_process(bench: Bench, spec: ModelSpec, arrays: dict[str, np.ndarray]) -> None:
    before = psutil.Process().memory_info().rss
    run = runtimes.served_runner(spec, bench.catalog)
    run(batch_of(arrays, 1))  # first call: lazy initialisation out of the figures
    bench.memory[spec.name]["in_process (model loaded)"] = (psutil.Process().memory_info().rss - before) / 2**20
    bench.sweep(spec, "in_process", lambda b, _: lambda: run(batch_of(arrays, b)))
    run = None  # the session's memory back before the next model loads
    gc.collect()


def measure_flask(bench: Bench, spec: ModelSpec, arrays: dict[str, np.ndarray], logs: Path, models: DictConfig) -> None:
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

    config.ClearField("dynamic_batching")
    probe.grpc.load_model(
        spec.name,
        config=json_format.MessageToJson(config, preserving_proto_field_name=True),
        headers=endpoints.operator_grpc,
    )
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
        probe.grpc.load_model(spec.name, headers=endpoints.operator_grpc)  # back to the repository's config


def cross_check(bench: Bench, spec: ModelSpec, endpoints: Endpoints) -> None:
    if any(t.dtype == "BYTES" for t in spec.tensors):
        bench.skipped[spec.name]["perf_analyzer"] = "BYTES inputs (encoded images): random data is not an image"
        return
    bench.progress.step(f"{spec.name}: perf_analyzer")
    rows = []
    for level in bench.settings.concurrency:
        try:
            rows += perf_analyzer.run_perf_analyzer(
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
