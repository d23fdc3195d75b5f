"""The requests that hurt Triton 2.51, and what serving costs the good requests while they arrive.

Each case sends its hostile request over and over for a few seconds while good requests (MNIST over
binary HTTP, and one photograph through the ensemble) are timed beside it. A case reports the
statuses the hostile requests got, the good requests' latency and failures, the peak memory of
Triton and the front, and whether the server that was serving at the start still serves (the same
process: a supervised restart would hide a crash). `restart` crashes one server on purpose, straight
on its own port, and times its supervised return. `python -m evaluate.hardening` runs them all.
"""

from __future__ import annotations

import functools
import gzip
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import psutil

from pipelines.performance.hostile_requests import (
    BINARY,
    DUPLICATE_INPUTS,
    DUPLICATE_SHAPE,
    ENSEMBLE,
    HEADER_LENGTH,
    JSON,
    KILLER,
    MANAGEMENT_HTTP,
    MIB,
    MNIST,
    NESTED,
    binary_bytes_request,
    concurrently,
    declared_jpeg,
    grpc_gzip,
    management_grpc,
    post,
    send_raw_request,
    zero_chunks,
    zeros_png,
)


@dataclass(frozen=True)
class Hostile:
    name: str
    what: str
    send: Callable[[Target], list[int | str]]  # where it goes -> the statuses one round got (gRPC: the code's name)
    good: str = MNIST  # the good requests timed beside it
    direct: bool = False  # sent straight to the server's own ports (no front), as a client that goes around it


@dataclass(frozen=True)
class Target:
    """Where a round goes: the front's ports, and the server's own behind it."""

    http: str
    grpc: str
    server_http: str
    server_grpc: str


def cases() -> list[Hostile]:
    big = zeros_png(6000)
    declared = binary_bytes_request([declared_jpeg(5000, 8000)])
    eight, two = binary_bytes_request([big] * 8), binary_bytes_request([big] * 2)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    infer = f"/v2/models/{MNIST}/infer"
    good_json = json.dumps(
        {"inputs": [{"name": "image", "shape": [1, 28, 28, 1], "datatype": "FP32", "data": [0.5] * 784}]}
    ).encode()

    @functools.cache
    def numbers() -> bytes:  # 150 MB of numbers as one encoded image: njs's JSON.parse took 2.6 GB, stalled the front
        return b'{"inputs":[{"name":"image","shape":[1,1],"datatype":"BYTES","data":[' + b"0," * (75 * MIB) + b"0]}]}"

    return [
        Hostile("none", "nothing hostile (the good requests alone)", lambda t: []),
        Hostile(
            "json_huge_shape",
            "90-byte JSON declaring [4294967297,28,28,1] (kills Triton: bad_alloc)",
            lambda t: [post(t.http, infer, KILLER, JSON)],
        ),
        Hostile(
            "json_duplicate_key",
            'JSON with "shape" twice, the huge one first (Triton reads the first: bad_alloc)',
            lambda t: [post(t.http, infer, DUPLICATE_SHAPE, JSON)],
        ),
        Hostile(
            "json_duplicate_inputs",
            'JSON with "inputs" twice, the huge one first',
            lambda t: [post(t.http, infer, DUPLICATE_INPUTS, JSON)],
        ),
        Hostile(
            "generate_nested",
            "300,000 nested brackets to /generate (kills Triton: SIGSEGV)",
            lambda t: [post(t.http, f"/v2/models/{MNIST}/generate", NESTED, JSON)],
        ),
        Hostile(
            "infer_nested",
            "300,000 nested brackets to /infer",
            lambda t: [post(t.http, infer, NESTED, JSON)],
        ),
        Hostile(
            "form_post_4mib",
            "4 MiB form-urlencoded body to infer and to health (kills Triton: server#5840)",
            lambda t: [post(t.http, path, b"a=" + b"0" * (4 * MIB), form) for path in (infer, "/v2/health/live")],
        ),
        Hostile(
            "uploads_6x512mib",
            "six concurrent 512 MiB bodies to infer",
            lambda t: concurrently(6, lambda: post(t.http, infer, zero_chunks(512 * MIB), BINARY, length=512 * MIB)),
        ),
        Hostile(
            "gzip_body",
            "a gzip body (Content-Encoding: gzip; Triton inflated 1 MB to 19 GB)",
            lambda t: [post(t.http, infer, gzip.compress(good_json), {**JSON, "Content-Encoding": "gzip"})],
        ),
        Hostile(
            "hex_header_length",
            "Inference-Header-Content-Length: 0xC4 (196 to njs, 0 to Triton)",
            lambda t: [
                post(t.http, infer, good_json, {"Content-Type": "application/octet-stream", HEADER_LENGTH: "0xC4"})
            ],
        ),
        Hostile(
            "management_http",
            "shared memory, logging, repository, statistics and trace over HTTP",
            lambda t: [send_raw_request(t.http, *call) for call in MANAGEMENT_HTTP],
        ),
        Hostile(
            "management_grpc",
            "shared memory, logging, repository, statistics and trace over gRPC",
            lambda t: management_grpc(t.grpc),
        ),
        Hostile("grpc_gzip", "a gzip-compressed gRPC request (grpc-encoding: gzip)", lambda t: grpc_gzip(t.grpc)),
        Hostile(
            "management_http_direct",
            "the same over HTTP straight to Triton's port, without the operator key",
            lambda t: [send_raw_request(t.server_http, *call) for call in MANAGEMENT_HTTP],
            direct=True,
        ),
        Hostile(
            "management_grpc_direct",
            "the same over gRPC straight to Triton's port, without the operator key",
            lambda t: management_grpc(t.server_grpc),
            direct=True,
        ),
        Hostile("ensemble_none", "nothing hostile (the good ensemble request alone)", lambda t: [], ENSEMBLE),
        Hostile(
            "ensemble_8x36mp",
            "one request of eight 6000x6000 PNGs (105 KB each): over the request's pixel budget",
            lambda t: [post(t.http, f"/v2/models/{ENSEMBLE}/infer", *eight)],
            ENSEMBLE,
        ),
        Hostile(
            "ensemble_2x36mp",
            "one request of two 6000x6000 PNGs: within the budget, 1.3-2 s of decoding",
            lambda t: [post(t.http, f"/v2/models/{ENSEMBLE}/infer", *two)],
            ENSEMBLE,
        ),
        Hostile(
            "ensemble_declared_40mp",
            "four clients at one address looping on 633-byte JPEGs that declare 40 MP (0.5 s each to decode)",
            lambda t: concurrently(4, lambda: post(t.http, f"/v2/models/{ENSEMBLE}/infer", *declared)),
            ENSEMBLE,
        ),
        Hostile(
            "ensemble_json_150mb",
            "150 MB of JSON numbers declared as one encoded image",
            lambda t: [post(t.http, f"/v2/models/{ENSEMBLE}/infer", numbers(), JSON)],
            ENSEMBLE,
        ),
    ]


@dataclass
class CaseResult:
    name: str
    what: str
    good_model: str
    direct: bool = False  # sent around the front, straight to Triton
    hostile_statuses: dict[str, int] = field(default_factory=dict)
    hostile_rate: float = 0.0  # rounds a second, as sent (at most the run's flood rate; large bodies take longer)
    good_requests: int = 0
    good_failures: int = 0
    good_errors: list[str] = field(default_factory=list)  # the first few failures, as the client saw them
    good_p50_ms: float | None = None
    good_p90_ms: float | None = None
    good_max_ms: float | None = None
    slowdown_p50: float | None = None  # p50 over the same good request's p50 alone
    peak_memory_mb: float = 0.0
    server_survived: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


def serving_memory_mb(root: psutil.Process) -> float:
    """Resident memory of every tritonserver, Python-backend stub and nginx under `root`, in MB."""
    total = 0
    for proc in root.children(recursive=True):
        try:
            if proc.name() in ("tritonserver", "nginx", "triton_python_backend_stub"):
                total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total / 1e6


def run_case(
    case: Hostile,
    target: Target,
    make_good: Callable[[], Callable[[], object]],
    servers: Callable[[], set[int]],
    seconds: float,
    rate: float,
) -> CaseResult:
    """Hostile rounds for `seconds` (at least one), at most `rate` a second, good requests timed beside them, memory
    sampled.

    `make_good` builds the good request's sender in the thread that uses it (tritonclient's HTTP client
    belongs to the thread that made it); its first request, which warms the connection, is not timed."""
    result = CaseResult(case.name, case.what, case.good, case.direct)
    before = servers()
    stop = threading.Event()
    latencies: list[float] = []
    root = psutil.Process()

    def good_loop() -> None:
        good = make_good()
        good()
        ready.set()
        while not stop.is_set():
            start = time.perf_counter()
            try:
                good()
                latencies.append(time.perf_counter() - start)
            except Exception as exc:  # noqa: BLE001 - a failed good request is what this counts
                result.good_failures += 1
                if len(result.good_errors) < 3:
                    result.good_errors.append(f"{type(exc).__name__}: {exc}"[:300])

    def sample() -> None:
        while not stop.is_set():
            result.peak_memory_mb = max(result.peak_memory_mb, serving_memory_mb(root))
            stop.wait(0.05)

    ready = threading.Event()
    threads = [threading.Thread(target=good_loop), threading.Thread(target=sample)]
    for thread in threads:
        thread.start()
    ready.wait(60)
    start = time.monotonic()
    deadline = start + seconds
    statuses: list[int | str] = []
    rounds = 0
    while True:
        sent = case.send(target)
        statuses += sent
        rounds += 1
        if time.monotonic() >= deadline:
            break
        if not sent:  # nothing hostile: the good requests alone
            time.sleep(seconds)
            rounds = 0
            break
        time.sleep(max(0.0, start + rounds / rate - time.monotonic()))  # the flood's rate
    result.hostile_rate = round(rounds / (time.monotonic() - start), 1)
    stop.set()
    for thread in threads:
        thread.join()
    result.hostile_statuses = {str(s): statuses.count(s) for s in sorted(set(statuses), key=str)}
    result.good_requests = len(latencies) + result.good_failures
    if latencies:
        result.good_p50_ms = round(float(np.percentile(latencies, 50)) * 1e3, 2)
        result.good_p90_ms = round(float(np.percentile(latencies, 90)) * 1e3, 2)
        result.good_max_ms = round(max(latencies) * 1e3, 2)
    result.peak_memory_mb = round(result.peak_memory_mb, 1)
    result.server_survived = servers() == before
    return result
