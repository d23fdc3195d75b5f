"""What parity compares, shared by its two halves: the cases (the same samples sent as several requests), the
framework side of a model made ready before any server is involved (`Prepared`), and what Triton returned
(`Served`). `parity_run` fills them (the only half that runs models and sends requests); `parity_judge` reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.comparison import lossy
from pipelines.config import ensemble_parts
from pipelines.config.spec import ModelSpec
from pipelines.data import labels, preprocessing_audit
from pipelines.outputs.answers import Arrays, take

CLASS_COUNT = 5  # top-k asked of Triton's classification extension
ALL_SAMPLES = "all_samples"  # the case that sends every sample in max_batch_size chunks


@dataclass
class Case:
    """The first samples of a model's inputs, sent as `requests` (the batch sizes of the requests that carry them).

    Every case is a prefix of the same samples, so one framework run over all of them is every case's reference.
    """

    name: str
    inputs: Arrays
    requests: list[int]
    reference: Arrays = field(default_factory=dict)
    own: bool = False  # samples of their own (other sizes of open dimensions), not a prefix of the others

    @property
    def size(self) -> int:
        return sum(self.requests)

    def spans(self) -> list[tuple[int, int]]:
        """(start, stop) of each request, in samples: every case is a prefix of the same samples, so equal spans
        are the same request (`batch_8` and the first chunk of `all_samples`)."""
        spans, start = [], 0
        for size in self.requests:
            spans.append((start, start + size))
            start += size
        return spans

    def split(self) -> list[Arrays]:
        """The inputs split into the requests that carry them."""
        return [take(self.inputs, start, stop) for start, stop in self.spans()]


@dataclass
class Prepared:
    """Everything on the framework side of one model, ready before any server is involved."""

    spec: ModelSpec
    cases: list[Case]  # the last one is ALL_SAMPLES
    burst: Case | None
    truth: np.ndarray | None  # the samples' true classes, where known (served accuracy)
    parts: ensemble_parts.Parts | None = None  # an ensemble's steps, to check its server-side pre-processing
    class_names: list[str] | None = None  # what a labelled output's classes are called, one name per class
    reference: str = ""  # what computed the reference, as the report names it
    fp32: Arrays | None = None  # a lossy model: the FP32 framework model's outputs on all samples
    label_audit: labels.LabelAudit | None = None  # the labels file against names the export did not write
    constants_audit: preprocessing_audit.PreprocessingAudit | None = None  # conf/'s pre-processing vs the source's

    @property
    def accuracy_key(self) -> str:
        """What the served accuracy must equal: the framework's, or a lossy model's own file in process."""
        return "framework" if self.fp32 is None else lossy.OWN_FILE

    def case(self, name: str) -> Case:
        for case in [*self.cases, *([self.burst] if self.burst else [])]:
            if case.name == name:
                return case
        raise KeyError(name)


@dataclass(frozen=True)
class StepAnswer:
    """An ensemble's server-side pre-processing step on the image bytes, beside the client-side pre-processing of the
    same bytes (`images.preprocess`)."""

    step: str
    served: np.ndarray
    client: np.ndarray


@dataclass
class Served:
    """What Triton returned, and what else was measured on the way.

    outputs[protocol][case][tensor]: each case's outputs over each protocol;
    classifications[protocol][output]: the classification extension's "score:index:label" strings
    for every sample of a labelled output; burst: the concurrent single-sample gRPC requests' outputs.
    """

    outputs: dict[str, dict[str, Arrays]]
    classifications: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    burst: Arrays | None = None
    batching: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    preprocessing: StepAnswer | None = None
    backend: dict[str, Any] = field(default_factory=dict)  # what ran the model, from the config Triton serves
