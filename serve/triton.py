"""`python -m serve.triton`: launch Triton on the model repository and keep it up until interrupted.

Every server kind serves the catalog's repository as it is: the embedded server (through stand-in
backends), the pinned NGC image (server=docker, mounted read-only), or a remote server (server=remote).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pipelines.cli import hydra_main
from pipelines.launcher import Endpoints, serve

log = logging.getLogger(__name__)


def run(cfg: Any) -> Endpoints:
    """Serve until Ctrl-C (exit 0) or SIGTERM (exit 143, as every entry point: pipelines.cli)."""
    with serve(cfg.server, cfg.model_repository, cfg.triton_releases) as endpoints:
        print(f"Triton ready: HTTP http://{endpoints.http}  gRPC {endpoints.grpc}", flush=True)
        if cfg.server.kind != "remote":
            print(f"serving {cfg.model_repository}/ ({endpoints.server})", flush=True)
        if cfg.server.kind != "remote":
            print("Ctrl-C stops it.", flush=True)
            deadline = None if cfg.duration_s is None else time.monotonic() + float(cfg.duration_s)
            try:
                while deadline is None or time.monotonic() < deadline:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                log.info("stopping")
    return endpoints


main = hydra_main("triton", run, __doc__)

if __name__ == "__main__":
    main()
