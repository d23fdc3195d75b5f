"""The requests that hurt Triton 2.51, and what serving costs the good requests while they arrive.

Each case sends its hostile request over and over for a few seconds while good requests (MNIST over
binary HTTP, and one photograph through the ensemble) are timed beside it. A case reports the
statuses the hostile requests got, the good requests' latency and failures, the peak memory of
Triton and the front, and whether the server that was serving at the start still serves (the same
process: a supervised restart would hide a crash). `restart` crashes one server on purpose, straight
on its own port, and times its supervised return. `python -m evaluate.hardening` runs them all.
"""

from __future__ import annotations

import http.client
import io
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import psutil

MNIST, ENSEMBLE = "mnist_onnx", "resnet50_ensemble"
KILLER = b'{"inputs":[{"name":"image","shape":[4294967297,28,28,1],"datatype":"FP32","data":[1]}]}'
MIB = 1 << 20


def zeros_png(side: int) -> bytes:
    """A square black PNG: about 100 KB on the wire for 6000x6000, and 0.5-0.7 s to decode."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (side, side)).save(out, format="PNG", optimize=True)
    return out.getvalue()


def binary_bytes_request(images: list[bytes], name: str = "image") -> tuple[bytes, dict[str, str]]:
    """A KServe v2 binary request of BYTES images (each prefixed by its 4-byte length), as tritonclient sends it."""
    import json

    data = b"".join(len(i).to_bytes(4, "little") + i for i in images)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": [len(images), 1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(data)},
                }
            ]
        }
    ).encode()
    return header + data, {
        "Inference-Header-Content-Length": str(len(header)),
        "Content-Type": "application/octet-stream",
    }


def post(
    address: str,
    path: str,
    body: bytes | Iterable[bytes],
    headers: dict[str, str],
    length: int | None = None,
    timeout: float = 120.0,
) -> int:
    """One raw POST; the status, or 0 when the connection dropped without an answer (a crashed server)."""
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.putrequest("POST", path)
        conn.putheader("Content-Length", str(len(body) if length is None else length))  # type: ignore[arg-type]
        for key, value in headers.items():
            conn.putheader(key, value)
        conn.endheaders()
        try:
            for chunk in [body] if isinstance(body, bytes) else body:
                conn.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before it was read: the answer may already be there
        response = conn.getresponse()
        response.read()
        return response.status
    except (http.client.HTTPException, ConnectionError, TimeoutError):
        return 0
    finally:
        conn.close()


def zero_chunks(total: int, chunk: int = MIB) -> Iterator[bytes]:
    block = b"\0" * chunk
    for _ in range(total // chunk):
        yield block


@dataclass(frozen=True)
class Hostile:
    name: str
    what: str
    send: Callable[[str], list[int]]  # front address -> the statuses one round got
    good: str = MNIST  # the good requests timed beside it


def cases() -> list[Hostile]:
    big = zeros_png(6000)
    eight, two = binary_bytes_request([big] * 8), binary_bytes_request([big] * 2)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    json_type = {"Content-Type": "application/json"}

    def uploads(front: str) -> list[int]:
        out: list[int] = []
        threads = [
            threading.Thread(
                target=lambda: out.append(
                    post(
                        front,
                        f"/v2/models/{MNIST}/infer",
                        zero_chunks(512 * MIB),
                        {"Content-Type": "application/octet-stream"},
                        length=512 * MIB,
                    )
                )
            )
            for _ in range(6)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return out

    return [
        Hostile("none", "nothing hostile (the good requests alone)", lambda front: []),
        Hostile(
            "json_huge_shape",
            "90-byte JSON declaring [4294967297,28,28,1] (kills Triton: bad_alloc)",
            lambda front: [post(front, f"/v2/models/{MNIST}/infer", KILLER, json_type)],
        ),
        Hostile(
            "form_post_4mib",
            "4 MiB form-urlencoded body to infer and to health (kills Triton: server#5840)",
            lambda front: [
                post(front, path, b"a=" + b"0" * (4 * MIB), form)
                for path in (f"/v2/models/{MNIST}/infer", "/v2/health/live")
            ],
        ),
        Hostile("uploads_6x512mib", "six concurrent 512 MiB bodies to infer", uploads),
        Hostile("ensemble_none", "nothing hostile (the good ensemble request alone)", lambda front: [], ENSEMBLE),
        Hostile(
            "ensemble_8x36mp",
            "one request of eight 6000x6000 PNGs (105 KB each): over the request's pixel budget",
            lambda front: [post(front, f"/v2/models/{ENSEMBLE}/infer", *eight)],
            ENSEMBLE,
        ),
        Hostile(
            "ensemble_2x36mp",
            "one request of two 6000x6000 PNGs: within the budget, 1.3-2 s of decoding",
            lambda front: [post(front, f"/v2/models/{ENSEMBLE}/infer", *two)],
            ENSEMBLE,
        ),
    ]


@dataclass
class CaseResult:
    name: str
    what: str
    good_model: str
    hostile_statuses: dict[str, int] = field(default_factory=dict)
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
    front: str,
    make_good: Callable[[], Callable[[], object]],
    servers: Callable[[], set[int]],
    seconds: float,
) -> CaseResult:
    """Hostile rounds for `seconds` (at least one), good requests timed beside them, memory sampled.

    `make_good` builds the good request's sender in the thread that uses it (tritonclient's HTTP client
    belongs to the thread that made it); its first request, which warms the connection, is not timed."""
    result = CaseResult(case.name, case.what, case.good)
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
    deadline = time.monotonic() + seconds
    statuses: list[int] = []
    while True:
        statuses += case.send(front)
        if time.monotonic() >= deadline:
            break
        if not statuses:
            time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    result.hostile_statuses = {str(s): statuses.count(s) for s in sorted(set(statuses))}
    result.good_requests = len(latencies) + result.good_failures
    if latencies:
        result.good_p50_ms = round(float(np.percentile(latencies, 50)) * 1e3, 2)
        result.good_p90_ms = round(float(np.percentile(latencies, 90)) * 1e3, 2)
        result.good_max_ms = round(max(latencies) * 1e3, 2)
    result.peak_memory_mb = round(result.peak_memory_mb, 1)
    result.server_survived = servers() == before
    return result
