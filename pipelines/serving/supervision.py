"""A long-running server process kept alive: restarted with backoff after it dies unasked, on the same ports.

Triton has requests that kill it (docs/hardening.md); the front refuses the known ones, supervision
covers the rest. `serve.triton` supervises each server it launches (`server.restart` in
conf/server/local.yaml): a crash is logged with its reason (the signal, the log's last error), the
same command runs again after a backoff that doubles up to `max_backoff_s` (reset once a server
stayed up for `stable_s`), and its readiness is logged with the time since the crash. A server that
crashes more than `max_restarts` times within `window_s` is given up on: `failure` says why, and
whoever serves with it stops. Behind the nginx front, the front's health watcher takes the crashed
replica out and puts it back once it is ready again.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from pipelines.core.errors import checked_number

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestartPolicy:
    """`server.restart`: how often a crashed server is started again; max_restarts 0 never restarts it."""

    max_restarts: int = 0
    window_s: float = 600.0
    first_backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    stable_s: float = 60.0

    @classmethod
    def from_cfg(cls, cfg: DictConfig | None) -> RestartPolicy:
        if not cfg:
            return cls()
        values: dict[str, Any] = {
            "max_restarts": checked_number(cfg.get("max_restarts"), "server.restart.max_restarts", int, 0)
        }
        for key in ("window_s", "first_backoff_s", "max_backoff_s", "stable_s"):
            values[key] = checked_number(cfg.get(key), f"server.restart.{key}", float, 0.0)
        return cls(**values)

    def backoff(self, consecutive: int) -> float:
        return min(self.first_backoff_s * 2**consecutive, self.max_backoff_s)


class Supervised:
    """One server process and the thread that restarts it; `proc` is always the current one."""

    def __init__(
        self,
        spawn: Callable[[], subprocess.Popen],
        why: Callable[[subprocess.Popen], str],
        ready: Callable[[], bool],
        policy: RestartPolicy,
        before_restart: Callable[[], Any] = lambda: None,
        what: str = "tritonserver",
    ):
        self.spawn, self.why, self.ready, self.policy = spawn, why, ready, policy
        self.before_restart, self.what = before_restart, what
        self.proc = spawn()
        self.failure: str | None = None
        self.restarts = 0
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self) -> None:
        """Start restarting the process when it dies (after the first start has succeeded)."""
        if self.policy.max_restarts > 0:
            self._thread = threading.Thread(target=self._watch, name=f"{self.what}-supervisor", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """No more restarts; the caller then stops `proc` itself."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _watch(self) -> None:
        recent: deque[float] = deque()
        consecutive = 0
        while not self._stop.is_set():
            proc = self.proc
            while proc.poll() is None:
                if self._stop.wait(0.2):
                    return
            if self._stop.is_set():
                return
            crashed = time.monotonic()
            reason = self.why(proc)
            while recent and crashed - recent[0] > self.policy.window_s:
                recent.popleft()
            if len(recent) >= self.policy.max_restarts:
                self.failure = (
                    f"{self.what} died {len(recent) + 1} times within {self.policy.window_s:g} s; "
                    f"not restarted again. Last: {reason}"
                )
                log.error("%s", self.failure)
                return
            consecutive = 0 if crashed - self._started > self.policy.stable_s else consecutive
            delay = self.policy.backoff(consecutive)
            consecutive += 1
            recent.append(crashed)
            self.restarts += 1
            log.warning(
                "%s died: %s; restarting it in %g s on the same ports (restart %d)",
                self.what,
                reason,
                delay,
                self.restarts,
            )
            if self._stop.wait(delay):
                return
            self.before_restart()
            self.proc = self.spawn()
            self._started = time.monotonic()
            self._await_ready(crashed)

    def _await_ready(self, crashed: float) -> None:
        while not self._stop.is_set() and self.proc.poll() is None:
            if self.ready():
                log.warning("%s ready again, %.1f s after it died", self.what, time.monotonic() - crashed)
                return
            self._stop.wait(0.25)
