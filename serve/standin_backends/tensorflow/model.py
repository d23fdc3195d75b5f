"""Stand-in for Triton's tensorflow backend: serves `platform: "tensorflow_savedmodel"` models with TensorFlow.

Placed in the embedded server's backend directory as `tensorflow/model.py`. Like Triton's
TensorFlow backend it loads the SavedModel in the version directory (`default_model_filename`,
default `model.savedmodel`) with the MetaGraph tag `TF_GRAPH_TAG` (default `serve`) and serves the
signature `TF_SIGNATURE_DEF` (default `serving_default`; when absent, the first other signature,
with a warning, as the real backend does), whose input and output keys are the config's tensor
names. `TF_NUM_INTRA_THREADS` and `TF_NUM_INTER_THREADS` (0: TensorFlow's default) size its
thread pools. A GPU instance runs on its GPU where this TensorFlow sees one; else it is refused.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # standin_base.py and standins.py sit beside us
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import triton_python_backend_utils as pb_utils
from standin_base import StandIn, StandInError, config_type, first_line


def _import_tensorflow():
    """TensorFlow imports `ssl` first. The stub's embedded interpreter cannot load this host's `_ssl`
    extension (undefined symbol: an ABI mismatch), and TensorFlow then prints that traceback to
    stdout, into every Triton log, and goes on without ssl, which loading a SavedModel never needs.
    That one message is dropped; anything else TensorFlow prints is kept.

    Keras is kept out: Triton's TensorFlow backend is C++ and runs a SavedModel without it, as this must
    (a SavedModel that needs Keras to load would fail there). TensorFlow imports Keras eagerly when it can,
    which doubles the import (4.4 s -> 8.6 s, scikit-learn included, in every TensorFlow model's stub)."""
    import contextlib
    import io

    sys.modules.setdefault("keras", None)  # TensorFlow's own `try: import keras...` then finds none
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            import tensorflow
    finally:  # what TensorFlow printed, but for the ssl traceback and its warning (all of it if the import failed)
        text = printed.getvalue()
        marker = "Warning: Failed to load ssl module. Continuing without ssl support."
        if marker in text:
            before, after = text.split(marker, 1)
            text = before.split("Traceback (most recent call last):", 1)[0] + after.lstrip("\n")
        sys.stdout.write(text)
    return tensorflow


tf = None  # imported by the first instance whose config this stand-in accepts: a refused one fails in a second


def _tensorflow():
    global tf  # noqa: PLW0603 - imported on first load
    if tf is None:
        tf = _import_tensorflow()
    return tf


INTERNAL_SIGNATURES = ("__saved_model_init_op", "__saved_model_train_op")


class TritonPythonModel(StandIn):
    backend = "tensorflow"

    def load(self, path):
        _tensorflow()
        for key, setter in (
            ("TF_NUM_INTRA_THREADS", tf.config.threading.set_intra_op_parallelism_threads),
            ("TF_NUM_INTER_THREADS", tf.config.threading.set_inter_op_parallelism_threads),
        ):
            threads = self.int_parameter(key, 0)
            if threads < 0:
                raise StandInError(f"model {self.config.name!r}: {key} must be >= 0, got {threads}")
            setter(threads)  # this stub process runs one instance, so its TensorFlow is ours alone
        tag = self.parameter("TF_GRAPH_TAG", "serve")
        name = self.parameter("TF_SIGNATURE_DEF", "serving_default")
        try:
            loaded = tf.saved_model.load(path, tags=[tag])
        except Exception as exc:  # TensorFlow raises several unrelated types for unreadable SavedModels
            raise StandInError(
                f"model {self.config.name!r}: TensorFlow cannot load {path} with tag {tag!r}: {first_line(exc)}"
            ) from exc
        if name not in loaded.signatures:
            others = [key for key in loaded.signatures if key not in INTERNAL_SIGNATURES]
            if not others:
                raise StandInError(f"model {self.config.name!r}: {path} has no signature to serve")
            pb_utils.Logger.log_warn(f"{self.config.name}: no signature {name!r}; serving {others[0]!r} instead")
            name = others[0]
        self.loaded = loaded  # keeps the signature's variables alive
        self.signature = loaded.signatures[name]
        gpu = self.args["model_instance_kind"] == "GPU"
        self.device = f"/GPU:{self.device_id}" if gpu else "/CPU:0"

    def gpu_problem(self):
        if not _tensorflow().config.list_physical_devices("GPU"):
            return f"TensorFlow {tf.__version__} here sees no GPU"
        return None

    def artifact_io(self):
        def triton_type(dtype):
            return config_type(np.object_ if dtype == tf.string else dtype.as_numpy_dtype)

        def tensors(specs):
            return {
                key: (
                    triton_type(s.dtype),
                    None if s.shape.rank is None else [-1 if d is None else int(d) for d in s.shape],
                )
                for key, s in specs.items()
            }

        return {
            "inputs": tensors(self.signature.structured_input_signature[1]),
            "outputs": tensors(self.signature.structured_outputs),
        }

    def run(self, feeds):
        with tf.device(self.device):
            outputs = self.signature(**{name: tf.constant(array) for name, array in feeds.items()})
        return {name: outputs[name].numpy() for name, _ in self.outputs}
