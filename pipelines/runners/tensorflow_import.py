"""Import TensorFlow without its start-up chatter on stderr.

TensorFlow 2.21 logs through absl before absl is initialised, so `TF_CPP_MIN_LOG_LEVEL` does not
silence it: every command that loads a SavedModel or Keras printed four lines (absl's "log messages
before InitializeLog" warning, oneDNN's notice) above its own one-line error. The import runs with
the process's stderr passed through a filter: those known lines are dropped, every other line goes
on at once, whichever thread wrote it (parity imports TensorFlow in a thread while its main thread
reports).
"""

from __future__ import annotations

import os
import sys
import threading
from types import ModuleType

NOISE = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
)
_LOCK = threading.Lock()
_FILTERING: list[tuple[int, threading.Thread]] = []  # (the real stderr, the forwarder) while an import runs


def _forward(source: int, target: int) -> None:
    """Copy lines from `source` to `target` until end of file, dropping the known noise."""
    pending = b""
    while chunk := os.read(source, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        kept = [line + b"\n" for line in lines if not any(n.encode() in line for n in NOISE)]
        if kept:
            os.write(target, b"".join(kept))
    if pending and not any(n.encode() in pending for n in NOISE):
        os.write(target, pending)
    os.close(source)


def tensorflow() -> ModuleType:
    """`import tensorflow` (Keras imports it too: call this first), with its known start-up lines dropped."""
    with _LOCK:
        if "tensorflow" in sys.modules:
            return sys.modules["tensorflow"]
        sys.stderr.flush()
        saved = os.dup(2)
        read, write = os.pipe()
        forwarder = threading.Thread(target=_forward, args=(read, saved), name="stderr-filter", daemon=True)
        forwarder.start()
        os.dup2(write, 2)
        os.close(write)
        _FILTERING.append((saved, forwarder))
        try:
            import tensorflow as tf
        finally:
            settle()
            os.close(saved)
        return tf


def settle() -> None:
    """The real stderr back on fd 2, and every line written so far passed on: before an exit that does not wait
    for the importing thread (`pipelines.core.cli`), or at the end of the import."""
    while _FILTERING:
        saved, forwarder = _FILTERING.pop()
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last writer gone: the forwarder reads what is left, and stops
        forwarder.join(timeout=5)
