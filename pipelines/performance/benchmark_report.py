"""The benchmark's typed report: every measured point, its headline ratios (DVC metrics), table and plot.

Paths: `in_process` (the served file in its runtime, here), `flask` (the same runtime behind Flask),
and Triton over `http` (binary tensors), `grpc` and `shm` (gRPC, tensors in system shared memory).
Ratios, not absolute times, are the headline: machines differ, the cost of serving on one does not.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# the points (path -> concurrency levels, batch 1) that the headline ratios read
HEADLINE_POINTS = {"in_process": (1,), "flask": (8,), "grpc": (1, 4, 8)}
# the headline's figures as the gate judges them: ratios where lower is better, ratios where higher is better
# (ratios only: absolute times differ between machines)
COST_RATIOS = ("grpc_vs_in_process",)
GAIN_RATIOS = ("c4_vs_in_process", "c8_vs_flask")
BREAKDOWN = ("queue", "compute_input", "compute_infer", "compute_output")  # Triton's per-request statistics
PATH_NAMES = {
    "in_process": "in process",
    "flask": "Flask",
    "http": "Triton HTTP",
    "grpc": "Triton gRPC",
    "shm": "Triton gRPC + shm",
}


@dataclass(frozen=True)
class Point:
    """One closed-loop measurement. `server_ms`: Triton's own per-request breakdown from its statistics."""

    path: str
    batch: int
    concurrency: int
    dynamic_batching: bool | None  # None: not Triton
    requests: int
    per_second: float  # inferences (samples) per second
    p50_ms: float
    p90_ms: float
    p99_ms: float
    failures: int = 0
    server_ms: dict[str, float] = field(default_factory=dict)  # queue, compute_input, compute_infer, compute_output

    @property
    def label(self) -> str:
        name = PATH_NAMES.get(self.path, self.path)
        return name + (", batching off" if self.dynamic_batching is False else "")


@dataclass(frozen=True)
class CrossCheck:
    """Our gRPC figures and perf_analyzer's for the same model, batch and concurrency."""

    concurrency: int
    ours_per_second: float
    ours_p50_ms: float
    perf_analyzer_per_second: float
    perf_analyzer_p50_ms: float


@dataclass(frozen=True)
class ModelBenchmark:
    model: str
    format: str
    server: str
    settings: dict[str, Any]
    points: list[Point]
    memory_mb: dict[str, float] = field(default_factory=dict)
    perf_analyzer: list[CrossCheck] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # what was not measured, and why
    network: str = ""  # the network it serves: models of one network and format compare as precisions
    precision: str = ""
    artifact_bytes: int | None = None  # the served file's size on disk
    proof_key: str = ""  # what it was measured from (model_repository/fingerprint.py): kept while it holds

    def find(self, path: str, batch: int = 1, concurrency: int = 1, batching: bool | None = True) -> Point | None:
        for p in self.points:
            if (p.path, p.batch, p.concurrency) == (path, batch, concurrency) and (
                p.dynamic_batching is None or p.dynamic_batching == batching
            ):
                return p
        return None

    def unanswered(self) -> list[str]:
        """The points that no request answered: a dead path, not a slow one (its figures would be null)."""
        return [
            f"{self.model} {p.label} batch {p.batch} x{p.concurrency}: none of {p.failures} requests answered"
            for p in self.points
            if p.requests == 0
        ]

    def headline(self) -> dict[str, float | None]:
        """The figures the gate watches: serving's cost relative to the same runtime in process, and to Flask.

        They read the points of HEADLINE_POINTS (batch 1), all that `headline_only` (conf/load/quick.yaml) measures.
        """
        inproc, grpc = self.find("in_process"), self.find("grpc")
        grpc_c4 = self.find("grpc", concurrency=4)
        grpc_c8, flask_c8 = self.find("grpc", concurrency=8), self.find("flask", concurrency=8)
        ratio = lambda a, b: round(a / b, 3) if a is not None and b else None  # noqa: E731
        return {
            "grpc_vs_in_process": ratio(grpc and grpc.p50_ms, inproc and inproc.p50_ms),  # p50, batch 1, one at a time
            "c4_vs_in_process": ratio(grpc_c4 and grpc_c4.per_second, inproc and inproc.per_second),  # throughput
            "c8_vs_flask": ratio(grpc_c8 and grpc_c8.per_second, flask_c8 and flask_c8.per_second),
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything measured, in this host's milliseconds and inferences per second (not committed)."""
        data = asdict(self)
        data["headline"] = self.headline()
        return _finite(data)

    def recorded(self, fp32: ModelBenchmark | None = None) -> dict[str, Any]:
        """The committed report: each point as ratios over this run's in-process point (batch 1, one at a time),
        and a lossy model's gains over its FP32 model measured in the same run (`fp32`); no absolute timing."""
        base = self.find("in_process")
        ratio = lambda a, b: round(a / b, 3) if b and math.isfinite(a) and math.isfinite(b) else None  # noqa: E731
        points = [
            {
                "path": p.path,
                "batch": p.batch,
                "concurrency": p.concurrency,
                "dynamic_batching": p.dynamic_batching,
                "failures": p.failures,
                "p50_vs_in_process": ratio(p.p50_ms, base.p50_ms) if base else None,
                "per_second_vs_in_process": ratio(p.per_second, base.per_second) if base else None,
            }
            for p in self.points
        ]
        data = {
            "model": self.model,
            "format": self.format,
            "network": self.network,
            "precision": self.precision,
            "server": self.server,
            "settings": self.settings,
            "artifact_bytes": self.artifact_bytes,
            "skipped": self.skipped,
            "baseline": "in_process, batch 1, one request at a time, in the same run",
            "points": points,
            "headline": self.headline(),
            "proof_key": self.proof_key,
        }
        if fp32 is not None and fp32 is not self:
            data["vs_fp32"] = gains(self, fp32)
        return _finite(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelBenchmark:
        nan = float("nan")
        points = [
            Point(**{k: (nan if v is None and k.endswith(("_ms", "_second")) else v) for k, v in p.items()})
            for p in data.get("points", [])
        ]
        return cls(
            data["model"],
            data["format"],
            data["server"],
            dict(data.get("settings") or {}),
            points,
            dict(data.get("memory_mb") or {}),
            [CrossCheck(**c) for c in data.get("perf_analyzer") or []],
            dict(data.get("skipped") or {}),
            str(data.get("network") or ""),
            str(data.get("precision") or ""),
            data.get("artifact_bytes"),
            str(data.get("proof_key") or ""),
        )

    def curve(self) -> list[dict[str, Any]]:
        """Latency against throughput, one row per point of batch 1 (what DVC plots and the PNG draw)."""
        return [
            {
                "model": self.model,
                "path": p.label,
                "concurrency": p.concurrency,
                "per_second": round(p.per_second, 2),
                "p50_ms": round(p.p50_ms, 3),
            }
            for p in self.points
            if p.batch == 1
        ]

    def table(self) -> str:
        """Markdown: every point, Triton's breakdown where it has one."""
        lines = [
            f"### {self.model} ({self.format}; {self.server})",
            "",
            "| path | batch | concurrency | inferences/s | p50 ms | p90 ms | p99 ms "
            "| queue / input / infer / output ms | failed |",
            "|---|---:|---:|---:|---:|---:|---:|---|---:|",
        ]
        for p in self.points:
            parts = "/".join(f"{p.server_ms[k]:.2f}" for k in BREAKDOWN) if p.server_ms else ""
            lines.append(
                f"| {p.label} | {p.batch} | {p.concurrency} | {p.per_second:,.1f} | {p.p50_ms:.2f} | "
                f"{p.p90_ms:.2f} | {p.p99_ms:.2f} | {parts} | {p.failures} |"
            )
        if self.perf_analyzer:
            lines += [
                "",
                "| concurrency | ours: inferences/s | perf_analyzer | ours: p50 ms | perf_analyzer |",
                "|---:|---:|---:|---:|---:|",
            ]
            lines += [
                f"| {c.concurrency} | {c.ours_per_second:,.1f} | {c.perf_analyzer_per_second:,.1f} | "
                f"{c.ours_p50_ms:.2f} | {c.perf_analyzer_p50_ms:.2f} |"
                for c in self.perf_analyzer
            ]
        if self.memory_mb:
            lines += ["", "memory (RSS, MB): " + ", ".join(f"{k} {v:,.0f}" for k, v in self.memory_mb.items())]
        lines += [f"- not measured: {what}: {why}" for what, why in self.skipped.items()]
        return "\n".join(lines)


def precisions(benchmarks: list[ModelBenchmark]) -> str:
    """Markdown: each FP16/INT8 model beside the FP32 model of the same network and format, what its precision
    buys (latency, throughput, size on disk; ratios over FP32's, above 1 is better). What it costs in accuracy
    is parity's report (`lossy`)."""
    groups: dict[tuple[str, str], list[ModelBenchmark]] = {}
    for b in benchmarks:
        if b.network and b.precision:
            groups.setdefault((b.network, b.format), []).append(b)
    lines = []
    for (_network, _fmt), group in sorted(groups.items()):
        base = next((b for b in group if b.precision == "fp32"), None)
        lossy = [b for b in group if b.precision != "fp32"]
        if base is None or not lossy:
            continue
        if not lines:
            lines = [
                "## Precisions (batch 1; x: the FP32 model's figure over this one's, or this one's throughput "
                "over FP32's: above 1 is better)",
                "",
                "| model | precision | size MB | in process p50 ms | Triton gRPC p50 ms "
                "| Triton gRPC x4 inferences/s |",
                "|---|---|---:|---:|---:|---:|",
            ]
        for b in [base, *lossy]:
            cells = [_size(b, base)]
            for path, concurrency, figure in (
                ("in_process", 1, "p50_ms"),
                ("grpc", 1, "p50_ms"),
                ("grpc", 4, "per_second"),
            ):
                cells.append(
                    _compared(
                        b.find(path, concurrency=concurrency),
                        base.find(path, concurrency=concurrency),
                        figure,
                        b is base,
                    )
                )
            lines.append(f"| {b.model} | {b.precision} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# a lossy model's gains over its FP32 model: (path, concurrency, figure); x above 1 is better
GAINS = {
    "in_process_p50_x": ("in_process", 1, "p50_ms"),
    "grpc_p50_x": ("grpc", 1, "p50_ms"),
    "grpc_c4_per_second_x": ("grpc", 4, "per_second"),
}


def gains(lossy: ModelBenchmark, fp32: ModelBenchmark) -> dict[str, Any]:
    """What the precision buys, as ratios of one run's figures: size, latency, throughput (above 1 is better)."""
    out: dict[str, Any] = {"fp32_model": fp32.model}
    if lossy.artifact_bytes and fp32.artifact_bytes:
        out["size_x"] = round(fp32.artifact_bytes / lossy.artifact_bytes, 2)
    for name, (path, concurrency, figure) in GAINS.items():
        mine, theirs = lossy.find(path, concurrency=concurrency), fp32.find(path, concurrency=concurrency)
        if mine is None or theirs is None:
            continue
        a, b = getattr(mine, figure), getattr(theirs, figure)
        if a and b and math.isfinite(a) and math.isfinite(b):
            out[name] = round(b / a if figure == "p50_ms" else a / b, 2)
    return out


def fp32_of(benchmark: ModelBenchmark, others: list[ModelBenchmark]) -> ModelBenchmark | None:
    """The FP32 model of a lossy model's network and format among `others` (None for an FP32 model)."""
    if not benchmark.precision or benchmark.precision == "fp32":
        return None
    same = (benchmark.network, benchmark.format, "fp32")
    return next((b for b in others if (b.network, b.format, b.precision) == same), None)


def recorded_precisions(records: list[dict[str, Any]]) -> str:
    """Markdown from the committed reports: each lossy model's gains over its FP32 model (x, above 1 is better)."""
    lines = [
        "| model | precision | size MB | in process latency | Triton gRPC latency | Triton gRPC x4 throughput |",
        "|---|---|---:|---:|---:|---:|",
    ]
    by_name = {r["model"]: r for r in records}
    lossy = [r for r in records if r.get("vs_fp32")]
    for fp32_name in sorted({r["vs_fp32"]["fp32_model"] for r in lossy}):
        base = by_name.get(fp32_name)
        if base is None:
            continue
        lines.append(f"| {fp32_name} | fp32 | {_megabytes(base.get('artifact_bytes'))} | 1x | 1x | 1x |")
        for r in sorted((r for r in lossy if r["vs_fp32"]["fp32_model"] == fp32_name), key=lambda r: r["model"]):
            gain = r["vs_fp32"]
            size = _megabytes(r.get("artifact_bytes"))
            cells = [f"{size} ({gain['size_x']:.1f}x)" if "size_x" in gain else size]
            cells += [f"{gain[k]:.2f}x" if k in gain else "-" for k in GAINS]
            lines.append(f"| {r['model']} | {r['precision']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def _megabytes(size: int | None) -> str:
    return "-" if not size else f"{size / 1e6:,.1f}"


def _size(b: ModelBenchmark, base: ModelBenchmark) -> str:
    if b.artifact_bytes is None:
        return "-"
    shown = f"{b.artifact_bytes / 1e6:,.1f}"
    return shown if b is base or not base.artifact_bytes else f"{shown} ({base.artifact_bytes / b.artifact_bytes:.1f}x)"


def _compared(point: Point | None, base: Point | None, figure: str, is_base: bool) -> str:
    if point is None or not math.isfinite(getattr(point, figure)):
        return "-"
    value = getattr(point, figure)
    shown = f"{value:,.2f}" if figure == "p50_ms" else f"{value:,.1f}"
    if is_base or base is None or not math.isfinite(getattr(base, figure)) or not value:
        return shown
    gain = getattr(base, figure) / value if figure == "p50_ms" else value / getattr(base, figure)
    return f"{shown} ({gain:.2f}x)"


def _finite(value: Any) -> Any:
    """JSON has no NaN: a figure that could not be measured is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def plot(benchmarks: list[ModelBenchmark], path: Path) -> None:
    """p50 latency against throughput, one panel per model, one line per path (batch 1)."""
    import matplotlib  # lazy: matplotlib takes ~2 s; plots only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib takes ~2 s; plots only

    fig, axes = plt.subplots(1, len(benchmarks), figsize=(5.5 * len(benchmarks), 4.2), squeeze=False)
    for ax, bench in zip(axes[0], benchmarks):
        series: dict[str, list[dict[str, Any]]] = {}
        for row in bench.curve():
            series.setdefault(row["path"], []).append(row)
        for label, rows in series.items():
            rows.sort(key=lambda r: r["concurrency"])
            ax.plot([r["per_second"] for r in rows], [r["p50_ms"] for r in rows], marker="o", label=label)
            for r in rows:
                ax.annotate(
                    str(r["concurrency"]),
                    (r["per_second"], r["p50_ms"]),
                    fontsize=7,
                    textcoords="offset points",
                    xytext=(3, 3),
                )
        ax.set_title(bench.model)
        ax.set_xlabel("inferences / s (closed loop; labels: concurrency)")
        ax.set_ylabel("p50 latency (ms, log scale)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
