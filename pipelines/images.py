"""Images to model inputs, the way torchvision's ImageNet evaluation transform does it, with Pillow.

This one file is used on both sides of the ensemble check: the client-side reference imports it,
and repository assembly copies it next to the ensemble's Python-backend pre-processing model. It
needs only numpy and Pillow (torchvision.io cannot decode images on CPU torch builds).
"""

from __future__ import annotations

import io
from typing import Any, Mapping

import numpy as np


class ImageDecodeError(ValueError):
    """The bytes are not an image Pillow can decode."""


def decode(data: bytes) -> Any:
    """Encoded JPEG/PNG/... bytes -> an RGB PIL image (greyscale and palette images are converted).

    Pillow is imported here, not at the top: the post-processing step uses only softmax/top_k and
    so loads in a Triton image without Pillow.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        detail = "unknown format" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise ImageDecodeError(f"not an image Pillow can decode ({detail})") from exc
    return image.convert("RGB")


def imagenet_tensor(image: Any, resize: int, crop: int, mean: list[float], std: list[float]) -> np.ndarray:
    """Shorter side to `resize` (bilinear), centre crop `crop`, scale to [0, 1], normalise: float32 CHW."""
    from PIL import Image

    width, height = image.size  # sizes and offsets rounded as torchvision's Resize and CenterCrop do
    if width <= height:
        size = (resize, int(resize * height / width))
    else:
        size = (int(resize * width / height), resize)
    image = image.resize(size, Image.BILINEAR)
    left, top = int(round((size[0] - crop) / 2.0)), int(round((size[1] - crop) / 2.0))
    image = image.crop((left, top, left + crop, top + crop))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    normalised = (pixels - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1), dtype=np.float32)


def preprocess(data: bytes, settings: Mapping[str, Any]) -> np.ndarray:
    """Encoded bytes -> model input, with a network's `preprocessing` settings (resize, crop, mean, std)."""
    return imagenet_tensor(decode(bytes(data)), int(settings["resize"]), int(settings["crop"]),
                           list(settings["mean"]), list(settings["std"]))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def top_k(probabilities: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, indices) of the k largest values per row, best first; ties keep the lower index."""
    order = np.argsort(-probabilities, axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(probabilities, order, axis=-1), order
