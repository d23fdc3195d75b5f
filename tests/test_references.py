"""The in-process references of a user's ONNX model, against ONNX Runtime (an independent implementation)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
from onnx import TensorProto, helper

from pipelines.config.tensors import TensorSpec
from pipelines.runners import reference


def label_encoder(path: Path) -> Path:
    """A string -> id lookup (ai.onnx.ml LabelEncoder), as skl2onnx writes for categorical columns."""
    node = helper.make_node(
        "LabelEncoder",
        ["word"],
        ["id"],
        domain="ai.onnx.ml",
        keys_strings=["cat", "dog", "émeu"],
        values_int64s=[0, 10, 20],
        default_int64=-1,
    )
    graph = helper.make_graph(
        [node, helper.make_node("Identity", ["word"], ["word_out"])],
        "lookup",
        [helper.make_tensor_value_info("word", TensorProto.STRING, ["N"])],
        [
            helper.make_tensor_value_info("id", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("word_out", TensorProto.STRING, ["N"]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_onnx_reference_looks_strings_up_as_onnx_runtime_does(tmp_path: Path) -> None:
    """BYTES arrive as bytes (as Triton hands them on); onnx.reference given bytes matched no key (the corpus trial:
    every id -1) where ONNX Runtime, given the same text, finds them."""
    path = label_encoder(tmp_path / "lookup.onnx")
    inputs = (TensorSpec("word", "BYTES", ()),)
    outputs = (TensorSpec("id", "INT64", ()), TensorSpec("word_out", "BYTES", ()))
    network = SimpleNamespace(source=path, inputs=inputs, outputs=outputs)
    assert reference.onnx_runtime_name(path) == "onnx.reference"
    words = np.array([b"dog", "émeu".encode(), b"cow", b"cat"], dtype=np.object_)
    ours = reference.LOADERS["onnx"](network)({"word": words})
    theirs = reference.onnxruntime_runner(path, inputs, outputs)({"word": words})
    assert ours["id"].tolist() == theirs["id"].tolist() == [10, 20, -1, 0]
    assert ours["word_out"].tolist() == theirs["word_out"].tolist() == list(words)  # bytes, as Triton returns


def test_a_keras_model_whose_outputs_are_a_dict_of_ops_is_named_by_its_keys() -> None:
    """`{"score": ops.max(...), "label": ops.argmax(...)}`: Keras's `output_names` names the ops (`max`, `argmax`), a
    call returns the dict's keys; the signature must name what a call returns (it was a KeyError on 'argmax')."""
    from pipelines.runners import keras_models

    keras_models.tensorflow()  # first, quietly: Keras imports it
    import keras
    from keras import ops

    features = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(3)(features)
    model = keras.Model(features, {"score": ops.max(hidden, axis=1), "label": ops.argmax(hidden, axis=1)})
    _, outputs = keras_models.keras_signature(model)
    called = model(np.ones((2, 4), np.float32))  # Keras's own answer: the dict a call returns
    assert {name for name, _, _ in outputs} == set(called) == {"score", "label"}
    for name, dtype, shape in outputs:
        assert np.asarray(called[name]).dtype.name == dtype and shape == (-1,), (name, dtype, shape)
