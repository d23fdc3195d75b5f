"""The trained Keras model, loaded where export and the parity reference need it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.core.errors import ArtifactError
from pipelines.runners.tensorflow_import import tensorflow


def load(path: str | Path) -> Any:
    if not Path(path).is_file():
        raise ArtifactError(f"{path} not found: run the train stage first (`dvc repro train`)")
    tensorflow()  # first, quietly: Keras imports it
    import keras

    return keras.saving.load_model(path)


def output_names(model: Any) -> list[str]:
    """The names of a model's outputs, in the order a call returns them as a list: a functional model's
    `output_names`, else the layers that produce them."""
    names = getattr(model, "output_names", None)
    if names:
        return [str(n) for n in names]
    return [t._keras_history.operation.name for t in model.outputs]


def signature(model: Any) -> tuple[list[tuple[str, str, tuple[int, ...]]], list[tuple[str, str, tuple[int, ...]]]]:
    """(name, numpy dtype name, shape with -1 where open) of each input and output, as the model declares them."""

    def shape(t: Any) -> tuple[int, ...]:
        return tuple(-1 if d is None else int(d) for d in t.shape)

    inputs = [(str(t.name), str(t.dtype), shape(t)) for t in model.inputs]
    outputs = [(name, str(t.dtype), shape(t)) for name, t in zip(output_names(model), model.outputs)]
    return inputs, outputs
