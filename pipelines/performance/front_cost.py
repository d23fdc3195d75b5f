"""What the front costs a good request: its p50 through nginx next to Triton's own port, in one run.

The same request (batch 1, random data of the model's input shape) goes in turn to the replica's port, to the
front's, and to a bare nginx that only proxies (no allowlist, no checks, no log), over binary HTTP and gRPC, each
on one kept-alive client, in rounds whose order flips, so that drift of the shared 2 cores falls on every side
alike. The bare nginx splits the front's cost into what any proxy hop costs on this host and what the front's
checks add. `python -m evaluate.hardening` reports it.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from pipelines.config import dtypes
from pipelines.core.errors import HostError
from pipelines.model_repository.triton_config import CONFIG_FILENAME, parse_config
from pipelines.serving import balancer
from pipelines.serving.endpoints import Endpoints, free_ports, is_ready
from pipelines.serving.nginx_syntax import render_nginx, temp_paths
from pipelines.serving.server_process import die_with_parent

# the models measured: a small one (the front's fixed cost shows) and a large request (its cost per byte shows)
MODELS = ("mnist_onnx", "resnet50_onnx")
PROTOCOLS = ("http", "grpc")  # binary tensors over HTTP, and gRPC


@dataclass(frozen=True)
class FrontCost:
    model: str
    protocol: str
    requests: int  # per side
    direct_p50_ms: float
    front_p50_ms: float
    bare_nginx_p50_ms: float  # through an nginx that only proxies

    @property
    def cost_ms(self) -> float:
        return round(self.front_p50_ms - self.direct_p50_ms, 3)

    @property
    def hop_ms(self) -> float:
        """What the proxy hop alone costs (bare nginx over Triton directly)."""
        return round(self.bare_nginx_p50_ms - self.direct_p50_ms, 3)

    @property
    def cost_pct(self) -> float:
        return round(100 * (self.front_p50_ms / self.direct_p50_ms - 1), 1)

    def as_dict(self) -> dict:
        return {**asdict(self), "cost_ms": self.cost_ms, "cost_pct": self.cost_pct, "hop_ms": self.hop_ms}


@contextlib.contextmanager
def bare_nginx(http: str, grpc: str) -> Iterator[tuple[str, str]]:
    """An nginx that only proxies to one replica (`http`, `grpc`), on free loopback ports: (HTTP, gRPC) addresses."""
    binary = balancer.nginx_binary()
    ports = free_ports(2)
    keep = [("proxy_http_version", "1.1"), ("proxy_set_header", "Connection", "")]
    with tempfile.TemporaryDirectory(prefix="t2t-bare-nginx-") as tmp:
        work = Path(tmp)
        work.chmod(0o711)  # nginx's workers (nobody, under root) reach their temp directories
        conf = [
            ("daemon", "off"),
            ("worker_processes", 2),
            ("pid", str(work / "nginx.pid")),
            ("error_log", str(work / "error.log"), "warn"),
            ("events", [("worker_connections", 256)]),
            (
                "http",
                [
                    ("access_log", "off"),
                    *temp_paths(work),
                    ("client_max_body_size", 0),
                    ("upstream", "replica_http", [("server", http), ("keepalive", 8)]),
                    ("upstream", "replica_grpc", [("server", grpc), ("keepalive", 8)]),
                    (
                        "server",
                        [
                            ("listen", f"127.0.0.1:{ports[0]}"),
                            ("location", "/", [("proxy_pass", "http://replica_http"), *keep]),
                        ],
                    ),
                    (
                        "server",
                        [
                            ("listen", f"127.0.0.1:{ports[1]}", "http2"),
                            ("location", "/", [("grpc_pass", "grpc://replica_grpc")]),
                        ],
                    ),
                ],
            ),
        ]
        (work / "nginx.conf").write_text(render_nginx(conf) + "\n")
        cmd, preexec = die_with_parent(
            [binary, "-p", str(work), "-c", str(work / "nginx.conf"), "-e", str(work / "error.log")], graceful=False
        )
        proc = subprocess.Popen(
            cmd,
            preexec_fn=preexec,  # noqa: PLW1509 - prctl only, no threads touched
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            address = f"127.0.0.1:{ports[0]}"
            deadline = time.monotonic() + 10
            while not is_ready(address, 1.0):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (work / "error.log").read_text(errors="replace").strip().splitlines()
                    raise HostError(f"the bare nginx for the front's cost did not start: {(log or ['?'])[-1]}")
                time.sleep(0.05)
            yield address, f"127.0.0.1:{ports[1]}"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _sender(
    protocol: str, address: str, model: str, inputs: dict[str, np.ndarray]
) -> tuple[Callable[[], object], object]:
    """(send one request, the client to close)."""
    client_module: Any = httpclient if protocol == "http" else grpcclient
    client = client_module.InferenceServerClient(address)
    items = []
    for name, data in inputs.items():
        items.append(client_module.InferInput(name, list(data.shape), dtypes.from_numpy(data.dtype)))
        items[-1].set_data_from_numpy(data)
    return (lambda: client.infer(model, items)), client


def _batch_of_one(config_file: Path) -> dict[str, np.ndarray]:
    """Random data for each input of a served config, batch 1 (the model's own names, dtypes and dims)."""
    config, rng = parse_config(config_file.read_text()), np.random.default_rng(0)
    batch = [1] if config.max_batch_size > 0 else []
    return {
        t.name: rng.random([*batch, *t.dims]).astype(dtypes.to_numpy(dtypes.from_config_enum(t.data_type)))
        for t in config.input
    }


SLOT_S = 0.1  # each side's turn: short, so that the 2 cores' drift (seconds long) falls on all sides alike


def measure_front_cost(endpoints: Endpoints, repository: Path, seconds: float) -> list[FrontCost]:
    """Each model of `MODELS` that `repository` serves, each protocol: about `seconds` of requests per side."""
    rounds = max(2, round(seconds / SLOT_S))
    direct = {"http": endpoints.members[0], "grpc": endpoints.member_grpc[0]}
    front = {"http": endpoints.http, "grpc": endpoints.grpc}
    rows = []
    with bare_nginx(direct["http"], direct["grpc"]) as (bare_http, bare_grpc):
        bare = {"http": bare_http, "grpc": bare_grpc}
        for model in MODELS:
            config_file = Path(repository) / model / CONFIG_FILENAME
            if not config_file.is_file():
                continue
            inputs = _batch_of_one(config_file)
            for protocol in PROTOCOLS:
                sides = {"direct": direct[protocol], "front": front[protocol], "bare": bare[protocol]}
                p50, count = _alternating(protocol, sides, model, inputs, seconds, rounds)
                rows.append(FrontCost(model, protocol, count, p50["direct"], p50["front"], p50["bare"]))
    return rows


def _alternating(
    protocol: str, sides: dict[str, str], model: str, inputs: dict[str, np.ndarray], seconds: float, rounds: int
) -> tuple[dict[str, float], int]:
    """Each side's p50 (ms) over rounds whose order flips, and the fewest requests a side got."""
    senders = {side: _sender(protocol, address, model, inputs) for side, address in sides.items()}
    times: dict[str, list[float]] = {side: [] for side in sides}
    try:
        for send, _ in senders.values():  # connections up, the model warm
            for _ in range(3):
                send()
        for round_ in range(rounds):
            order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
            for side in order:
                send = senders[side][0]
                until = time.perf_counter() + seconds / rounds
                while time.perf_counter() < until:
                    start = time.perf_counter()
                    send()
                    times[side].append(time.perf_counter() - start)
    finally:
        for _, client in senders.values():
            client.close()  # type: ignore[attr-defined]
    p50 = {side: round(float(np.median(t)) * 1e3, 3) for side, t in times.items()}
    return p50, min(len(t) for t in times.values())
