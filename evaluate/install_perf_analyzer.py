"""`python -m evaluate.install_perf_analyzer`: Triton's perf_analyzer for the benchmark's cross-check.

Takes the binary out of the `tritonclient` wheel of the embedded server's release and links the two
libraries it needs from the nvidia-pytriton wheel (pipelines/performance/perf_analyzer.py says why);
prints where it went. `make setup` runs it. Exit 2 with why when it cannot (e.g. no package index).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from pipelines.core.cli import hydra_main
from pipelines.performance import perf_analyzer


def run(cfg: DictConfig) -> Path:
    binary = perf_analyzer.install()
    print(binary, flush=True)
    return binary


main = hydra_main("install_perf_analyzer", run, __doc__)

if __name__ == "__main__":
    main()
