"""`python -m export.gpu_host`: can this host run the GPU profile (TensorRT engines)?

Exit 0 naming the GPU, its compute capability, the driver and TensorRT; exit 2 saying why not
(no NVIDIA GPU, no TensorRT 10 Python package). `make pipeline-gpu` asks it before anything runs.
"""

from __future__ import annotations

from omegaconf import DictConfig

from pipelines.core.cli import hydra_main
from pipelines.core.errors import HostError
from pipelines.trt import host


def run(cfg: DictConfig) -> str:
    reason = host.tensorrt_unavailable()
    gpu = host.local_gpu()
    if reason or gpu is None:
        raise HostError(
            f"the GPU profile (TensorRT engines) cannot run here: {reason or 'no NVIDIA GPU'}; "
            "the CPU profile is `make pipeline`"
        )
    line = (
        f"GPU profile: {gpu.name} (compute capability {gpu.compute_capability}, driver {gpu.driver}), "
        f"TensorRT {host.tensorrt_version()}"
    )
    print(line, flush=True)
    return line


main = hydra_main("gpu_host", run, __doc__)

if __name__ == "__main__":
    main()
