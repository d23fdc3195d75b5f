"""Stage `repository`: the Triton model repository, both flavours, validated and written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines import repository
from pipelines.cli import hydra_main
from pipelines.errors import ConfigError
from pipelines.spec import served_specs
from pipelines.triton_config import FLAVOURS


def run(cfg: Any) -> Path:
    flavours = [str(f) for f in cfg.flavours]
    unknown = [f for f in flavours if f not in FLAVOURS]
    if unknown or not flavours:
        raise ConfigError(f"flavours must be a non-empty subset of {list(FLAVOURS)}, got {flavours}")
    specs = served_specs(cfg.models).values()
    return repository.assemble(specs, flavours, Path(cfg.paths.model_repository), str(cfg.native.instance_kind))


main = hydra_main("repository", run, __doc__)

if __name__ == "__main__":
    main()
