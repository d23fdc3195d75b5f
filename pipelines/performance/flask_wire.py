"""The Flask baseline's wire format: named numpy arrays in one `.npz` body, never pickled.

`numpy.savez` stores object arrays (BYTES tensors: encoded images, text) with pickle, and loading a
pickle runs whatever code it names: a baseline that read its bodies with `allow_pickle=True` ran code
for anyone who reached its port. Here an object array travels as Triton serializes BYTES (a 4-byte
length before each element's bytes, as uint8) with its shape beside it, exact for any bytes (numpy's
fixed-width `S` arrays would drop trailing NULs), and bodies are read with `allow_pickle=False`.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

BYTES_KEY, SHAPE_KEY = "{}.bytes", "{}.shape"


class WireError(ValueError):
    """A body that is not this format (a pickle among them): the sender's error, answered 400."""


def dumps(arrays: Mapping[str, np.ndarray]) -> bytes:
    plain: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        if array.dtype == np.object_:
            serialized = serialize_byte_tensor(array)
            plain[BYTES_KEY.format(name)] = np.frombuffer(serialized.item() if serialized.size else b"", np.uint8)
            plain[SHAPE_KEY.format(name)] = np.asarray(array.shape, dtype=np.int64)
        else:
            plain[name] = array
    body = io.BytesIO()
    np.savez(body, **plain)
    return body.getvalue()


def loads(data: bytes) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        out: dict[str, np.ndarray] = {}
        for key, array in arrays.items():
            name, _, kind = key.rpartition(".")
            if kind == "shape" and name:
                continue
            if kind == "bytes" and name:
                shape = tuple(int(d) for d in arrays[SHAPE_KEY.format(name)])
                out[name] = deserialize_bytes_tensor(array.tobytes()).reshape(shape)
            else:
                out[key] = array
        return out
    except (ValueError, KeyError, OSError, EOFError) as exc:  # numpy's refusals of a pickle or a broken file
        raise WireError(
            f"not a pickle-free .npz body: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc
