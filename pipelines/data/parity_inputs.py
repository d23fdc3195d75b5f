"""Inputs that exports and parity feed a model: real digits for MNIST, image-like tensors for ImageNet nets,
and for an added network the user's sample file or seeded inputs generated from its spec.

Random noise hides or exaggerates differences (NVIDIA/TensorRT#1565), so MNIST uses real test
digits; for classifiers without a shipped image set we use smooth, seeded, image-like tensors
normalised with the network's own ImageNet statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.config.network import Sampling
from pipelines.config.preprocessing import Preprocessing
from pipelines.config.spec import ModelSpec
from pipelines.config.tensors import TensorSpec
from pipelines.core.errors import ConfigError, DataError
from pipelines.data import digits, images


@dataclass(frozen=True)
class ParityInputs:
    """Samples of every input tensor (batch first, by name) and, where known, their true labels.

    `groups`: more samples whose open dimensions have other sizes (tag -> arrays): a dimension served as
    -1 is proven dynamic only by requests of more than one size.
    """

    arrays: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    groups: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(next(iter(self.arrays.values())))

    def head(self, count: int) -> ParityInputs:
        return ParityInputs(
            {k: v[:count] for k, v in self.arrays.items()},
            None if self.labels is None else self.labels[:count],
            {tag: {k: v[:count] for k, v in group.items()} for tag, group in self.groups.items()},
        )


def imagenet_like(tensor: TensorSpec, count: int, mean: list[float], std: list[float], seed: int = 0) -> np.ndarray:
    """`count` NCHW float32 images: coarse colour fields plus fine texture in [0, 1], then normalised."""
    channels, height, width = tensor.dims
    rng = np.random.default_rng(seed)
    coarse = rng.random((count, channels, 8, 8))
    ys = np.linspace(0, 7, height)
    xs = np.linspace(0, 7, width)
    y0, x0 = np.floor(ys).astype(int).clip(0, 6), np.floor(xs).astype(int).clip(0, 6)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = coarse[:, :, y0][:, :, :, x0] * (1 - fx) + coarse[:, :, y0][:, :, :, x0 + 1] * fx
    bottom = coarse[:, :, y0 + 1][:, :, :, x0] * (1 - fx) + coarse[:, :, y0 + 1][:, :, :, x0 + 1] * fx
    images = top * (1 - fy) + bottom * fy + rng.normal(0, 0.05, (count, channels, height, width))
    images = images.clip(0, 1)
    mean_a = np.asarray(mean, dtype=np.float64).reshape(1, channels, 1, 1)
    std_a = np.asarray(std, dtype=np.float64).reshape(1, channels, 1, 1)
    return ((images - mean_a) / std_a).astype(tensor.numpy_dtype)


# photographs that scikit-image ships (no download): JPEG and PNG, colour and one greyscale
SAMPLE_PHOTOS = (
    "chelsea.png",
    "coffee.png",
    "astronaut.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "camera.png",
)


def sample_photo_paths() -> list[Any]:
    try:
        import skimage  # lazy: the astronaut test image only
    except ImportError as exc:
        raise ConfigError("sample images come from scikit-image: run `make setup`") from exc
    folder = Path(skimage.__file__).parent / "data"
    return [folder / name for name in SAMPLE_PHOTOS]


def sample_images(count: int) -> np.ndarray:
    """`count` encoded photographs (the list repeats if needed) as a [count, 1] BYTES array."""
    paths = sample_photo_paths()
    encoded = [paths[i % len(paths)].read_bytes() for i in range(count)]
    return np.array(encoded, dtype=np.object_).reshape(count, 1)


LABELS = "labels"  # the optional array of true classes in a sample file
GROUP = "@"  # `<input>@<tag>`: a sample file's arrays of another size of the open dimensions


def npz_arrays(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """A sample file's arrays by name, as they are (no pickled objects), and its `labels` apart."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(
            f"{path}: not a readable .npz sample ({str(exc).splitlines()[0] if str(exc) else exc})"
        ) from exc
    return arrays, arrays.pop(LABELS, None)


def read_npz(path: Path, inputs: tuple[TensorSpec, ...], batched: bool = True) -> ParityInputs:
    """A sample file's arrays: one per input, named after it, batch first, plus optional `labels`; arrays named
    `<input>@<tag>` are a group of samples of other sizes (every input again, under the same tag).

    An unbatched model's (max_batch_size 0) array may also be one sample: exactly the input's shape. Every
    mismatch is one line (DataError) naming the array and what the spec says.
    """
    arrays, labels = npz_arrays(path)
    grouped: dict[str, dict[str, np.ndarray]] = {}
    for key in [k for k in arrays if GROUP in k]:
        name, tag = key.split(GROUP, 1)
        grouped.setdefault(tag, {})[name] = arrays.pop(key)
    main = _checked(path, arrays, inputs, batched)
    groups = {tag: _checked(path, group, inputs, batched, f" ({GROUP}{tag})") for tag, group in grouped.items()}
    if labels is not None and (
        labels.ndim != 1 or len(labels) != len(next(iter(main.values()))) or labels.dtype.kind not in "iu"
    ):
        raise DataError(
            f"{path}: {LABELS!r} must be one integer class per sample, got {labels.dtype} {list(labels.shape)}"
        )
    return ParityInputs(main, labels, groups)


def _checked(
    path: Path, arrays: dict[str, np.ndarray], inputs: tuple[TensorSpec, ...], batched: bool, what: str = ""
) -> dict[str, np.ndarray]:
    names = {t.name for t in inputs}
    if set(arrays) != names:
        raise DataError(
            f"{path}: arrays {sorted(arrays)}{what} must be exactly the inputs {sorted(names)} (and "
            f"optionally {LABELS!r})"
        )
    out = {}
    for tensor in inputs:
        array = arrays[tensor.name]
        if not batched and array.ndim == len(tensor.dims):  # one sample of an unbatched input
            array = array[None]
        problem = sample_mismatch(tensor, array)
        if problem:
            raise DataError(f"{path}: {problem}{what}")
        if tensor.dtype == "BYTES":  # stored as fixed-size bytes or unicode (.npz holds no objects without pickle)
            array = (np.char.encode(array, "utf-8") if array.dtype.kind == "U" else array).astype(np.object_)
        out[tensor.name] = array
    counts = {len(a) for a in out.values()}
    if len(counts) != 1 or 0 in counts:
        raise DataError(
            f"{path}: the input arrays{what} must hold the same, non-zero number of samples, got "
            f"{ {k: len(v) for k, v in out.items()} }"
        )
    return out


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def read_images(folder: Path, tensor: TensorSpec, preprocessing: Preprocessing) -> ParityInputs:
    """A folder of images as an image input's samples, in name order, through the ensemble's pre-processing
    (`images.preprocess`: shorter side to `resize`, centre crop, normalise), laid out as the input's `layout`."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    samples = []
    for file in files:
        try:
            chw = images.preprocess(file.read_bytes(), preprocessing.settings())
        except images.ImageDecodeError as exc:
            raise DataError(f"{file} {exc}") from exc
        samples.append(chw.transpose(1, 2, 0) if tensor.layout == "NHWC" else chw)
    return ParityInputs({tensor.name: np.stack(samples).astype(tensor.numpy_dtype)})


def write_npz(path: Path, inputs: ParityInputs) -> None:
    """What `read_npz` reads back (BYTES as fixed-size bytes: .npz holds no Python objects without pickle)."""
    every = {
        **inputs.arrays,
        **{f"{k}{GROUP}{tag}": v for tag, group in inputs.groups.items() for k, v in group.items()},
    }
    arrays = {k: v.astype(np.bytes_) if v.dtype == np.object_ else v for k, v in every.items()}
    if inputs.labels is not None:
        arrays[LABELS] = inputs.labels
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def sample_mismatch(tensor: TensorSpec, array: np.ndarray) -> str:
    """Why a batch-first array cannot feed `tensor` (empty when it can): dtype and every fixed dimension."""
    want = tensor.numpy_dtype
    same_kind = array.dtype == want or (tensor.dtype == "BYTES" and array.dtype.kind in "OSU")
    if not same_kind:
        return f"array {tensor.name!r} is {array.dtype}, the input is {tensor.dtype} ({want})"
    dims = array.shape[1:]
    if len(dims) != len(tensor.dims) or any(w not in (-1, g) for g, w in zip(dims, tensor.dims)):
        return f"array {tensor.name!r} has sample shape {list(dims)}, the input's dims are {list(tensor.dims)}"
    return ""


def generate(inputs: tuple[TensorSpec, ...], sampling: Sampling) -> ParityInputs:
    """Seeded inputs from the spec alone: `count` samples, open dimensions the first of `dim_sizes` (each other
    size a group of its own, where a dimension is open), values per dtype in the input's declared range
    (floats: standard normal, or uniform within a range; integers: [0, 100) by default)."""
    rng = np.random.default_rng(sampling.seed)
    (first, *others) = sampling.dim_sizes
    open_dims = any(d == -1 for t in inputs for d in t.dims)
    groups = {str(size): _generated(inputs, sampling, size, rng) for size in others} if open_dims else {}
    return ParityInputs(_generated(inputs, sampling, first, rng), None, groups)


def _generated(inputs: tuple[TensorSpec, ...], sampling: Sampling, size: int, rng: Any) -> dict[str, np.ndarray]:
    arrays = {}
    for tensor in inputs:
        shape = (sampling.count, *(size if d == -1 else d for d in tensor.dims))
        low, high = sampling.value_ranges.get(tensor.name, (None, None))
        if tensor.dtype == "BOOL":
            arrays[tensor.name] = rng.random(shape) < 0.5
        elif tensor.dtype == "BYTES":
            arrays[tensor.name] = np.array(
                [f"sample {i}".encode() for i in range(int(np.prod(shape)))], dtype=np.object_
            ).reshape(shape)
        elif not tensor.exact:
            values = rng.standard_normal(shape) if low is None else rng.uniform(low, high, shape)
            arrays[tensor.name] = values.astype(tensor.numpy_dtype)
        else:
            bounds = np.iinfo(tensor.numpy_dtype)
            lo, hi = (0, 100) if low is None else (int(np.ceil(low)), int(np.ceil(high)))
            arrays[tensor.name] = rng.integers(max(lo, bounds.min), min(hi, bounds.max), shape).astype(
                tensor.numpy_dtype
            )
    return arrays


def for_model(spec: ModelSpec, count: int, data_path: str) -> ParityInputs:
    """A served model's parity inputs (`parity.inputs`, else its network's kind), at most `count` samples."""
    network, kind = spec.network, spec.parity.inputs or spec.network.parity_inputs
    if kind == "npz":
        return read_npz(network.artifact("inputs"), spec.inputs, spec.max_batch_size > 0).head(count)
    (tensor,) = spec.inputs  # the other kinds feed our single-input image networks (an ensemble: encoded images)
    if kind == "sample_images":
        return ParityInputs({tensor.name: sample_images(count)})
    if kind == "mnist_test":
        mnist = digits.load_mnist(data_path)
        return ParityInputs({tensor.name: digits.to_model_input(mnist.x_test[:count])}, mnist.y_test[:count])
    if kind == "imagenet_like":
        pre = network.require_preprocessing("image-like parity inputs")
        return ParityInputs({tensor.name: imagenet_like(tensor, count, list(pre.mean), list(pre.std))})
    raise ConfigError(f"network {network.name!r}: unknown parity_inputs {kind!r}")
