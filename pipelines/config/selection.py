"""Which models a command works on (`model=<name>|all`), and whether this host can serve them."""

from __future__ import annotations

from collections.abc import Mapping

from omegaconf import DictConfig, OmegaConf

from pipelines.config.spec import ModelSpec, model_spec, served_specs
from pipelines.core.cli import CONF_DIR


def whole_catalog(cfg: DictConfig) -> bool:
    """`model=all` (conf/model/all.yaml): every model of the chosen catalog."""
    return str(cfg.model.name) == "all"


def selected(cfg: DictConfig, catalog: dict[str, ModelSpec] | None = None) -> list[ModelSpec]:
    """`model=all`: the catalog's models; otherwise the chosen model, with any command-line overrides."""
    if whole_catalog(cfg):
        return list((catalog if catalog is not None else served_specs(cfg.models)).values())
    return [model_spec(str(cfg.model.name), cfg.model)]


def engines_outside(catalog: Mapping[str, ModelSpec]) -> list[str]:
    """TensorRT models that conf/model/ defines but the chosen catalog does not serve (the CPU profile's note)."""
    return [
        path.stem
        for path in sorted((CONF_DIR / "model").glob("*.yaml"))
        if OmegaConf.load(path).get("format") == "tensorrt" and path.stem not in catalog
    ]
