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
from pipelines.frameworks.tensorflow_import import tensorflow
tensorflow()
import keras, torch
from pipelines.artifacts import reproducible, writing
from pipelines.config.tensors import TensorSpec

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


def test_renumbered_names_keep_the_graphs_inputs_and_outputs_and_clash_with_none() -> None:
    """tf2onnx-style names renumbered around an input that is itself named like one (`x__1`): every name stays
    unique, ONNX's checker accepts the graph, and it computes what it did."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    from pipelines.artifacts import reproducible

    nodes = [
        helper.make_node("Add", ["x__1", "const_b__7"], ["x__5"], name="Add__9"),  # would be renumbered x__1
        helper.make_node("Mul", ["x__5", "const_a__3"], ["y"], name="Mul__2"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x__1", onnx.TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])],
        [
            numpy_helper.from_array(np.array([2.0, 3.0], np.float32), "const_a__3"),
            numpy_helper.from_array(np.array([1.0, 1.0], np.float32), "const_b__7"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.array([1.0, 2.0], np.float32)
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x__1": x})
    reproducible.onnx_names(model)
    onnx.checker.check_model(model, full_check=True)
    produced = [o for n in model.graph.node for o in n.output] + [i.name for i in model.graph.initializer]
    assert len(produced) == len(set(produced)) and "x__1" not in produced
    assert model.graph.node[0].input[0] == "x__1" and model.graph.output[0].name == "y"
    assert model.graph.node[0].output[0] == "x__2"  # x__1 is the input's: skipped
    assert [i.name for i in model.graph.initializer] == ["const__0", "const__3"]  # numbered by first use
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x__1": x})
    np.testing.assert_array_equal(before[0], after[0])
