"""Launch, reach and stop Triton: `serve(server, repository)` picks the server kind (`local`: `embedded`, `docker`:
`docker_server`, `remote`: `remote_server`), puts replicas behind the nginx front where a balancer is asked for
(`front_exposure`), and first refuses TensorRT plans the server cannot load (the plan guard).

Every kind serves the one model repository as it is. `serve` is a context manager in the style of Triton's QA
scripts: the server logs to a file, readiness is polled while the process is checked for life, and the server is
always stopped on the way out, also when the caller fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipelines.core.errors import ConfigError, ServerError
from pipelines.serving import balancer
from pipelines.serving.docker_server import serve_docker
from pipelines.serving.embedded import serve_local
from pipelines.serving.endpoints import Endpoints, Launch, Launcher, Started
from pipelines.serving.front_exposure import exposure, serve_front
from pipelines.serving.front_settings import FrontSettings
from pipelines.serving.remote_server import serve_remote
from pipelines.serving.settings import ServerSettings, new_operator_key
from pipelines.trt import loadability
from pipelines.trt.plans import served_plans


def repository_for(server: ServerSettings, repository: Path) -> Path:
    """The repository a launched server serves (a remote server has its own)."""
    path = Path(repository)
    if server.launched and not (path.is_dir() and any(path.iterdir())):
        raise ServerError(f"{path} is empty or missing: run `dvc repro repository` (or `python -m serve.repository`)")
    return path


def guard_plans(server: ServerSettings, repository: Path, releases: Mapping[str, Any] | None = None) -> list[str]:
    """Refuse, in one line naming both versions, plans this server cannot load; extra server args otherwise."""
    plans = served_plans(Path(repository)) if server.launched else []
    if not plans:
        return []
    by_model: dict[str, list[dict]] = {}
    for name, meta in plans:
        by_model.setdefault(name, []).append(meta)
    try:
        loader = loadability.server_loader(server.kind, server.image or "", bool(server.gpus), releases)
    except ServerError as exc:
        raise ServerError(f"{next(iter(by_model))} is a TensorRT engine: {exc}") from None
    for name, metas in by_model.items():
        problem = loader.problem(metas)
        if problem:
            raise ServerError(f"{name}: {problem}")
    return loadability.backend_args([m for _, m in plans]) if server.kind == "docker" else []


def serve(
    server: ServerSettings,
    repository: str | Path,
    releases: Mapping[str, Any] | None = None,
    front: FrontSettings | None = None,
    started: Started = None,
    graceful: bool = False,
    supervise: bool = False,
) -> contextlib.AbstractContextManager[Endpoints]:
    """Context manager yielding the endpoints of a ready Triton for `server` (`conf/server/*.yaml`).

    `releases` (conf/triton_versions.yaml) tells which TensorRT a Triton image carries, for the plan guard.
    `front` (conf/balancer/*.yaml; None: no balancer): replicas behind one, whose ports are the configured ones.
    `started`: called once the (first) server process runs, before it is ready: work that overlaps its loading.
    `graceful`: stop with SIGTERM and Triton's own shutdown (a server others use: `serve.triton`); by default
    a launched server is killed once the caller is done with it and its stubs reaped, which saves 1-4 s.
    `supervise`: restart a local server that dies (`server.restart`; pipelines/serving/supervision.py), for
    `serve.triton`.
    """
    launchers: dict[str, Launcher] = {"local": serve_local, "docker": serve_docker, "remote": serve_remote}
    settings = balancer.resolved_front(front or FrontSettings.alone(), server.kind)
    if server.launched:
        exposure(server, settings)
    elif settings.kind != "none":
        raise ConfigError(
            f"balancer={settings.kind} launches replicas; server=remote launches nothing "
            "(to check a running balancer, point server.http_url/grpc_url at it with balancer=none)"
        )
    path = repository_for(server, Path(repository))
    launch = launchers[server.kind]
    key = new_operator_key() if server.launched else None  # one for all replicas of this launch
    request = Launch(server, path, guard_plans(server, path, releases), started, graceful, supervise, key)
    if settings.kind != "none":
        return serve_front(request, settings, launch)
    return launch(request)
