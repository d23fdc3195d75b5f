"""The client side of parity with no server: what travels over each protocol."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from pipelines.serving import served_model


@pytest.mark.parametrize("dtype, datatype", [(np.float32, "FP32"), (np.int64, "INT64"), (np.uint8, "UINT8")])
def test_json_inputs_are_what_tritonclient_itself_sends(dtype, datatype: str) -> None:
    """The fast JSON encoding must put exactly tritonclient's own numbers into the request."""
    array = (np.random.default_rng(0).standard_normal((2, 3, 5)) * 50).astype(dtype)
    ours = httpclient.InferInput("x", list(array.shape), datatype)
    served_model._set_json_data(ours, array)
    theirs = httpclient.InferInput("x", list(array.shape), datatype)
    theirs.set_data_from_numpy(array, binary_data=False)
    assert ours._get_tensor() == theirs._get_tensor() and ours._get_binary_data() is None


def test_json_inputs_keep_tritonclients_checks() -> None:
    item = httpclient.InferInput("x", [2, 3], "FP32")
    with pytest.raises(InferenceServerException, match="unexpected numpy array shape"):
        served_model._set_json_data(item, np.zeros((3, 2), dtype=np.float32))
