"""Image pre-processing: identical to torchvision's ImageNet transform, on real photographs."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.config.preprocessing import image_limits
from pipelines.data import images, parity_inputs
from pipelines.frameworks.torchvision_compat import import_torchvision

from conftest import compose_config
from hostile_images import HOSTILE

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@pytest.mark.parametrize("resize", [256, 232])  # the IMAGENET1K_V1 recipes' and resnet50 IMAGENET1K_V2's
@pytest.mark.parametrize("path", parity_inputs.sample_photo_paths(), ids=lambda p: p.name)
def test_matches_torchvision_transform_exactly(path, resize: int) -> None:
    transforms = import_torchvision().transforms
    reference = transforms.Compose(
        [
            transforms.Resize(resize),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )
    image = images.decode(path.read_bytes())
    ours = images.imagenet_tensor(image, resize, 224, MEAN, STD)
    assert ours.shape == (3, 224, 224) and ours.dtype == np.float32
    np.testing.assert_array_equal(ours, reference(image).numpy())


def test_greyscale_photos_become_rgb() -> None:
    camera = next(p for p in parity_inputs.sample_photo_paths() if p.name == "camera.png")
    assert images.decode(camera.read_bytes()).mode == "RGB"


def test_undecodable_bytes_are_a_decode_error() -> None:
    with pytest.raises(images.ImageDecodeError, match="not an image Pillow can decode"):
        images.decode(b"%PDF-1.4 not an image")


LIMITS = image_limits(compose_config("client", ["model=resnet50_ensemble"]).image_limits).settings()


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_images_are_refused_from_the_header(name: str) -> None:
    make, says = HOSTILE[name]
    with pytest.raises(images.ImageDecodeError, match=says):
        images.decode(make(), LIMITS)


def test_limits_are_checked_before_decoding() -> None:
    photo = next(p for p in parity_inputs.sample_photo_paths() if p.name == "chelsea.png").read_bytes()
    assert images.decode(photo, LIMITS).size == (451, 300)
    with pytest.raises(images.ImageDecodeError, match=f"is {len(photo)} bytes, over the limit of 1000"):
        images.decode(photo, {**LIMITS, "max_bytes": 1000})
    with pytest.raises(images.ImageDecodeError, match="is 451x300: over 135000 pixels"):
        images.decode(photo, {**LIMITS, "max_pixels": 135000})


def test_softmax_and_top_k() -> None:
    logits = np.array([[1.0, 3.0, 2.0, 3.0]], dtype=np.float32)
    probabilities = images.softmax(logits)
    assert probabilities.sum() == pytest.approx(1.0)
    scores, indices = images.top_k(probabilities, 3)
    assert indices.tolist() == [[1, 3, 2]]  # ties keep the lower index first
    assert scores[0, 0] == pytest.approx(np.exp(3) / np.exp([1, 3, 2, 3]).sum())


def test_sample_images_are_encoded_photographs() -> None:
    batch = parity_inputs.sample_images(10)
    assert batch.shape == (10, 1) and batch.dtype == object
    assert bytes(batch[0, 0])[:4] == b"\x89PNG" and bytes(batch[8, 0]) == bytes(batch[0, 0])  # list repeats


def test_a_requests_images_share_one_pixel_budget_checked_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight 6000x6000 PNGs (about 100 KB each, 0.5-0.7 s each to decode) are refused from their headers at once."""
    from PIL import Image

    from pipelines.performance.hostile import zeros_png

    big = zeros_png(6000)
    limits = image_limits(compose_config("parity", ["model=resnet50_ensemble"]).image_limits).settings()
    assert limits["max_request_pixels"] == 100_000_000
    decoded: list = []
    load = Image.Image.load
    monkeypatch.setattr(
        Image.Image, "load", lambda self: decoded.append(self.size) if self.size == (6000, 6000) else load(self)
    )  # counts the big pictures' decodes, and runs none of them
    with pytest.raises(
        images.ImageDecodeError, match="images hold 288000000 pixels together, over the limit of 100000000 per request"
    ):
        images.decode_request([big] * 8, limits)
    assert decoded == []  # refused before any pixel was decoded
    with pytest.raises(images.ImageDecodeError, match=r"^image 1 is not an image Pillow can decode"):
        images.decode_request([big, b"not an image"], limits)
    assert decoded == []
    # the client's budget over time is charged from the headers too: 72 MP, refused before decoding
    budget = images.PixelBudget(rate=40_000_000, burst=100_000_000)
    budget.charge("127.0.0.2", 50_000_000, now=0.0)  # 50 MP of the 100 MP it may hold at once
    with pytest.raises(
        images.ImageBudgetError,
        match=r"^client 127.0.0.2 is over its pixel budget .*: this request's 72 MP fit in 0.6 s",
    ):
        images.decode_request([big] * 2, limits, lambda pixels: budget.charge("127.0.0.2", pixels, now=0.0))
    assert decoded == []


def test_a_clients_pixel_budget_refills_over_time_and_is_its_own() -> None:
    """A token bucket per client, worked by hand: 10 pixels a second, 30 at once."""
    budget = images.PixelBudget(rate=10, burst=30, clients=2)
    budget.charge("a", 30, now=0.0)  # the whole burst
    with pytest.raises(images.ImageBudgetError, match=r"this request's 5e-06 MP fit in 0.5 s"):
        budget.charge("a", 5, now=0.0)
    budget.charge("b", 30, now=0.0)  # another client has its own
    budget.charge("a", 5, now=0.5)  # 0.5 s later: 5 pixels back
    with pytest.raises(images.ImageBudgetError):
        budget.charge("a", 1, now=0.5)
    budget.charge("a", 30, now=100.0)  # refilled, never beyond the burst
    with pytest.raises(images.ImageBudgetError):
        budget.charge("a", 1, now=100.0)
    budget.charge("c", 1, now=100.0)  # a third client: the least recently seen ("b") is forgotten
    budget.charge("b", 30, now=100.0)  # ... and starts afresh


def test_the_clients_input_for_a_greyscale_model_is_its_grey_pixels_scaled() -> None:
    """serve.client pre-processes an image for an MNIST-style (28, 28, 1) input itself: greyscale, resized to the
    input's size, in [0, 1]. Checked on a 56x56 RGB image whose left half is black and right half white."""
    import io

    from PIL import Image

    from pipelines.config.spec import model_spec
    from pipelines.serving.classify import input_tensor

    pixels = np.zeros((56, 56, 3), dtype=np.uint8)
    pixels[:, 28:] = 255
    encoded = io.BytesIO()
    Image.fromarray(pixels).save(encoded, format="PNG")
    spec = model_spec("mnist_onnx", compose_config("client", ["model=mnist_onnx"]).model)
    tensor = input_tensor(spec, encoded.getvalue())
    assert tensor.shape == (1, 28, 28, 1) and tensor.dtype == np.float32
    assert np.all(tensor[0, :, :13, 0] == 0.0) and np.all(tensor[0, :, 15:, 0] == 1.0)  # the edge column may blend
