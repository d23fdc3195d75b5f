"""What the front costs a good request: its p50 through nginx next to Triton's own port, in one run.

The same request (batch 1, random data of the model's input shape) goes alternately to the replica's port and
to the front's, over binary HTTP and gRPC, each on one kept-alive client, in rounds whose order flips, so that
drift of the shared 2 cores falls on both sides alike. `python -m evaluate.hardening` reports it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipelines.config import dtypes
from pipelines.model_repository.triton_config import CONFIG_FILENAME, parse
from pipelines.serving.launcher import Endpoints

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

    @property
    def cost_ms(self) -> float:
        return round(self.front_p50_ms - self.direct_p50_ms, 3)

    @property
    def cost_pct(self) -> float:
        return round(100 * (self.front_p50_ms / self.direct_p50_ms - 1), 1)

    def as_dict(self) -> dict:
        return {**asdict(self), "cost_ms": self.cost_ms, "cost_pct": self.cost_pct}


def _sender(
    protocol: str, address: str, model: str, inputs: dict[str, np.ndarray]
) -> tuple[Callable[[], object], object]:
    """(send one request, the client to close)."""
    if protocol == "http":
        import tritonclient.http as client_module
    else:
        import tritonclient.grpc as client_module  # type: ignore[no-redef]
    client = client_module.InferenceServerClient(address)
    items = []
    for name, data in inputs.items():
        items.append(client_module.InferInput(name, list(data.shape), dtypes.from_numpy(data.dtype)))
        items[-1].set_data_from_numpy(data)
    return (lambda: client.infer(model, items)), client


def _batch_of_one(config_file: Path) -> dict[str, np.ndarray]:
    """Random data for each input of a served config, batch 1 (the model's own names, dtypes and dims)."""
    config, rng = parse(config_file.read_text()), np.random.default_rng(0)
    batch = [1] if config.max_batch_size > 0 else []
    return {
        t.name: rng.random([*batch, *t.dims]).astype(dtypes.to_numpy(dtypes.from_config_enum(t.data_type)))
        for t in config.input
    }


def measure(endpoints: Endpoints, repository: Path, seconds: float, rounds: int = 8) -> list[FrontCost]:
    """Each model of `MODELS` that `repository` serves, each protocol: about `seconds` of requests per side."""
    rows = []
    direct = {"http": endpoints.members[0], "grpc": endpoints.member_grpc[0]}
    front = {"http": endpoints.http, "grpc": endpoints.grpc}
    for model in MODELS:
        config_file = Path(repository) / model / CONFIG_FILENAME
        if not config_file.is_file():
            continue
        inputs = _batch_of_one(config_file)
        for protocol in PROTOCOLS:
            senders = {
                side: _sender(protocol, address[protocol], model, inputs)
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
