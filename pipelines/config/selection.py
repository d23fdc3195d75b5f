"""Which models a command works on (`model=<name>|all`), and whether this host can serve them."""

from __future__ import annotations

from typing import Any

from pipelines.config.spec import ModelSpec, model_spec, served_specs
from pipelines.core.errors import HostError, ServerError
from pipelines.trt import loadability


def selected(cfg: Any, catalog: dict[str, ModelSpec] | None = None) -> list[ModelSpec]:
    """`model=all`: the catalog's models; otherwise the chosen model, with any command-line overrides."""
    if cfg.model.name == "all":
        return list((catalog if catalog is not None else served_specs(cfg.models)).values())
    return [model_spec(str(cfg.model.name), cfg.model)]


def require_gpu_host(specs: list[ModelSpec], cfg: Any) -> None:
    """TensorRT engines run on an NVIDIA GPU: say so in one line on any other host (a remote server may have one)."""
    engines = [s.name for s in specs if s.format == "tensorrt"]
    if not engines or cfg.server.kind == "remote":
        return
    try:
        loadability.server_loader(
            str(cfg.server.kind), str(cfg.server.get("image", "")), bool(cfg.server.get("gpus")), cfg.triton_releases
        )
    except ServerError as exc:
        raise HostError(
            f"{', '.join(engines)} cannot be served here: {exc}; TensorRT engines are not part of "
            "the CPU profile (on a GPU host: `make pipeline-gpu`, or server=remote for a GPU Triton elsewhere)"
        ) from None
