"""`python -m evaluate.benchmark model=<name>|all`: what serving costs next to running the model in process.

For each model, on the same inputs: the served file in its own runtime here (ONNX Runtime,
TensorFlow), the same runtime behind a one-process Flask server, and Triton over HTTP, gRPC and
gRPC with system shared memory; latency at batch 1 and `max_batch_size`, closed-loop throughput at
each concurrency, Triton with its dynamic batcher on and off, Triton's own breakdown of where the
time goes, memory, and perf_analyzer's figures beside ours. Writes reports/benchmark/: one JSON
report per model in ratios over the same run's in-process figures (committed: machines differ, ratios much less),
and headline ratios (DVC metrics); this host's timings go to reports/benchmark_host/ (not committed): a JSON report
per model, the latency-throughput curves (DVC plots), a PNG and a Markdown table. Exit 0, or 2 on usage and
environment errors.
"""

from __future__ import annotations

from omegaconf import DictConfig

from pipelines.core.cli import EXIT_FAILED, EXIT_OK, hydra_main
from pipelines.performance.job import BenchmarkJob, measure_benchmarks, write_benchmarks


def run(cfg: DictConfig) -> int:
    job = BenchmarkJob.from_cfg(cfg)
    if job.unbatched:  # every path here sends batches (batch 1 and max_batch_size) of the same samples
        print(f"note: not measured: {', '.join(job.unbatched)} (no batch axis, max_batch_size 0)", flush=True)
    if job.export_failed:  # parity fails them, with the exporter's reason
        print(f"note: not measured: {', '.join(job.export_failed)} (their export failed)", flush=True)
    if job.kept:
        print(
            f"kept {len(job.kept)} report(s) whose model, code and settings are unchanged (reuse=true): "
            f"{', '.join(job.kept)}",
            flush=True,
        )
    results = measure_benchmarks(job)
    for result in results:
        print(result.table() + "\n", flush=True)
    unanswered = [what for result in results for what in result.unanswered()]
    if unanswered:  # a dead server measures nothing: its null figures must not become the tracked ones
        print(f"benchmark FAILED (reports not written): {'; '.join(unanswered)}", flush=True)
        return EXIT_FAILED
    write_benchmarks(results, job.reports, job.metrics, job.host, set(job.catalog) if job.whole_catalog else None)
    print(
        f"reports: {job.reports}/<model>.json (ratios); headline ratios: {job.metrics}/; this host's timings: "
        f"{job.host}/<model>.json, benchmark.md, benchmark.png, curves.json",
        flush=True,
    )
    return EXIT_OK


main = hydra_main("benchmark", run, __doc__)

if __name__ == "__main__":
    main()
