"""Typed errors: a `PipelineError` is the user's to fix (exit 2, one line); anything else is a bug."""

from __future__ import annotations

import re
from typing import Any


class PipelineError(Exception):
    """A problem the user can act on: bad input, missing artifact, unreachable server."""


class ConfigError(PipelineError):
    """A configuration value is missing, unknown or inconsistent."""


class DataError(PipelineError):
    """Input data cannot be read or fetched."""


class ArtifactError(PipelineError):
    """A model artifact is missing or does not match its spec."""


class ServerError(PipelineError):
    """Triton cannot be launched or reached."""


class ModelNotServed(ServerError):
    """Triton runs but did not load one model (its config refused, its file unreadable): that model's failure,
    not the run's; the message carries Triton's reason."""


class HostError(PipelineError):
    """This host lacks what the command needs (an NVIDIA GPU, TensorRT, a Docker engine)."""


def checked_number(value: Any, what: str, kind: type = float, minimum: float = 0.0) -> Any:
    """A numeric setting as `kind` (int or float), at least `minimum`; else a one-line ConfigError naming it."""
    try:
        number = kind(value)
        if kind is int and number != float(value):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(
            f"{what} must be a{'n integer' if kind is int else ' number'} >= {minimum:g}; got {value!r}"
        ) from None
    if number < minimum:
        raise ConfigError(f"{what} must be >= {minimum:g}; got {value!r}")
    return number


def checked_choice(value: Any, allowed: tuple[str, ...], what: str, where: str = "") -> str:
    """A setting that must be one of `allowed`; else a one-line ConfigError naming it and the choices, after
    `where` (e.g. "model 'mnist_onnx'") when the setting belongs to one file of several."""
    if value not in allowed:
        prefix = f"{where}: " if where else ""
        raise ConfigError(f"{prefix}{what} must be one of {', '.join(allowed)}; got {value!r}")
    return str(value)


def first_line(exc: BaseException) -> str:
    """An exception's first line, as one-line messages quote a library's error: without the terminal colours some
    (torch.onnx) carry; the exception's type where it says nothing."""
    lines = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
