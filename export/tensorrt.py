"""`python -m export.tensorrt model=<TensorRT model>`: build a TensorRT engine from the ONNX export (GPU hosts).

builder=python uses this host's TensorRT 10 Python API; builder=trtexec runs trtexec inside the
NGC TensorRT container whose TensorRT matches the pinned Triton image (conf/triton_versions.yaml).
Writes `<artifact dir>/model_sm<cc>.plan` for this GPU's compute capability, with the metadata
(`.json`: TensorRT/CUDA versions, GPU, precision, profile, ONNX hash, engine I/O) and the engine
inspector's layer report (`.layers.json`) beside it. Plans of other GPU architectures in the
same directory are kept, so one model can be served to several (cc_model_filenames).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from pipelines.core.cli import hydra_main
from pipelines.trt.job import EngineJob, build_engine


def run(cfg: DictConfig) -> dict[str, Any]:
    return build_engine(EngineJob.from_cfg(cfg))


main = hydra_main("tensorrt", run, __doc__)

if __name__ == "__main__":
    main()
