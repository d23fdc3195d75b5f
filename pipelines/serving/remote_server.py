"""The `remote` server kind: a Triton someone else started, with its own repository and options, reached and checked
to answer over HTTP and gRPC; nothing is launched or stopped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pipelines.core.errors import ServerError
from pipelines.serving.endpoints import Endpoints, Launch, grpc_problem, readiness


@contextlib.contextmanager
def serve_remote(
    request: Launch,
) -> Iterator[Endpoints]:
    server = request.server  # the remote server has its own repository and options, and is up
    endpoints = Endpoints(
        str(server.http_url), str(server.grpc_url), server=f"remote http://{server.http_url}", operator=server.operator
    )
    timeout = server.connect_timeout_s
    problem = readiness(endpoints.http, timeout)
    if problem is not None:
        raise ServerError(
            f"no ready Triton at http://{endpoints.http} (server.http_url): {problem}; "
            "server=remote launches nothing, start it first"
        )
    problem = grpc_problem(endpoints.grpc, timeout)
    if problem is not None:
        raise ServerError(f"no Triton gRPC endpoint at {endpoints.grpc} (server.grpc_url): {problem}")
    yield endpoints
