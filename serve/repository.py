"""Stage `repository`: the Triton model repository of a catalog, validated and written atomically.

One directory, `model_repository/` (`model_repository_gpu/` for catalog=gpu): what the pinned
NGC Triton image loads, and what every server kind here serves unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.config.spec import served_specs
from pipelines.core.cli import hydra_main
from pipelines.model_repository import assembly
from pipelines.trt import loadability


def run(cfg: Any) -> Path:
    specs = list(served_specs(cfg.models).values())
    # TensorRT plans must load in the pinned image's TensorRT (the embedded server re-checks this host's at launch)
    loader = loadability.image_loader(str(cfg.triton_image), cfg.triton_releases)
    return assembly.assemble(specs, Path(cfg.model_repository), str(cfg.instance_kind), loader)


main = hydra_main("repository", run, __doc__)

if __name__ == "__main__":
    main()
