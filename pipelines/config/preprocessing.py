"""Image pre-processing settings: the ImageNet evaluation transform a network declares (`Preprocessing`) and
what image decoding accepts before it (`ImageLimits`, conf/common.yaml's `image_limits`).

The client, the ensemble's pre-processing step and the parity inputs of an images sample all run
`pipelines/data/images.py` with these values, so they are typed and checked once, here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipelines.config.spec_yaml import validated
from pipelines.core.errors import ConfigError


@dataclass(frozen=True)
class Preprocessing:
    """torchvision's ImageNet evaluation transform: shorter side to `resize`, centre crop, normalise."""

    resize: int
    crop: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def settings(self) -> dict[str, Any]:
        """Plain values for `images.preprocess`, on the client and in the ensemble's step (as JSON)."""
        return {"resize": self.resize, "crop": self.crop, "mean": list(self.mean), "std": list(self.std)}


def preprocessing_from(cfg: Mapping[str, Any]) -> Preprocessing:
    """A network's `preprocessing:` section, typed."""
    return Preprocessing(
        int(cfg["resize"]),
        int(cfg["crop"]),
        tuple(float(m) for m in cfg["mean"]),
        tuple(float(s) for s in cfg["std"]),
    )


@dataclass(frozen=True)
class ImageLimits:
    """What image decoding accepts (`image_limits` in conf/common.yaml), checked from the header before decoding.

    A tiny file can declare a huge or extremely elongated image (a 138-byte PNG of 1x20000 pixels
    resizes to 256x5,120,000): every limit bounds the work one request can cause.
    """

    max_bytes: int  # encoded size
    max_width: int
    max_height: int
    max_pixels: int  # width * height
    max_aspect: float  # longer side / shorter side
    max_request_pixels: int  # all of one request's images together: how long one request may hold a decoder
    client_pixels_per_s: int  # one client's images over time (max_request_pixels at once): what it may hold

    def settings(self) -> dict[str, Any]:
        """Plain values for `images.decode`, on the client and in the ensemble's step (as JSON)."""
        return dict(self.__dict__)


def image_limits(cfg: Mapping[str, Any]) -> ImageLimits:
    """Build and validate the limits (`image_limits` in conf/common.yaml): every one must be positive."""

    def build(c: dict[str, Any]) -> ImageLimits:
        limits = ImageLimits(
            int(c["max_bytes"]),
            int(c["max_width"]),
            int(c["max_height"]),
            int(c["max_pixels"]),
            float(c["max_aspect"]),
            int(c["max_request_pixels"]),
            int(c["client_pixels_per_s"]),
        )
        bad = [f"{k}={v}" for k, v in limits.__dict__.items() if not v > 0]
        if bad or limits.max_aspect < 1:
            raise ConfigError(
                f"image_limits must be positive (max_aspect >= 1), got {', '.join(bad) or limits.max_aspect}"
            )
        return limits

    return validated("image_limits", build, cfg)
