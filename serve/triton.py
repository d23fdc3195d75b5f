"""`python -m serve.triton`: launch Triton on the model repository and keep it up until interrupted.

Every server kind serves the catalog's repository as it is: the embedded server (through stand-in
backends), the pinned NGC image (server=docker, mounted read-only), or a remote server (server=remote).
With balancer=nginx, `balancer.replicas` servers run behind nginx on one HTTP and one gRPC port.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from pipelines.core.atomic import write_text
from pipelines.core.cli import hydra_main
from pipelines.core.errors import ServerError
from pipelines.serving.endpoints import Endpoints
from pipelines.serving.front_settings import FrontSettings
from pipelines.serving.launcher import serve
from pipelines.serving.settings import ServerSettings

log = logging.getLogger(__name__)


def run(cfg: Any) -> Endpoints:
    """Serve until Ctrl-C (exit 0), SIGTERM (exit 143, as every entry point: pipelines.core.cli) or the server's end."""
    server = ServerSettings.from_cfg(cfg.server)
    front = FrontSettings.from_cfg(cfg.balancer)
    with (
        contextlib.ExitStack() as stack,
        serve(server, cfg.model_repository, cfg.triton_releases, front, graceful=True, supervise=True) as endpoints,
    ):
        print(f"Triton ready: HTTP http://{endpoints.http}  gRPC {endpoints.grpc}", flush=True)
        if server.launched and endpoints.operator:
            (header, key), path = next(iter(endpoints.operator.items())), Path(str(cfg.operator_key_file))
            write_text(path, key + "\n", private=True)
            stack.callback(path.unlink, missing_ok=True)
            print(
                f"operator key (header {header}; {', '.join(server.flags.restricted_apis)}): {path} "
                f"(server=remote reads it from TRITON_OPERATOR_KEY)",
                flush=True,
            )
        if server.launched:
            print(f"serving {cfg.model_repository}/ ({endpoints.server})", flush=True)
            if endpoints.members:
                print(
                    f"behind the nginx front; replicas (HTTP): {', '.join(endpoints.members)}; front log "
                    f"{endpoints.log_file}",
                    flush=True,
                )
            else:
                print(
                    "UNGUARDED: nothing in front of Triton refuses the requests that crash it (docs/hardening.md)",
                    flush=True,
                )
            print("Ctrl-C stops it.", flush=True)
            deadline = None if cfg.duration_s is None else time.monotonic() + float(cfg.duration_s)
            try:
                while deadline is None or time.monotonic() < deadline:
                    time.sleep(0.5)
                    problem = endpoints.stopped_for_good()
                    if problem is not None:
                        raise ServerError(f"stopped serving: {problem}")
            except KeyboardInterrupt:
                log.info("stopping")
    return endpoints


main = hydra_main("triton", run, __doc__)

if __name__ == "__main__":
    main()
