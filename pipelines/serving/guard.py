"""What the front refuses before Triton reads it: per-model body caps and declared-shape limits.

Triton 2.51 dies on requests that are small on the wire: a JSON inference request declaring a huge
shape (90 bytes; `std::bad_alloc`, SIGABRT, every model gone; no upstream issue found) and a body of
4 MiB or more labelled as a form post (SIGSEGV on any path; triton-inference-server/server#5840).
It also reads every body whole before it refuses it. The nginx front (`pipelines/serving/front_rules.py`)
passes only what an inference client needs, and refuses, per model and before any replica sees the request:

- a body larger than the model's largest legal request (binary or JSON, whichever is larger, plus
  `HEADER_ROOM`), from its `Content-Length` before reading it (413);
- a content type other than JSON or octet-stream (or none) on inference paths (415), and any body on
  health and metadata paths (400);
- with nginx's njs module (`serve/front/guard.js`), a request whose JSON declares an input the model
  lacks, an input twice, more elements than the model takes, a key twice in one object, nesting
  deeper than `depth`, or a binary request's JSON header over `HEADER_ROOM` (400, 413).

The limits come from the repository's own `config.pbtxt` files, which are what Triton serves (parity
checks that they equal the spec), so every served model is covered, ensemble steps and added models
included. A dynamic dimension counts as `max_dynamic_dim`; a BYTES element as `max_string_bytes` in a binary
request and `max_json_string_bytes` in a JSON one. A JSON request longer than the JSON its model can take is
refused from its Content-Length, before it is read: reading JSON costs the front's worker about 35 ms per MB
(njs on this host's CPUs), binary tensors nothing beyond their header.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from pipelines.config import dtypes
from pipelines.core.errors import ConfigError
from pipelines.core.paths import PROJECT_ROOT
from pipelines.model_repository.triton_config import CONFIG_FILENAME, parse_config

HEADER_ROOM = 64 << 10  # the request's JSON around the data: names, shapes, parameters, requested outputs
JSON_NUMBER_CHARS = 26  # the longest number a client writes, with json.dumps' separator: "-2.2250738585072014e-308, "
STRING_OVERHEAD = 8  # a BYTES element's quotes and comma (binary: its 4-byte length) and a few escapes
GUARD_SCRIPT = PROJECT_ROOT / "serve" / "front" / "guard.js"


@dataclass(frozen=True)
class InputLimit:
    """The most elements one input may hold in a request, and the bytes one element takes at most."""

    name: str
    max_elements: int
    element_bytes: int  # binary size; BYTES: max_string_bytes + its overhead
    json_element_bytes: int  # as JSON: a number's characters, or max_json_string_bytes + its overhead

    @property
    def json_bytes(self) -> int:
        return self.max_elements * self.json_element_bytes

    @property
    def binary_bytes(self) -> int:
        return self.max_elements * self.element_bytes


@dataclass(frozen=True)
class ModelLimits:
    """One served model's limits: what each input may declare, how deep its JSON may nest, and the largest body
    the front lets through."""

    name: str
    inputs: tuple[InputLimit, ...]
    rank: int  # the most dimensions an input has, the batch included

    @property
    def depth(self) -> int:
        """The deepest JSON a request needs: {request} [inputs] {input} then `data` nested as deep as its shape,
        or an input's {parameters} one level below it."""
        return max(4, 3 + self.rank)

    @property
    def max_json_bytes(self) -> int:
        """The longest JSON request (no binary tensors) the model can take."""
        return sum(i.json_bytes for i in self.inputs) + HEADER_ROOM

    @property
    def max_body_bytes(self) -> int:
        return max(sum(i.binary_bytes for i in self.inputs) + HEADER_ROOM, self.max_json_bytes)

    def table(self) -> str:
        """The limits as the njs guard reads them (JSON: `inputs`, input name -> [most elements, most JSON
        characters one takes]; `depth`; `header`, the largest JSON header of a binary request and the room a JSON
        request has beside its data)."""
        inputs = {i.name: [i.max_elements, i.json_element_bytes] for i in self.inputs}
        return json.dumps(
            {"inputs": inputs, "depth": self.depth, "header": HEADER_ROOM, "json": self.max_json_bytes},
            separators=(",", ":"),
            sort_keys=True,
        )


def model_limits(
    config: mc.ModelConfig, max_dynamic_dim: int, max_string_bytes: int, max_json_string_bytes: int | None = None
) -> ModelLimits:
    """Limits from a served config: max_batch_size x dims per input, a dynamic dim counted at `max_dynamic_dim`."""
    inputs, rank = [], 0
    for tensor in config.input:
        rank = max(rank, len(tensor.dims) + (1 if config.max_batch_size > 0 else 0))
        dims = list(tensor.dims)
        elements = max(config.max_batch_size, 1)
        for dim in dims:
            elements *= max_dynamic_dim if dim < 0 else dim
        dtype = dtypes.from_config_enum(tensor.data_type)
        as_json = JSON_NUMBER_CHARS
        if dtype == "BYTES":
            element = max_string_bytes + STRING_OVERHEAD
            as_json = min(max_string_bytes, max_json_string_bytes or max_string_bytes) + STRING_OVERHEAD
        elif dtype in dtypes.SPEC_DTYPES:
            element = dtypes.to_numpy(dtype).itemsize
        else:  # BF16 and anything newer: two bytes or more, counted generously
            element = 8
        inputs.append(InputLimit(tensor.name, elements, element, max(as_json, JSON_NUMBER_CHARS)))
    return ModelLimits(config.name, tuple(inputs), rank)


def repository_limits(
    repository: Path, max_dynamic_dim: int, max_string_bytes: int, max_json_string_bytes: int | None = None
) -> list[ModelLimits]:
    """Every model of a model repository, by its config.pbtxt; a model Triton could not load is named."""
    limits = []
    for config_file in sorted(Path(repository).glob(f"*/{CONFIG_FILENAME}")):
        try:
            config = parse_config(config_file.read_text())
        except ConfigError as exc:
            raise ConfigError(f"{config_file}: {exc}") from None
        if config.name and config.name != config_file.parent.name:
            raise ConfigError(
                f"{config_file}: names model {config.name!r}, but Triton serves it as {config_file.parent.name!r}"
            )
        config.name = config_file.parent.name
        limits.append(model_limits(config, max_dynamic_dim, max_string_bytes, max_json_string_bytes))
    if not limits:
        raise ConfigError(f"{repository} holds no {CONFIG_FILENAME}: the front has no model to guard")
    return limits
