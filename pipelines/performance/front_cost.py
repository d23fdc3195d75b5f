"""What the front costs a good request: its p50 through nginx next to Triton's own port, in one run.

The same request (batch 1, random data of the model's input shape) goes alternately to the replica's port and
to the front's, over binary HTTP and gRPC, each on one kept-alive client, in rounds whose order flips, so that
drift of the shared 2 cores falls on both sides alike. `python -m evaluate.hardening` reports it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from pipelines.serving.launcher import Endpoints

# the models measured: a small one (the front's fixed cost shows) and a large request (its cost per byte shows)
MODELS = {"mnist_onnx": ("image", (1, 28, 28, 1)), "resnet50_onnx": ("input", (1, 3, 224, 224))}
PROTOCOLS = ("http", "grpc")  # binary tensors over HTTP, and gRPC


@dataclass(frozen=True)
class FrontCost:
    model: str
    protocol: str
    requests: int  # per side
    direct_p50_ms: float
    front_p50_ms: float

    @property
    def cost_ms(self) -> float:
        return round(self.front_p50_ms - self.direct_p50_ms, 3)

    @property
    def cost_pct(self) -> float:
        return round(100 * (self.front_p50_ms / self.direct_p50_ms - 1), 1)

    def as_dict(self) -> dict:
        return {**asdict(self), "cost_ms": self.cost_ms, "cost_pct": self.cost_pct}


def _sender(
    protocol: str, address: str, model: str, name: str, data: np.ndarray
) -> tuple[Callable[[], object], object]:
    """(send one request, the client to close)."""
    if protocol == "http":
        import tritonclient.http as client_module
    else:
        import tritonclient.grpc as client_module  # type: ignore[no-redef]
    client = client_module.InferenceServerClient(address)
    item = client_module.InferInput(name, list(data.shape), "FP32")
    item.set_data_from_numpy(data)
    return (lambda: client.infer(model, [item])), client


def measure(endpoints: Endpoints, served: set[str], seconds: float, rounds: int = 8) -> list[FrontCost]:
    """Each model of `MODELS` that is `served`, each protocol: about `seconds` of requests per side."""
    rows = []
    direct = {"http": endpoints.members[0], "grpc": endpoints.member_grpc[0]}
    front = {"http": endpoints.http, "grpc": endpoints.grpc}
    for model, (name, shape) in MODELS.items():
        if model not in served:
            continue
        data = np.random.default_rng(0).random(shape, dtype=np.float32)
        for protocol in PROTOCOLS:
            senders = {
                side: _sender(protocol, address[protocol], model, name, data)
                for side, address in (("direct", direct), ("front", front))
            }
            try:
                times: dict[str, list[float]] = {"direct": [], "front": []}
                for send, _ in senders.values():  # connections up, the model warm
                    for _ in range(3):
                        send()
                for round_ in range(rounds):
                    order = ("direct", "front") if round_ % 2 == 0 else ("front", "direct")
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
            count = min(len(t) for t in times.values())
            rows.append(FrontCost(model, protocol, count, p50["direct"], p50["front"]))
    return rows
