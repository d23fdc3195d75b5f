"""The trained Keras model, loaded where export and the parity reference need it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.errors import ArtifactError
from pipelines.tensorflow_import import tensorflow


def load(path: str | Path) -> Any:
    if not Path(path).is_file():
        raise ArtifactError(f"{path} not found: run the train stage first (`dvc repro train`)")
    tensorflow()  # first, quietly: Keras imports it
    import keras

    return keras.saving.load_model(path)
