"""A model added with `python -m export.add`, into the formats Triton serves: its parity inputs (the user's
sample or inputs generated from the spec), the source run on them first, and each served format converted
from the source (`convert`) with the converter the format needs (pipelines/artifacts/writing.py).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pipelines.artifacts import writing
from pipelines.byom import sources
from pipelines.config.network import NetworkSpec
from pipelines.core.errors import ArtifactError, ConfigError, DataError
from pipelines.data import parity_inputs
from pipelines.runners import keras_models, reference, torch_models

log = logging.getLogger(__name__)
SERVED = ("savedmodel", "onnx")  # the artifacts the stage writes, where the network declares them
TORCH_LOADERS = {"torch_export": torch_models.load_torch_export, "torchscript": torch_models.load_torchscript}


def sample_inputs(network: NetworkSpec) -> parity_inputs.ParityInputs:
    """The user's sample, checked against the spec, or inputs generated from it."""
    sampling = network.sampling
    if sampling is None:
        raise ConfigError(f"network {network.name!r} has no `sampling:` (a model added with `python -m export.add`)")
    if sampling.sample is not None and sampling.sample.is_dir():
        log.info("parity inputs: the images of %s, pre-processed as the ensemble does", sampling.sample)
        (image,) = network.inputs
        return parity_inputs.read_images(sampling.sample, image, network.require_preprocessing("a folder of images"))
    if sampling.sample is not None:
        log.info("parity inputs: the sample %s", sampling.sample)
        return parity_inputs.read_npz(sampling.sample, network.inputs, network.batch_axis)
    log.info("parity inputs: %d generated samples (seed %d)", sampling.count, sampling.seed)
    return parity_inputs.generate(network.inputs, sampling)


def convert(network: NetworkSpec, fmt: str, target: Path, opset: int, feeds: dict[str, Any]) -> None:
    """One served format of the source at `target`."""
    source, kind = network.source, sources.kind_of(network.source)
    batched = network.batch_axis
    if fmt == "savedmodel" and kind == "keras":
        writing.keras_savedmodel(
            keras_models.load_keras(source), network.inputs, network.outputs, network.signature, target, batched
        )
    elif fmt == "savedmodel" and kind == "savedmodel":
        shutil.copytree(source, target)
    elif fmt == "onnx" and kind == "savedmodel":
        writing.savedmodel_onnx(source, network.signature, opset, target, batched)
    elif fmt == "onnx" and kind == "keras":  # through the SavedModel: the one served beside it, else one made here
        served = target.parent / network.artifact("savedmodel").name if "savedmodel" in network.artifacts else None
        if served is not None and served.is_dir():
            writing.savedmodel_onnx(served, network.signature, opset, target, batched)
        else:
            with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
                savedmodel = Path(scratch) / "model.savedmodel"
                convert(network, "savedmodel", savedmodel, opset, feeds)
                writing.savedmodel_onnx(savedmodel, network.signature, opset, target, batched)
    elif fmt == "onnx" and kind in TORCH_LOADERS:
        module = TORCH_LOADERS[kind](source)
        writing.torch_onnx(module, feeds, network.inputs, network.outputs, opset, target, batched)
    elif fmt == "onnx" and kind == "onnx":
        writing.require_valid_onnx(str(source), str(source))
        shutil.copy2(source, target)
    else:
        raise ConfigError(f"network {network.name!r}: a {kind} source is not served as {fmt}")


def runner(network: NetworkSpec, fmt: str, path: Path) -> reference.Runner:
    """The served file in the runtime Triton's backend for it uses."""
    if fmt == "savedmodel":
        return reference.savedmodel_runner(path, network.signature, network.inputs, network.outputs)
    return reference.onnxruntime_runner(path, network.inputs, network.outputs)


def first_feeds(network: NetworkSpec, samples: parity_inputs.ParityInputs) -> dict[str, Any]:
    """The first parity inputs, as the source takes them: two samples of a batched model, one of an unbatched."""
    if network.batch_axis:
        return samples.head(2).arrays
    return {k: v[0] for k, v in samples.head(1).arrays.items()}


def require_runs(network: NetworkSpec, source_run: reference.Runner, feeds: dict[str, Any]) -> None:
    """The source itself must run on its parity inputs before anything is exported from it."""
    try:
        source_run(feeds)
    except ArtifactError:  # the model itself: no reference can run it (pipelines/runners/reference.py)
        raise
    except Exception as exc:  # the frameworks' errors share no base class: the inputs do not fit the model
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = (
            ""
            if network.sampling and network.sampling.sample
            else (
                "; if the generated inputs are outside what it takes, declare each input's values with value_ranges "
                "(e.g. token ids below the vocabulary size) in `python -m export.add`, or give a sample"
            )
        )
        raise DataError(f"{network.source} fails on its parity inputs ({detail}){hint}") from exc
