"""The network spec (`conf/network/<name>.yaml`): a trained network's tensors, artifacts by kind, the framework
parity compares against, pre-processing, what its output means, and where an added network's parity inputs
come from. Training and export read a `NetworkSpec`; every served model of the network carries it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.config.preprocessing import Preprocessing, preprocessing_from
from pipelines.config.spec_yaml import known_keys, plain_node, validated
from pipelines.config.tensors import TensorSpec, tensor_specs
from pipelines.core.errors import ConfigError, checked_choice

REFERENCE_ARTIFACT = {"keras": "keras", "torch": "state_dict"}  # every other reference runs artifact "source"
# the framework parity compares against: the trained Keras model, a torchvision classifier's state dict, or an
# added model's own source file (`python -m export.add`): a SavedModel, a torch.export program, TorchScript, ONNX
REFERENCES = ("keras", "torch", "tensorflow", "torch_export", "torchscript", "onnx")
SCORES = ("logits", "probabilities")  # what a classifier's output holds
# pipelines/data/parity_inputs.py; npz: the arrays an added network's export stage wrote (the user's sample,
# or generated)
PARITY_INPUTS = ("mnist_test", "imagenet_like", "sample_images", "npz")


@dataclass(frozen=True)
class Sampling:
    """Where an added network's parity inputs come from: the user's sample file, else generated from the spec.

    Generated values are seeded; `value_ranges` bounds an input's values (low inclusive, high exclusive for
    integers), as Polygraphy's `--val-range`; the first of `dim_sizes` fills the dimensions the artifact
    leaves open, and each other size makes samples of its own (parity sends both: the dimension is dynamic).
    """

    sample: Path | None = None
    count: int = 16
    value_ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    dim_sizes: tuple[int, ...] = (8, 13)
    seed: int = 0


@dataclass(frozen=True)
class NetworkSpec:
    """A trained network: its tensors, artifacts by kind (keras, savedmodel, onnx, state_dict) and semantics."""

    name: str
    reference: str  # the framework that parity compares against: keras | torch
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    artifacts: Mapping[str, Path]
    signature: str = "serving_default"  # the SavedModel signature export writes and Triton serves
    scores: str = "logits"  # logits | probabilities (already a softmax)
    parity_inputs: str = "imagenet_like"
    preprocessing: Preprocessing | None = None
    labels_file: Path | None = None
    arch: str | None = None  # torchvision architecture
    labels_from: str | None = None  # torchvision weight enum whose metadata names the classes
    class_output: str | None = None  # the output whose argmax is a class: ranking gates, accuracy on labels
    batch_axis: bool = True  # the tensors' first axis is a batch axis, not part of `dims` (else max_batch_size 0)
    sampling: Sampling | None = None  # an added network's parity inputs (parity_inputs: npz)

    @property
    def source(self) -> Path:
        """The file parity's reference runs: what the user trained (for our own networks, what training wrote)."""
        return self.artifact(REFERENCE_ARTIFACT.get(self.reference, "source"))

    def artifact(self, kind: str) -> Path:
        if kind not in self.artifacts:
            raise ConfigError(f"network {self.name!r} declares no {kind!r} artifact")
        return self.artifacts[kind]

    def require_reference(self, reference: str, command: str) -> None:
        """Stages are framework-specific: refuse a network of another framework with a pointer to the right one."""
        if self.reference != reference:
            raise ConfigError(
                f"{command} handles {reference} networks; network {self.name!r} is a {self.reference} network"
            )

    def require_preprocessing(self, what: str) -> Preprocessing:
        if self.preprocessing is None:
            raise ConfigError(f"network {self.name!r} declares no preprocessing, which {what} needs")
        return self.preprocessing


def network_spec(cfg: Mapping[str, Any]) -> NetworkSpec:
    """Build and validate a network's spec from its composed config (`conf/network/<name>.yaml`)."""
    return validated(f"network {plain_node(cfg).get('name', '?')!r}", network_from_plain, cfg)


def network_from_plain(cfg: dict[str, Any]) -> NetworkSpec:
    """`network_spec` on a plain config, a missing key or wrong type left to the caller (a model's spec, which
    reports it as the model's)."""
    where = f"network {cfg['name']!r}"
    known_keys(cfg, NetworkSpec, where)
    pre = cfg.get("preprocessing")
    labels = cfg.get("labels_file")
    inputs, outputs = tensor_specs(cfg.get("inputs"), where), tensor_specs(cfg.get("outputs"), where)
    return NetworkSpec(
        name=str(cfg["name"]),
        reference=checked_choice(cfg["reference"], REFERENCES, "reference", where),
        inputs=inputs,
        outputs=outputs,
        artifacts={str(k): Path(str(v)) for k, v in (cfg.get("artifacts") or {}).items()},
        signature=str(cfg.get("signature", "serving_default")),
        scores=checked_choice(cfg.get("scores", "logits"), SCORES, "scores", where),
        parity_inputs=checked_choice(cfg.get("parity_inputs", "imagenet_like"), PARITY_INPUTS, "parity_inputs", where),
        preprocessing=None if pre is None else preprocessing_from(pre),
        labels_file=Path(str(labels)) if labels else None,
        arch=str(cfg["arch"]) if cfg.get("arch") else None,
        labels_from=str(cfg["labels_from"]) if cfg.get("labels_from") else None,
        class_output=_class_output(cfg, outputs, where),
        sampling=_sampling(cfg.get("sampling"), inputs, where),
        batch_axis=bool(cfg.get("batch_axis", True)),
    )


def _class_output(cfg: dict[str, Any], outputs: tuple[TensorSpec, ...], where: str) -> str | None:
    """The declared class output; by default the only output when it is one vector of class scores."""
    name = cfg.get("class_output")
    if name is None:
        (only, *rest) = outputs
        return only.name if not rest and len(only.dims) == 1 and only.dims[0] > 1 and not only.exact else None
    if name not in {t.name for t in outputs}:
        raise ConfigError(f"{where}: class_output {name!r} is not one of its outputs {[t.name for t in outputs]}")
    return str(name)


def _sampling(cfg: dict[str, Any] | None, inputs: tuple[TensorSpec, ...], where: str) -> Sampling | None:
    if cfg is None:
        return None
    ranges = {str(k): (float(v[0]), float(v[1])) for k, v in (cfg.get("value_ranges") or {}).items()}
    unknown = sorted(set(ranges) - {t.name for t in inputs})
    if unknown:
        raise ConfigError(
            f"{where}: sampling.value_ranges names {unknown}, which are not inputs {[t.name for t in inputs]}"
        )
    empty = [f"{k}={list(v)}" for k, v in ranges.items() if not v[0] < v[1]]
    if empty:
        raise ConfigError(f"{where}: sampling.value_ranges must be [low, high) with low < high, got {', '.join(empty)}")
    sampling = Sampling(
        Path(str(cfg["sample"])) if cfg.get("sample") else None,
        int(cfg.get("count", Sampling.count)),
        ranges,
        tuple(int(d) for d in cfg.get("dim_sizes", Sampling.dim_sizes)),
        int(cfg.get("seed", Sampling.seed)),
    )
    if sampling.count < 1 or not sampling.dim_sizes or min(sampling.dim_sizes) < 1:
        raise ConfigError(f"{where}: sampling.count must be >= 1 and sampling.dim_sizes a non-empty list of sizes >= 1")
    return sampling
