"""The front's whole nginx.conf, as text: the replicas as upstreams (those taken out marked `down`), how requests
are proxied and retried, the maps the refusals read, njs's guard, and the server blocks of `front_rules`.

A request that cannot reach a replica (refused, reset, 502/503) is passed to the next one; an HTTP request is
repeated even when its replica died mid-request (inference is stateless and nginx has buffered the body). gRPC
bodies are streamed, so a gRPC request in flight on a replica that dies comes back UNAVAILABLE, the status gRPC
clients retry. Pure: from settings, addresses and limits to text; `balancer` writes it and runs nginx on it, and
`pipelines/cluster/manifests.py` puts it in a pod's ConfigMap.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from pipelines.data import images
from pipelines.serving import guard
from pipelines.serving.front_rules import (
    CHECKED_HEADERS,
    INFER,
    MODEL_PATH,
    PLAIN_URI,
    error_pages,
    grpc_front_server,
    http_front_server,
)
from pipelines.serving.front_settings import FrontSettings
from pipelines.serving.nginx_syntax import Directive, render_nginx, temp_paths

WORKERS = 2  # a hostile body scanned in one worker leaves the other serving (a fixed count: a pod sees the host's CPUs)


def nginx_config(
    settings: FrontSettings,
    host: str,
    http_port: int,
    grpc_port: int,
    replicas: Sequence[tuple[str, str]],
    down: set[int],
    work: Path,
    log_file: Path,
    limits: Sequence[guard.ModelLimits],
    njs: Path | None = None,
    script_dir: Path | None = None,
    banned: Sequence[str] = (),
) -> str:
    """The whole nginx.conf: replicas are (http, grpc) addresses; `down` their indices taken out; `limits` what each
    served model takes; `njs` the njs module, which checks inference requests' JSON (guard.js in `script_dir`, by
    default `work`) and lets a request that finds no replica ready wait for one; `banned` client addresses refused
    (403, PERMISSION_DENIED) because a request of theirs was in flight at two crashes."""

    def upstream(name: str, addresses: list[str]) -> Directive:
        servers: list[Directive] = [
            (
                "server",
                addr,
                "max_fails=1",
                f"fail_timeout={settings.fail_timeout_s:g}s",
                *(["down"] if i in down else []),
            )
            for i, addr in enumerate(addresses)
        ]
        return ("upstream", name, [*servers, ("keepalive", 32)])

    # a request that was in flight when its replica died is sent again alone: one such request per replica at a
    # time, counted across workers (zone), so that the request that dies with a replica a second time is the cause
    quarantine: Directive = (
        "upstream",
        "triton_quarantine",
        [("zone", "quarantine", "64k"), *[("server", h, "max_conns=1", "max_fails=0") for h, _ in replicas]],
    )

    largest = max(m.max_body_bytes for m in limits)
    http_errors, grpc_errors = error_pages(largest, njs is not None)
    waiting: list[Directive] = []
    if njs is not None:  # @wait: the replicas' health, polled until one is ready, and how long that may take
        waiting = [
            ("recursive_error_pages", "on"),  # a retry that fails again waits again (njs counts the rounds)
            ("set", "$guard_replicas", ",".join(h for h, _ in replicas)),
            ("set", "$guard_wait_ms", int(settings.restart_wait_s * 1000)),
        ]
    next_upstream = ("error", "timeout", "http_502", "http_503", "non_idempotent")  # inference is stateless
    timeout = f"{settings.read_timeout_s:g}s"
    proxy: list[Directive] = [
        ("proxy_pass", "http://triton_http"),
        ("proxy_http_version", "1.1"),
        ("proxy_set_header", "Connection", ""),
        *[("proxy_set_header", header, value) for header, value in CHECKED_HEADERS],
        ("proxy_set_header", images.CLIENT_PARAMETER, "$remote_addr"),  # never the client's own word
        ("proxy_read_timeout", timeout),
        ("proxy_next_upstream", *next_upstream),
        ("proxy_next_upstream_tries", settings.attempts),
        ("proxy_intercept_errors", "off"),
    ]
    body_limits = [
        (f"~{MODEL_PATH.format(re.escape(m.name), INFER)}", f"model {m.name} takes at most {m.max_body_bytes} bytes")
        for m in limits
    ]
    return (
        render_nginx(
            [
                *([("load_module", str(njs))] if njs else []),
                ("daemon", "off"),
                ("worker_processes", WORKERS),
                ("pid", str(work / "nginx.pid")),
                ("error_log", str(log_file), "warn"),
                ("events", [("worker_connections", 1024)]),
                (
                    "http",
                    [
                        (
                            "log_format",
                            "replica",
                            '$remote_addr [$time_local] "$request" $status $request_length '
                            "upstream=$upstream_addr upstream_status=$upstream_status "
                            "connect=$upstream_connect_time $request_time" + (" guard=$guard_verdict" if njs else ""),
                        ),
                        ("access_log", str(log_file), "replica"),
                        *temp_paths(work),
                        *(
                            [
                                ("js_import", "guard", "from", str((script_dir or work) / guard.GUARD_SCRIPT.name)),
                                ("js_set", "$guard_json_over", "guard.jsonOver"),
                                ("js_var", "$guard_waited", "0"),  # rounds of waiting for a replica, per request
                                ("js_var", "$guard_verdict", ""),  # "culprit": in flight at two crashes (the log)
                            ]
                            if njs
                            else []
                        ),
                        ("geo", "$guard_banned", [("default", 0), *[(address, 1) for address in sorted(banned)]]),
                        # Triton 2.51 crashes (SIGSEGV, server#5840) on a large form-post body, on any path
                        (
                            "map",
                            "$http_content_type",
                            "$guard_bad_type",
                            [("", 0), ("~*^application/(json|octet-stream)\\s*(;.*)?$", 0), ("default", 1)],
                        ),
                        (
                            "map",
                            "$http_content_length:$http_transfer_encoding",
                            "$guard_has_body",
                            [(":", 0), ("0:", 0), ("default", 1)],
                        ),
                        ("map", "$request_uri", "$guard_bad_uri", [(PLAIN_URI, 0), ("default", 1)]),
                        ("map", "$request_method", "$guard_not_read", [("GET", 0), ("HEAD", 0), ("default", 1)]),
                        ("map", "$request_method", "$guard_not_post", [("POST", 0), ("default", 1)]),
                        # Triton inflates gzip and deflate bodies without a bound (1 MB became 19 GB)
                        (
                            "map",
                            "$http_content_encoding",
                            "$guard_encoded",
                            [("", 0), ("~*^identity$", 0), ("default", 1)],
                        ),
                        (
                            "map",
                            "$http_grpc_encoding",
                            "$guard_grpc_encoded",
                            [("", 0), ("identity", 0), ("default", 1)],
                        ),
                        ("map", "$uri", "$guard_body_limit", [*body_limits, ("default", "$uri takes no body")]),
                        ("client_max_body_size", largest),  # gRPC: every model's requests arrive on one path
                        upstream("triton_http", [h for h, _ in replicas]),
                        *([quarantine] if njs else []),
                        upstream("triton_grpc", [g for _, g in replicas]),
                        http_front_server(host, http_port, limits, proxy, njs is not None, http_errors, waiting),
                        grpc_front_server(host, grpc_port, timeout, settings.attempts, next_upstream, grpc_errors),
                    ],
                ),
            ]
        )
        + "\n"
    )
