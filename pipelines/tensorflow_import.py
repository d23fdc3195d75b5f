"""Import TensorFlow without its start-up chatter on stderr.

TensorFlow 2.21 logs through absl before absl is initialised, so `TF_CPP_MIN_LOG_LEVEL` does not
silence it: every command that loads a SavedModel or Keras printed four lines (absl's "log messages
before InitializeLog" warning, oneDNN's notice) above its own one-line error. The import runs with
the process's stderr captured; those known lines are dropped, anything else is passed on.
"""

from __future__ import annotations

import os
import sys
import tempfile
from types import ModuleType

NOISE = ("All log messages before absl::InitializeLog() is called are written to STDERR",
         "oneDNN custom operations are on")


def tensorflow() -> ModuleType:
    """`import tensorflow` (Keras imports it too: call this first), with its known start-up lines dropped."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [l for l in captured.read().decode(errors="replace").splitlines(keepends=True)
                    if l.strip() and not any(n in l for n in NOISE)]
            sys.stderr.write("".join(kept))
    return tf
