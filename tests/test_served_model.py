"""The client side of parity with no server: what travels over each protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from pipelines.serving import served_model
from pipelines.serving.endpoints import load_failures


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


def test_load_failures_read_tritons_own_lines(tmp_path: Path) -> None:
    """The three lines Triton 2.51 logs for a model it did not load (copied from its logs here), beside an index
    entry with a reason; a model that loaded after all (a supervised restart) is not a failure."""
    log = tmp_path / "triton.log"
    log.write_text(
        "E1207 13:05:27.896384 19411 model_repository_manager.cc:1460] \"Poll failed for model directory 'bad_text': "
        'failed to read text proto from /repo/bad_text/config.pbtxt"\n'
        "E1207 12:32:20.010143 23244 model_repository_manager.cc:724] \"failed to load model 'no_version': at least "
        "one version must be available under the version policy of model 'no_version'\"\n"
        "E1207 12:29:11.002 1 model_lifecycle.cc:654] \"failed to load 'broken' version 1: Internal: "
        'TritonModelException: deliberately broken"\n'
        "E1207 12:29:11.002 1 model_lifecycle.cc:654] \"failed to load 'back' version 1: Internal: crashed\"\n"
    )
    index = [
        {"name": "broken", "version": "1", "state": "UNAVAILABLE", "reason": "Internal: TritonModelException: x"},
        {"name": "back", "version": "1", "state": "READY"},
        {"name": "fine", "version": "1", "state": "READY"},
    ]
    assert load_failures(index, log) == {
        "bad_text": "failed to read text proto from /repo/bad_text/config.pbtxt",
        "no_version": "at least one version must be available under the version policy of model 'no_version'",
        "broken": "Internal: TritonModelException: x",  # the index's words first
    }
    assert load_failures(index, None) == {"broken": "Internal: TritonModelException: x"}
