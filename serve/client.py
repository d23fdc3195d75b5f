"""`python -m serve.client model=<name> image=<file>`: classify an image through Triton and print the top-k.

Works with any served classifier: the ensemble takes the encoded image as it is (Triton does the
pre-processing); a plain classifier gets it pre-processed here with the same code
(pipelines/data/images.py) and its labels from Triton's classification extension. `show=metadata` or
`show=config` prints what Triton reports about the model instead. `image=sample:<file>` picks one
of scikit-image's sample photographs (sample:chelsea.png, sample:coffee.png, ...).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.config.spec import ImageLimits, ModelSpec, image_limits, model_spec
from pipelines.core.cli import hydra_main
from pipelines.core.errors import ConfigError, DataError
from pipelines.data import images, parity_inputs
from pipelines.serving.launcher import serve
from pipelines.serving.served_model import ServedModel, as_text, parse_classes
from pipelines.serving.settings import ServerSettings

PROTOCOLS = ("http", "grpc")
SHOW = ("metadata", "config")


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


def _classify_ensemble(model: ServedModel, spec: ModelSpec, data: bytes, protocol: str) -> list[tuple[str, float]]:
    (image,) = spec.inputs
    out = model.infer(protocol, {image.name: np.array([[data]], dtype=np.object_)})
    scores = next(out[t.name] for t in spec.outputs if t.dtype != "BYTES")[0]
    labels = next(out[t.name] for t in spec.outputs if t.dtype == "BYTES")[0]
    return [(as_text(label), float(score)) for label, score in zip(labels, scores)]


def _input_tensor(spec: ModelSpec, data: bytes) -> np.ndarray:
    """Client-side pre-processing: ImageNet transform, or greyscale pixels for an MNIST-style HWC input."""
    (tensor,) = spec.inputs
    pre = spec.network.preprocessing
    if pre is not None:
        return images.preprocess(data, pre.settings())[None]
    height, width, channels = tensor.dims
    if channels != 1:
        raise ConfigError(f"model {spec.name!r}: no client-side pre-processing for input dims {list(tensor.dims)}")
    grey = images.decode(data).convert("L").resize((width, height))
    return (np.asarray(grey, dtype=np.float32) / 255.0).reshape(1, height, width, 1)


def _classify_tensor(
    model: ServedModel, spec: ModelSpec, data: bytes, protocol: str, k: int
) -> list[tuple[str, float]]:
    (tensor,), (output,) = spec.inputs, spec.outputs
    arrays = {tensor.name: _input_tensor(spec, data)}
    raw = model.infer(protocol, arrays)[output.name][0]
    # a network whose output is already a softmax says so (`scores: probabilities` in conf/network/)
    probabilities = raw if spec.network.scores == "probabilities" else images.softmax(raw)
    if output.labels:  # labels from Triton itself: the classification extension
        picked = parse_classes(model.classify(protocol, arrays, output.name, k)[0])
        return [(label, float(probabilities[index])) for _, index, label in picked]
    scores, indices = images.top_k(probabilities[None], k)
    return [(str(i), float(s)) for i, s in zip(indices[0], scores[0])]


def run(cfg: Any) -> list[tuple[str, float]] | str:
    if cfg.model.name == "all":
        raise ConfigError("choose one model to classify with, e.g. model=resnet50_ensemble")
    if cfg.protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {cfg.protocol!r}")
    if cfg.show is not None and cfg.show not in SHOW:
        raise ConfigError(f"show must be one of {', '.join(SHOW)}, got {cfg.show!r}")
    spec = model_spec(str(cfg.model.name), cfg.model)
    if cfg.show is None:
        if not cfg.image:
            raise ConfigError("image=<file> is required (or image=sample:chelsea.png, or show=metadata|config)")
        path, data = read_image(str(cfg.image), image_limits(cfg.image_limits))
    k = cfg.top_k
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"top_k must be a whole number >= 1, got {k!r}")
    repository = cfg.paths.model_repository_gpu if spec.format == "tensorrt" else cfg.model_repository
    server = ServerSettings.from_cfg(cfg.server)
    with serve(server, repository, cfg.triton_releases) as endpoints, ServedModel(spec, endpoints) as model:
        model.check_ready()
        if cfg.show is not None:
            text = json.dumps(model.metadata(), indent=2) if cfg.show == "metadata" else model.config_text()
            print(text)
            return text
        if spec.format == "ensemble":
            rows = _classify_ensemble(model, spec, data, str(cfg.protocol))[:k]
        else:
            rows = _classify_tensor(model, spec, data, str(cfg.protocol), k)
    print(f"{Path(path).name} -> {spec.name} over {cfg.protocol} (Triton at {endpoints.http})")
    print(f"{'rank':>4}  {'probability':>11}  label")
    for rank, (label, probability) in enumerate(rows, 1):
        print(f"{rank:>4}  {probability:>11.4f}  {label}")
    return rows


main = hydra_main("client", run, __doc__)

if __name__ == "__main__":
    main()
