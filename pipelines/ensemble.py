"""The image-classification ensemble: raw encoded image -> pre-processing -> classifier -> post-processing.

    <name>_preprocess   Python backend: decode JPEG/PNG bytes, resize, centre-crop, normalise (pipelines/images.py)
    <classifier>        a served classifier of the same catalog (resnet50_onnx; resnet50_trt on GPU hosts)
    <name>_postprocess  Python backend: softmax, top-k probabilities and their labels
    <name>              platform "ensemble" wiring the three together

Every tensor name between the steps comes from the specs: the ensemble's own interface from its
model config, the classifier's tensors from its network.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Mapping

from tritonclient.grpc import model_config_pb2 as mc

from pipelines.errors import ConfigError
from pipelines.spec import ModelSpec, TensorSpec
from pipelines.triton_config import data_type

PREPROCESS, POSTPROCESS = "_preprocess", "_postprocess"


@dataclasses.dataclass(frozen=True)
class Parts:
    """The ensemble and the specs of the models it calls, in order."""

    ensemble: ModelSpec
    preprocess: ModelSpec
    classifier: ModelSpec
    postprocess: ModelSpec

    @property
    def image(self) -> TensorSpec:
        (image,) = self.ensemble.inputs
        return image

    @property
    def probabilities(self) -> TensorSpec:
        return next(t for t in self.ensemble.outputs if t.dtype != "BYTES")

    @property
    def labels(self) -> TensorSpec:
        return next(t for t in self.ensemble.outputs if t.dtype == "BYTES")


def classifier_name(spec: ModelSpec) -> str:
    name = spec.ensemble.get("classifier")
    if not name:
        raise ConfigError(f"ensemble {spec.name!r}: ensemble.classifier (a served model) is required")
    return str(name)


def top_k(spec: ModelSpec) -> int:
    return int(spec.ensemble.get("top_k", 5))


def parts(spec: ModelSpec, served: Mapping[str, ModelSpec]) -> Parts:
    """Derive the pre/post-processing specs; the classifier must be served in the same repository."""
    name = classifier_name(spec)
    if name not in served:
        raise ConfigError(f"ensemble {spec.name!r} calls {name!r}, which this catalog does not serve")
    classifier = served[name]
    if classifier.format == "ensemble" or len(classifier.inputs) != 1 or len(classifier.outputs) != 1:
        raise ConfigError(f"ensemble {spec.name!r}: classifier {name!r} must be a model with one input and one output")
    if len(spec.inputs) != 1 or spec.inputs[0].dtype != "BYTES":
        raise ConfigError(f"ensemble {spec.name!r}: its one input must be BYTES (encoded images)")
    kinds = sorted(t.dtype == "BYTES" for t in spec.outputs)
    if kinds != [False, True]:
        raise ConfigError(f"ensemble {spec.name!r}: outputs must be one score tensor and one BYTES label tensor")
    (cls_in,), (cls_out,) = classifier.inputs, classifier.outputs
    k = top_k(spec)
    if any(t.dims != (k,) for t in spec.outputs):
        raise ConfigError(f"ensemble {spec.name!r}: outputs must have dims [{k}] (top_k)")
    if not cls_out.labels or classifier.labels_file is None:
        raise ConfigError(f"ensemble {spec.name!r}: classifier {name!r} has no labelled output")
    if spec.max_batch_size > classifier.max_batch_size:
        raise ConfigError(f"ensemble {spec.name!r}: max_batch_size {spec.max_batch_size} exceeds "
                          f"{name!r}'s {classifier.max_batch_size}")
    common = dict(max_batch_size=spec.max_batch_size, dynamic_batching={}, instance_count=1, parity={},
                  format="python", ensemble={}, tensorrt={})
    pre = dataclasses.replace(spec, name=spec.name + PREPROCESS, inputs=spec.inputs,
                              outputs=(dataclasses.replace(cls_in, labels=False),), **common)
    post = dataclasses.replace(spec, name=spec.name + POSTPROCESS, inputs=(dataclasses.replace(cls_out, labels=False),),
                               outputs=spec.outputs, labels_file=classifier.labels_file, **common)
    return Parts(spec, pre, classifier, post)


def _io(config: mc.ModelConfig, spec: ModelSpec) -> None:
    for tensor in spec.inputs:
        config.input.add(name=tensor.name, data_type=data_type(tensor.dtype)).dims.extend(tensor.dims)
    for tensor in spec.outputs:
        config.output.add(name=tensor.name, data_type=data_type(tensor.dtype)).dims.extend(tensor.dims)


def step_config(step: ModelSpec, role: str, parts_: Parts) -> mc.ModelConfig:
    """Config of a Python-backend step; its parameters carry everything the step's code needs."""
    config = mc.ModelConfig(name=step.name, backend="python", max_batch_size=step.max_batch_size)
    _io(config, step)
    config.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_CPU)
    if role == "preprocess":
        pre = parts_.ensemble.network_cfg["preprocessing"]
        params = {"resize": pre["resize"], "crop": pre["crop"], "mean": list(pre["mean"]), "std": list(pre["std"])}
    else:
        params = {"top_k": top_k(parts_.ensemble), "labels": "labels.txt"}
    config.parameters["config"].string_value = json.dumps(params, sort_keys=True)
    return config


def ensemble_config(parts_: Parts) -> mc.ModelConfig:
    """platform "ensemble": image -> preprocess -> classifier -> postprocess -> probabilities, labels."""
    spec = parts_.ensemble
    config = mc.ModelConfig(name=spec.name, platform="ensemble", max_batch_size=spec.max_batch_size)
    _io(config, spec)
    (cls_in,), (cls_out,) = parts_.classifier.inputs, parts_.classifier.outputs
    scheduling = config.ensemble_scheduling
    pre = scheduling.step.add(model_name=parts_.preprocess.name, model_version=-1)
    pre.input_map[parts_.image.name] = parts_.image.name
    pre.output_map[cls_in.name] = f"{cls_in.name}_preprocessed"
    classify = scheduling.step.add(model_name=parts_.classifier.name, model_version=-1)
    classify.input_map[cls_in.name] = f"{cls_in.name}_preprocessed"
    classify.output_map[cls_out.name] = f"{cls_out.name}_raw"
    post = scheduling.step.add(model_name=parts_.postprocess.name, model_version=-1)
    post.input_map[cls_out.name] = f"{cls_out.name}_raw"
    for tensor in spec.outputs:
        post.output_map[tensor.name] = tensor.name
    return config
