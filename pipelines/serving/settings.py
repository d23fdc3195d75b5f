"""What a server launch is told (`conf/server/*.yaml`), typed and validated once where the entry point hands over.

Every value comes from the YAML: nothing here repeats a default. A key that a kind does not use is None
(a remote server has no ports to open, a local one no image). The launcher reads these objects only, so a
misspelled or out-of-range setting is one line before anything starts.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from pipelines.config.spec import ModelSpec
from pipelines.core.errors import ConfigError, HostError, ServerError, checked_choice, checked_number
from pipelines.data import images
from pipelines.serving.supervision import RestartPolicy
from pipelines.trt import loadability

KINDS = ("local", "docker", "remote")
# Triton's names for the API groups `--http-restricted-api` / `--grpc-restricted-protocol` put behind a header key
RESTRICTABLE = (
    "health",
    "metadata",
    "inference",
    "shared-memory",
    "model-config",
    "model-repository",
    "statistics",
    "trace",
    "logging",
)


def configured_port(value: object, what: str) -> int:
    """A port setting: 0 (a free one) or 1..65535; anything else is a one-line ConfigError."""
    try:
        port = int(value or 0)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        port = -1
    if not 0 <= port <= 65535:
        raise ConfigError(f"{what} must be a port number 1..65535, or 0 for a free one; got {value!r}")
    return port


@dataclass(frozen=True)
class TritonFlags:
    """The tritonserver options every launch shares, embedded, Docker or in a pod (`serve.deploy`)."""

    exit_timeout_s: int  # how long a client left connected may delay exit
    log_verbose: int
    extra_args: tuple[str, ...]
    restricted_apis: tuple[str, ...]  # API groups answered only to requests carrying the operator key
    operator_header: str  # the header that carries it

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> TritonFlags:
        restricted = tuple(str(a) for a in cfg.restricted_apis or ())
        for api in restricted:
            checked_choice(api, RESTRICTABLE, "server.restricted_apis[]")
        header = str(cfg.operator_header or "")
        if restricted and not OPERATOR_HEADER.fullmatch(header):
            raise ConfigError(
                f"server.operator_header must be an HTTP header name (letters, digits, '-'); got {header!r}"
            )
        return cls(
            exit_timeout_s=checked_number(cfg.exit_timeout_s, "server.exit_timeout_s", int, 0),
            log_verbose=checked_number(cfg.log_verbose, "server.log_verbose", int, 0),
            extra_args=tuple(str(a) for a in cfg.extra_args or ()),
            restricted_apis=restricted,
            operator_header=header.lower(),
        )

    def args(self, extra: list[str] | None = None, operator_key: str | None = None) -> list[str]:
        """The options, the restricted APIs behind `operator_key` (a launch's own secret; Kubernetes passes
        `$(VAR)` to substitute it from the pod's environment), then the plan guard's (`extra`) and the user's own."""
        restricted = []
        if self.restricted_apis:
            if not operator_key:
                raise ValueError("restricted APIs need an operator key")  # a bug of ours: launches make one
            setting = f"{','.join(self.restricted_apis)}:{self.operator_header}={operator_key}"
            restricted = [f"--http-restricted-api={setting}", f"--grpc-restricted-protocol={setting}"]
        forward = f"^{images.CLIENT_PARAMETER}$"  # the front's name for the client, for the images' pixel budget
        return [
            "--disable-auto-complete-config",  # our configs are complete; 3x faster start
            # one model Triton cannot load is that model's failure: the others are served, and the server is
            # ready once every load was tried (a client asks for each model's readiness; parity reports the
            # model failed with Triton's reason, from its repository index or its log)
            "--exit-on-error=false",
            "--strict-readiness=false",
            f"--http-header-forward-pattern={forward}",
            f"--grpc-header-forward-pattern={forward}",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            f"--log-verbose={self.log_verbose}",
            *restricted,
            *(extra or []),
            *self.extra_args,
        ]

    def operator(self, key: str | None) -> dict[str, str]:
        """The header a request to a restricted API carries (none when nothing is restricted or no key is known)."""
        return {self.operator_header: key} if self.restricted_apis and key else {}


OPERATOR_HEADER = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")


def new_operator_key() -> str:
    """A launch's own secret for Triton's restricted APIs: URL-safe, so it travels in a header and a flag as is."""
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class ServerSettings:
    """One server: launched here (`local`, `docker`) or already running (`remote`)."""

    kind: str
    # launched kinds
    host: str | None = None
    expose: bool = False
    http_port: int = 0
    grpc_port: int = 0
    startup_timeout_s: float = 0.0
    stop_timeout_s: float = 0.0
    log_file: Path | None = None
    flags: TritonFlags | None = None
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    run_as: str | None = None  # launched by root: the account Triton and nginx run as (pipelines/serving/privileges.py)
    # docker
    image: str | None = None
    gpus: str | None = None
    shm_size: str | None = None
    # remote
    http_url: str | None = None
    grpc_url: str | None = None
    connect_timeout_s: float = 0.0
    operator: dict[str, str] = field(default_factory=dict, repr=False)  # a remote server's operator header, if known

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> ServerSettings:
        try:
            return cls._from_cfg(cfg)
        except (ConfigAttributeError, ConfigKeyError) as exc:  # a server file of the user's that lacks a key
            key = getattr(exc, "key", None) or str(exc).splitlines()[0]
            raise ConfigError(
                f"server: missing key {key!r} (conf/server/{cfg.get('kind')}.yaml has them all)"
            ) from None

    @classmethod
    def _from_cfg(cls, cfg: DictConfig) -> ServerSettings:
        kind = checked_choice(str(cfg.kind), KINDS, "server.kind")
        if kind == "remote":
            return cls(
                kind=kind,
                http_url=str(cfg.http_url),
                grpc_url=str(cfg.grpc_url),
                connect_timeout_s=checked_number(cfg.connect_timeout_s, "server.connect_timeout_s", float, 0.0),
                operator={str(cfg.operator_header).lower(): str(cfg.operator_key)} if cfg.operator_key else {},
            )
        http_port = configured_port(cfg.http_port, "server.http_port")
        grpc_port = configured_port(cfg.grpc_port, "server.grpc_port")
        if http_port and http_port == grpc_port:
            raise ConfigError(f"server.http_port and server.grpc_port are both {http_port}: each needs its own port")
        docker = kind == "docker"
        return cls(
            kind=kind,
            host=str(cfg.host),
            expose=bool(cfg.expose),
            http_port=http_port,
            grpc_port=grpc_port,
            startup_timeout_s=checked_number(cfg.startup_timeout_s, "server.startup_timeout_s", float, 1.0),
            stop_timeout_s=checked_number(cfg.stop_timeout_s, "server.stop_timeout_s", float, 0.0),
            log_file=Path(str(cfg.log_file)),
            flags=TritonFlags.from_cfg(cfg),
            restart=RestartPolicy.from_cfg(cfg.restart) if not docker else RestartPolicy(),
            run_as=str(cfg.run_as) if not docker and cfg.get("run_as") else None,
            image=str(cfg.image) if docker else None,
            gpus=str(cfg.gpus) if docker and cfg.gpus else None,
            shm_size=str(cfg.shm_size) if docker else None,
        )

    @property
    def launched(self) -> bool:
        return self.kind != "remote"

    def require_tensorrt_host(self, specs: list[ModelSpec], releases: Mapping[str, Any]) -> None:
        """TensorRT engines run on an NVIDIA GPU: say so in one line on any other host (a remote server may have
        one)."""
        engines = [s.name for s in specs if s.format == "tensorrt"]
        if not engines or not self.launched:
            return
        try:
            loadability.server_loader(self.kind, self.image or "", bool(self.gpus), releases)
        except ServerError as exc:
            raise HostError(
                f"{', '.join(engines)} cannot be served here: {exc}; TensorRT engines are not part of "
                "the CPU profile (on a GPU host: `make pipeline-gpu`, or server=remote for a GPU Triton elsewhere)"
            ) from None

    def loading_only(self, models: list[str]) -> ServerSettings:
        """A launched server that loads `models` alone (Triton loads an ensemble's steps with it), unless the user
        chose the model control in `extra_args`: a run for some models proves them whatever else the repository
        holds, and waits only for their loading. A remote server is what it is."""
        if self.flags is None or not self.launched:
            return self
        if any(a.startswith(("--model-control-mode", "--load-model")) for a in self.flags.extra_args):
            return self
        control = ("--model-control-mode=explicit", *(f"--load-model={m}" for m in models))
        return replace(self, flags=replace(self.flags, extra_args=(*self.flags.extra_args, *control)))

    def replica(self, index: int) -> ServerSettings:
        """Replica `index` behind a balancer: free ports on loopback (the configured host and ports are the
        balancer's), a log of its own."""
        assert self.log_file is not None
        log_file = self.log_file.with_name(f"{self.log_file.stem}-replica{index + 1}{self.log_file.suffix}")
        return replace(self, host="127.0.0.1", http_port=0, grpc_port=0, log_file=log_file)
