"""MNIST as the pipeline stores it (`data/mnist.npz`) and the one place pixels become model input."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.core.errors import DataError

SPLITS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class Mnist:
    """Digits as uint8 (N, 28, 28) images and int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def validate(self, where: str) -> Mnist:
        for x, y, split in ((self.x_train, self.y_train, "train"), (self.x_test, self.y_test, "test")):
            if x.ndim != 3 or x.shape[1:] != (28, 28):
                raise DataError(f"{where}: {split} images must be (N, 28, 28), got {x.shape}")
            if len(x) != len(y) or len(x) == 0:
                raise DataError(f"{where}: {split} has {len(x)} images and {len(y)} labels")
            if y.min() < 0 or y.max() > 9:
                raise DataError(f"{where}: {split} labels must be digits 0-9")
        return self


def as_pixels(images: np.ndarray, where: str) -> np.ndarray:
    """uint8 pixels 0-255; other dtypes only if they hold exactly such values (never silently rescaled)."""
    if images.dtype == np.uint8:
        return images
    values = np.asarray(images)
    if values.size and (
        not np.all(np.isfinite(values))
        or values.min() < 0
        or values.max() > 255
        or not np.all(values == np.round(values))
    ):
        hint = " (they look normalised to [0, 1]: store 0-255 pixels)" if values.max() <= 1.0 else ""
        raise DataError(f"{where}: images must be integer pixels 0-255, got {values.dtype} values{hint}")
    return values.astype(np.uint8)


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1]: what training, export and parity feed the CNN."""
    return (images.astype(np.float32) / 255.0)[..., np.newaxis]


def save(data: Mnist, path: Path) -> None:
    """Write `data` to `path` as .npz (the caller makes it atomic)."""
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **{name: getattr(data, name) for name in SPLITS})


def load_mnist(path: str | Path) -> Mnist:
    """Read the prepared dataset; a missing file names the stage that makes it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found: run `dvc repro prepare` (or `python -m train.prepare_data`) first")
    try:
        with np.load(path) as npz:
            missing = [k for k in SPLITS if k not in npz]
            if missing:
                raise DataError(f"{path}: missing arrays {missing}; expected {list(SPLITS)}")
            arrays = {k: npz[k] for k in SPLITS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from exc
    return Mnist(
        x_train=as_pixels(arrays["x_train"], f"{path} x_train"),
        y_train=arrays["y_train"].astype(np.int64),
        x_test=as_pixels(arrays["x_test"], f"{path} x_test"),
        y_test=arrays["y_test"].astype(np.int64),
    ).validate(str(path))
