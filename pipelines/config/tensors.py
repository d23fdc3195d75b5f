"""Tensor specs: one input or output of a network or served model (name, dtype, dims without the batch axis,
an image input's layout), and the list of them a spec file declares, validated.

Every stage reads tensors from here (via a network or model spec), so a tensor name or shape is
typed once, in `conf/network/<name>.yaml` (or an ensemble's model file).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines.config import dtypes
from pipelines.core.errors import ConfigError, checked_choice

LAYOUTS = ("NCHW", "NHWC")  # Triton's input `format`: how image clients lay out pixels


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor; `dims` exclude the batch dimension.

    `layout` (NCHW, NHWC) is an image input's pixel layout, served as Triton's input `format`.
    """

    name: str
    dtype: str
    dims: tuple[int, ...]
    labels: bool = False
    layout: str | None = None

    @property
    def numpy_dtype(self) -> np.dtype:
        return dtypes.to_numpy(self.dtype)

    @property
    def exact(self) -> bool:
        """Integer, bool and string values compare for equality; only floating-point values get a tolerance."""
        return self.dtype not in dtypes.FLOAT_DTYPES

    @property
    def json_safe(self) -> bool:
        """FP16/BF16 cannot travel as JSON in the KServe v2 protocol, nor can arbitrary (non-UTF-8) bytes."""
        return self.dtype not in ("FP16", "BF16", "BYTES")

    @property
    def reshaped(self) -> bool:
        """A per-sample scalar (an argmax, a score, skl2onnx's `label`): Triton refuses a tensor without dims, so
        its config declares `dims: [1]` with `reshape: { shape: [] }`, and clients send and get [batch, 1]."""
        return not self.dims

    @property
    def served_dims(self) -> tuple[int, ...]:
        """The dims a config declares and clients see (the model's own `dims` unless `reshaped`)."""
        return self.dims or (1,)


def tensor_specs(items: Any, where: str) -> tuple[TensorSpec, ...]:
    """A spec file's `inputs` or `outputs` list: at least one tensor, known dtypes, valid dims, unique names."""
    if not items:
        raise ConfigError(f"{where}: at least one tensor is required")
    tensors = []
    for item in items:
        dtype = str(item["dtype"]).upper()
        if dtype not in dtypes.SPEC_DTYPES:
            raise ConfigError(f"{where}: tensor {item['name']!r} has unknown dtype {dtype!r}")
        dims = tuple(int(d) for d in item["dims"])
        if any(d == 0 or d < -1 for d in dims):
            raise ConfigError(f"{where}: tensor {item['name']!r} has invalid dims {list(dims)}")
        layout = item.get("layout")
        if layout is not None:
            checked_choice(layout, LAYOUTS, f"tensor {item['name']!r} layout", where)
            if len(dims) != 3:
                raise ConfigError(f"{where}: tensor {item['name']!r} layout {layout} needs 3 dims, got {list(dims)}")
        tensors.append(TensorSpec(str(item["name"]), dtype, dims, bool(item.get("labels", False)), layout))
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: duplicate tensor names {names}")
    return tuple(tensors)
