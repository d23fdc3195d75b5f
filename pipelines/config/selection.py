"""Which models a command works on (`model=<name>|all`), and whether this host can serve them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from pipelines.config.spec import ModelSpec, model_spec, served_specs
from pipelines.core.cli import CONF_DIR
from pipelines.core.errors import HostError, ServerError
from pipelines.trt import loadability

if TYPE_CHECKING:
    from pipelines.serving.settings import ServerSettings


def whole_catalog(cfg: DictConfig) -> bool:
    """`model=all` (conf/model/all.yaml): every model of the chosen catalog."""
    return str(cfg.model.name) == "all"


def selected(cfg: DictConfig, catalog: dict[str, ModelSpec] | None = None) -> list[ModelSpec]:
    """`model=all`: the catalog's models; otherwise the chosen model, with any command-line overrides."""
    if whole_catalog(cfg):
        return list((catalog if catalog is not None else served_specs(cfg.models)).values())
    return [model_spec(str(cfg.model.name), cfg.model)]


def require_gpu_host(specs: list[ModelSpec], server: ServerSettings, releases: Mapping[str, Any]) -> None:
    """TensorRT engines run on an NVIDIA GPU: say so in one line on any other host (a remote server may have one)."""
    engines = [s.name for s in specs if s.format == "tensorrt"]
    if not engines or not server.launched:
        return
    try:
        loadability.server_loader(server.kind, server.image or "", bool(server.gpus), releases)
    except ServerError as exc:
        raise HostError(
            f"{', '.join(engines)} cannot be served here: {exc}; TensorRT engines are not part of "
            "the CPU profile (on a GPU host: `make pipeline-gpu`, or server=remote for a GPU Triton elsewhere)"
        ) from None


def engines_outside(catalog: Mapping[str, ModelSpec]) -> list[str]:
    """TensorRT models that conf/model/ defines but the chosen catalog does not serve (the CPU profile's note)."""
    return [
        path.stem
        for path in sorted((CONF_DIR / "model").glob("*.yaml"))
        if OmegaConf.load(path).get("format") == "tensorrt" and path.stem not in catalog
    ]
