"""The `local` server kind: the tritonserver in the nvidia-pytriton wheel, run as a process of our own.

The embedded server ships only Triton's Python backend, so its backend directory also holds the stand-in backends
(`serve/standin_backends/`): Triton serves each ONNX, SavedModel and TensorRT model of the repository through the
stand-in named like the backend its platform maps to. The server dies with its parent (PR_SET_PDEATHSIG), so even
a killed pipeline leaves no orphan, and the Python-backend stubs it leaves behind are reaped.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy

from pipelines.core import scratch
from pipelines.core.errors import ServerError
from pipelines.core.paths import PROJECT_ROOT
from pipelines.model_repository import standins
from pipelines.serving import privileges
from pipelines.serving.endpoints import (
    Endpoints,
    Launch,
    check_loaded,
    is_ready,
    launch_ports,
    readiness,
    run_log,
    wait_until_ready,
)
from pipelines.serving.server_process import die_with_parent, exit_reason, stop_process
from pipelines.serving.settings import TritonFlags
from pipelines.serving.supervision import RestartPolicy, Supervised

log = logging.getLogger(__name__)

STANDIN_BACKENDS = PROJECT_ROOT / "serve" / "standin_backends"
STANDIN_BASE = STANDIN_BACKENDS / "standin_base.py"
STANDIN_RULES = Path(standins.__file__)


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
            import pytriton  # lazy: a wheel of tritonserver binaries, needed only by server=local
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
        return f"embedded tritonserver (nvidia-pytriton {importlib.metadata.version('nvidia-pytriton')})"

    def needs(self, repository: Path) -> list[Path]:
        """What the server reads beside its own files: the repository, and the Python its stubs run (the
        interpreter, its standard library, the environment's packages)."""
        python = [Path(sys.executable).resolve(), Path(os.__file__).resolve().parent, Path(numpy.__file__).parents[1]]
        return [Path(repository).resolve(), self.binary, self.stub, *python]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(self.libs), env.get("LD_LIBRARY_PATH")]))
        # the stub runs an isolated interpreter that finds our venv through `python3` on PATH
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env


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


@contextlib.contextmanager
def serve_local(
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
    http_port, grpc_port = launch_ports(server)
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
            return exit_reason(proc, log_file, starts.get(proc.pid, 0))

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
            stop_process(proc, server.stop_timeout_s, graceful)
            log.info("tritonserver stopped" if graceful else "tritonserver stopped (SIGKILL, its stubs first)")
