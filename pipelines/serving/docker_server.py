"""The `docker` server kind: the pinned NGC Triton image run with `docker run`, serving the repository read-only on
ports published on the configured host.

`graceful` and `supervise` do not apply: `docker stop` gives the container 10 s, then kills it; a dead container stays
dead.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from pipelines.core.errors import ServerError
from pipelines.serving.endpoints import (
    Endpoints,
    Launch,
    check_loaded,
    launch_ports,
    readiness,
    run_log,
    wait_until_ready,
)
from pipelines.serving.server_process import exit_reason, stop_process
from pipelines.serving.settings import ServerSettings

log = logging.getLogger(__name__)


def docker_command(
    server: ServerSettings,
    repository: Path,
    http_port: int,
    grpc_port: int,
    name: str,
    extra: list[str] | None = None,
    operator_key: str | None = None,
) -> list[str]:
    """`docker run` for the pinned NGC image serving the repository (read-only), ports published on the configured
    host (loopback unless `server.expose=true`)."""
    assert server.image is not None and server.shm_size is not None and server.flags is not None
    cmd = ["docker", "run", "--rm", "--name", name, "--shm-size", server.shm_size]
    if server.gpus:
        cmd += ["--gpus", server.gpus]
    cmd += [
        "-p",
        f"{server.host}:{http_port}:8000",
        "-p",
        f"{server.host}:{grpc_port}:8001",
        "-v",
        f"{repository.resolve()}:/models:ro",
        server.image,
        "tritonserver",
        "--model-repository=/models",
        *server.flags.args(extra, operator_key),
    ]
    return cmd


def _docker_engine_error() -> str | None:
    if shutil.which("docker") is None:
        return "the docker command is not installed"
    try:
        proc = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return lines[-1] if lines else f"docker info exited {proc.returncode}"
    return None


@contextlib.contextmanager
def serve_docker(
    request: Launch,
) -> Iterator[Endpoints]:
    # graceful and supervise do not apply: `docker stop` gives the container 10 s, then kills it; a dead container
    # stays dead
    server, repository, extra, started = request.server, request.repository, request.extra, request.started
    problem = _docker_engine_error()
    if problem:
        raise ServerError(f"server=docker needs a running Docker engine: {problem}")
    assert server.host is not None and server.log_file is not None
    http_port, grpc_port = launch_ports(server)
    name = f"train-to-triton-{uuid.uuid4().hex[:8]}"
    log_file = run_log(server.log_file)
    endpoints = Endpoints(
        f"{server.host}:{http_port}",
        f"{server.host}:{grpc_port}",
        log_file,
        f"docker {server.image}",
        operator=server.flags.operator(request.operator_key),
    )
    cmd = docker_command(server, repository, http_port, grpc_port, name, extra, request.operator_key)
    log.info("starting %s as container %s; log %s", server.image, name, log_file)
    with open(log_file, "wb") as log_fh:
        proc = subprocess.Popen(cmd, stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            if started is not None:
                started()
            wait_until_ready(endpoints, proc, server.startup_timeout_s)
            check_loaded(endpoints)
            yield replace(endpoints, problem=lambda: exit_reason(proc, log_file) or readiness(endpoints.http, 1.0))
        finally:
            subprocess.run(["docker", "stop", "--time", "10", name], capture_output=True, check=False)
            stop_process(proc, server.stop_timeout_s)
