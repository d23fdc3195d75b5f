"""Launch, reach and stop Triton: `local` (the tritonserver in the nvidia-pytriton wheel), `docker`, `remote`.

Every kind serves the one model repository as it is. The embedded server ships only Triton's
Python backend, so its backend directory also holds the stand-in backends
(`serve/standin_backends/`): Triton serves each ONNX, SavedModel and TensorRT model of the
repository through the stand-in named like the backend its platform maps to.

`serve(server, repository)` is a context manager in the style of Triton's QA scripts: the server
logs to a file, readiness is polled while the process is checked for life, and the server is
always stopped on the way out, also when the caller fails. The local server additionally dies
with its parent (PR_SET_PDEATHSIG), so even a killed pipeline leaves no orphan.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import ipaddress
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from http.client import HTTPException
from pathlib import Path
from typing import Any, Protocol

from pipelines.core import scratch
from pipelines.core.errors import ConfigError, ServerError
from pipelines.model_repository import standins
from pipelines.serving import balancer, guard, privileges
from pipelines.serving.front_settings import FrontSettings
from pipelines.serving.settings import ServerSettings, TritonFlags, new_operator_key
from pipelines.serving.supervision import RestartPolicy, Supervised
from pipelines.trt import loadability
from pipelines.trt.plans import served_plans

log = logging.getLogger(__name__)

Started = Callable[[], None] | None  # see serve(): called once the server process runs, before it is ready
GRPC_OPERATOR_PREFIX = "triton-grpc-protocol-"  # Triton's gRPC server reads the restricted key under this prefix


@dataclasses.dataclass(frozen=True)
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


STANDIN_BACKENDS = Path(__file__).resolve().parents[2] / "serve" / "standin_backends"
STANDIN_BASE = STANDIN_BACKENDS / "standin_base.py"
STANDIN_RULES = Path(standins.__file__)


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


def _port(port: int, host: str) -> int:
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


def _ports(server: ServerSettings) -> tuple[int, int]:
    """(HTTP, gRPC) ports to launch on: the configured ones, checked to be free on the host, or free ones."""
    host, http_port, grpc_port = str(server.host), server.http_port, server.grpc_port
    spare = iter(free_ports(2, host))
    return _port(http_port, host) if http_port else next(spare), _port(grpc_port, host) if grpc_port else next(spare)


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


def _last_log_line(log_file: Path) -> str:
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
            detail = _last_log_line(endpoints.log_file) if endpoints.log_file else ""
            raise ServerError(
                f"{what} exited with code {proc.returncode} while starting: {detail} (log: {endpoints.log_file})"
            )
        if is_ready(endpoints.http):
            if proc is not None and proc.poll() is not None:
                continue  # something else answered; ours is gone: report its exit above
            return
        time.sleep(0.25)
    detail = f": {_last_log_line(endpoints.log_file)} (log: {endpoints.log_file})" if endpoints.log_file else ""
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


# --------------------------------------------------------------------------- local


@dataclass(frozen=True)
class EmbeddedTriton:
    """Locations inside the installed nvidia-pytriton wheel."""

    binary: Path
    libs: Path
    backend_lib: Path
    backend_utils: Path
    stub: Path

    @classmethod
    def find(cls) -> EmbeddedTriton:
        try:
            import pytriton
        except ImportError as exc:
            raise ServerError("server=local needs the nvidia-pytriton package: run `make setup`") from exc
        root = Path(pytriton.__file__).resolve().parent / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        found = cls(
            binary=root / "bin" / "tritonserver",
            libs=root.parent.parent / "nvidia_pytriton.libs",
            backend_lib=root / "backends" / "python" / "libtriton_python.so",
            backend_utils=root / "backends" / "python" / "triton_python_backend_utils.py",
            stub=root / "python_backend_stubs" / version / "triton_python_backend_stub",
        )
        missing = [str(p) for p in found.__dict__.values() if not p.exists()]
        if missing:
            raise ServerError(f"the nvidia-pytriton install lacks {missing[0]} (Python {version} supported?)")
        return found

    def backend_directory(self, parent: Path) -> Path:
        """The Python backend (with the stub for this interpreter) and one Python-based stand-in per backend.

        Copies, not links: Triton refuses a backend library that resolves outside the directory.
        """
        backends = parent / "backends"
        python = backends / "python"
        python.mkdir(parents=True)
        for src in (self.backend_lib, self.backend_utils, self.stub):
            shutil.copy2(src, python / src.name)
        for name in standins.STANDINS:
            standin = backends / name
            standin.mkdir()
            shutil.copy2(STANDIN_BACKENDS / name / "model.py", standin / "model.py")
            shutil.copy2(STANDIN_BASE, standin / STANDIN_BASE.name)
            shutil.copy2(STANDIN_RULES, standin / STANDIN_RULES.name)
        return backends

    @staticmethod
    def description() -> str:
        from importlib.metadata import version

        return f"embedded tritonserver (nvidia-pytriton {version('nvidia-pytriton')})"

    def needs(self, repository: Path) -> list[Path]:
        """What the server reads beside its own files: the repository, and the Python its stubs run (the
        interpreter, its standard library, the environment's packages)."""
        import numpy

        python = [Path(sys.executable).resolve(), Path(os.__file__).resolve().parent, Path(numpy.__file__).parents[1]]
        return [Path(repository).resolve(), self.binary, self.stub, *python]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(self.libs), env.get("LD_LIBRARY_PATH")]))
        # the stub runs an isolated interpreter that finds our venv through `python3` on PATH
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env


def die_with_parent(cmd: list[str], graceful: bool = True) -> tuple[list[str], Any]:
    """(command, preexec_fn) so that the kernel signals the server if the Python process that started it dies:
    SIGTERM for a server others use (Triton's own shutdown), SIGKILL for one launched for a single command, which
    would be killed at its end anyway (SIGTERM kept it 5-6 s past a `kill -9` of parity, unloading its models).
    util-linux's `setpriv --pdeathsig` sets it in the exec'd server itself; only without setpriv is a
    preexec_fn used (Python code between fork and exec, which a thread of ours makes less safe)."""
    sig = signal.SIGTERM if graceful else signal.SIGKILL
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, "--pdeathsig", sig.name.removeprefix("SIG"), "--", *cmd], None
    libc = ctypes.CDLL("libc.so.6", use_errno=True)  # loaded in the parent: no dlopen after fork

    def preexec() -> None:
        libc.prctl(1, sig)  # PR_SET_PDEATHSIG

    return cmd, preexec


def local_command(
    embedded: EmbeddedTriton,
    repository: Path,
    backends: Path,
    host: str,
    http_port: int,
    grpc_port: int,
    flags: TritonFlags,
    extra: list[str] | None = None,
    operator_key: str | None = None,
) -> list[str]:
    return [
        str(embedded.binary),
        f"--model-repository={repository.resolve()}",
        f"--backend-directory={backends}",
        f"--http-address={host}",
        f"--http-port={http_port}",
        f"--grpc-address={host}",
        f"--grpc-port={grpc_port}",
        "--allow-metrics=false",
        *flags.args(extra, operator_key),
    ]


def _exited(proc: subprocess.Popen, log_file: Path, since: int = 0) -> str | None:
    """Why a launched server's process is gone (its log's telling line), None while it runs; `since`: where this
    process's lines start in a log that restarts share."""
    if proc.poll() is None:
        return None
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode)
        if sig in CRASH_SIGNALS:  # its own fault: the C++ exception that ended it, where the log has one
            cause = _crash_cause(log_file, since)
            return f"tritonserver crashed ({sig.name}{': ' + cause if cause else ''}; log: {log_file})"
        # killed from outside: its log's last error says nothing about why
        return f"tritonserver was killed ({sig.name}; log: {log_file})"
    return f"tritonserver exited with code {proc.returncode}: {_last_log_line(log_file)} (log: {log_file})"


CRASH_SIGNALS = (signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL)


def _crash_cause(log_file: Path, since: int = 0) -> str:
    """The last uncaught C++ exception in the log from byte `since` on (`what():  std::bad_alloc`), or '': an
    earlier crash's, in the lines before, is not this one's."""
    try:
        with open(log_file, "rb") as fh:
            fh.seek(since)
            lines = fh.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    causes = [line.split("what():", 1)[1].strip() for line in lines if "what():" in line]
    return causes[-1] if causes else ""


STUB = "triton_python_backend_stub"


def reap_stubs(backends: Path, expected: bool = False) -> int:
    """Kill the Python-backend stubs run from this backend directory, and unlink their shared-memory regions.

    A tritonserver stopped or killed while its models load (Ctrl-C during start-up, a killed replica)
    can leave its stubs running, adopted by init, ignoring SIGTERM, holding memory and /dev/shm. Every
    stub runs the copy in our scratch backend directory, so its command line says whose it is.
    `expected`: after a server stopped with SIGKILL on purpose (`graceful=False`), reaping is the plan, not news.
    """
    prefix = str(Path(backends).resolve()) + os.sep
    reaped = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        program = args[0].decode(errors="replace")
        if Path(program).name != STUB or not program.startswith(prefix):
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(int(entry.name), signal.SIGKILL)
            reaped += 1
        region = args[2].decode(errors="replace") if len(args) > 2 else ""  # stub <model> <shm region> ...
        if region and "/" not in region:
            with contextlib.suppress(OSError):
                os.unlink(f"/dev/shm/{region}")
    if reaped and not expected:
        log.warning("stopped %d Python-backend stub(s) that outlived their tritonserver", reaped)
    return reaped


def _stop(proc: subprocess.Popen, grace_s: float, graceful: bool = True) -> None:
    """SIGTERM and Triton's own shutdown (models unloaded, 1-4 s), or SIGKILL when nothing more is asked of it."""
    if proc.poll() is not None:
        return
    if not graceful:
        proc.kill()
        proc.wait()
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        log.warning("tritonserver ignored SIGTERM for %g s; killing it", grace_s)
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def _serve_local(
    request: Launch,
) -> Iterator[Endpoints]:
    server, repository, extra, started, graceful = (
        request.server,
        request.repository,
        request.extra,
        request.started,
        request.graceful,
    )
    embedded = EmbeddedTriton.find()
    assert server.host is not None and server.log_file is not None and server.flags is not None
    host = server.host
    http_port, grpc_port = _ports(server)
    log_file = run_log(server.log_file)
    endpoints = Endpoints(
        f"{host}:{http_port}",
        f"{host}:{grpc_port}",
        log_file,
        embedded.description(),
        operator=server.flags.operator(request.operator_key),
    )
    policy = server.restart if request.supervise else RestartPolicy()
    # after a SIGKILL, stubs that were still starting outlive the reap below: this one finds them, as planned
    reap = functools.partial(reap_stubs, expected=not graceful)
    account = privileges.unprivileged(server.run_as, embedded.needs(repository), "tritonserver")
    with (
        scratch.scratch_dir(Path(tempfile.gettempdir()), "triton-backends-", reap) as tmp,
        open(log_file, "wb") as log_fh,
    ):
        backends = embedded.backend_directory(Path(tmp))
        environment = embedded.environment()
        if account is not None:  # it reads the backends; its home is a scratch one (frameworks write caches there)
            Path(tmp).chmod(0o755)
            home = Path(tmp) / "home"
            home.mkdir()
            account.give(home)
            environment["HOME"] = str(home)
            log.info("tritonserver runs as %s (launched by root)", account.name)
        command, preexec = die_with_parent(
            local_command(
                embedded, repository, backends, host, http_port, grpc_port, server.flags, extra, request.operator_key
            ),
            graceful,
        )

        starts: dict[int, int] = {}  # pid -> where its lines start in the log

        def spawn() -> subprocess.Popen:  # a restart runs the same command: the same ports, the same log
            log_fh.flush()
            offset = os.fstat(log_fh.fileno()).st_size
            proc = subprocess.Popen(
                command,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=environment,
                preexec_fn=preexec,  # noqa: PLW1509 - prctl only, no threads touched
                **(account.popen_args() if account else {}),
            )
            starts[proc.pid] = offset
            return proc

        def exited(proc: subprocess.Popen) -> str | None:
            return _exited(proc, log_file, starts.get(proc.pid, 0))

        log.info(
            "starting tritonserver (embedded) on http %s, grpc %s; log %s", endpoints.http, endpoints.grpc, log_file
        )
        start = time.monotonic()
        supervised = Supervised(
            spawn,
            lambda proc: exited(proc) or "it exited",
            lambda: is_ready(endpoints.http, 1.0),
            policy,
            functools.partial(reap_stubs, backends),
        )
        try:
            if started is not None:
                started()
            wait_until_ready(endpoints, supervised.proc, server.startup_timeout_s)
            log.info("Triton ready in %.1f s", time.monotonic() - start)
            check_loaded(endpoints)
            supervised.watch()
            yield replace(
                endpoints,
                problem=lambda: supervised.failure or exited(supervised.proc) or readiness(endpoints.http, 1.0),
                failed=(lambda: supervised.failure) if policy.max_restarts else None,
            )
        finally:
            supervised.stop()
            proc = supervised.proc
            if not graceful and proc.poll() is None:  # the stubs first: one whose server is gone exits on its
                reap_stubs(backends, expected=True)  # own and leaves its shared-memory region behind
            _stop(proc, server.stop_timeout_s, graceful)
            log.info("tritonserver stopped" if graceful else "tritonserver stopped (SIGKILL, its stubs first)")


# --------------------------------------------------------------------------- docker


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
def _serve_docker(
    request: Launch,
) -> Iterator[Endpoints]:
    # graceful and supervise do not apply: `docker stop` gives the container 10 s, then kills it; a dead container
    # stays dead
    server, repository, extra, started = request.server, request.repository, request.extra, request.started
    problem = _docker_engine_error()
    if problem:
        raise ServerError(f"server=docker needs a running Docker engine: {problem}")
    assert server.host is not None and server.log_file is not None
    http_port, grpc_port = _ports(server)
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
            yield replace(endpoints, problem=lambda: _exited(proc, log_file) or readiness(endpoints.http, 1.0))
        finally:
            subprocess.run(["docker", "stop", "--time", "10", name], capture_output=True, check=False)
            _stop(proc, server.stop_timeout_s)


# --------------------------------------------------------------------------- replicas behind a balancer


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
def _serve_front(
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
            _port(port, host)
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
        problem = _grpc_problem(endpoints.grpc, 10.0)
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


# --------------------------------------------------------------------------- remote


@contextlib.contextmanager
def _serve_remote(
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
    problem = _grpc_problem(endpoints.grpc, timeout)
    if problem is not None:
        raise ServerError(f"no Triton gRPC endpoint at {endpoints.grpc} (server.grpc_url): {problem}")
    yield endpoints


def _grpc_problem(grpc: str, timeout: float) -> str | None:
    """None when Triton answers over gRPC at `grpc`; else why not, in one printable line."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

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
    launchers: dict[str, Launcher] = {"local": _serve_local, "docker": _serve_docker, "remote": _serve_remote}
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
        return _serve_front(request, settings, launch)
    return launch(request)
