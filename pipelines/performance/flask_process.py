"""The benchmark's Flask baseline: the same runtime behind a one-process Flask server (serve/flask_baseline.py).

Started in a process of its own on the very specs the run measures, ready once `/ready` answers,
stopped on the way out; each load worker sends over one kept-alive connection (pipelines/performance/flask_wire.py).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from omegaconf import DictConfig, OmegaConf

from pipelines.config.spec import ModelSpec
from pipelines.core import scratch
from pipelines.core.errors import ServerError
from pipelines.core.paths import PROJECT_ROOT
from pipelines.performance import flask_wire
from pipelines.serving.endpoints import free_port


@contextlib.contextmanager
def flask_server(spec: ModelSpec, models: DictConfig, logs: Path) -> Iterator[tuple[str, Any]]:
    """The Flask baseline in a process of its own, on the very specs measured here (`models`: the run's models
    config, resolved, as YAML), stopped on the way out."""
    port = free_port()
    logs.mkdir(parents=True, exist_ok=True)
    log_file = logs / f"flask-{spec.name}.log"
    with scratch.scratch_dir(Path(tempfile.gettempdir()), "flask-baseline-") as work, open(log_file, "wb") as fh:
        specs = work / "models.yaml"
        OmegaConf.save(models, specs, resolve=True)
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "serve.flask_baseline", spec.name, str(port), str(specs)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        try:
            yield f"127.0.0.1:{port}", wait_for_flask(proc, spec.name, port, log_file)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for_flask(proc: subprocess.Popen, model: str, port: int, log_file: Path, timeout_s: float = 180) -> Any:
    """The baseline's process (psutil) once `/ready` answers; its log's last line if it exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            lines = log_file.read_text(errors="replace").strip().splitlines()
            raise ServerError(f"the Flask baseline for {model} exited: {(lines or ['?'])[-1]} (log: {log_file})")
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/ready")
            if conn.getresponse().status == 200:
                return psutil.Process(proc.pid)
        if time.monotonic() > deadline:
            raise ServerError(f"the Flask baseline for {model} did not start in {timeout_s:g} s (log: {log_file})")
        time.sleep(0.3)


def flask_sender(address: str, arrays: dict[str, np.ndarray], clients: contextlib.ExitStack) -> Callable[[], dict]:
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)  # one kept-alive connection per worker
    clients.callback(conn.close)

    def send() -> dict[str, np.ndarray]:
        conn.request(
            "POST", "/predict", body=flask_wire.dumps(arrays), headers={"Content-Type": "application/octet-stream"}
        )
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise ServerError(f"Flask answered {response.status}")
        return flask_wire.loads(data)

    return send
