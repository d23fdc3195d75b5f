"""Triton behind nginx: one HTTP and one gRPC port, requests that crash Triton refused, failures retried.

nginx (the Debian package, 1.22 here) is the front, for one server or for replicas. It refuses,
before any replica reads it, what `pipelines/serving/guard.py` derives from the served models: bodies over a
model's largest legal request (413 with Triton's JSON error over HTTP, RESOURCE_EXHAUSTED over gRPC),
content types other than JSON and octet-stream on inference paths, bodies on health and metadata
paths, and, with nginx's njs module (`libnginx-mod-http-js`), JSON that declares more elements than a
model takes. A request that cannot reach a replica (refused, reset, 502/503) is passed to the next
one; an HTTP request is repeated even when its replica died mid-request (inference is stateless and
nginx has buffered the body). gRPC bodies are streamed, so a gRPC request in flight on a replica that
dies comes back UNAVAILABLE, the status gRPC clients retry. Open-source nginx has no active health
checks, so `Front` polls each replica's `/v2/health/ready` itself and reloads nginx with the unready
ones marked `down`.
"""

from __future__ import annotations

import contextlib
import json
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

from omegaconf import DictConfig

from pipelines.core.errors import ConfigError, HostError, ServerError, checked_number
from pipelines.data import images
from pipelines.serving import guard, privileges

log = logging.getLogger(__name__)

KINDS = ("none", "nginx", "auto")  # auto: nginx where it is installed, else none (and said so)
NJS_MODULE = "ngx_http_js_module.so"
MODULE_DIRS = ("/usr/lib/nginx/modules", "/usr/lib64/nginx/modules", "/usr/local/nginx/modules", "/etc/nginx/modules")
# what nginx answers instead of its HTML pages: Triton's own error shapes
GRPC_STATUS = {
    403: 7,
    413: 8,
    415: 12,
    429: 7,  # a banned source (HTTP answers it 403 with its own reason)
    500: 13,
    502: 14,
    503: 14,
    504: 4,
}  # PERMISSION_DENIED, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED
WORKERS = 2  # a hostile body scanned in one worker leaves the other serving (a fixed count: a pod sees the host's CPUs)
NO_BODY_BYTES = 1 << 10  # paths that take no body: a larger one is refused from its Content-Length (413)


@dataclass(frozen=True)
class FrontSettings:
    """`conf/balancer/*.yaml` (or conf/deploy.yaml's `front`), checked: one-line ConfigErrors for values nginx
    would refuse or misuse. Every value comes from the YAML; `alone()` is no front at all."""

    kind: str  # none | nginx | auto
    replicas: int
    max_dynamic_dim: int  # a model's dynamic dimension counts this much in its limits (pipelines/serving/guard.py)
    max_string_bytes: int  # a BYTES element (an encoded image, a string) counts this much
    max_json_string_bytes: int  # ... and this much in a JSON request (longer strings travel as binary)
    retries: int  # attempts per request, over all replicas (0: one per replica)
    fail_timeout_s: float  # a replica that failed a request is skipped this long
    health_interval_s: float
    read_timeout_s: float
    log_file: str
    restart_wait_s: float  # a request that finds no replica ready waits this long for one (with njs)
    ban_s: float  # a source whose request was in flight at two crashes is refused this long (with njs)

    @classmethod
    def alone(cls) -> FrontSettings:
        """No front: Triton serves its own ports (nothing below is read)."""
        return cls("none", 1, 0, 0, 0, 0, 0.0, 0.0, 0.0, "", 0.0, 0.0)

    @classmethod
    def from_cfg(cls, cfg: DictConfig | None, where: str = "balancer") -> FrontSettings:
        if cfg is None:
            return cls.alone()
        kind = str(cfg.get("kind", "none"))
        if kind not in KINDS:
            raise ConfigError(f"{where} must be one of {', '.join(KINDS)}; got {kind!r}")
        if kind == "none":
            return cls.alone()
        values: dict[str, Any] = {}
        for key, minimum in (
            ("replicas", 1),
            ("max_dynamic_dim", 1),
            ("max_string_bytes", 1),
            ("max_json_string_bytes", 1),
            ("retries", 0),
        ):
            values[key] = checked_number(cfg.get(key), f"{where}.{key}", int, minimum)
        for key, minimum in (
            ("fail_timeout_s", 0.0),
            ("health_interval_s", 0.1),
            ("read_timeout_s", 1.0),
            ("restart_wait_s", 0.0),
            ("ban_s", 0.0),
        ):
            values[key] = checked_number(cfg.get(key), f"{where}.{key}", float, minimum)
        if not cfg.get("log_file"):
            raise ConfigError(f"{where}.log_file is required: where nginx logs")
        return cls(kind=kind, log_file=str(cfg.log_file), **values)

    def resolved(self, server_kind: str) -> FrontSettings:
        """`auto`: nginx where it is installed and the server is launched here, else none, and said so."""
        if self.kind != "auto":
            return self
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
        return replace(self, kind="nginx")

    @property
    def attempts(self) -> int:
        return self.retries or self.replicas


# --------------------------------------------------------------------------- the nginx configuration

Directive = tuple  # ("name", "arg", ...) or ("name", "arg", ..., [block directives])


def render(directives: Sequence[Directive], indent: int = 0) -> str:
    """nginx's configuration syntax for nested directives; arguments with spaces or quotes are quoted."""
    out = []
    pad = "    " * indent
    for directive in directives:
        *words, last = directive
        block = last if isinstance(last, list) else None
        words = words if block is not None else [*words, last]
        text = " ".join(_word(str(w)) for w in words)
        if block is None:
            out.append(f"{pad}{text};")
        else:
            out += [f"{pad}{text} {{", render(block, indent + 1), f"{pad}}}"] if block else [f"{pad}{text} {{}}"]
    return "\n".join(out)


def temp_paths(work: Path) -> list[Directive]:
    """nginx's temporary directories inside `work` (its defaults lie under its prefix, not ours to write)."""
    return [(f"{kind}_temp_path", str(work / kind)) for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")]


def _word(word: str) -> str:
    if word and not any(c in word for c in " \t\"'{};#\\"):
        return word
    return "'" + word.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _error_locations(grpc_body_bytes: int, wait: bool) -> tuple[list[Directive], list[Directive]]:
    """(HTTP, gRPC) named locations answering nginx's own errors the way Triton answers its errors; `wait`: an HTTP
    request that found no replica (502, 503) waits for one in @wait (njs) instead."""
    reasons = {
        403: "this front passes inference only (health, server and model metadata, model config, ModelInfer)",
        413: "request body too large: $guard_body_limit (refused by the front)",
        415: "compressed messages are not accepted (refused by the front)",
        429: BANNED,
        500: "the balancer failed (its log says why)",
        502: "no Triton replica answered (balancer)",
        503: "no Triton replica is available (balancer)",
        504: "the Triton replica did not answer in time (balancer)",
    }
    http, grpc = [], []
    for code, reason in reasons.items():
        if wait and code in (502, 503):
            http.append(("error_page", code, "=", "@wait"))
        elif code not in (403, 415, 429):  # over HTTP the front's refusals carry their own reason
            http.append(("error_page", code, f"@http{code}"))
            http.append(
                (
                    "location",
                    f"@http{code}",
                    [("default_type", "application/json"), ("return", code, f'{{"error":"{reason}"}}')],
                )
            )
        grpc_reason = reason
        if code == 413:
            grpc_reason = f"request larger than any model behind the front takes ({grpc_body_bytes} bytes)"
        grpc.append(("error_page", code, "=", f"@grpc{code}"))  # "=": the answer is the named location's
        grpc.append(
            (
                "location",
                f"@grpc{code}",
                [
                    ("default_type", "application/grpc"),
                    ("add_header", "grpc-status", GRPC_STATUS[code], "always"),
                    ("add_header", "grpc-message", grpc_reason.replace(" ", "%20"), "always"),
                    ("return", 204),
                ],
            )
        )
    return http, grpc


BANNED = "requests from this address were in flight at two crashes of Triton: refused for a while (by the front)"


def _refuse(status: int, reason: str) -> Directive:
    return ("return", status, json.dumps({"error": f"{reason} (refused by the front)"}))


# The allowlist: what an inference client needs, and nothing else (Triton's Secure Deployment Considerations).
# Every other path and method is refused, whatever the Triton behind the front would answer.
MODEL_PATH = "^/v2/models/{}(/versions/[0-9]+)?{}$"
MODEL_READS = "(/ready|/config)?"  # GET: the model's metadata, readiness and config
INFER = "/infer"  # POST
# a request path as sent, before nginx decodes and normalizes it for matching: plain segments only, no
# %-escapes, dot segments, empty segments or query, so that Triton reads the path the allowlist matched
PLAIN_URI = r"~^(/[A-Za-z0-9_\-][A-Za-z0-9_.\-]*)+$"
GRPC_SERVICE = "/inference.GRPCInferenceService/"
GRPC_ALLOWED = (
    *(
        GRPC_SERVICE + method
        for method in ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelConfig")
    ),
    GRPC_SERVICE + "ModelInfer",
    "/grpc.health.v1.Health/Check",
)
# headers Triton reads whose first value the front checked: passed as that one value, every repeat dropped
CHECKED_HEADERS = (
    ("Content-Type", "$http_content_type"),
    ("Inference-Header-Content-Length", "$http_inference_header_content_length"),
    ("Content-Encoding", ""),  # identity only (the rest is refused): nothing to pass
    ("Accept-Encoding", ""),  # Triton answers uncompressed
)


def _methods(allowed: str) -> Directive:
    """Refuse (405) every method but `allowed` ("read": GET and HEAD, or "POST")."""
    variable, words = ("$guard_not_read", "GET, HEAD") if allowed == "read" else ("$guard_not_post", "POST")
    return (
        "if",
        f"({variable})",
        [("add_header", "Allow", words, "always"), _refuse(405, f"$uri takes {words} only, not $request_method")],
    )


def _model_locations(limits: Sequence[guard.ModelLimits], proxy: list[Directive], njs: bool) -> list[Directive]:
    """Per served model: its reads (GET, no body) and its inference path (POST, capped at its largest legal
    request, JSON checked by njs); any other model's paths answer 404."""
    bad_type = (
        "if",
        "($guard_bad_type)",
        [
            _refuse(
                415,
                "an inference request is JSON (application/json) or "
                "binary (application/octet-stream), not $http_content_type",
            )
        ],
    )
    no_body = ("if", "($guard_has_body)", [_refuse(400, "$uri takes no request body")])
    locations: list[Directive] = []
    for model in limits:
        cap = model.max_body_bytes
        name = re.escape(model.name)
        checked = [("js_content", "guard.infer")] if njs else proxy
        locations.append(("location", "~", MODEL_PATH.format(name, MODEL_READS), [_methods("read"), no_body, *proxy]))
        locations.append(
            (
                "location",
                "~",
                MODEL_PATH.format(name, INFER),
                [
                    ("client_max_body_size", cap),
                    ("client_body_buffer_size", cap),
                    ("client_body_in_single_buffer", "on"),
                    _methods("POST"),
                    bad_type,
                    *(
                        [
                            ("set", "$guard_model", model.name),
                            ("set", "$guard_limits", model.table()),
                            # from the headers, before the body is read: JSON beyond what the model can take
                            (
                                "if",
                                "($guard_json_over)",
                                [
                                    _refuse(
                                        413,
                                        f"a JSON request to model {model.name} takes at most "
                                        "$guard_json_over bytes; send large tensors as binary data",
                                    )
                                ],
                            ),
                        ]
                        if njs
                        else []
                    ),
                    *checked,
                ],
            )
        )
    locations.append(
        (
            "location",
            "~",
            MODEL_PATH.format("(?<unknown>[^/]+)", f"({MODEL_READS[1:-2]}|{INFER})?"),
            [_refuse(404, "no model '$unknown' is served behind this front")],
        )
    )
    return locations


def _http_server(
    host: str,
    port: int,
    limits: Sequence[guard.ModelLimits],
    proxy: list[Directive],
    njs: bool,
    errors: list,
    waiting: list[Directive],
) -> Directive:
    no_body = ("if", "($guard_has_body)", [_refuse(400, "$uri takes no request body")])
    reads = [_methods("read"), no_body, *proxy]
    forbidden = _refuse(
        403,
        "this front passes inference only (health, server and model metadata, model config, infer); "
        "not $request_method $uri",
    )
    return (
        "server",
        [
            ("listen", f"{host}:{port}", "reuseport"),
            ("default_type", "application/json"),
            ("client_max_body_size", NO_BODY_BYTES),  # raised per inference location; no other path takes a body
            ("if", "($guard_banned)", [("return", 403, json.dumps({"error": BANNED}))]),
            *waiting,
            (
                "if",
                "($guard_bad_uri)",
                [_refuse(400, "a path is plain segments ([A-Za-z0-9_.-]; no %-escapes, dot segments or query)")],
            ),
            ("if", "($guard_encoded)", [_refuse(415, "bodies travel uncompressed, not as $http_content_encoding")]),
            ("location", "=", "/v2", reads),
            ("location", "=", "/v2/health/live", reads),
            ("location", "=", "/v2/health/ready", reads),
            *_model_locations(limits, proxy, njs),
            ("location", "=", "/v2/models/stats", [forbidden]),  # Triton's statistics, not a model's metadata
            ("location", "/", [forbidden]),
            ("location", "@triton", proxy),
            *(
                [
                    ("location", "@wait", [("js_content", "guard.wait")]),
                    (
                        "location",
                        "@quarantine",
                        [
                            *(d if d[0] != "proxy_pass" else ("proxy_pass", "http://triton_quarantine") for d in proxy),
                        ],
                    ),
                ]
                if njs
                else []
            ),
            *errors,
        ],
    )


def _grpc_server(host: str, port: int, timeout: str, attempts: int, next_upstream: tuple, errors: list) -> Directive:
    grpc = [
        ("grpc_pass", "grpc://triton_grpc"),
        ("grpc_read_timeout", timeout),
        ("grpc_next_upstream", *next_upstream),
        ("grpc_next_upstream_tries", attempts),
        ("grpc_set_header", "grpc-accept-encoding", "identity"),
        ("grpc_set_header", images.CLIENT_PARAMETER, "$remote_addr"),
    ]
    return (
        "server",
        [
            ("listen", f"{host}:{port}", "http2", "reuseport"),
            ("if", "($guard_banned)", [("return", 429)]),  # -> PERMISSION_DENIED, naming why
            ("if", "($guard_grpc_encoded)", [("return", 415)]),  # -> UNIMPLEMENTED, as gRPC answers an unknown codec
            *[("location", "=", method, grpc) for method in GRPC_ALLOWED],
            ("location", "/", [("return", 403)]),  # -> PERMISSION_DENIED
            *errors,
        ],
    )


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
    http_errors, grpc_errors = _error_locations(largest, njs is not None)
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
        render(
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
                        _http_server(host, http_port, limits, proxy, njs is not None, http_errors, waiting),
                        _grpc_server(host, grpc_port, timeout, settings.attempts, next_upstream, grpc_errors),
                    ],
                ),
            ]
        )
        + "\n"
    )


# --------------------------------------------------------------------------- running nginx


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
