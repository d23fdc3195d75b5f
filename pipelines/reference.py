"""The framework side of parity: run the trained model in its own framework (Keras, PyTorch)."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from pipelines import keras_models
from pipelines.errors import ConfigError
from pipelines.spec import ModelSpec

Runner = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


def _keras(spec: ModelSpec) -> Runner:
    model = keras_models.load(spec.network.artifact("keras"))
    (inp,) = spec.inputs

    def run(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = model(arrays[inp.name], training=False)
        if isinstance(out, dict):
            return {t.name: np.asarray(out[t.name]) for t in spec.outputs}
        return {spec.outputs[0].name: np.asarray(out)}

    return run


def _torch(spec: ModelSpec) -> Runner:
    import torch

    from pipelines import torch_models

    model = torch_models.build(spec.network, str(spec.network.artifact("state_dict")))
    (inp,) = spec.inputs

    def run(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            out = model(torch.from_numpy(np.ascontiguousarray(arrays[inp.name])))
        return {spec.outputs[0].name: out.numpy()}

    return run


def load_ensemble(parts: Any, classify: Runner | None = None) -> Runner:
    """The client-side pipeline an ensemble must reproduce: Pillow pre-processing, the framework, softmax, top-k.

    `classify`: another runner for the classifier step (the benchmark's in-process runtime); default its framework.
    """
    from pipelines import images

    classify = classify or load(parts.classifier)
    settings = parts.ensemble.network.require_preprocessing("the ensemble's reference").settings()
    (cls_in,), (cls_out,) = parts.classifier.inputs, parts.classifier.outputs
    labels = np.array([name.encode() for name in parts.classifier.network.class_names()], dtype=np.object_)
    k = parts.ensemble.ensemble.top_k

    def run(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = np.stack([
            images.preprocess(item, settings) for item in arrays[parts.image.name].reshape(-1)
        ])
        scores, indices = images.top_k(images.softmax(classify({cls_in.name: batch})[cls_out.name]), k)
        return {parts.probabilities.name: scores, parts.labels.name: labels[indices]}

    return run


def load(spec: ModelSpec) -> Runner:
    """A function from input arrays to output arrays, keyed by the spec's tensor names."""
    loaders = {"keras": _keras, "torch": _torch}
    if spec.reference not in loaders:
        raise ConfigError(f"model {spec.name!r}: no reference runner for {spec.reference!r}")
    return loaders[spec.reference](spec)
