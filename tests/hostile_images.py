"""Hostile encoded images, made by hand: what a sceptical operator (or an attacker) sends the ensemble.

Each is tiny on the wire; what it would cost to decode is in its header. Shared by the unit tests of
`pipelines.data.images` and the tests against the real Triton.
"""

from __future__ import annotations

import io
import struct
import zlib

from pipelines.data import parity_inputs


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height greyscale pixels and carries almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


def thin_png(width: int = 1, height: int = 20000) -> bytes:
    """A real, valid, tiny PNG of 1x20000 pixels: resizing its shorter side to 256 means 256x5,120,000 pixels."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (width, height), 128).save(out, format="PNG")
    return out.getvalue()


def truncated_jpeg() -> bytes:
    photo = next(p for p in parity_inputs.sample_photo_paths() if p.suffix == ".jpg").read_bytes()
    return photo[: len(photo) // 2]


# name -> (bytes, what the refusal says)
HOSTILE = {
    "thin_1x20000_png": (thin_png, "is 1x20000: over 10000x10000 and an aspect ratio over 20"),
    "thin_1x5000_png": (lambda: thin_png(1, 5000), "is 1x5000: an aspect ratio over 20"),
    "huge_14000x14000_header": (
        lambda: png_header_only(14000, 14000),
        "is 14000x14000: over 10000x10000 and over 40000000 pixels",
    ),
    "wide_12000x2000_header": (lambda: png_header_only(12000, 2000), "is 12000x2000: over 10000x10000"),
    "random_bytes": (lambda: bytes(range(256)) * 4, "not an image Pillow can decode"),
    "empty": (lambda: b"", "is empty"),
    "truncated_jpeg": (truncated_jpeg, "not an image Pillow can decode"),
}
