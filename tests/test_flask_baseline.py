"""The Flask baseline takes named arrays, never a pickle: whatever reaches its port must not run code there."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest

from pipelines.performance import flask_wire


class Planted:
    """Unpickled, it writes a file: proof that the body's code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (self.path, "pickle ran"))


def test_arrays_travel_exactly_bytes_included() -> None:
    arrays = {
        "image": np.array([[b"\x89PNG\x00"], [b""], [b"\x00\x00"]], dtype=np.object_),
        "pixels": np.arange(6, dtype=np.float32).reshape(2, 3),
    }
    back = flask_wire.loads(flask_wire.dumps(arrays))
    assert sorted(back) == ["image", "pixels"]
    assert back["image"].dtype == np.object_ and back["image"].shape == (3, 1)
    assert back["image"].tolist() == [[b"\x89PNG\x00"], [b""], [b"\x00\x00"]]  # trailing NULs kept
    assert back["pixels"].dtype == np.float32 and back["pixels"].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_a_pickled_body_is_refused_without_running(tmp_path: Path) -> None:
    planted = tmp_path / "planted"
    body = io.BytesIO()
    np.savez(body, image=np.array([Planted(planted)], dtype=np.object_))  # what the old baseline accepted
    with pytest.raises(flask_wire.WireError, match=r"not a pickle-free \.npz body"):
        flask_wire.loads(body.getvalue())
    with pytest.raises(flask_wire.WireError):
        flask_wire.loads(pickle.dumps(Planted(planted)))
    assert not planted.exists()


@pytest.mark.integration
def test_the_baseline_answers_400_to_a_pickle_and_serves_arrays(in_workspace: Path, tmp_path: Path) -> None:
    from serve.flask_baseline import app_for

    client = app_for("mnist_onnx").test_client()
    planted = tmp_path / "planted"
    body = io.BytesIO()
    np.savez(body, image=np.array([Planted(planted)], dtype=np.object_))
    refused = client.post("/predict", data=body.getvalue(), content_type="application/octet-stream")
    assert refused.status_code == 400 and b"not a pickle-free .npz body" in refused.data
    assert not planted.exists()
    assert client.post("/predict", data=flask_wire.dumps({"other": np.zeros(1)})).status_code == 400
    digits = np.zeros((2, 28, 28, 1), dtype=np.float32)
    answered = client.post("/predict", data=flask_wire.dumps({"image": digits}))
    assert answered.status_code == 200
    (probabilities,) = flask_wire.loads(answered.data).values()
    assert probabilities.shape == (2, 10) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
