"""The image-classification ensemble as the specs of its steps, derived from its own model spec and its classifier's:
raw encoded image -> pre-processing -> classifier -> post-processing.

    <name>_preprocess   Python backend: decode JPEG/PNG bytes, resize, centre-crop, normalise (pipelines/data/images.py)
    <classifier>        a served classifier of the same catalog (resnet50_onnx; resnet50_trt on GPU hosts)
    <name>_postprocess  Python backend: softmax, top-k probabilities and their labels
    <name>              platform "ensemble" wiring the three together

Every tensor name between the steps comes from the specs: the ensemble's own interface from its
model config, the classifier's tensors from its network.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from pipelines.config.spec import ModelSpec, ParitySettings
from pipelines.config.tensors import TensorSpec
from pipelines.core.errors import ConfigError

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


def parts(spec: ModelSpec, served: Mapping[str, ModelSpec]) -> Parts:
    """Derive the pre/post-processing specs; the classifier must be served in the same repository."""
    if spec.ensemble is None:
        raise ConfigError(f"model {spec.name!r} is not an ensemble")
    name = spec.ensemble.classifier
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
    k = spec.ensemble.top_k
    if any(t.dims != (k,) for t in spec.outputs):
        raise ConfigError(f"ensemble {spec.name!r}: outputs must have dims [{k}] (top_k)")
    if not cls_out.labels or classifier.labels_file is None:
        raise ConfigError(f"ensemble {spec.name!r}: classifier {name!r} has no labelled output")
    if classifier.lossy is not None:  # its reference is the FP32 framework, judged at the ensemble's FP32 tolerance
        raise ConfigError(
            f"ensemble {spec.name!r}: classifier {name!r} is {classifier.precision}; an ensemble is "
            "proven against its classifier's FP32 framework model, so it calls an FP32 classifier"
        )
    if spec.max_batch_size > classifier.max_batch_size:
        raise ConfigError(
            f"ensemble {spec.name!r}: max_batch_size {spec.max_batch_size} exceeds "
            f"{name!r}'s {classifier.max_batch_size}"
        )
    common = {
        "max_batch_size": spec.max_batch_size,
        "dynamic_batching": spec.dynamic_batching,
        "instance_count": 1,
        "parity": ParitySettings(),
        "format": "python",
        "ensemble": None,
        "tensorrt": None,
        "extra_config": "",
    }
    pre = dataclasses.replace(
        spec,
        name=spec.name + PREPROCESS,
        inputs=spec.inputs,
        outputs=(dataclasses.replace(cls_in, labels=False),),
        **{**common, "instance_count": spec.ensemble.decode_instances},
    )
    post = dataclasses.replace(
        spec,
        name=spec.name + POSTPROCESS,
        inputs=(dataclasses.replace(cls_out, labels=False),),
        outputs=spec.outputs,
        network=classifier.network,
        **common,
    )
    return Parts(spec, pre, classifier, post)
