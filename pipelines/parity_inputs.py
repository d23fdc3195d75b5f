"""Inputs that exports and parity feed a model: real digits for MNIST, image-like tensors for ImageNet nets.

Random noise hides or exaggerates differences (NVIDIA/TensorRT#1565), so MNIST uses real test
digits; for classifiers without a shipped image set we use smooth, seeded, image-like tensors
normalised with the network's own ImageNet statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines import data
from pipelines.errors import ConfigError
from pipelines.spec import NetworkSpec, TensorSpec


@dataclass(frozen=True)
class ParityInputs:
    """One input tensor's samples (batch first) and, where known, their true labels."""

    samples: np.ndarray
    labels: np.ndarray | None = None


def imagenet_like(tensor: TensorSpec, count: int, mean: list[float], std: list[float], seed: int = 0) -> np.ndarray:
    """`count` NCHW float32 images: coarse colour fields plus fine texture in [0, 1], then normalised."""
    channels, height, width = tensor.dims
    rng = np.random.default_rng(seed)
    coarse = rng.random((count, channels, 8, 8))
    ys = np.linspace(0, 7, height)
    xs = np.linspace(0, 7, width)
    y0, x0 = np.floor(ys).astype(int).clip(0, 6), np.floor(xs).astype(int).clip(0, 6)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = coarse[:, :, y0][:, :, :, x0] * (1 - fx) + coarse[:, :, y0][:, :, :, x0 + 1] * fx
    bottom = coarse[:, :, y0 + 1][:, :, :, x0] * (1 - fx) + coarse[:, :, y0 + 1][:, :, :, x0 + 1] * fx
    images = top * (1 - fy) + bottom * fy + rng.normal(0, 0.05, (count, channels, height, width))
    images = images.clip(0, 1)
    mean_a = np.asarray(mean, dtype=np.float64).reshape(1, channels, 1, 1)
    std_a = np.asarray(std, dtype=np.float64).reshape(1, channels, 1, 1)
    return ((images - mean_a) / std_a).astype(tensor.numpy_dtype)


# photographs that scikit-image ships (no download): JPEG and PNG, colour and one greyscale
SAMPLE_PHOTOS = ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png",
                 "hubble_deep_field.jpg", "retina.jpg", "camera.png")


def sample_photo_paths() -> list[Any]:
    try:
        import skimage
    except ImportError as exc:
        raise ConfigError("sample images come from scikit-image: run `make setup`") from exc
    from pathlib import Path

    folder = Path(skimage.__file__).parent / "data"
    return [folder / name for name in SAMPLE_PHOTOS]


def sample_images(count: int) -> np.ndarray:
    """`count` encoded photographs (the list repeats if needed) as a [count, 1] BYTES array."""
    paths = sample_photo_paths()
    encoded = [paths[i % len(paths)].read_bytes() for i in range(count)]
    return np.array(encoded, dtype=np.object_).reshape(count, 1)


def for_network(network: NetworkSpec, tensor: TensorSpec, count: int, data_path: str,
                kind: str | None = None) -> ParityInputs:
    """The configured kind of inputs (`kind`, else `network.parity_inputs`), `count` samples."""
    kind = kind or network.parity_inputs
    if kind == "sample_images":
        return ParityInputs(sample_images(count))
    if kind == "mnist_test":
        mnist = data.load(data_path)
        return ParityInputs(data.to_model_input(mnist.x_test[:count]), mnist.y_test[:count])
    if kind == "imagenet_like":
        pre = network.require_preprocessing("image-like parity inputs")
        return ParityInputs(imagenet_like(tensor, count, list(pre.mean), list(pre.std)))
    raise ConfigError(f"network {network.name!r}: unknown parity_inputs {kind!r}")
