"""The hardening check: the requests that hurt Triton 2.51 sent through the front while good requests are timed,
then the crash straight on a server's own port and its supervised return (`python -m evaluate.hardening`).

`HardeningJob.from_cfg` is the one place its config is read; `check_hardening` serves the repository as `serve.triton`
does (one supervised server behind the nginx front), runs each case of `hostile` and returns the report.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import tritonclient.http as httpclient
from omegaconf import DictConfig

from pipelines.core.errors import HostError, checked_number
from pipelines.data import parity_inputs
from pipelines.performance import front_cost, hostile, hostile_requests
from pipelines.serving import balancer
from pipelines.serving.endpoints import is_ready
from pipelines.serving.front_settings import FrontSettings
from pipelines.serving.launcher import serve
from pipelines.serving.settings import ServerSettings


@dataclass(frozen=True)
class HardeningJob:
    front: FrontSettings  # the front under test
    server: ServerSettings
    repository: Path
    releases: Mapping[str, Any]
    seconds_per_case: float  # hostile rounds and good requests side by side this long
    flood_rate: float  # hostile rounds a second at most
    front_cost_s: float  # requests timed per model, protocol and side (direct, front, bare nginx) this long
    restart_timeout_s: float  # longest the crashed server may take to be ready again
    out: Path

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> HardeningJob:
        return cls(
            front=FrontSettings.from_cfg(cfg.balancer),
            server=ServerSettings.from_cfg(cfg.server),
            repository=Path(str(cfg.model_repository)),
            releases=cfg.triton_releases,
            seconds_per_case=checked_number(cfg.seconds_per_case, "seconds_per_case", float, 0.1),
            flood_rate=checked_number(cfg.flood_rate, "flood_rate", float, 0.1),
            front_cost_s=checked_number(cfg.front_cost_s, "front_cost_s", float, 0.1),
            restart_timeout_s=checked_number(cfg.restart_timeout_s, "restart_timeout_s", float, 1.0),
            out=Path(str(cfg.out)),
        )


def _good_request(model: str, http: str):
    """A callable sending one good request of `model` over binary HTTP (its own client: one per thread)."""
    client = httpclient.InferenceServerClient(http)
    if model == hostile_requests.MNIST:
        item = httpclient.InferInput("image", [4, 28, 28, 1], "FP32")
        item.set_data_from_numpy(np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32))
    else:
        photo = parity_inputs.sample_photo_paths()[0].read_bytes()
        item = httpclient.InferInput("image", [1, 1], "BYTES")
        item.set_data_from_numpy(np.array([[photo]], dtype=np.object_))
    return lambda: client.infer(model, [item])


def _servers() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if p.name() == "tritonserver"}


def check_hardening(job: HardeningJob) -> dict:
    """Every case through the front, then the crash and the return; the report (`passed` says whether no hostile
    request got past the front, no good request failed and the server came back)."""
    settings = job.front
    if balancer.njs_module(balancer.nginx_binary()) is None:
        raise HostError("the hardening check needs nginx's njs module: apt-get install libnginx-mod-http-js")
    with serve(job.server, job.repository, job.releases, settings, graceful=True, supervise=True) as front:
        (replica,) = front.members[:1]
        print("the front's cost: good requests straight to Triton, through the front and a bare nginx ...", flush=True)
        costs = front_cost.measure_front_cost(front, job.repository, job.front_cost_s)
        target = hostile.Target(front.http, front.grpc, replica, front.member_grpc[0])
        results = []
        for case in hostile.cases():
            print(f"{case.name}: {case.what} ...", flush=True)
            make_good = functools.partial(_good_request, case.good, front.http)
            results.append(hostile.run_case(case, target, make_good, _servers, job.seconds_per_case, job.flood_rate))
        print(f"restart: the 90-byte request straight to {replica} (no front) ...", flush=True)
        crashed = time.monotonic()
        status = hostile_requests.post(
            replica,
            f"/v2/models/{hostile_requests.MNIST}/infer",
            hostile_requests.KILLER,
            {"Content-Type": "application/json"},
        )
        deadline = crashed + job.restart_timeout_s
        while time.monotonic() < deadline and (status or not is_ready(replica, 1.0)):
            if status:  # it answered: this Triton no longer crashes on it
                break
            time.sleep(0.1)
        restart_s = None if status or not is_ready(replica, 1.0) else round(time.monotonic() - crashed, 1)
        server = front.server
    alone = {r.good_model: r.good_p50_ms for r in results if not r.hostile_statuses and r.good_p50_ms}
    for r in results:  # how much slower the good requests were with the hostile ones in flight (p50 over p50 alone)
        r.slowdown_p50 = (
            round(r.good_p50_ms / alone[r.good_model], 2) if r.good_p50_ms and r.good_model in alone else None
        )
    failed = [r for r in results if not r.server_survived or r.good_failures]
    return {
        "server": server,
        "front": {"max_dynamic_dim": settings.max_dynamic_dim, "max_string_bytes": settings.max_string_bytes},
        "cases": [r.as_dict() for r in results],
        "front_cost": [c.as_dict() for c in costs],
        "restart": {"answered": status, "ready_again_s": restart_s},
        "passed": not failed and restart_s is not None,
    }


def print_table(report: dict) -> None:
    print(
        f"{'case':<24} {'hostile answers':<28} {'rate/s':>7} {'good answered':<26} {'p50 ms':>8} {'p90 ms':>8} "
        f"{'x alone':>8} {'peak MB':>8}  server"
    )
    for case in report["cases"]:
        answers = ", ".join(f"{n}x {s}" for s, n in case["hostile_statuses"].items()) or "-"
        good = f"{case['good_requests'] - case['good_failures']}/{case['good_requests']} {case['good_model']}"
        print(
            f"{case['name']:<24} {answers:<28} {case['hostile_rate'] or '-':>7} {good:<26} "
            f"{case['good_p50_ms'] or '-':>8} {case['good_p90_ms'] or '-':>8} {case['slowdown_p50'] or '-':>8} "
            f"{case['peak_memory_mb']:>8}  {'the same' if case['server_survived'] else 'DIED'}"
        )
    restart = report["restart"]
    print(f"crash straight on the server's port: ready again after {restart['ready_again_s']} s (supervised)")
    print(
        f"{'the front costs':<24} {'protocol':<9} {'direct p50 ms':>14} {'front p50 ms':>13} {'cost':>16} "
        f"{'bare nginx hop':>15}"
    )
    for cost in report["front_cost"]:
        print(
            f"{cost['model']:<24} {cost['protocol']:<9} {cost['direct_p50_ms']:>14} {cost['front_p50_ms']:>13} "
            f"{cost['cost_ms']:>+8.3f} ms {cost['cost_pct']:>+5.1f}% {cost['hop_ms']:>+12.3f} ms"
        )
