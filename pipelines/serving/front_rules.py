"""What the front passes and what it refuses, as nginx directives: the allowlist of Triton's inference paths
(HTTP and gRPC), the refusals before any replica reads a request, and nginx's own errors answered the way Triton
answers its errors. The server blocks of the front's nginx.conf (`front_conf` assembles the whole file).

Only what an inference client needs passes (Triton's Secure Deployment Considerations): health, server and model
metadata, model config and inference. Per served model, the body is capped at the model's largest legal request
(`guard`), inference takes JSON or octet-stream only, health and metadata paths take no body, and, with nginx's njs
module, the JSON a request declares is checked against what the model takes. Pure: text only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from pipelines.data import images
from pipelines.serving import guard
from pipelines.serving.nginx_syntax import Directive

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
NO_BODY_BYTES = 1 << 10  # paths that take no body: a larger one is refused from its Content-Length (413)
BANNED = "requests from this address were in flight at two crashes of Triton: refused for a while (by the front)"

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


def _refuse(status: int, reason: str) -> Directive:
    return ("return", status, json.dumps({"error": f"{reason} (refused by the front)"}))


def error_pages(grpc_body_bytes: int, wait: bool) -> tuple[list[Directive], list[Directive]]:
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


def http_front_server(
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


def grpc_front_server(
    host: str, port: int, timeout: str, attempts: int, next_upstream: tuple, errors: list
) -> Directive:
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
