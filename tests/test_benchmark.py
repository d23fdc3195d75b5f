"""The serving benchmark: its arithmetic against hand-worked figures, a real run checked against Triton's counts.

Timings are never asserted (machines differ); what is asserted holds on any machine: every request
answered, Triton's server-side time no longer than what the client saw, every report written.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from evaluate import benchmark
from pipelines.config.spec import model_spec
from pipelines.core.errors import ConfigError
from pipelines.performance import load, measurement, perf_analyzer
from pipelines.performance.benchmark_report import ModelBenchmark, Point, fp32_of, precisions, recorded_precisions

from conftest import compose_config


def stats(success: int, **ns: tuple[int, int]) -> list[dict]:
    """One version's inference_stats as Triton's HTTP statistics answer them: key -> (count, ns)."""
    keys = ("queue", "compute_input", "compute_infer", "compute_output")
    return [
        {
            "inference_stats": {
                "success": {"count": success, "ns": 0},
                **{k: {"count": ns.get(k, (0, 0))[0], "ns": ns.get(k, (0, 0))[1]} for k in keys},
            }
        }
    ]


def test_breakdown_is_the_average_per_request_over_the_window() -> None:
    before = stats(10, queue=(10, 5_000_000), compute_infer=(10, 40_000_000))
    after = stats(30, queue=(30, 9_000_000), compute_infer=(30, 140_000_000), compute_input=(20, 2_000_000))
    # 20 requests in the window: 4 ms of queueing (0.2 each), 100 ms of inference (5 each), 2 ms of input copies
    assert measurement.breakdown(before, after) == {
        "queue": 0.2,
        "compute_input": 0.1,
        "compute_infer": 5.0,
        "compute_output": 0.0,
    }


def test_headline_ratios_from_hand_written_points() -> None:
    def p(path: str, concurrency: int, per_second: float, p50: float) -> Point:
        return Point(
            path, 1, concurrency, None if path in ("in_process", "flask") else True, 100, per_second, p50, p50, p50
        )

    bench = ModelBenchmark(
        "m",
        "onnx",
        "s",
        {},
        [
            p("in_process", 1, 1000.0, 1.0),
            p("grpc", 1, 250.0, 4.0),
            p("grpc", 4, 800.0, 5.0),
            p("grpc", 8, 900.0, 9.0),
            p("flask", 8, 300.0, 27.0),
            Point("grpc", 1, 1, False, 100, 500.0, 2.0, 2.0, 2.0),  # batching off: not the headline
        ],
    )
    assert bench.headline() == {"grpc_vs_in_process": 4.0, "c4_vs_in_process": 0.8, "c8_vs_flask": 3.0}
    assert ModelBenchmark.from_dict(json.loads(json.dumps(bench.to_dict()))) == bench
    # the committed report: every point over the in-process one (1 ms, 1000/s), by hand; no time of this host
    recorded = json.loads(json.dumps(bench.recorded()))
    assert [
        (q["path"], q["concurrency"], q["p50_vs_in_process"], q["per_second_vs_in_process"]) for q in recorded["points"]
    ] == [
        ("in_process", 1, 1.0, 1.0),
        ("grpc", 1, 4.0, 0.25),
        ("grpc", 4, 5.0, 0.8),
        ("grpc", 8, 9.0, 0.9),
        ("flask", 8, 27.0, 0.3),
        ("grpc", 1, 2.0, 0.5),
    ]
    assert not [k for q in recorded["points"] for k in q if k.endswith(("_ms", "per_second"))]
    assert "memory_mb" not in recorded and recorded["headline"] == bench.headline()


def test_precisions_set_each_lossy_model_beside_its_fp32_model() -> None:
    def bench(model: str, precision: str, size: int, in_process: float, grpc: float, c4: float, network: str = "net"):
        points = [
            Point("in_process", 1, 1, None, 100, 1000 / in_process, in_process, in_process, in_process),
            Point("grpc", 1, 1, True, 100, 1000 / grpc, grpc, grpc, grpc),
            Point("grpc", 1, 4, True, 100, c4, 9.0, 9.0, 9.0),
        ]
        return ModelBenchmark(model, "onnx", "s", {}, points, network=network, precision=precision, artifact_bytes=size)

    text = precisions(
        [
            bench("net_int8", "int8", 25_000_000, 5.0, 8.0, 300.0),
            bench("net_fp32", "fp32", 100_000_000, 20.0, 24.0, 100.0),
            bench("other_fp32", "fp32", 1_000_000, 1.0, 2.0, 900.0, network="other"),
        ]
    )  # nothing beside it
    rows = [line for line in text.splitlines() if line.startswith("| net")]
    assert rows == [
        "| net_fp32 | fp32 | 100.0 | 20.00 | 24.00 | 100.0 |",
        "| net_int8 | int8 | 25.0 (4.0x) | 5.00 (4.00x) | 8.00 (3.00x) | 300.0 (3.00x) |",
    ]
    assert "other_fp32" not in text
    # the committed form: the same gains, from the reports in ratios alone (what docs/precisions.md shows)
    measured = [
        bench("net_int8", "int8", 25_000_000, 5.0, 8.0, 300.0),
        bench("net_fp32", "fp32", 100_000_000, 20.0, 24.0, 100.0),
    ]
    records = [json.loads(json.dumps(b.recorded(fp32_of(b, measured)))) for b in measured]
    assert records[0]["vs_fp32"] == {
        "fp32_model": "net_fp32",
        "size_x": 4.0,
        "in_process_p50_x": 4.0,
        "grpc_p50_x": 3.0,
        "grpc_c4_per_second_x": 3.0,
    }
    assert "vs_fp32" not in records[1]
    assert recorded_precisions(records).splitlines()[2:] == [
        "| net_fp32 | fp32 | 100.0 | 1x | 1x | 1x |",
        "| net_int8 | int8 | 25.0 (4.0x) | 4.00x | 3.00x | 3.00x |",
    ]
    again = ModelBenchmark.from_dict(json.loads(json.dumps(bench("a", "int8", 1, 1.0, 1.0, 1.0).to_dict())))
    assert (again.network, again.precision, again.artifact_bytes) == ("net", "int8", 1)


def test_a_lossy_model_is_measured_with_its_fp32_model() -> None:
    """Its gains over the FP32 model are ratios of one run: `model=mnist_onnx_int8` measures mnist_onnx too."""
    from pipelines.config.spec import served_specs
    from pipelines.performance.job import with_fp32_models

    cfg = compose_config("benchmark", ["model=mnist_onnx_int8"])
    catalog = served_specs(cfg.models)
    assert [s.name for s in with_fp32_models([catalog["mnist_onnx_int8"]], catalog)] == [
        "mnist_onnx_int8",
        "mnist_onnx",
    ]
    assert [s.name for s in with_fp32_models([catalog["mnist_onnx"]], catalog)] == ["mnist_onnx"]
    assert [s.name for s in with_fp32_models([catalog["resnet50_ensemble"]], catalog)] == ["resnet50_ensemble"]


@pytest.mark.parametrize(
    "load, expected",
    [
        # quick (the dvc.yaml stage): exactly the points the headline above reads, nothing else
        ("quick", {("in_process", 1, 1), ("flask", 1, 8), ("grpc", 1, 1), ("grpc", 1, 4), ("grpc", 1, 8)}),
        # full: batch 1 and max_batch_size one at a time, then each concurrency, on every path
        (
            "full",
            {
                (path, b, c)
                for path in ("in_process", "flask", "http", "grpc", "shm")
                for b, c in ((64, 1), (1, 1), (1, 2), (1, 4), (1, 8))
            },
        ),
    ],
)
def test_each_load_plans_the_points_it_promises(load: str, expected: set) -> None:
    cfg = compose_config("benchmark", ["model=mnist_onnx", f"load={load}"])
    settings = measurement.LoadSettings.from_cfg(cfg.load)
    spec = model_spec("mnist_onnx", cfg.model)
    bench = measurement.Bench(settings, [spec], {spec.name: spec})
    bench.progress.close()
    assert {(path, b, c) for path in settings.measure for b, c in bench.plan(spec, path)} == expected


@pytest.mark.parametrize(
    "override, says",
    [
        ("load.concurrency=[0,4]", "concurrency must be a list of integers 1..256"),
        ("load.duration_s=0", "duration_s must be >= 0.1"),
        ("load.warmup_s=abc", "warmup_s must be a number"),
        ("load.measure=[grpc,carrier_pigeon]", "measure must name some of"),
    ],
)
def test_bad_settings_are_one_line_errors(override: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        measurement.LoadSettings.from_cfg(compose_config("benchmark", ["model=mnist_onnx", override]).load)


def test_closed_loop_counts_answers_in_the_window_and_failures_apart() -> None:
    calls = {"n": 0}
    lock = threading.Lock()

    def make_sender():
        def send() -> None:
            with lock:
                calls["n"] += 1
                n = calls["n"]
            time.sleep(0.005)
            if n % 4 == 0:
                raise RuntimeError("every fourth request fails")

        return send

    result = load.closed_loop(make_sender, concurrency=2, warmup_s=0.05, duration_s=0.4)
    assert result.failures > 0 and result.first_failure == "every fourth request fails"
    assert result.requests > 0 and all(x >= 0.005 for x in result.latencies_s)  # each waited its sleep, at least
    assert result.requests + result.failures <= calls["n"]  # warm-up and the last in-flight ones are not counted


def test_a_window_no_answer_reached_closes_at_the_first_answer() -> None:
    """A request slower than the whole window (a busy host): the point still measures one answer, over the time
    the window really lasted, not zero requests per second."""

    def make_sender():
        return lambda: time.sleep(0.3)

    result = load.closed_loop(make_sender, concurrency=2, warmup_s=0.0, duration_s=0.05)
    assert result.requests == 1 and result.failures == 0  # the first answer; the other worker's came after it
    assert result.elapsed_s >= 0.3 and result.latencies_s[0] >= 0.3  # the window lasted until that answer
    assert 1 / result.elapsed_s == pytest.approx(result.per_second())


@pytest.mark.integration
def test_benchmark_run_measures_every_path_and_agrees_with_tritons_statistics(
    in_workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    repository = tmp_path / "repository"  # the one model measured: a server that loads only it starts sooner
    shutil.copytree(in_workspace / "model_repository" / "mnist_onnx", repository / "mnist_onnx")
    cfg_overrides = [
        "model=mnist_onnx",
        f"model_repository={repository}",
        "load.concurrency=[1,2]",
        "load.duration_s=0.2",
        "load.warmup_s=0.05",
        "load.perf_analyzer_interval_ms=200",
        f"load.reports={tmp_path / 'reports'}",
        f"load.metrics={tmp_path / 'metrics'}",
        f"load.host_reports={tmp_path / 'host'}",
        f"paths.logs={tmp_path / 'logs'}",
    ]
    cfg = compose_config("benchmark", cfg_overrides)
    assert benchmark.run(cfg) == 0
    report = json.loads((tmp_path / "host" / "mnist_onnx.json").read_text())  # this host's timings
    seen = {(p["path"], p["batch"], p["concurrency"], p["dynamic_batching"]) for p in report["points"]}
    for path in ("in_process", "flask", "http", "grpc", "shm"):
        batching = None if path in ("in_process", "flask") else True
        assert {(path, 1, 1, batching), (path, 64, 1, batching), (path, 1, 2, batching)} <= seen, path
    assert {("grpc", 1, 1, False), ("grpc", 1, 2, False)} <= seen  # the batcher off, the model reloaded
    for p in report["points"]:
        assert p["requests"] > 0 and p["failures"] == 0, p
        if p["server_ms"]:  # Triton's own time for a request cannot exceed what the client waited, but its
            # averages also count the requests in flight when the window closed (up to `concurrency`, answered
            # after it, so not in the client's figures): a few requests per point, so one slow one moves them.
            # What this catches is a wrong unit or a warm-up counted in (a first request at a new batch size).
            assert p["server_ms"]["compute_infer"] > 0
            assert sum(p["server_ms"].values()) <= p["p99_ms"] * 1.5, p
    assert report["memory_mb"]["tritonserver with every model (all replicas)"] > 0
    try:
        perf_analyzer.find()
    except Exception:  # noqa: BLE001
        assert "perf_analyzer" in report["skipped"]
    else:
        assert {c["concurrency"] for c in report["perf_analyzer"]} | {
            int(k.rsplit(" ", 1)[1]) for k in report["skipped"] if k.startswith("perf_analyzer at")
        } == {1, 2}
    headline = json.loads((tmp_path / "metrics" / "mnist_onnx.json").read_text())
    assert headline == report["headline"] and headline["grpc_vs_in_process"] is not None
    committed = json.loads((tmp_path / "reports" / "mnist_onnx.json").read_text())  # in ratios: as many points
    assert committed["headline"] == headline and len(committed["points"]) == len(report["points"])
    assert {
        p["p50_vs_in_process"]
        for p in committed["points"]
        if (p["path"], p["batch"], p["concurrency"]) == ("in_process", 1, 1)
    } == {1.0}
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["mnist_onnx.json"]
    assert (tmp_path / "host" / "benchmark.png").stat().st_size > 10_000
    assert "| Triton gRPC + shm | 64 | 1 |" in (tmp_path / "host" / "benchmark.md").read_text()
    assert "### mnist_onnx" in capsys.readouterr().out
    # reuse=true (the dvc.yaml stage's): nothing it was measured from changed, so no server starts, the report stays,
    # also where this host has no timings of its own (a fresh clone: reports/benchmark_host/ is not committed)
    shutil.rmtree(tmp_path / "host")
    logs = len(list((tmp_path / "logs").glob("triton-*.log")))
    before = (tmp_path / "reports" / "mnist_onnx.json").read_bytes()
    assert benchmark.run(compose_config("benchmark", [*cfg_overrides, "reuse=true"])) == 0
    assert len(list((tmp_path / "logs").glob("triton-*.log"))) == logs
    assert (tmp_path / "reports" / "mnist_onnx.json").read_bytes() == before
    assert "kept 1 report(s)" in capsys.readouterr().out


@pytest.mark.integration
def test_a_path_that_answers_nothing_fails_the_run_and_writes_no_report(
    in_workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A server that is ready but answers no inference (Triton's own gRPC restriction: every request lacks the
    header) must not pass as a benchmark with null figures, which the gate would skip."""
    repository = tmp_path / "repository"
    shutil.copytree(in_workspace / "model_repository" / "mnist_onnx", repository / "mnist_onnx")
    cfg = compose_config(
        "benchmark",
        [
            "model=mnist_onnx",
            f"model_repository={repository}",
            "load.measure=[grpc]",
            "load.concurrency=[1]",
            "load.duration_s=0.2",
            "load.warmup_s=0.05",
            "load.perf_analyzer=false",
            "load.batching_off=false",
            f"load.reports={tmp_path / 'reports'}",
            f"load.metrics={tmp_path / 'metrics'}",
            f"load.host_reports={tmp_path / 'host'}",
            f"paths.logs={tmp_path / 'logs'}",
            "server.extra_args=['--grpc-restricted-protocol=inference:benchmark-key=secret']",
        ],
    )
    assert benchmark.run(cfg) == 1
    out = capsys.readouterr().out
    assert "benchmark FAILED (reports not written): mnist_onnx Triton gRPC batch " in out
    assert "mnist_onnx Triton gRPC batch 1 x1: none of " in out
    assert not [d for d in ("reports", "metrics", "host") if (tmp_path / d).exists()]


def test_the_window_hook_runs_after_the_warm_up() -> None:
    """Triton's statistics are taken where the counted window opens, so the warm-up's requests (the first one at a
    new batch size is slow) are in neither the server's breakdown nor the client's figures."""
    sent: list[float] = []

    def make_sender():
        return lambda: (sent.append(time.perf_counter()), time.sleep(0.01))

    opened: list[tuple[float, int]] = []
    start = time.perf_counter()
    result = load.closed_loop(
        make_sender,
        concurrency=1,
        warmup_s=0.1,
        duration_s=0.1,
        on_begin=lambda: opened.append((time.perf_counter(), len(sent))),
    )
    ((at, sent_before),) = opened
    assert at - start >= 0.1 and sent_before >= 2  # after the warm-up, which had sent requests already
    assert 0 < result.requests <= len(sent) - sent_before + 1  # counted: what was answered in the window


def test_the_breakdown_waits_for_triton_to_record_the_answered_requests() -> None:
    """Triton records a request's statistics after sending its answer: the read after the window waits until every
    answered request is in them (a fresh clone's suite once read a window's compute time as 0)."""
    from pipelines.performance.measurement import landed

    def snapshot(count: int) -> list[dict]:
        return [{"inference_stats": {"success": {"count": str(count), "ns": "0"}}}]

    reads = iter([snapshot(10), snapshot(11), snapshot(13)])  # 3 answered; recorded one read later than sent
    assert landed(lambda: next(reads), snapshot(10), answered=3) == snapshot(13)
    # 2 of the 3 answers landed while `before` was read (in neither read): settled once two reads agree
    reads = iter([snapshot(12), snapshot(12)])
    started = time.monotonic()
    assert landed(lambda: next(reads), snapshot(11), answered=3, timeout_s=30) == snapshot(12)
    assert time.monotonic() - started < 5  # not the timeout
    assert landed(lambda: snapshot(10), snapshot(10), answered=3, timeout_s=0.1) == snapshot(10)  # gives up
