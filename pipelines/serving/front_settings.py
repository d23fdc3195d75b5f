"""The front's settings, typed once: `conf/balancer/*.yaml` (or conf/deploy.yaml's `front`) checked into
`FrontSettings`, which both the nginx.conf text (`front_conf`) and the running nginx (`balancer`) read.
Pure: no processes, no files (whether nginx is installed, for `auto`, is `balancer.resolved_front`'s question).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from pipelines.core.errors import ConfigError, checked_choice, checked_number

FRONT_KINDS = ("none", "nginx", "auto")  # auto: nginx where it is installed, else none (and said so)


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
        kind = checked_choice(str(cfg.get("kind", "none")), FRONT_KINDS, where)
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

    @property
    def attempts(self) -> int:
        return self.retries or self.replicas
