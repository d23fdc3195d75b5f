"""One benchmark run's measuring: its settings, the points each path's sweep plans, and Triton's own figures.

`LoadSettings` is `conf/load/*.yaml` checked once; `Bench` runs every sweep (latency at batch 1 and
`max_batch_size`, then closed-loop throughput at each concurrency) and collects the points per model;
`landed` and `breakdown` read Triton's statistics over exactly the counted window.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

from pipelines.config.spec import ModelSpec
from pipelines.core.errors import ConfigError, checked_number
from pipelines.data import parity_inputs
from pipelines.performance import load
from pipelines.performance.benchmark_report import BREAKDOWN, HEADLINE_POINTS, PATH_NAMES, CrossCheck, Point

log = logging.getLogger(__name__)
PATHS = tuple(PATH_NAMES)  # in_process, flask, http, grpc, shm


@dataclass(frozen=True)
class LoadSettings:
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
    def from_cfg(cls, cfg: DictConfig) -> LoadSettings:
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
        self.bar = tqdm(total=total, unit="point", dynamic_ncols=True, file=sys.stderr)

    def step(self, what: str) -> None:
        self.bar.set_description(what)

    def done(self) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def benchmark_inputs(spec: ModelSpec, data: str) -> dict[str, np.ndarray]:
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

    def __init__(self, settings: LoadSettings, specs: list[ModelSpec], catalog: dict[str, ModelSpec]):
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
