"""Stage `repository`: the Triton model repository, both flavours, validated and written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines import gpu_host, repository, tensorrt_plan
from pipelines.cli import hydra_main
from pipelines.errors import ConfigError
from pipelines.repository import ServingTarget
from pipelines.spec import served_specs
from pipelines.triton_config import FLAVOURS


def serving_targets(cfg: Any) -> dict[str, ServingTarget]:
    """Who loads the plans: the pinned Triton image (native flavour), this host's TensorRT (python flavour)."""
    gpu = gpu_host.local_gpu()
    return {
        "native": ServingTarget(
            f"the Triton image {cfg.triton_image}", tensorrt_plan.tensorrt_in_image(cfg.triton_image, cfg.triton_releases)
        ),
        "python": ServingTarget("this host", gpu_host.tensorrt_version(), gpu.compute_capability if gpu else None),
    }


def run(cfg: Any) -> Path:
    flavours = [str(f) for f in cfg.flavours]
    unknown = [f for f in flavours if f not in FLAVOURS]
    if unknown or not flavours:
        raise ConfigError(f"flavours must be a non-empty subset of {list(FLAVOURS)}, got {flavours}")
    specs = list(served_specs(cfg.models).values())
    targets = serving_targets(cfg) if any(s.format == "tensorrt" for s in specs) else {}
    return repository.assemble(specs, flavours, Path(cfg.model_repository), str(cfg.native.instance_kind), targets)


main = hydra_main("repository", run, __doc__)

if __name__ == "__main__":
    main()
