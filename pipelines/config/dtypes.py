"""Tensor data types, in one place: Triton's names (what a spec says) and what numpy, ONNX, TensorFlow,
TensorRT and the model-config protobuf call them.

numpy's side is tritonclient's own table (`tritonclient.utils`), the one Triton's clients send with, so our
names cannot drift from the wire; ONNX's goes through `onnx.helper`'s numpy mapping. The stand-in backends,
which run inside Triton and cannot import this package, use tritonclient's table too.
"""

from __future__ import annotations

import numpy as np

# the data types our specs may name (Triton's names; the model config's TYPE_STRING is the protocol's BYTES)
SPEC_DTYPES = ("BOOL", "UINT8", "INT8", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES")
FLOAT_DTYPES = ("FP16", "BF16", "FP32", "FP64")
# TensorRT's DataType names -> Triton's (TensorRT has no numpy type for BF16, so no mapping through numpy)
TENSORRT_TO_TRITON = {
    "FLOAT": "FP32",
    "HALF": "FP16",
    "BF16": "BF16",
    "INT8": "INT8",
    "INT32": "INT32",
    "INT64": "INT64",
    "BOOL": "BOOL",
    "UINT8": "UINT8",
}


def to_numpy(dtype: str) -> np.dtype:
    """A spec's dtype as numpy's (BYTES: object arrays of bytes, as tritonclient sends them)."""
    from tritonclient.utils import triton_to_np_dtype  # lazy: tritonclient.grpc/http take ~1 s; server calls only

    return np.dtype(triton_to_np_dtype(dtype))


def from_numpy(dtype: np.dtype | str) -> str | None:
    """numpy's dtype (or its name) as Triton's; None where Triton has none."""
    from tritonclient.utils import np_to_triton_dtype  # lazy: tritonclient.grpc/http take ~1 s; server calls only

    try:
        return np_to_triton_dtype(np.dtype(dtype))
    except TypeError:
        return None


def from_onnx(elem_type: int) -> str | None:
    """An ONNX TensorProto element type as Triton's (STRING: BYTES); None where Triton has none."""
    import onnx  # lazy: onnx takes ~0.6 s; ONNX work only

    if elem_type == onnx.TensorProto.STRING:
        return "BYTES"
    try:
        return from_numpy(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except KeyError:
        return None


def from_tensorflow(name: str) -> str | None:
    """A TensorFlow dtype name (`float32`, `string`) as Triton's; None where Triton has none."""
    return "BYTES" if name == "string" else from_numpy(name)


def config_enum(dtype: str) -> int:
    """A spec's dtype as the model config's enum (the protocol's BYTES is TYPE_STRING in model configs)."""
    from tritonclient.grpc import model_config_pb2 as mc  # lazy: tritonclient.grpc/http take ~1 s; server calls only

    return mc.DataType.Value("TYPE_STRING" if dtype == "BYTES" else f"TYPE_{dtype}")


def from_config_enum(value: int) -> str:
    """The model config's enum as a spec's dtype."""
    from tritonclient.grpc import model_config_pb2 as mc  # lazy: tritonclient.grpc/http take ~1 s; server calls only

    name = mc.DataType.Name(value).removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name
