"""The trained Keras model, loaded where export and the parity reference need it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.core.errors import ArtifactError
from pipelines.frameworks.tensorflow_import import tensorflow


def load_keras(path: str | Path) -> Any:
    if not Path(path).is_file():
        raise ArtifactError(f"{path} not found: run the train stage first (`dvc repro train`)")
    tensorflow()  # first, quietly: Keras imports it
    import keras  # lazy: Keras imports TensorFlow (~15 s); Keras work only

    return keras.saving.load_model(path)


def output_names(model: Any) -> list[str]:
    """The names of a model's outputs, in the order of `model.outputs`: a functional model's dict keys where its
    outputs are a dict (a call returns that dict; `output_names` would name the ops that made them, e.g. `argmax`),
    else its `output_names`, else the layers that produce them."""
    structure = getattr(model, "output", None) if getattr(model, "_is_graph_network", True) else None
    if isinstance(structure, dict):
        keys = {id(tensor): str(key) for key, tensor in structure.items()}
        if all(id(t) in keys for t in model.outputs):
            return [keys[id(t)] for t in model.outputs]
    names = getattr(model, "output_names", None)
    if names:
        return [str(n) for n in names]
    return [t._keras_history.operation.name for t in model.outputs]


def keras_signature(
    model: Any,
) -> tuple[list[tuple[str, str, tuple[int, ...]]], list[tuple[str, str, tuple[int, ...]]]]:
    """(name, numpy dtype name, shape with -1 where open) of each input and output, as the model declares them."""

    def shape(t: Any) -> tuple[int, ...]:
        return tuple(-1 if d is None else int(d) for d in t.shape)

    inputs = [(str(t.name), str(t.dtype), shape(t)) for t in model.inputs]
    outputs = [(name, str(t.dtype), shape(t)) for name, t in zip(output_names(model), model.outputs)]
    return inputs, outputs
