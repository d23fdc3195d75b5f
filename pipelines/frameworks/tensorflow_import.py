"""Import TensorFlow without its start-up chatter on stderr.

TensorFlow 2.21 logs through absl before absl is initialised, so `TF_CPP_MIN_LOG_LEVEL` does not
silence it: every command that loads a SavedModel or Keras printed four lines (absl's "log messages
before InitializeLog" warning, oneDNN's notice) above its own one-line error. The import runs with
the process's stderr passed through a filter (`pipelines.core.stderr_filter`): those known lines are dropped,
every other line goes on at once, whichever thread wrote it (parity imports TensorFlow in a thread while its main
thread reports).
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType

from pipelines.core import stderr_filter

NOISE = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
)
_LOCK = threading.Lock()


def tensorflow() -> ModuleType:
    """`import tensorflow` (Keras imports it too: call this first), with its known start-up lines dropped."""
    with _LOCK:
        if "tensorflow" in sys.modules:
            return sys.modules["tensorflow"]
        with stderr_filter.dropping(NOISE):
            import tensorflow as tf  # lazy: TensorFlow takes ~15 s to import; only Keras/SavedModel work needs it
        return tf
