"""The running nginx front: found on this host (its binary, njs module and version; `auto` resolved), started on
the nginx.conf `front_conf` writes, watched, reloaded and stopped.

nginx (the Debian package, 1.22 here) is the front, for one server or for replicas; what it refuses and how it
retries is its configuration's (`front_rules`, `front_conf`), its settings `front_settings`'. Open-source nginx has
no active health checks, so `Front` polls each replica's `/v2/health/ready` itself and reloads nginx with the
unready ones marked `down`; it also reads nginx's access log for the senders of requests njs found in flight at two
crashes, and reloads nginx refusing them for `ban_s`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipelines.core.errors import HostError, ServerError
from pipelines.serving import guard, privileges
from pipelines.serving.front_conf import nginx_config
from pipelines.serving.front_settings import FrontSettings

log = logging.getLogger(__name__)

NJS_MODULE = "ngx_http_js_module.so"
MODULE_DIRS = ("/usr/lib/nginx/modules", "/usr/lib64/nginx/modules", "/usr/local/nginx/modules", "/etc/nginx/modules")


def nginx_binary() -> str:
    """The nginx executable (Debian installs it in /usr/sbin, not always on a user's PATH)."""
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise HostError(
            "balancer=nginx needs nginx: install it (Debian/Ubuntu: `apt-get install nginx`), "
            "or serve without a balancer (balancer=none)"
        )
    return found


def njs_module(binary: str) -> Path | None:
    """nginx's njs module (Debian: libnginx-mod-http-js), which the front needs to check JSON; None if absent."""
    dirs = list(MODULE_DIRS)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        built = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=10, check=False).stderr
        found = re.search(r"--modules-path=(\S+)", built)
        if found:
            dirs.insert(0, found.group(1))
    return next((Path(d) / NJS_MODULE for d in dirs if (Path(d) / NJS_MODULE).is_file()), None)


def nginx_version(binary: str) -> str:
    proc = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10, check=False)
    text = (proc.stderr or proc.stdout).strip()
    return text.split("/", 1)[1] if "/" in text else text or "unknown"


def resolved_front(settings: FrontSettings, server_kind: str) -> FrontSettings:
    """`auto`: nginx where it is installed and the server is launched here, else none, and said so."""
    if settings.kind != "auto":
        return settings
    if server_kind == "remote":  # nothing launched here to put a front before
        return FrontSettings.alone()
    try:
        nginx_binary()
    except HostError:
        log.warning(
            "serving UNGUARDED: nginx is not installed, so nothing refuses the requests that crash Triton "
            "(docs/hardening.md); install nginx and libnginx-mod-http-js to put the front there"
        )
        return FrontSettings.alone()
    return replace(settings, kind="nginx")


@dataclass(frozen=True)
class Replica:
    """One launched Triton: its addresses, and why it is not usable (None when it is)."""

    http: str
    grpc: str
    problem: Callable[[], str | None]
    failed: Callable[[], str | None]  # why it is gone for good (a supervised replica comes back)


class Front:
    """A running nginx in front of replicas, kept in step with their readiness by a watcher thread."""

    def __init__(
        self,
        settings: FrontSettings,
        host: str,
        http_port: int,
        grpc_port: int,
        replicas: Sequence[Replica],
        work: Path,
        log_file: Path,
        limits: Sequence[guard.ModelLimits],
        account: privileges.Account | None = None,
    ):
        self.account = account  # launched by root: nginx runs as this account, its work directory and log its own
        self.settings, self.host, self.http_port, self.grpc_port = settings, host, http_port, grpc_port
        # absolute paths: nginx reads relative ones against its prefix, not our directory
        self.replicas, self.work, self.log_file = list(replicas), work.resolve(), log_file.resolve()
        self.limits = list(limits)
        self.binary = nginx_binary()
        self.njs = njs_module(self.binary)
        self.conf = self.work / "nginx.conf"
        self.down: set[int] = set()
        self.banned: dict[str, float] = {}  # client address -> when its ban ends (time.monotonic())
        self._log_read = 0  # how much of the log the ban watcher has read
        self.proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def write_config(self) -> None:
        text = nginx_config(
            self.settings,
            self.host,
            self.http_port,
            self.grpc_port,
            [(r.http, r.grpc) for r in self.replicas],
            # every replica down: nginx keeps trying them, and a request waits in @wait for one to come back
            self.down if len(self.down) < len(self.replicas) else set(),
            self.work,
            self.log_file,
            self.limits,
            self.njs,
            banned=sorted(self.banned),
        )
        tmp = self.conf.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.conf)

    def check_config(self) -> None:
        proc = subprocess.run(
            [self.binary, "-t", "-q", "-p", str(self.work), "-c", str(self.conf), "-e", str(self.log_file)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            **(self.account.popen_args() if self.account else {}),
        )
        if proc.returncode != 0:
            lines = [
                line for line in (proc.stderr or proc.stdout).splitlines() if "[emerg]" in line or "failed" in line
            ]
            raise ServerError(f"nginx refused its configuration {self.conf}: {(lines or ['(no message)'])[0].strip()}")

    def start(self, die_with_parent: Callable[[list[str]], tuple[list[str], Any]]) -> None:
        # nginx creates its temp directories for its worker user (`nobody` when started as root), which must
        # be able to reach them: the scratch directory is traversable, not listable
        self.work.chmod(0o711)
        if self.account is not None:  # nginx as that account altogether: its work directory and log are its own
            self.log_file.touch()
            self.account.give(self.work, self.log_file)
            log.info("nginx runs as %s (launched by root)", self.account.name)
        if self.njs is not None:
            shutil.copy2(guard.GUARD_SCRIPT, self.work / guard.GUARD_SCRIPT.name)
            (self.work / guard.GUARD_SCRIPT.name).chmod(0o644)
        else:
            log.warning(
                "nginx's njs module is not installed (Debian/Ubuntu: `apt-get install libnginx-mod-http-js`): "
                "the front passes inference only, caps bodies and refuses form posts and compression, but "
                "cannot check what a JSON request declares (a 90-byte one can still crash Triton), requests "
                "do not wait through a restart and no sender is refused after crashes (docs/hardening.md)"
            )
        self.write_config()
        self.check_config()
        cmd, preexec = die_with_parent(
            [self.binary, "-p", str(self.work), "-c", str(self.conf), "-e", str(self.log_file)]
        )
        with open(self.log_file, "ab") as log_fh:
            self.proc = subprocess.Popen(
                cmd,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=preexec,  # noqa: PLW1509 - prctl only, no threads touched
                **(self.account.popen_args() if self.account else {}),
            )

    def problem(self) -> str | None:
        """Why the front cannot serve (None when it can): nginx gone, or no replica usable."""
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            return f"nginx exited with code {code} (log: {self.log_file})"
        if len(self.down) == len(self.replicas):
            return "no Triton replica is ready"
        return None

    def failed(self) -> str | None:
        """Why the front has stopped serving for good: nginx gone, or every replica gone and not coming back."""
        if self.proc is None or self.proc.poll() is not None:
            return self.problem()
        gone = [r.failed() for r in self.replicas]
        if all(gone):
            return "no Triton replica is ready" if len(gone) > 1 else f"no Triton replica is ready: {gone[0]}"
        return None

    def watch(self) -> None:
        """Poll the replicas' readiness in a thread; reload nginx when the set of usable ones changes."""
        self._watcher = threading.Thread(target=self._watch, name="replica-health", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        self._log_read = self.log_file.stat().st_size if self.log_file.exists() else 0
        while not self._stop.wait(self.settings.health_interval_s):
            problems = {i: r.problem() for i, r in enumerate(self.replicas)}
            down = {i for i, p in problems.items() if p is not None}
            bans_changed = self._update_bans()
            if down == self.down:
                if bans_changed:
                    self.reload()
                continue
            for i in sorted(down - self.down):
                log.warning("replica %d (%s) taken out of the balancer: %s", i + 1, self.replicas[i].http, problems[i])
            for i in sorted(self.down - down):
                log.info("replica %d (%s) ready again: back in the balancer", i + 1, self.replicas[i].http)
            self.down = down
            self.reload()

    def _update_bans(self) -> bool:
        """Ban the senders of requests the front found in flight at two crashes (logged `guard=culprit` by njs), for
        `ban_s`; lift bans that ran out. True when the set changed."""
        if self.settings.ban_s <= 0:
            return False
        now = time.monotonic()
        changed = False
        for address in self._culprits():
            if address not in self.banned:
                log.warning(
                    "refusing requests from %s for %g s: one of its requests was in flight at two crashes of Triton",
                    address,
                    self.settings.ban_s,
                )
                changed = True
            self.banned[address] = now + self.settings.ban_s
        for address in [a for a, until in self.banned.items() if until <= now]:
            log.info("requests from %s are accepted again (its ban ran out)", address)
            del self.banned[address]
            changed = True
        return changed

    def _culprits(self) -> set[str]:
        """Client addresses of the access-log lines marked `guard=culprit` written since the last call."""
        try:
            with open(self.log_file, "rb") as fh:
                fh.seek(self._log_read)
                data = fh.read(16 << 20)
        except OSError:
            return set()
        complete = data.rfind(b"\n") + 1  # a line still being written is read next time
        self._log_read += complete
        lines = data[:complete].splitlines()
        return {line.split(b" ", 1)[0].decode(errors="replace") for line in lines if line.endswith(b" guard=culprit")}

    def reload(self) -> None:
        self.write_config()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)  # new workers with the new upstreams; old ones finish their requests

    def stop(self, grace_s: float = 10.0) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)  # graceful: finish the requests in flight, then exit
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGTERM)  # fast: the master stops its workers
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def running(front: Front, die_with_parent: Callable[[list[str]], tuple[list[str], Any]]) -> Iterator[Front]:
    """The front started, watched, and always stopped on the way out."""
    try:
        front.start(die_with_parent)
        front.watch()
        yield front
    finally:
        front.stop()
