"""Replicas behind the real nginx: parity through it, bodies over the limit refused, a replica killed under load.

The expected answers are Triton's own (a request on a quiet server, the replicas' statistics) and
nginx's own verdict on its configuration (`nginx -t`), never the balancer module's view of itself.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from pipelines.core.errors import ConfigError
from pipelines.serving import balancer, guard
from pipelines.serving.front_conf import nginx_config
from pipelines.serving.front_settings import FrontSettings
from pipelines.serving.launcher import serve
from pipelines.serving.settings import ServerSettings

from conftest import AFTER_BUILD, ROOT, compose_config, job_result, server_process, tool_env, wait_until

NGINX = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
needs_nginx = pytest.mark.skipif(
    NGINX is None,
    reason="nginx is not installed (`make test` installs it where it can: .ci/tools; "
    "apt-get install nginx libnginx-mod-http-js)",
)
MODEL = "mnist_onnx"


def front_cfg(tmp_path: Path, *overrides: str):
    return compose_config("triton", ["balancer=nginx", f"paths.logs={tmp_path / 'logs'}", *overrides])


@pytest.mark.parametrize(
    "override, says",
    [
        ("balancer.replicas=0", "balancer.replicas must be >= 1"),
        ("balancer.max_string_bytes=-5", "balancer.max_string_bytes must be >= 1"),
        ("balancer.retries=1.5", "balancer.retries must be an integer"),
        ("balancer.health_interval_s=abc", "balancer.health_interval_s must be a number"),
        ("balancer.kind=haproxy", "balancer must be one of none, nginx, auto"),
    ],
)
def test_bad_balancer_settings_are_one_line_errors(tmp_path: Path, override: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace(".", r"\.")):
        FrontSettings.from_cfg(front_cfg(tmp_path, override).balancer)


def test_balancer_with_a_remote_server_is_refused(tmp_path: Path) -> None:
    cfg = front_cfg(tmp_path, "server=remote")
    with pytest.raises(ConfigError, match="server=remote launches nothing"):
        serve(ServerSettings.from_cfg(cfg.server), tmp_path, front=FrontSettings.from_cfg(cfg.balancer))


def test_cli_names_an_unknown_balancer_in_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "serve.triton", "balancer=haproxy"],
        cwd=ROOT,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: unknown balancer 'haproxy'; choose one of: auto, nginx, none"


def test_without_nginx_the_command_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(balancer.shutil, "which", lambda name: None)
    monkeypatch.setattr(balancer.os, "access", lambda path, mode: False)
    with pytest.raises(
        balancer.HostError,
        match=r"balancer=nginx needs nginx: install it \(Debian/Ubuntu: `apt-get "
        r"install nginx`\), or serve without a balancer \(balancer=none\)",
    ):
        balancer.nginx_binary()


@needs_nginx
def test_generated_configuration_is_the_expected_one_and_nginx_accepts_it(tmp_path: Path) -> None:
    settings = FrontSettings.from_cfg(front_cfg(tmp_path, "balancer.replicas=2").balancer)
    work = tmp_path / "work"
    work.mkdir()
    mnist = guard.ModelLimits("mnist_onnx", (guard.InputLimit("image", 64 * 784, 4, 26),), rank=4)
    text = nginx_config(
        settings,
        "127.0.0.1",
        9000,
        9001,
        [("127.0.0.1:9100", "127.0.0.1:9101"), ("127.0.0.1:9200", "127.0.0.1:9201")],
        {1},
        Path("/W"),
        Path("/L/nginx.log"),
        [mnist],
        Path("/M/ngx_http_js_module.so"),
    )
    assert text == (Path(__file__).parent / "expected" / "nginx.conf").read_text()
    # nginx's own check, with the paths of a real scratch directory (and the njs module where installed)
    njs = balancer.njs_module(NGINX)
    if njs is None:
        text = "\n".join(line for line in text.splitlines() if not line.startswith("load_module"))
        text = text.replace("js_import", "# js_import").replace("js_content", "# js_content")
    shutil.copy2(guard.GUARD_SCRIPT, work / guard.GUARD_SCRIPT.name)
    conf = work / "nginx.conf"
    conf.write_text(
        text.replace("/W/", f"{work}/").replace("/L/", f"{tmp_path}/").replace("/M/", f"{njs and njs.parent}/")
    )
    proc = subprocess.run(
        [NGINX, "-t", "-p", str(work), "-c", str(conf), "-e", str(tmp_path / "nginx.log")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------- against real replicas


def small_repository(workspace: Path, root: Path) -> Path:
    """Only mnist_onnx: replicas start in seconds."""
    shutil.copytree(workspace / "model_repository" / MODEL, root / MODEL)
    return root


def digits(count: int = 4) -> np.ndarray:
    return np.random.default_rng(7).random((count, 28, 28, 1), dtype=np.float32)


def infer(module, url: str, batch: np.ndarray) -> np.ndarray:
    client = module.InferenceServerClient(url)
    try:
        item = module.InferInput("image", list(batch.shape), "FP32")
        item.set_data_from_numpy(batch)
        return client.infer(MODEL, [item]).as_numpy("probabilities")
    finally:
        client.close()


def successes(http: str, operator: dict[str, str]) -> int:
    stats = httpclient.InferenceServerClient(http).get_inference_statistics(MODEL, headers=operator)["model_stats"]
    return sum(int(s["inference_stats"]["success"]["count"]) for s in stats)


def counted(http: str, operator: dict[str, str], at_least: int, timeout_s: float = 10.0) -> int:
    """Triton's count of successful requests once it reaches `at_least` (statistics land just after the answers)."""
    assert at_least >= 1
    return wait_until(
        lambda: count if (count := successes(http, operator)) >= at_least else 0,
        timeout_s,
        f"{at_least} successful requests counted by {http}",
    )


def parity_through_two_replicas(workspace: Path, scratch: Path) -> tuple[subprocess.CompletedProcess, Path]:
    """`evaluate.parity model=all` through nginx and two replicas, in a copy of the built workspace: the run, and
    where its reports are. HTTP (binary) and gRPC: what the balancer carries; JSON bodies travel as binary ones do.

    Run beside the other tests (conftest.AFTER_BUILD): it starts two servers that each load every model."""
    reports = scratch / "reports"
    # the demo models only: the workspace's models of a user's own (tests/user_models.py) neither checked nor loaded
    demo = list(compose_config("parity", ["model=all"]).models)
    served = sorted(p.name for p in (workspace / "model_repository").iterdir())
    loaded = ",".join(f"'--load-model={m}'" for m in served if m in demo or m.startswith(tuple(demo)))
    command = [
        sys.executable,
        "-m",
        "evaluate.parity",
        "model=all",
        "balancer=nginx",
        "balancer.replicas=2",
        "protocols=[http,grpc]",
        f"paths.parity_reports={reports}",
        f"paths.logs={scratch / 'logs'}",
        *(f"~models.{m}" for m in served if m not in demo and not m.startswith(tuple(demo))),
        f"server.extra_args=['--model-control-mode=explicit',{loaded}]",
    ]
    proc = subprocess.run(
        command, cwd=workspace, env=tool_env(), capture_output=True, text=True, timeout=900, check=False
    )
    return proc, reports


if NGINX is not None:
    AFTER_BUILD["parity_through_replicas"] = parity_through_two_replicas


@pytest.fixture
def parity_through_replicas(workspace: Path) -> tuple[subprocess.CompletedProcess, Path]:
    return job_result("parity_through_replicas")


@needs_nginx
@pytest.mark.integration
def test_parity_passes_for_every_cpu_model_through_two_replicas(parity_through_replicas) -> None:
    proc, reports = parity_through_replicas
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cfg = compose_config("parity", ["model=all"])
    for model in cfg.models:
        report = json.loads((reports / f"{model}.json").read_text())
        assert report["passed"], model
        assert (
            report["server"]["description"].startswith("nginx 1.")
            and " balancing 2 x embedded tritonserver" in report["server"]["description"]
        )
        assert set(report["protocols"]) >= {"http", "grpc"}
        # the burst is counted by the replicas that served it, all of it (their statistics add up)
        burst = compose_config("parity", [f"model={model}"]).model.parity.concurrent_requests
        assert report["dynamic_batching"]["requests"] == burst, model


@needs_nginx
@pytest.mark.integration
def test_body_over_the_models_limit_is_refused_before_any_replica(workspace: Path, tmp_path: Path) -> None:
    cfg = front_cfg(tmp_path, "balancer.replicas=1")
    # mnist_onnx's largest legal request: 64 images of 28x28 FP32 values as JSON text, 26 characters each,
    # and 64 KiB for the rest of the request (worked out by hand: tests/test_front.py)
    limit = 64 * 28 * 28 * 26 + 64 * 1024
    server, settings = ServerSettings.from_cfg(cfg.server), FrontSettings.from_cfg(cfg.balancer)
    with serve(server, small_repository(workspace, tmp_path / "repo"), front=settings) as front:
        (replica,) = front.members
        fits = digits(64)  # 200 KB: Triton answers
        assert infer(httpclient, front.http, fits).shape == (64, 10)
        assert infer(grpcclient, front.grpc, fits).shape == (64, 10)
        before = counted(replica, front.operator, 2)
        too_big = digits(limit // (28 * 28 * 4) + 1)  # binary: one image more than the limit holds
        with pytest.raises(InferenceServerException) as http_error:
            infer(httpclient, front.http, too_big)
        assert http_error.value.status() == "413"
        assert f"model {MODEL} takes at most {limit} bytes (refused by the front)" in http_error.value.message()
        with pytest.raises(InferenceServerException) as grpc_error:
            infer(grpcclient, front.grpc, too_big)
        assert grpc_error.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        assert f"larger than any model behind the front takes ({limit} bytes)" in grpc_error.value.message()
        # Triton's own count: neither request reached it (nor failed there). One more good request, counted once
        # its statistics show it, so that nothing sent before it is still on its way into them
        assert infer(httpclient, front.http, fits).shape == (64, 10)
        assert counted(replica, front.operator, before + 1) == before + 1
        client = httpclient.InferenceServerClient(replica)
        stats = client.get_inference_statistics(MODEL, headers=front.operator)["model_stats"][0]
        assert int(stats["inference_stats"]["fail"]["count"]) == 0


@needs_nginx
@pytest.mark.integration
def test_a_replica_killed_under_load_loses_only_grpc_requests_in_flight(
    workspace: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = front_cfg(tmp_path, "balancer.replicas=2", "balancer.health_interval_s=0.2")
    batch = digits()
    outcomes: dict[str, list] = {"http": [], "grpc": []}
    server, settings = ServerSettings.from_cfg(cfg.server), FrontSettings.from_cfg(cfg.balancer)
    with serve(server, small_repository(workspace, tmp_path / "repo"), front=settings) as front:
        expected = infer(httpclient, front.members[0], batch)  # Triton's answer, asked directly on a quiet replica
        stop = threading.Event()

        def load(protocol: str) -> None:
            module, url = (httpclient, front.http) if protocol == "http" else (grpcclient, front.grpc)
            while not stop.is_set():
                try:
                    outcomes[protocol].append(infer(module, url, batch))
                except InferenceServerException as exc:
                    outcomes[protocol].append(exc)

        def each_has(count: int) -> None:  # requests answered (or failed) on both protocols, not a fixed time
            wait_until(lambda: min(len(r) for r in outcomes.values()) >= count, 60, f"{count} outcomes per protocol")

        threads = [threading.Thread(target=load, args=(p,), daemon=True) for p in ("http", "grpc") * 2]
        for thread in threads:
            thread.start()
        try:
            each_has(30)  # both replicas under load
            server_process(front.members[1]).kill()
            each_has(min(len(r) for r in outcomes.values()) + 60)  # and long after the kill
        finally:  # a failure above must not leave four threads hammering a stopped front for the rest of the session
            stop.set()
            for thread in threads:
                thread.join()
        # the front has seen the kill (its health check), and one replica still serves
        wait_until(
            lambda: any(f"({front.members[1]}) taken out of the balancer" in r.getMessage() for r in caplog.records),
            30,
            "the killed replica taken out of the balancer",
        )
        assert front.problem() is None
    answers = [o for results in outcomes.values() for o in results if isinstance(o, np.ndarray)]
    mismatched = [a for a in answers if not np.array_equal(a, expected)]
    failed = {p: [o for o in results if not isinstance(o, np.ndarray)] for p, results in outcomes.items()}
    print(
        f"answers {len(answers)}, mismatched {len(mismatched)}, failed http {len(failed['http'])}, "
        f"grpc {len(failed['grpc'])}: {[f.message() for f in failed['grpc']]}"
    )
    assert len(answers) > 50 and not mismatched
    assert failed["http"] == []  # nginx buffered each body and repeated it on the other replica
    # gRPC bodies are streamed: at most the requests in flight on the killed replica (one per thread) fail,
    # as UNAVAILABLE, the status gRPC clients may retry
    assert len(failed["grpc"]) <= 2 and all(f.status() == "StatusCode.UNAVAILABLE" for f in failed["grpc"])
    assert any("taken out of the balancer" in r.getMessage() for r in caplog.records)


@needs_nginx
@pytest.mark.integration
def test_serve_triton_restarts_its_server_then_gives_up(workspace: Path, tmp_path: Path) -> None:
    """`serve.triton` supervises the server behind its front: the first crash is followed by a restart on the same
    ports; the second within the window (max_restarts=1 here) stops serving, with the reason, and no nginx left."""
    repo = small_repository(workspace, tmp_path / "repo")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serve.triton",
            "server.restart.max_restarts=1",
            f"model_repository={repo}",
            f"paths.logs={tmp_path}",
        ],
        cwd=ROOT,
        env=tool_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def read_until(prefix: str) -> str:
        for line in proc.stdout:  # progress lines (the log goes to stdout)
            if prefix in line:
                return line
        raise AssertionError(f"serve.triton ended before printing {prefix!r}: {proc.stderr.read()}")

    def triton() -> psutil.Process:
        (found,) = [p for p in psutil.Process(proc.pid).children(recursive=True) if p.name() == "tritonserver"]
        return found

    try:
        read_until("Triton ready: HTTP http://127.0.0.1:")
        read_until("behind the nginx front; replicas (HTTP): 127.0.0.1:")  # balancer=auto, nginx installed
        first = triton()
        command = first.cmdline()
        first.send_signal(signal.SIGSEGV)
        assert "tritonserver crashed (SIGSEGV" in read_until("tritonserver died:")
        read_until("tritonserver ready again")
        second = triton()
        assert second.pid != first.pid and second.cmdline() == command  # the same ports, the same log
        second.kill()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith(
        "error: stopped serving: no Triton replica is ready: tritonserver died 2 times within "
        "600 s; not restarted again. Last: tritonserver was killed (SIGKILL"
    ), last
    assert not any(p.name() == "nginx" for p in psutil.process_iter(["name"]) if p.ppid() == proc.pid)
