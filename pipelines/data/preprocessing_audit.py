"""The pre-processing constants in conf/ against the source's own metadata, as the labels are (labels.py).

Parity feeds the framework and Triton the same tensors, and the ensemble's server-side step and the client read
the same `preprocessing:` block: a mean written in BGR order, or another weight recipe's resize, passes every
comparison and serves wrong answers. torchvision ships each weight enum's evaluation transform
(`weights.transforms()`: resize, crop, mean, std, interpolation; offline), so parity compares conf/ with it,
constant by constant. A network without such metadata (a user's own) has only its conf/ to go by.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pipelines.config.network import NetworkSpec
from pipelines.frameworks.torchvision_compat import import_torchvision

INTERPOLATION = "bilinear"  # what pipelines/data/images.py resizes with, on the client and in the ensemble's step


@dataclass(frozen=True)
class PreprocessingAudit:
    """conf/'s constants against the independent ones; each problem one line naming the constant."""

    source: str
    problems: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "passed": not self.problems, "problems": list(self.problems)}


def torchvision_transform(network: NetworkSpec) -> dict[str, Any] | None:
    """The evaluation transform torchvision's metadata gives a network (its `labels_from` weights), or None."""
    if not (network.arch and network.labels_from):
        return None
    enum = import_torchvision().models.get_model_weights(str(network.arch))
    transform = enum[str(network.labels_from)].transforms()
    return {
        "resize": int(transform.resize_size[0]),
        "crop": int(transform.crop_size[0]),
        "mean": [float(v) for v in transform.mean],
        "std": [float(v) for v in transform.std],
        "interpolation": str(transform.interpolation.value),
    }


def audit_preprocessing(network: NetworkSpec) -> PreprocessingAudit | None:
    """None where the network declares no pre-processing or its source has no metadata to check it with."""
    expected = torchvision_transform(network) if network.preprocessing is not None else None
    if expected is None or network.preprocessing is None:
        return None
    source = f"torchvision's {network.arch} {network.labels_from} transform"
    ours = {**network.preprocessing.settings(), "interpolation": INTERPOLATION}
    problems = tuple(
        f"preprocessing.{key} is {_audit_value(ours[key])}, {source} has {_audit_value(value)}"
        for key, value in expected.items()
        if not _same(ours[key], value)
    )
    return PreprocessingAudit(source, problems)


def _same(ours: Any, theirs: Any) -> bool:
    if isinstance(theirs, list):
        return len(ours) == len(theirs) and all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(ours, theirs))
    return ours == theirs


def _audit_value(value: Any) -> str:
    return "[" + ", ".join(f"{v:g}" for v in value) + "]" if isinstance(value, list) else str(value)
