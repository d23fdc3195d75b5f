"""Triton's perf_analyzer, the benchmark's cross-check: installed from the server's own client release.

The `tritonclient` wheel of Triton 2.51.0 (the embedded server's release) carries the binary; the
PyPI `perf-analyzer` package is an empty placeholder, and the newer tritonclient this project uses
no longer ships it. `python -m evaluate.install_perf_analyzer` (run by `make setup`) downloads that
wheel, takes the binary out, and links the two libraries it needs from the nvidia-pytriton wheel
(`libb64.so.0d`, `libcudart.so.12`, there under hashed names) into `<venv>/opt/perf_analyzer/`.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pipelines.core import scratch
from pipelines.core.errors import HostError

RELEASE = "2.51.0"  # the embedded tritonserver's release (conf/triton_versions.yaml: 24.10)
HOME = Path(sys.prefix) / "opt" / "perf_analyzer"
LIBS = {"libb64.so.0d": "libb64-*.so.0d", "libcudart.so.12": "libcudart-*.so.12*"}


def _bundled_libs() -> Path:
    import pytriton  # lazy: pytriton takes ~2 s; the embedded server only

    return Path(pytriton.__file__).resolve().parent.parent / "nvidia_pytriton.libs"


def install(home: Path = HOME) -> Path:
    """Fetch the binary once (a no-op when present); returns it."""
    binary = home / "perf_analyzer"
    if binary.exists():
        return binary
    libs = _bundled_libs()
    home.parent.mkdir(parents=True, exist_ok=True)
    with scratch.scratch_dir(home.parent, ".perf_analyzer-") as work:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--dest",
                str(work),
                f"tritonclient=={RELEASE}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        wheels = list(work.glob("tritonclient-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise HostError(
                f"could not download tritonclient {RELEASE} for perf_analyzer: "
                f"{(proc.stderr.strip().splitlines() or ['no wheel'])[-1]}"
            )
        staged = work / "home"
        (staged / "lib").mkdir(parents=True)
        with (
            zipfile.ZipFile(wheels[0]) as wheel,
            wheel.open(f"tritonclient-{RELEASE}.data/data/bin/perf_analyzer") as src,
            open(staged / "perf_analyzer", "wb") as dst,
        ):
            shutil.copyfileobj(src, dst)
        (staged / "perf_analyzer").chmod(0o755)
        for soname, pattern in LIBS.items():
            found = sorted(libs.glob(pattern))
            if not found:
                raise HostError(f"perf_analyzer needs {soname}, which {libs} lacks")
            (staged / "lib" / soname).symlink_to(found[0])
        os.replace(staged, home)
    return binary


@dataclass(frozen=True)
class PerfAnalyzerRow:
    """perf_analyzer's figures at one concurrency (its CSV, in microseconds)."""

    concurrency: int
    per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    server_queue_ms: float
    server_compute_ms: float


def find(home: Path = HOME) -> Path:
    binary = home / "perf_analyzer"
    if not binary.exists():
        raise HostError(
            f"perf_analyzer is not installed ({binary}): run `make setup` "
            "(or `python -m evaluate.install_perf_analyzer`)"
        )
    return binary


def run_perf_analyzer(
    model: str,
    url: str,
    protocol: str,
    batch: int,
    concurrency: list[int],
    interval_ms: int,
    shared_memory: str = "none",
    input_data: str = "random",
    home: Path = HOME,
) -> list[PerfAnalyzerRow]:
    """perf_analyzer at each concurrency (its own stability rules, in time windows of `interval_ms`)."""
    binary = find(home)
    with tempfile.TemporaryDirectory(prefix="perf_analyzer-") as tmp:
        report = Path(tmp) / "report.csv"
        rows = []
        for level in concurrency:
            cmd = [
                str(binary),
                "-m",
                model,
                "-u",
                url,
                "-i",
                protocol,
                "-b",
                str(batch),
                "--concurrency-range",
                f"{level}:{level}",
                "--measurement-interval",
                str(interval_ms),
                "--shared-memory",
                shared_memory,
                "--input-data",
                input_data,
                "-f",
                str(report),
                "--max-trials",
                "10",
                "--stability-percentage",
                "50",
            ]  # 2 shared cores are noisy
            env = dict(
                os.environ,
                LD_LIBRARY_PATH=os.pathsep.join(filter(None, [str(home / "lib"), os.environ.get("LD_LIBRARY_PATH")])),
            )
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
            if proc.returncode != 0 or not report.exists():
                lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
                raise HostError(f"perf_analyzer failed on {model} (concurrency {level}): {(lines or ['?'])[-1]}")
            with open(report, newline="") as fh:
                (row,) = list(csv.DictReader(fh))[:1]
            us = lambda key, row=row: float(row.get(key) or 0) / 1e3  # noqa: E731 - microseconds to ms
            rows.append(
                PerfAnalyzerRow(
                    int(row["Concurrency"]),
                    float(row["Inferences/Second"]),
                    us("p50 latency"),
                    us("p90 latency"),
                    us("p99 latency"),
                    us("Server Queue"),
                    us("Server Compute Input") + us("Server Compute Infer") + us("Server Compute Output"),
                )
            )
        return rows
