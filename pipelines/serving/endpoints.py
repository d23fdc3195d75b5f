"""What a launch is asked and what it yields, and how a server is reached: the Launch request every server kind
takes, the Endpoints of a ready server, free and checked ports, readiness over HTTP and gRPC, and what Triton's log and
repository index say about a start that failed.

Every server kind (`embedded`, `docker_server`, `remote_server`, the front in `front_exposure`) reaches its server
through these, so a readiness check or a log diagnosis reads the same whichever kind launched it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import Any, Protocol

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from pipelines.core.errors import ServerError
from pipelines.serving.settings import ServerSettings

log = logging.getLogger(__name__)

Started = Callable[[], None] | None  # see serve(): called once the server process runs, before it is ready
GRPC_OPERATOR_PREFIX = "triton-grpc-protocol-"  # Triton's gRPC server reads the restricted key under this prefix


@dataclass(frozen=True)
class Launch:
    """What every launcher is asked (serve() documents each): one server of a kind, on one repository."""

    server: ServerSettings
    repository: Path
    extra: list[str]  # tritonserver flags beyond the settings' (what the repository's TensorRT plans need)
    started: Started = None
    graceful: bool = False
    supervise: bool = False
    operator_key: str | None = field(default=None, repr=False)  # this launch's secret for Triton's restricted APIs


class Launcher(Protocol):
    """A server kind's launcher: a context manager yielding the endpoints of a ready server, stopped on exit."""

    def __call__(self, request: Launch) -> contextlib.AbstractContextManager[Endpoints]: ...


@dataclass(frozen=True)
class Endpoints:
    """Where a running Triton answers: `host:port` for HTTP and for gRPC, as tritonclient takes them.

    `server` says what was launched or reached, for the reports (no ports: reruns stay comparable).
    `members`: the HTTP addresses of the replicas behind a balancer (their statistics add up); `member_grpc` theirs
    for gRPC.
    `problem`: why a launched server cannot serve now (None while it can).
    `failed`: why it has stopped serving for good (None while it serves or a supervisor brings it back);
    unset, `problem` is final.
    `operator`: the header Triton's restricted APIs (statistics, repository, shared memory, logging, trace)
    want, for this project's own tools; empty when none is restricted or the key is unknown.
    """

    http: str
    grpc: str
    log_file: Path | None = None
    server: str = ""
    members: tuple[str, ...] = ()
    member_grpc: tuple[str, ...] = ()
    problem: Callable[[], str | None] = field(default=lambda: None, compare=False, repr=False)
    failed: Callable[[], str | None] | None = field(default=None, compare=False, repr=False)
    operator: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def operator_grpc(self) -> dict[str, str]:
        """`operator` as gRPC metadata: Triton expects the header's name behind `triton-grpc-protocol-`."""
        return {GRPC_OPERATOR_PREFIX + name: value for name, value in self.operator.items()}

    def stopped_for_good(self) -> str | None:
        return (self.failed or self.problem)()


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct free ports: held open together while chosen (one at a time, the kernel may hand the same
    port out twice, and a server given it for both HTTP and gRPC fails to start)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for s in sockets:
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in sockets]


def checked_port(port: int, host: str) -> int:
    """The configured port, refused if something already listens there (its health answers would fool us)."""
    if port == 0:
        return free_port(host)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as Triton binds: a port whose last connection is only in TIME_WAIT is free, one with a listener is not
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ServerError(
                f"port {port} on {host} is in use ({exc.strerror}); pick another or 0 for a free one"
            ) from exc
    return port


def launch_ports(server: ServerSettings) -> tuple[int, int]:
    """(HTTP, gRPC) ports to launch on: the configured ones, checked to be free on the host, or free ones."""
    host, http_port, grpc_port = str(server.host), server.http_port, server.grpc_port
    spare = iter(free_ports(2, host))
    http = checked_port(http_port, host) if http_port else next(spare)
    grpc = checked_port(grpc_port, host) if grpc_port else next(spare)
    return http, grpc


# health checks go straight to the server, never through an http_proxy from the environment
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def is_ready(http: str, timeout: float = 2.0) -> bool:
    return readiness(http, timeout) is None


def readiness(http: str, timeout: float = 2.0) -> str | None:
    """None when a Triton answers ready at `http` (host:port); else why not, in words."""
    try:
        with _DIRECT.open(f"http://{http}/v2/health/ready", timeout=timeout) as resp:
            return None if resp.status == 200 else f"it answers {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"it answers HTTP {exc.code} (not ready, or not Triton)"
    except HTTPException:  # e.g. an HTTP/2-only gRPC port answering in binary frames
        return "something answers there, but not over HTTP/1.1: is it the gRPC port?"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"nothing answers ({reason})"


def run_log(configured: str | Path) -> Path:
    """A log file of its own for this launch (`logs/triton.log` -> `logs/triton-<time>-<pid>.log`)."""
    path = Path(str(configured))
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f"{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}{path.suffix}")


# Triton's line for a model that did not load: `failed to load 'mnist_onnx' version 1: Internal: <reason>\n\nAt: ...`
_LOAD_FAILURE = re.compile(r"failed to load '([^']+)' version \d+: (.*)")
# ... and for a directory whose config.pbtxt it cannot parse (after protobuf's own line giving the position)
_POLL_FAILURE = re.compile(r"Poll failed for model directory '([^']+)': (.*)")
_PARSE_ERROR = re.compile(r"Error parsing text-format inference\.ModelConfig: (.*)")


def last_log_line(log_file: Path) -> str:
    """The log's most telling error: the first model that failed to load and why, else the last error line."""
    try:
        lines = [line for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    for index, line in enumerate(lines):
        match = _LOAD_FAILURE.search(line)
        if match:
            reason = match.group(2).split("\\n")[0].strip().rstrip('"')  # the log escapes newlines as \n
            return f"model {match.group(1)!r} failed to load: {reason}"
        match = _POLL_FAILURE.search(line)
        if match:  # a config.pbtxt Triton could not parse: protobuf said where, just before
            parse = next(
                (_PARSE_ERROR.search(line) for line in reversed(lines[:index]) if _PARSE_ERROR.search(line)), None
            )
            detail = f" (line:column {parse.group(1)})" if parse else ""
            return f"model {match.group(1)!r} failed to load: {match.group(2).strip().rstrip(chr(34))}{detail}"
    errors = [line for line in lines if line[:1] == "E" or "error" in line.lower()]
    return (errors or lines or ["(empty log)"])[-1].strip()


def wait_until_ready(
    endpoints: Endpoints, proc: subprocess.Popen | None, timeout_s: float, what: str = "tritonserver"
) -> None:
    """Poll /v2/health/ready; fail fast if the process exits, fail with the log's last error on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            detail = last_log_line(endpoints.log_file) if endpoints.log_file else ""
            raise ServerError(
                f"{what} exited with code {proc.returncode} while starting: {detail} (log: {endpoints.log_file})"
            )
        if is_ready(endpoints.http):
            if proc is not None and proc.poll() is not None:
                continue  # something else answered; ours is gone: report its exit above
            return
        time.sleep(0.25)
    detail = f": {last_log_line(endpoints.log_file)} (log: {endpoints.log_file})" if endpoints.log_file else ""
    raise ServerError(f"Triton at {endpoints.http} not ready after {timeout_s:g} s{detail}")


def repository_index(endpoints: Endpoints) -> list[dict[str, Any]]:
    """Triton's repository index: each model's name, and its state and reason where it tried to load it (an
    operator's API: empty where the key is not held or the server does not answer)."""
    request = urllib.request.Request(
        f"http://{endpoints.http}/v2/repository/index", data=b"{}", headers=endpoints.operator, method="POST"
    )
    try:
        with _DIRECT.open(request, timeout=30) as resp:
            index = json.loads(resp.read())
    except (OSError, HTTPException, ValueError):
        return []
    return index if isinstance(index, list) else []


# Triton's log line for a model it could not load: a config it cannot parse ("Poll failed for model directory
# 'x': failed to read text proto from ..."), one it refuses ("failed to load model 'x': at least one version must
# be available ..."), or a version that failed ("failed to load 'x' version 1: Internal: ...")
LOAD_FAILED = re.compile(
    r"(?:failed to load (?:model )?|Poll failed for model directory )'(?P<name>[^']+)'(?: version \d+)?: "
    r"(?P<reason>.*?)\"?\s*$"
)


def load_failures(index: list[dict[str, Any]], log_file: Path | None) -> dict[str, str]:
    """Model -> Triton's reason, for each model it tried and failed to load: from its repository index (a model
    whose version failed) and from its log (a model refused before any version, which the index leaves out)."""
    failures = {
        str(m.get("name")): " ".join(str(m.get("reason") or "no reason given").split())
        for m in index
        if m.get("state") not in (None, "READY")
    }
    ready = {str(m.get("name")) for m in index if m.get("state") == "READY"}
    if log_file is not None and log_file.is_file():
        for line in log_file.read_text(errors="replace").splitlines():
            found = LOAD_FAILED.search(line)
            if found and found["name"] not in ready:
                failures.setdefault(found["name"], found["reason"])
    return failures


def check_loaded(endpoints: Endpoints) -> None:
    """A model Triton could not load is that model's failure (the server serves the others, and parity reports it
    failed): warned about here; a repository of which nothing loaded is the launch's failure."""
    index = repository_index(endpoints)
    failures = load_failures(index, endpoints.log_file)
    if not failures:
        return
    lines = [f"model {name!r} failed to load: {reason}" for name, reason in sorted(failures.items())]
    if not any(m.get("state") == "READY" for m in index):
        raise ServerError(f"no model of the repository loaded: {'; '.join(lines)} (log: {endpoints.log_file})")
    for line in lines:
        log.warning("%s; the other models are served (log: %s)", line, endpoints.log_file)


def grpc_problem(grpc: str, timeout: float) -> str | None:
    """None when Triton answers over gRPC at `grpc`; else why not, in one printable line."""
    try:
        live = grpcclient.InferenceServerClient(grpc).is_server_live(client_timeout=timeout)
    except InferenceServerException as exc:
        text = (exc.message() or type(exc).__name__).strip().splitlines()[0]
        hint = (
            "; is it the HTTP port?"
            if text.startswith(("Socket closed", "failed to connect", "Trying to connect an http1.x"))
            else ""
        )
        return "".join(c if c.isprintable() else "?" for c in text)[:200] + hint
    return None if live else "it is not live"
