"""Hostile requests against the real Triton: refused as the sender's error, fast, and harmless to good requests.

The good answers are Triton's own: each photograph is classified once on a quiet server, and every
later answer for it, sent among hostile requests, must be identical.
"""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from pipelines.data import parity_inputs

from hostile_images import HOSTILE

pytestmark = pytest.mark.integration
MODEL = "resnet50_ensemble"


def http_infer(client: httpclient.InferenceServerClient, data: bytes) -> np.ndarray:
    item = httpclient.InferInput("image", [1, 1], "BYTES")
    item.set_data_from_numpy(np.array([[data]], dtype=np.object_))
    return client.infer(MODEL, [item], outputs=[httpclient.InferRequestedOutput("labels")]).as_numpy("labels")


def grpc_infer(client: grpcclient.InferenceServerClient, data: bytes) -> np.ndarray:
    item = grpcclient.InferInput("image", [1, 1], "BYTES")
    item.set_data_from_numpy(np.array([[data]], dtype=np.object_))
    return client.infer(MODEL, [item], outputs=[grpcclient.InferRequestedOutput("labels")]).as_numpy("labels")


@pytest.fixture
def server(running_triton):
    """The session's shared Triton: hostile requests must leave it serving every other test."""
    return running_triton


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_image_is_a_client_error(server, name: str) -> None:
    make, says = HOSTILE[name]
    data = make()
    with pytest.raises(InferenceServerException) as http_error:
        http_infer(httpclient.InferenceServerClient(server.http), data)
    assert http_error.value.status() == "400" and says in http_error.value.message()
    with pytest.raises(InferenceServerException) as grpc_error:
        grpc_infer(grpcclient.InferenceServerClient(server.grpc), data)
    assert grpc_error.value.status() == "StatusCode.INVALID_ARGUMENT" and says in grpc_error.value.message()


def test_hostile_requests_mixed_with_good_ones_leave_every_good_answer_intact(server) -> None:
    photos = [p.read_bytes() for p in parity_inputs.sample_photo_paths()]
    quiet = [grpc_infer(grpcclient.InferenceServerClient(server.grpc), data) for data in photos]
    hostile = [make() for make, _ in HOSTILE.values()]
    good_jobs = [("good", i) for i in range(len(photos))] * 3
    bad_jobs = [("hostile", i) for i in range(len(hostile))] * 3
    jobs = (
        [job for pair in zip(good_jobs, bad_jobs) for job in pair]
        + good_jobs[len(bad_jobs) :]
        + bad_jobs[len(good_jobs) :]
    )

    def send(job: tuple[str, int]) -> tuple[str, int, object]:
        kind, index = job
        data = photos[index] if kind == "good" else hostile[index]
        try:
            if index % 2:
                return kind, index, http_infer(httpclient.InferenceServerClient(server.http), data)
            return kind, index, grpc_infer(grpcclient.InferenceServerClient(server.grpc), data)
        except InferenceServerException as exc:
            return kind, index, exc

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(send, jobs))
    good = [(i, r) for kind, i, r in results if kind == "good"]
    bad = [r for kind, _, r in results if kind == "hostile"]
    assert len(good) == 3 * len(photos) and len(bad) == 3 * len(hostile)
    for index, result in good:
        assert isinstance(result, np.ndarray), f"a good request failed among hostile ones: {result}"
        np.testing.assert_array_equal(result, quiet[index])
    assert all(
        isinstance(r, InferenceServerException) and r.status() in ("400", "StatusCode.INVALID_ARGUMENT") for r in bad
    )


def test_a_client_over_its_pixel_budget_is_told_to_come_back_and_others_are_not(server) -> None:
    """633-byte JPEGs that each declare 40 MP (half a second of decoding each): a client that keeps sending them is
    answered UNAVAILABLE once its budget is spent (image_limits.client_pixels_per_s, max_request_pixels at once,
    each of the two decoding instances its share), before any decoding; another client is served meanwhile. The
    client is named by the header the front sets and Triton forwards to the step."""
    from pipelines.data.images import CLIENT_PARAMETER
    from pipelines.performance.hostile_requests import declared_jpeg

    data = declared_jpeg(5000, 8000)

    def send(_: int) -> str:
        try:
            item = httpclient.InferInput("image", [1, 1], "BYTES")
            item.set_data_from_numpy(np.array([[data]], dtype=np.object_))
            httpclient.InferenceServerClient(server.http).infer(
                MODEL, [item], headers={CLIENT_PARAMETER: "hostile-client"}
            )
            return "200"
        except InferenceServerException as exc:
            if exc.status() == "503":
                assert "client hostile-client is over its pixel budget" in exc.message(), exc.message()
            return str(exc.status())

    # 16 at once: 640 MP against 200 MP at once over both instances. Sent one after another, a host slowed by other
    # work refilled the budget (40 MP a second) as fast as each decoding spent it, and none was refused.
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, range(16)))
    assert "503" in answers and set(answers) <= {"200", "503"}, answers
    client = httpclient.InferenceServerClient(server.http)
    photo = parity_inputs.sample_photo_paths()[0].read_bytes()
    item = httpclient.InferInput("image", [1, 1], "BYTES")
    item.set_data_from_numpy(np.array([[photo]], dtype=np.object_))
    labels = client.infer(MODEL, [item], headers={CLIENT_PARAMETER: "another-client"}).as_numpy("labels")
    assert labels.shape == (1, 5)
