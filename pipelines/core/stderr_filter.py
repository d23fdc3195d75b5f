"""Known noise dropped from the process's stderr (fd 2, so also what C++ libraries write) while a block runs.

Used for framework imports that print start-up chatter above our own one-line errors
(`pipelines.frameworks.tensorflow_import`). The filter forwards every other line at once, whichever thread wrote it;
`settle()` puts the real stderr back before an exit that does not wait for the filtered block (`pipelines.core.cli`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

_LOCK = threading.Lock()
_FILTERING: list[tuple[int, threading.Thread]] = []  # (the real stderr, the forwarder) while a block runs


def _forward(source: int, target: int, noise: tuple[bytes, ...]) -> None:
    """Copy lines from `source` to `target` until end of file, dropping lines that contain any `noise`."""
    pending = b""
    while chunk := os.read(source, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        kept = [line + b"\n" for line in lines if not any(n in line for n in noise)]
        if kept:
            os.write(target, b"".join(kept))
    if pending and not any(n in pending for n in noise):
        os.write(target, pending)
    os.close(source)


@contextlib.contextmanager
def dropping(noise: tuple[str, ...]) -> Iterator[None]:
    """Run the block with stderr's lines that contain any of `noise` dropped; one block at a time."""
    with _LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        read, write = os.pipe()
        encoded = tuple(n.encode() for n in noise)
        forwarder = threading.Thread(target=_forward, args=(read, saved, encoded), name="stderr-filter", daemon=True)
        forwarder.start()
        os.dup2(write, 2)
        os.close(write)
        _FILTERING.append((saved, forwarder))
        try:
            yield
        finally:
            settle()
            os.close(saved)


def settle() -> None:
    """The real stderr back on fd 2, and every line written so far passed on: before an exit that does not wait
    for the filtering thread, or at the end of the block."""
    while _FILTERING:
        saved, forwarder = _FILTERING.pop()
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last writer gone: the forwarder reads what is left, and stops
        forwarder.join(timeout=5)
