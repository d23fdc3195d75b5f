"""Classifying one image through a served model, as `python -m serve.client` does: the image read and checked
against the decoding limits, the ensemble given the encoded bytes, a plain classifier given a tensor
pre-processed here with the pipeline's own code (`pipelines/data/images.py`, `digits.to_model_input`) and its
labels from Triton's classification extension.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.config.preprocessing import ImageLimits
from pipelines.config.spec import ModelSpec
from pipelines.core.errors import ConfigError, DataError
from pipelines.data import digits, images, parity_inputs
from pipelines.serving.served_model import ServedModel, as_text, parse_classes


def read_image(ref: str, limits: ImageLimits) -> tuple[str, bytes]:
    """A file path, or sample:<name> for a photograph scikit-image ships; checked to decode within `limits` here."""
    if ref.startswith("sample:"):
        name = ref.removeprefix("sample:")
        paths = {p.name: p for p in parity_inputs.sample_photo_paths()}
        if name not in paths:
            raise DataError(f"no sample image {name!r}; choose one of: {', '.join(paths)}")
        path = paths[name]
    else:
        path = Path(ref).expanduser()
    if not path.is_file():
        raise DataError(f"image {ref} not found")
    if path.stat().st_size > limits.max_bytes:
        raise DataError(
            f"image {ref} is {path.stat().st_size} bytes, over the limit of {limits.max_bytes} "
            "(image_limits in conf/common.yaml)"
        )
    data = path.read_bytes()
    try:
        images.decode(data, limits.settings())
    except images.ImageDecodeError as exc:
        raise DataError(f"image {ref} {exc} (image_limits in conf/common.yaml)") from exc
    return str(path), data


def classify_ensemble(model: ServedModel, spec: ModelSpec, data: bytes, protocol: str) -> list[tuple[str, float]]:
    """The encoded image as it is: Triton's ensemble pre-processes it and answers with labels and scores."""
    (image,) = spec.inputs
    out = model.infer(protocol, {image.name: np.array([[data]], dtype=np.object_)})
    scores = next(out[t.name] for t in spec.outputs if t.dtype != "BYTES")[0]
    labels = next(out[t.name] for t in spec.outputs if t.dtype == "BYTES")[0]
    return [(as_text(label), float(score)) for label, score in zip(labels, scores)]


def input_tensor(spec: ModelSpec, data: bytes) -> np.ndarray:
    """Client-side pre-processing: ImageNet transform, or greyscale pixels for an MNIST-style HWC input."""
    (tensor,) = spec.inputs
    pre = spec.network.preprocessing
    if pre is not None:
        return images.preprocess(data, pre.settings())[None]
    height, width, channels = tensor.dims
    if channels != 1:
        raise ConfigError(f"model {spec.name!r}: no client-side pre-processing for input dims {list(tensor.dims)}")
    grey = images.decode(data).convert("L").resize((width, height))
    return digits.to_model_input(np.asarray(grey, dtype=np.uint8)[None])


def classify_tensor(model: ServedModel, spec: ModelSpec, data: bytes, protocol: str, k: int) -> list[tuple[str, float]]:
    """A plain classifier: the image pre-processed here, the top `k` labelled by Triton where it has labels."""
    (tensor,), (output,) = spec.inputs, spec.outputs
    arrays = {tensor.name: input_tensor(spec, data)}
    raw = model.infer(protocol, arrays)[output.name][0]
    # a network whose output is already a softmax says so (`scores: probabilities` in conf/network/)
    probabilities = raw if spec.network.scores == "probabilities" else images.softmax(raw)
    if output.labels:  # labels from Triton itself: the classification extension
        picked = parse_classes(model.classify(protocol, arrays, output.name, k)[0])
        return [(label, float(probabilities[index])) for _, index, label in picked]
    scores, indices = images.top_k(probabilities[None], k)
    return [(str(i), float(s)) for i, s in zip(indices[0], scores[0])]
