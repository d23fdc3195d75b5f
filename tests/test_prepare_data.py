"""Data preparation from the offline default and from local IDX / .npz files; clear errors otherwise."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from pipelines.core.errors import DataError
from pipelines.data import digits
from train import prepare_data

from conftest import compose_config


def test_offline_default_writes_a_stratified_seeded_split(tmp_path: Path) -> None:
    cfg = compose_config("prepare", [f"paths.data={tmp_path / 'mnist.npz'}"])
    first = prepare_data.run(cfg)
    assert len(first.x_test) == cfg.data.test_size and len(first.x_train) == 5000 - cfg.data.test_size
    assert np.bincount(first.y_test, minlength=10).tolist() == [cfg.data.test_size // 10] * 10
    assert first.x_train.dtype == np.uint8 and first.x_train.max() > 200  # real digits, 0-255
    again = digits.load_mnist(tmp_path / "mnist.npz")
    np.testing.assert_array_equal(again.y_test, first.y_test)
    second = prepare_data.run(cfg)  # same seed, same split
    np.testing.assert_array_equal(second.x_test, first.x_test)


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)


def test_local_idx_directory(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x_train, x_test = rng.integers(0, 255, (20, 28, 28)), rng.integers(0, 255, (10, 28, 28))
    y_train, y_test = rng.integers(0, 10, 20), rng.integers(0, 10, 10)
    write_idx(tmp_path / "train-images-idx3-ubyte", x_train, compress=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte", y_train, compress=False)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", x_test, compress=True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", y_test, compress=False)
    cfg = compose_config("prepare", ["data=local", f"data.path={tmp_path}", f"paths.data={tmp_path / 'out.npz'}"])
    out = prepare_data.run(cfg)
    np.testing.assert_array_equal(out.x_test, x_test)
    np.testing.assert_array_equal(out.y_train, y_train)


def test_local_npz_file(tmp_path: Path) -> None:
    src = tmp_path / "in.npz"
    rng = np.random.default_rng(1)
    np.savez(
        src,
        x_train=rng.integers(0, 255, (5, 28, 28)),
        y_train=np.arange(5),
        x_test=np.zeros((2, 28, 28)),
        y_test=np.array([1, 2]),
    )
    cfg = compose_config("prepare", ["data=local", f"data.path={src}", f"paths.data={tmp_path / 'out.npz'}"])
    assert prepare_data.run(cfg).y_test.tolist() == [1, 2]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "neither an IDX directory nor an .npz file"),
        (lambda p: p.mkdir(), "no train-images-idx3-ubyte"),
        (lambda p: p.write_bytes(b"garbage"), "not a readable .npz"),
    ],
)
def test_bad_local_paths_are_data_errors(tmp_path: Path, setup, message: str) -> None:
    path = tmp_path / "mnist"
    setup(path)
    out = tmp_path / "out.npz"
    cfg = compose_config("prepare", ["data=local", f"data.path={path}", f"paths.data={out}"])
    with pytest.raises(DataError, match=message):
        prepare_data.run(cfg)
    assert not out.exists()


def test_wrong_image_shape_is_rejected(tmp_path: Path) -> None:
    src = tmp_path / "in.npz"
    np.savez(src, x_train=np.zeros((3, 32, 32)), y_train=np.zeros(3), x_test=np.zeros((1, 32, 32)), y_test=np.zeros(1))
    with pytest.raises(DataError, match=r"\(N, 28, 28\)"):
        digits.load_mnist(src)


def test_normalised_float_images_are_refused_not_zeroed(tmp_path: Path) -> None:
    src = tmp_path / "in.npz"
    np.savez(
        src,
        x_train=np.full((3, 28, 28), 0.5),
        y_train=np.zeros(3),
        x_test=np.full((1, 28, 28), 0.5),
        y_test=np.zeros(1),
    )
    with pytest.raises(DataError, match="normalised"):
        digits.load_mnist(src)


def test_corrupt_gzip_idx_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b not really gzip")
    cfg = compose_config("prepare", ["data=local", f"data.path={tmp_path}", f"paths.data={tmp_path / 'o.npz'}"])
    with pytest.raises(DataError, match="cannot read"):
        prepare_data.run(cfg)


def test_missing_prepared_data_names_the_stage(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dvc repro prepare"):
        digits.load_mnist(tmp_path / "absent.npz")
