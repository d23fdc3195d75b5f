"""Stage `prepare`: MNIST into data/mnist.npz from one of three sources (`conf/data/`: mnist_offline, the
default, offline; mnist, downloaded; local, IDX files or an .npz). The sources: pipelines/data/mnist_sources.py.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from pipelines.core.atomic import atomic_path
from pipelines.core.cli import hydra_main
from pipelines.data import digits
from pipelines.data.mnist_sources import DataSource, fetch

log = logging.getLogger(__name__)


def run(cfg: Any) -> digits.Mnist:
    """Fetch or read MNIST per `cfg.data`, validate it and write `cfg.paths.data` atomically."""
    source = DataSource.from_cfg(cfg.data)
    log.info("preparing MNIST from %s", source.source)
    mnist = fetch(source)
    with atomic_path(cfg.paths.data) as tmp:
        digits.save(mnist, tmp)
    log.info(
        "wrote %s: %d train / %d test digits (test classes: %s)",
        cfg.paths.data,
        len(mnist.x_train),
        len(mnist.x_test),
        np.bincount(mnist.y_test, minlength=10).tolist(),
    )
    return mnist


main = hydra_main("prepare", run, __doc__)

if __name__ == "__main__":
    main()
