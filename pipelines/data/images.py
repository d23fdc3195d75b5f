"""Images to model inputs, the way torchvision's ImageNet evaluation transform does it, with Pillow.

This one file is used on both sides of the ensemble check: the client-side reference imports it,
and repository assembly copies it next to the ensemble's Python-backend pre-processing model. It
needs only numpy and Pillow (torchvision.io cannot decode images on CPU torch builds).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

# the request parameter naming the client (its address): the front sets the header, Triton forwards it to the
# pre-processing step as a parameter (--http/grpc-header-forward-pattern), the step keeps a pixel budget per value
CLIENT_PARAMETER = "x-t2t-client"


class ImageDecodeError(ValueError):
    """The bytes are not an image Pillow can decode within the limits: the sender's error, not the server's."""


class ImageBudgetError(ImageDecodeError):
    """The client sent more pixels than its budget over time allows: it may send again later."""


class PixelBudget:
    """Pixels each client may have decoded over time: a token bucket per client (`rate` a second, `burst` at
    once), charged from the images' headers before any is decoded. The least recently seen clients are forgotten
    past `clients`, so that a flood of addresses cannot grow it without bound."""

    def __init__(self, rate: float, burst: int, clients: int = 10_000):
        self.rate, self.burst, self.clients = rate, burst, clients
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (pixels left, when), oldest first

    def charge(self, client: str, pixels: int, now: float) -> None:
        left, then = self._buckets.pop(client, (float(self.burst), now))
        left = min(float(self.burst), left + (now - then) * self.rate)
        if pixels > left:
            self._buckets[client] = (left, now)
            raise ImageBudgetError(
                f"client {client} is over its pixel budget (image_limits.client_pixels_per_s): this request's "
                f"{pixels * 1e-6:g} MP fit in {(pixels - left) / self.rate:.1f} s; send it again then"
            )
        self._buckets[client] = (left - pixels, now)
        while len(self._buckets) > self.clients:
            del self._buckets[next(iter(self._buckets))]


def decode(data: bytes, limits: Mapping[str, Any] | None = None) -> Any:
    """Encoded JPEG/PNG/... bytes -> an RGB PIL image (greyscale and palette images are converted).

    `limits` (max_bytes, max_width, max_height, max_pixels, max_aspect; `image_limits` in
    conf/common.yaml) are checked on the encoded size and on the header's dimensions, before any
    pixel is decoded. Pillow is imported here, not at the top: the post-processing step uses only
    softmax/top_k and so loads in a Triton image without Pillow.
    """
    return _decoded(_opened(data, limits))


def _opened(data: bytes, limits: Mapping[str, Any] | None) -> Any:
    """The image with only its header read, checked against the limits."""
    from PIL import (  # lazy: the post-processing step runs in a Triton image without Pillow
        Image,
        UnidentifiedImageError,
    )

    if not data:
        raise ImageDecodeError("is empty")
    if limits and len(data) > int(limits["max_bytes"]):
        raise ImageDecodeError(f"is {len(data)} bytes, over the limit of {int(limits['max_bytes'])}")
    try:
        with _pillow_limit(limits):
            image = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError as exc:  # Pillow's own limit (no limits given), met at the header
        raise ImageDecodeError(f"is too large to decode ({exc})") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        detail = "unknown format" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise ImageDecodeError(f"is not an image Pillow can decode ({detail})") from exc
    if limits:
        _check_size(image.size, limits)
    return image


def _decoded(image: Any) -> Any:
    try:
        image.load()
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError(f"is not an image Pillow can decode ({exc})") from exc
    return image.convert("RGB")


def decode_request(
    items: Sequence[bytes], limits: Mapping[str, Any] | None = None, charge: Callable[[int], None] | None = None
) -> list[Any]:
    """A request's images, every header checked before any pixel is decoded: each within the limits, and all of
    them together within `max_request_pixels`, so that one request cannot hold a decoder for long; `charge` then
    takes their pixels from the client's budget (ImageBudgetError). An ImageDecodeError names the image
    (`image N ...`)."""
    opened, total = [], 0
    for index, data in enumerate(items):
        try:
            opened.append(_opened(bytes(data), limits))
        except ImageDecodeError as exc:
            raise ImageDecodeError(f"image {index} {exc}") from exc
        total += opened[-1].size[0] * opened[-1].size[1]
    budget = int(limits["max_request_pixels"]) if limits and "max_request_pixels" in limits else None
    if budget is not None and total > budget:
        raise ImageDecodeError(
            f"images hold {total} pixels together, over the limit of {budget} per request "
            "(max_request_pixels): send them in several requests"
        )
    if charge is not None:
        charge(total)
    decoded = []
    for index, image in enumerate(opened):
        try:
            decoded.append(_decoded(image))
        except ImageDecodeError as exc:
            raise ImageDecodeError(f"image {index} {exc}") from exc
    return decoded


@contextlib.contextmanager
def _pillow_limit(limits: Mapping[str, Any] | None) -> Iterator[None]:
    """With our own limits, Pillow's decompression-bomb check (met while it reads the header) steps aside: ours
    come next, from the same header, and name the configured limit rather than Pillow's."""
    from PIL import Image  # lazy: the post-processing step runs in a Triton image without Pillow

    if not limits:
        yield
        return
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _check_size(size: tuple[int, int], limits: Mapping[str, Any]) -> None:
    width, height = size
    problems = []
    if width > int(limits["max_width"]) or height > int(limits["max_height"]):
        problems.append(f"over {int(limits['max_width'])}x{int(limits['max_height'])}")
    if width * height > int(limits["max_pixels"]):
        problems.append(f"over {int(limits['max_pixels'])} pixels")
    if min(width, height) < 1 or max(width, height) / min(width, height) > float(limits["max_aspect"]):
        problems.append(f"an aspect ratio over {float(limits['max_aspect']):g}")
    if problems:
        raise ImageDecodeError(f"is {width}x{height}: {' and '.join(problems)}")


def imagenet_tensor(image: Any, resize: int, crop: int, mean: list[float], std: list[float]) -> np.ndarray:
    """Shorter side to `resize` (bilinear), centre crop `crop`, scale to [0, 1], normalise: float32 CHW."""
    from PIL import Image  # lazy: the post-processing step runs in a Triton image without Pillow

    width, height = image.size  # sizes and offsets rounded as torchvision's Resize and CenterCrop do
    size = (resize, int(resize * height / width)) if width <= height else (int(resize * width / height), resize)
    image = image.resize(size, Image.BILINEAR)
    left, top = round((size[0] - crop) / 2.0), round((size[1] - crop) / 2.0)
    image = image.crop((left, top, left + crop, top + crop))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    normalised = (pixels - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1), dtype=np.float32)


def preprocess(data: bytes, settings: Mapping[str, Any]) -> np.ndarray:
    """Encoded bytes -> model input, with a network's `preprocessing` settings (resize, crop, mean, std)
    and, where given, the image `limits`."""
    return tensor(decode(bytes(data), settings.get("limits")), settings)


def preprocess_request(
    items: Sequence[bytes], settings: Mapping[str, Any], charge: Callable[[int], None] | None = None
) -> np.ndarray:
    """A request's encoded images -> its batch of model inputs (`decode_request`: the request's pixel budget, and
    the client's where `charge` takes it)."""
    return np.stack([tensor(image, settings) for image in decode_request(items, settings.get("limits"), charge)])


def tensor(image: Any, settings: Mapping[str, Any]) -> np.ndarray:
    return imagenet_tensor(
        image, int(settings["resize"]), int(settings["crop"]), list(settings["mean"]), list(settings["std"])
    )


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def top_k(probabilities: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, indices) of the k largest values per row, best first; ties keep the lower index."""
    order = np.argsort(-probabilities, axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(probabilities, order, axis=-1), order
