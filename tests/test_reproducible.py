"""Byte-reproducible exports (pipelines/artifacts/reproducible.py): the same model written in two processes is the
same bytes (a `.keras` file, a Keras SavedModel export, tf2onnx's ONNX file, a torch state dict), and each still loads
and computes what the model computes. Without the fixes, every one of these files differs between the two runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

WRITER = """
import sys
from pathlib import Path
import numpy as np
from pipelines.runners.tensorflow_import import tensorflow
tensorflow()
import keras, torch
from pipelines.artifacts import reproducible, writing
from pipelines.config.spec import TensorSpec

out = Path(sys.argv[1])
keras.utils.set_random_seed(7)
inputs = keras.Input((8, 8, 1), name="image")
x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
x = keras.layers.Dropout(0.3)(keras.layers.Flatten()(x))  # a random layer: its seed state is drawn at load
model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="scores")(x))
model.save(out / "model.keras")
reproducible.keras_archive(out / "model.keras")
loaded = keras.saving.load_model(out / "model.keras")
sample = np.linspace(0, 1, 2 * 64, dtype=np.float32).reshape(2, 8, 8, 1)
np.save(out / "keras_says.npy", loaded.predict(sample, verbose=0))
spec_in, spec_out = TensorSpec("image", "FP32", (8, 8, 1)), TensorSpec("scores", "FP32", (3,))
writing.keras_savedmodel(loaded, [spec_in], [spec_out], "serving_default", out / "model.savedmodel")
writing.savedmodel_onnx(out / "model.savedmodel", "serving_default", 17, out / "model.onnx")
torch.manual_seed(7)
reproducible.torch_state_dict(torch.nn.Linear(4, 2).state_dict(), out / "state_dict.pt")
"""


def write_twice(tmp_path: Path) -> list[Path]:
    outs = []
    for run in ("first", "second"):
        out = tmp_path / run
        out.mkdir()
        proc = subprocess.run(
            [sys.executable, "-c", WRITER, str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs.append(out)
    return outs


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_twice(tmp_path_factory.mktemp("reproducible"))


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_two_processes_write_the_same_bytes(written: list[Path]) -> None:
    first, second = (files(d) for d in written)
    assert sorted(first) == sorted(second)
    differ = [name for name in first if first[name] != second[name]]
    assert not differ, differ
    assert {"model.keras", "model.onnx", "state_dict.pt", "model.savedmodel/saved_model.pb"} <= set(first)


def test_the_rewritten_files_still_load_and_compute_the_same(written: list[Path]) -> None:
    import numpy as np
    import onnxruntime as ort
    import torch

    out = written[0]
    keras_says = np.load(out / "keras_says.npy")
    sample = np.linspace(0, 1, 2 * 64, dtype=np.float32).reshape(2, 8, 8, 1)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (onnx_says,) = session.run(["scores"], {"image": sample})
    np.testing.assert_allclose(onnx_says, keras_says, atol=1e-6)
    state = torch.load(out / "state_dict.pt", weights_only=True)
    assert set(state) == {"weight", "bias"} and state["weight"].shape == (2, 4)
