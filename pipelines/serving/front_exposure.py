"""Where a launched server may listen, and replicas behind the nginx front.

Binding beyond loopback is refused unless `server.expose=true`, then warned about (`exposure`). With a balancer,
`front.replicas` servers of one kind run on free loopback ports behind nginx on the configured ones (`serve_front`);
nginx itself is `balancer.Front`, its request limits `guard`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pipelines.core import scratch
from pipelines.core.errors import ConfigError, ServerError
from pipelines.serving import balancer, guard, privileges
from pipelines.serving.endpoints import (
    Endpoints,
    Launch,
    Launcher,
    checked_port,
    free_ports,
    grpc_problem,
    run_log,
    wait_until_ready,
)
from pipelines.serving.front_settings import FrontSettings
from pipelines.serving.server_process import die_with_parent
from pipelines.serving.settings import ServerSettings

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it resolves to whatever the network says
        return False


def exposure(server: ServerSettings, front: FrontSettings) -> None:
    """Binding beyond loopback is a decision: refused unless `server.expose=true`, then warned about, naming the
    risk and whether a front stands between the network and Triton."""
    host = str(server.host)
    if is_loopback(host):
        return
    if not server.expose:
        raise ConfigError(
            f"server.host={host} would serve beyond loopback, where anyone who reaches the port can "
            "send the requests that crash Triton (docs/hardening.md); add server.expose=true to "
            "serve there anyway"
        )
    guard = (
        "behind nginx (balancer=nginx), the replicas on loopback"
        if front.kind != "none"
        else "UNGUARDED: nothing stands between the network and Triton (balancer=nginx puts a front there)"
    )
    log.warning("serving on %s, beyond loopback (server.expose=true): %s", host, guard)


@contextlib.contextmanager
def serve_front(
    request: Launch,
    front: FrontSettings,
    launch: Launcher,
) -> Iterator[Endpoints]:
    """`front.replicas` servers of this kind, each on free ports, behind nginx on the configured ports."""
    server = request.server
    binary = balancer.nginx_binary()  # before minutes of replica start-up
    limits = guard.repository_limits(
        request.repository, front.max_dynamic_dim, front.max_string_bytes, front.max_json_string_bytes
    )
    host = str(server.host)
    http_port, grpc_port = server.http_port, server.grpc_port
    for port in (http_port, grpc_port):
        if port:
            checked_port(port, host)
    log_file = run_log(front.log_file)
    with contextlib.ExitStack() as stack:
        replicas = []
        for index in range(front.replicas):
            log.info("starting replica %d of %d", index + 1, front.replicas)
            replicas.append(
                stack.enter_context(
                    launch(  # the first replica's start may overlap the caller's work
                        dataclasses.replace(
                            request, server=server.replica(index), started=request.started if index == 0 else None
                        )
                    )
                )
            )
        # free ports for the balancer only now: the replicas listen on theirs, so none is handed out twice
        spare = iter(free_ports(2, host))
        http_port, grpc_port = http_port or next(spare), grpc_port or next(spare)
        work = stack.enter_context(scratch.scratch_dir(Path(tempfile.gettempdir()), "nginx-front-"))
        nginx = balancer.Front(
            front,
            host,
            http_port,
            grpc_port,
            [balancer.Replica(r.http, r.grpc, r.problem, r.stopped_for_good) for r in replicas],
            work,
            log_file,
            limits,
            privileges.unprivileged(server.run_as, [Path(binary), log_file.resolve().parent], "nginx"),
        )
        stack.enter_context(balancer.running(nginx, die_with_parent))
        endpoints = Endpoints(
            f"{host}:{http_port}",
            f"{host}:{grpc_port}",
            log_file,
            f"nginx {balancer.nginx_version(binary)} balancing {front.replicas} x {replicas[0].server}",
            members=tuple(r.http for r in replicas),
            member_grpc=tuple(r.grpc for r in replicas),
            problem=nginx.problem,
            failed=nginx.failed,
            operator=replicas[0].operator,  # for the members: the front itself passes no restricted API
        )
        wait_until_ready(endpoints, nginx.proc, server.startup_timeout_s, what="nginx")
        problem = grpc_problem(endpoints.grpc, 10.0)
        if problem is not None:
            raise ServerError(
                f"the balancer's gRPC port {endpoints.grpc} does not reach Triton: {problem} (log: {log_file})"
            )
        log.info(
            "nginx balancing %d replicas: HTTP %s, gRPC %s; log %s",
            front.replicas,
            endpoints.http,
            endpoints.grpc,
            log_file,
        )
        yield endpoints
