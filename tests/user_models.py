"""Models of a user's own, built here (no downloads): one of each kind `python -m export.add` accepts.

`python tests/user_models.py DIR [--perturb] [--add]` writes them into DIR; with --perturb, the same
models with every weight scaled by 1.01: served against such a source, parity must fail; with --add,
each model is added as a user adds it (`export.add`). Each entry of MODELS is the `export.add` command
line for one of them.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# --perturb: a small change of every weight, as an export bug that writes slightly other weights (a linear model
# scaled by 1.001 would stay within the FP32 preset's rtol of 1e-3)
SCALE = 1.01
# name -> export.add arguments (paths relative to the folder the models were written to)
MODELS = {
    "twoin": ["source={d}/two_inputs.keras", "sample={d}/two_inputs.npz"],  # labels: accuracy gated
    # an image classifier (channels last) with a named signature; its sample a folder of photos, pre-processed
    "sigmodel": ["source={d}/signature.savedmodel", "signature=classify", "sample={d}/photos"],
    "text": ["source={d}/text.pt2", "output_names=[logits]", "value_ranges={{tokens: [0, 50]}}"],  # generated
    "scripted": ["source={d}/scripted.pt", "sample={d}/scripted.npz"],  # labels: accuracy gated
    "argmax": ["source={d}/argmax.onnx"],
    "scores": ["source={d}/scores.onnx"],  # per-sample scalars in and out (served dims [1], reshaped to [])
    "strings": ["source={d}/strings.keras", "sample={d}/strings.npz"],  # a Keras string input: BYTES
}
# scripted's classes rolled by one: a "retrained" model that gets every label of its sample wrong (the CI test's
# later change that breaks an added model; TorchScript's export takes 3 s, Keras's 14)
WORSE = "scripted_worse.pt"
PHOTOS = ("chelsea.png", "coffee.png", "rocket.jpg", "camera.png")  # scikit-image's (camera: greyscale)


def keras_models(folder: Path, scale: float) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    features, extra = keras.Input((8,), name="features"), keras.Input((4,), name="extra")
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()([features, extra]))
    outputs = {
        "probs": keras.layers.Dense(3, activation="softmax", name="probs")(hidden),
        "score": keras.layers.Dense(1, name="score")(hidden),
    }
    model = keras.Model({"features": features, "extra": extra}, outputs)
    weights = model.get_weights()
    model.set_weights([w * scale for w in weights])
    model.save(folder / "two_inputs.keras")
    rng = np.random.default_rng(1)
    sample = {
        "features": rng.standard_normal((24, 8)).astype(np.float32),
        "extra": rng.standard_normal((24, 4)).astype(np.float32),
    }
    labels = np.argmax(np.asarray(model(sample)["probs"]), axis=1)  # the model's own classes: accuracy 1.0
    np.savez(folder / "two_inputs.npz", **sample, labels=labels)

    # a string per sample (StringLookup, one-hot) beside numbers: served as BYTES [N] (dims [1], reshaped)
    city, numbers = keras.Input(shape=(), dtype="string", name="city"), keras.Input((3,), name="numbers")
    lookup = keras.layers.StringLookup(vocabulary=["paris", "rome", "oslo", "lima"], output_mode="one_hot")(city)
    scaled = keras.layers.Normalization(mean=[1.0, 2.0, 3.0], variance=[4.0, 1.0, 0.25])(numbers)
    dense = keras.layers.Dense(3, activation="softmax", name="probs")
    strings = keras.Model(
        {"city": city, "numbers": numbers}, {"probs": dense(keras.layers.Concatenate()([lookup, scaled]))}
    )
    dense.set_weights([w * scale for w in dense.get_weights()])
    strings.save(folder / "strings.keras")
    rng = np.random.default_rng(3)
    cities = np.array(["paris", "rome", "oslo", "lima", "tokyo"])[rng.integers(0, 5, 16)]  # tokyo: out of vocabulary
    np.savez(folder / "strings.npz", city=cities, numbers=rng.standard_normal((16, 3)).astype(np.float32))

    pixels = keras.Input((32, 32, 3), name="pixels")
    net = keras.Sequential(
        [
            pixels,
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(5),
        ]
    )
    net.set_weights([w * scale for w in net.get_weights()])
    archive = keras.export.ExportArchive()
    archive.track(net)
    archive.add_endpoint(
        name="classify",
        fn=lambda x: {"logits": net(x, training=False)},
        input_signature=[tf.TensorSpec((None, 32, 32, 3), tf.float32, name="pixels")],
    )
    archive.write_out(str(folder / "signature.savedmodel"), verbose=False)


def torch_models(folder: Path, scale: float) -> None:
    import torch

    torch.manual_seed(0)

    class Text(torch.nn.Module):  # token ids -> embedding -> mean over the sequence -> logits
        def __init__(self) -> None:
            super().__init__()
            self.embedding = torch.nn.Embedding(50, 16)
            self.head = torch.nn.Linear(16, 4)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.head(self.embedding(tokens).mean(dim=1))

    def scaled(module: torch.nn.Module) -> torch.nn.Module:
        with torch.no_grad():
            for p in module.parameters():
                p.mul_(scale)
        return module.eval()

    text = scaled(Text())
    batch, length = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("length", min=2, max=256)
    program = torch.export.export(
        text, (torch.randint(0, 50, (2, 7)),), dynamic_shapes={"tokens": {0: batch, 1: length}}
    )
    torch.export.save(program, folder / "text.pt2")

    mlp = scaled(torch.nn.Sequential(torch.nn.Linear(10, 12), torch.nn.ReLU(), torch.nn.Linear(12, 3)))
    torch.jit.save(torch.jit.trace(mlp, (torch.zeros(2, 10),)), folder / "scripted.pt")
    rng = np.random.default_rng(2)
    inputs = rng.standard_normal((12, 10)).astype(np.float32)
    with torch.no_grad():
        labels = mlp(torch.from_numpy(inputs)).argmax(dim=1).numpy()  # the model's own classes: accuracy 1.0
        np.savez(folder / "scripted.npz", input=inputs, labels=labels)
        last = mlp[2]
        last.weight.copy_(last.weight.roll(1, dims=0))  # class k scored as k + 1: accuracy 0.0
        last.bias.copy_(last.bias.roll(1))
    torch.jit.save(torch.jit.trace(mlp, (torch.zeros(2, 10),)), folder / WORSE)


def onnx_model(folder: Path, scale: float) -> None:
    """No batch axis: X [4, 6] -> Y = X W [4, 3], the INT64 argmax of each row [4] and whether its best score is
    positive (BOOL [4]); and a string tag per row passed through (BYTES [4] in, BYTES [4] out)."""
    import onnx
    from onnx import TensorProto, helper

    weights = np.random.default_rng(3).standard_normal((6, 3)).astype(np.float32) * np.float32(scale)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["X", "W"], ["Y"]),
            helper.make_node("ArgMax", ["Y"], ["index"], axis=1, keepdims=0),
            helper.make_node("ReduceMax", ["Y"], ["best"], axes=[1], keepdims=0),
            helper.make_node("Greater", ["best", "zero"], ["positive"]),
            helper.make_node("Identity", ["tag"], ["tag_out"]),
        ],
        "argmax",
        [
            helper.make_tensor_value_info("X", TensorProto.FLOAT, [4, 6]),
            helper.make_tensor_value_info("tag", TensorProto.STRING, [4]),
        ],
        [
            helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4, 3]),
            helper.make_tensor_value_info("index", TensorProto.INT64, [4]),
            helper.make_tensor_value_info("positive", TensorProto.BOOL, [4]),
            helper.make_tensor_value_info("tag_out", TensorProto.STRING, [4]),
        ],
        [onnx.numpy_helper.from_array(weights, "W"), onnx.numpy_helper.from_array(np.array(0, np.float32), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, folder / "argmax.onnx")


def scores_model(folder: Path, scale: float) -> None:
    """Batched, with per-sample scalars, as a regression head or an argmax layer has them: X [N, 6] and a shift
    [N] -> Y = X W + shift [N, 3], its argmax `label` (INT64 [N]) and its maximum `score` (FP32 [N])."""
    import onnx
    from onnx import TensorProto, helper

    weights = np.random.default_rng(5).standard_normal((6, 3)).astype(np.float32) * np.float32(scale)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["X", "W"], ["XW"]),
            helper.make_node("Unsqueeze", ["shift", "one"], ["column"]),
            helper.make_node("Add", ["XW", "column"], ["Y"]),
            helper.make_node("ArgMax", ["Y"], ["label"], axis=1, keepdims=0),
            helper.make_node("ReduceMax", ["Y"], ["score"], axes=[1], keepdims=0),
        ],
        "scores",
        [
            helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 6]),
            helper.make_tensor_value_info("shift", TensorProto.FLOAT, ["N"]),
        ],
        [
            helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
        ],
        [onnx.numpy_helper.from_array(weights, "W"), onnx.numpy_helper.from_array(np.array([1], np.int64), "one")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, folder / "scores.onnx")


def photos(folder: Path) -> None:
    import skimage

    (folder / "photos").mkdir(exist_ok=True)
    for name in PHOTOS:
        shutil.copy2(Path(skimage.__file__).parent / "data" / name, folder / "photos" / name)


def build(folder: Path, perturb: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    photos(folder)
    scale = SCALE if perturb else 1.0
    keras_models(folder, scale)
    torch_models(folder, scale)
    onnx_model(folder, scale)
    scores_model(folder, scale)


def add_all(folder: Path) -> list[str]:
    """`python -m export.add` for each model, in this process (the imports shared): the served models' names."""
    from export.add import run
    from pipelines.core.cli import compose

    served: list[str] = []
    for name, arguments in MODELS.items():
        result = run(compose("add", [f"name={name}", *(a.format(d=folder) for a in arguments)]))
        served += result.models
    return served


if __name__ == "__main__":
    # python tests/user_models.py DIR [--perturb] [--add]; from the project root (whose conf/ --add writes)
    sys.path.insert(0, str(Path.cwd()))
    target = Path(sys.argv[1])
    build(target, "--perturb" in sys.argv[2:])
    if "--add" in sys.argv[2:]:
        add_all(target)
