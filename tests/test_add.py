"""`python -m export.add` / `export.remove`: what it reads from a model, and every refusal leaving conf/ untouched.

The models are built here with onnx.helper (no framework import); the Keras, SavedModel, torch.export
and TorchScript kinds go through the whole pipeline in the pipeline test (tests/user_models.py).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.artifacts import export_failure
from pipelines.byom import added_index, derivation
from pipelines.config.network import Sampling
from pipelines.config.tensors import TensorSpec
from pipelines.core.errors import ArtifactError, ConfigError, DataError
from pipelines.data import parity_inputs

from conftest import ROOT, compose_config, copy_project, run_cmd


def onnx_model(path: Path, inputs: dict[str, tuple[int, list]], outputs: list[str] | None = None) -> Path:
    """Identity outputs of each input (`name: (onnx elem type, shape)`), or Add of the first two."""
    import onnx
    from onnx import helper

    values = [helper.make_tensor_value_info(n, t, s) for n, (t, s) in inputs.items()]
    names = list(inputs)
    if outputs is None:
        nodes = [helper.make_node("Identity", [n], [f"{n}_out"]) for n in names]
        outs = [helper.make_tensor_value_info(f"{n}_out", t, s) for n, (t, s) in inputs.items()]
    else:
        nodes = [helper.make_node("Add", names[:2], outputs[:1])]
        t, s = inputs[names[0]]
        outs = [helper.make_tensor_value_info(outputs[0], t, s)]
    model = helper.make_model(helper.make_graph(nodes, "m", values, outs), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def conf_state() -> dict[str, str]:
    files = [*sorted((ROOT / "conf").rglob("*.yaml")), ROOT / "dvc.yaml"]
    return {str(f.relative_to(ROOT)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def attempt(**settings: object) -> None:
    overrides = [f"{k}={v}" for k, v in settings.items()]
    added_index.add(derivation.request_from_config(compose_config("add", overrides)))


FLOAT, INT64, UINT16 = 1, 7, 4


def embedding_model(path: Path) -> Path:
    """Token ids [batch, seq] into a table of 10 rows: generated ids (0..99 by default) are out of its range."""
    import onnx
    from onnx import helper

    table = onnx.numpy_helper.from_array(np.arange(40, dtype=np.float32).reshape(10, 4), "table")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "tokens"], ["vectors"])],
        "embed",
        [helper.make_tensor_value_info("tokens", INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("vectors", FLOAT, ["batch", "seq", 4])],
        [table],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_a_model_that_does_not_run_on_its_parity_inputs_is_refused_at_add_time(tmp_path: Path) -> None:
    """Found when it is added, not in `dvc repro`: the ids generated for it overflow its table; with the range
    declared it is added."""
    source = embedding_model(tmp_path / "embed.onnx")
    before = conf_state()
    with pytest.raises(DataError, match=r"fails on its parity inputs .*declare each input's values with value_ranges"):
        attempt(source=source, name="mine")
    assert conf_state() == before
    try:
        attempt(source=source, name="mine", value_ranges="{tokens: [0, 10]}")
        assert "mine_onnx" in (ROOT / "conf/added.yaml").read_text()
    finally:
        added_index.remove_added("mine")
    assert conf_state() == before


@pytest.mark.parametrize(
    ("make", "settings", "error", "words"),
    [
        (
            lambda d: (d / "model.bin").write_bytes(b"not a model") and d / "model.bin",
            {},
            ArtifactError,
            "not a model of a supported kind",
        ),
        (lambda d: d / "missing.onnx", {}, ArtifactError, "not found"),
        (lambda d: onnx_model(d / "m.onnx", {"x": (UINT16, ["batch", 3])}), {}, ArtifactError, "UINT16"),
        (lambda d: onnx_model(d / "m.onnx", {"": (FLOAT, ["batch", 3])}), {}, ArtifactError, "no usable name"),
        (
            lambda d: onnx_model(d / "m.onnx", {"x": (FLOAT, ["batch", 3])}),
            {"name": "mnist"},
            ConfigError,
            "exists already",
        ),
        (
            lambda d: onnx_model(d / "m.onnx", {"x": (FLOAT, ["batch", 3])}),
            {"name": "Bad-Name"},
            ConfigError,
            "lowercase",
        ),
        (
            lambda d: onnx_model(d / "m.onnx", {"x": (FLOAT, [2, 3])}),
            {"max_batch_size": 4},
            ConfigError,
            "dynamic first axis",
        ),
        (
            lambda d: onnx_model(d / "m.onnx", {"x": (FLOAT, ["batch", 3])}),
            {"formats": "[savedmodel]"},
            ConfigError,
            "served as onnx",
        ),
        (
            lambda d: onnx_model(d / "m.onnx", {"x": (INT64, ["batch", 3])}),
            {"value_ranges": "{y: [0, 5]}"},
            ConfigError,
            "not inputs",
        ),
    ],
)
def test_a_refused_model_changes_nothing(tmp_path: Path, make, settings, error, words) -> None:
    source = make(tmp_path)
    before = conf_state()
    with pytest.raises(error, match=words):
        attempt(**{"source": source, "name": "mine", **settings})
    assert conf_state() == before


def two_input_model(path: Path) -> Path:
    return onnx_model(path, {"a": (FLOAT, ["batch", 3]), "b": (FLOAT, ["batch", 3])}, outputs=["sum"])


@pytest.mark.parametrize(
    ("arrays", "words"),
    [
        ({"a": np.zeros((4, 3), np.float32)}, "must be exactly the inputs"),
        ({"a": np.zeros((4, 3), np.float32), "b": np.zeros((4, 3), np.float64)}, "is float64, the input is FP32"),
        ({"a": np.zeros((4, 3), np.float32), "b": np.zeros((4, 5), np.float32)}, "sample shape \\[5\\]"),
        ({"a": np.zeros((4, 3), np.float32), "b": np.zeros((3, 3), np.float32)}, "same, non-zero number"),
        (
            {"a": np.zeros((4, 3), np.float32), "b": np.zeros((4, 3), np.float32), "labels": np.zeros(4)},
            "integer class",
        ),
    ],
)
def test_a_sample_that_does_not_fit_the_inputs_changes_nothing(tmp_path: Path, arrays, words) -> None:
    np.savez(tmp_path / "sample.npz", **arrays)
    before = conf_state()
    with pytest.raises(DataError, match=words):
        attempt(source=two_input_model(tmp_path / "m.onnx"), name="mine", sample=tmp_path / "sample.npz")
    assert conf_state() == before


def test_a_failure_while_writing_puts_every_file_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise ConfigError("the written files do not compose")

    monkeypatch.setattr(added_index, "_validate", broken)
    before = conf_state()
    with pytest.raises(ConfigError, match="do not compose"):
        attempt(source=two_input_model(tmp_path / "m.onnx"), name="mine")
    assert conf_state() == before and not (ROOT / "conf/network/mine.yaml").exists()


def test_add_and_remove_from_the_command_line(tmp_path: Path) -> None:
    """In a project copy: the files written, their tensors as the model declares them, and remove undoing it all."""
    project = copy_project(tmp_path / "project")
    source = two_input_model(tmp_path / "m.onnx")
    conf = {p.relative_to(project): p.read_bytes() for p in (project / "conf").rglob("*.yaml")}
    add = run_cmd([sys.executable, "-m", "export.add", f"source={source}", "name=summer"], project, timeout=120)
    assert add.returncode == 0, add.stderr
    network = (project / "conf/network/summer.yaml").read_text()
    assert "- name: a\n  dtype: FP32\n  dims:\n  - 3\n" in network and "- name: sum\n" in network
    assert "summer_onnx" in (project / "conf/added.yaml").read_text()
    assert "served as: summer_onnx" in add.stdout
    again = run_cmd([sys.executable, "-m", "export.add", f"source={source}", "name=summer"], project, timeout=120)
    assert again.returncode == 2 and again.stderr.strip().count("\n") == 0 and "exists already" in again.stderr
    removed = run_cmd([sys.executable, "-m", "export.remove", "name=summer"], project, timeout=120)
    assert removed.returncode == 0, removed.stderr
    assert {p.relative_to(project): p.read_bytes() for p in (project / "conf").rglob("*.yaml")} == conf


def test_an_export_that_fails_is_recorded_for_the_stage_and_refused_alone(tmp_path: Path) -> None:
    """`export_added` as `dvc repro` runs it (record_failure=true): a model that cannot be exported leaves a record in
    its folder and report, exit 0, so the other models go on; run by hand, the same failure is one line, exit 2."""
    project = copy_project(tmp_path / "project")
    source = two_input_model(tmp_path / "m.onnx")
    add = run_cmd([sys.executable, "-m", "export.add", f"source={source}", "name=summer"], project, timeout=120)
    assert add.returncode == 0, add.stderr
    source.write_bytes(b"not an ONNX file")  # changed after it was added: the export cannot read it
    export = [sys.executable, "-m", "export.added", "network=summer"]
    by_hand = run_cmd(export, project, timeout=120)
    assert by_hand.returncode == 2 and by_hand.stderr.strip().count("\n") == 0, by_hand.stderr
    assert not (project / "models/added/summer").exists()
    stage = run_cmd([*export, "record_failure=true"], project, timeout=120)
    assert stage.returncode == 0, stage.stderr
    record = json.loads((project / "models/added/summer" / export_failure.FILENAME).read_text())
    assert record["export_failed"] == by_hand.stderr.strip().removeprefix("error: ")
    assert [p.name for p in (project / "models/added/summer").iterdir()] == [export_failure.FILENAME]
    assert json.loads((project / "reports/export/summer.json").read_text())["export_failed"] == record["export_failed"]


def test_generated_inputs_follow_the_spec() -> None:
    tokens, mask, x = (
        TensorSpec("tokens", "INT64", (-1,)),
        TensorSpec("mask", "BOOL", (4,)),
        TensorSpec("x", "FP16", (2,)),
    )
    sampling = Sampling(count=5, value_ranges={"tokens": (3, 7), "x": (-1, 1)}, dim_sizes=(6, 9))
    made = parity_inputs.generate((tokens, mask, x), sampling)
    assert made.arrays["tokens"].shape == (5, 6) and made.arrays["tokens"].dtype == np.int64
    assert made.groups["9"]["tokens"].shape == (5, 9) and made.groups["9"]["mask"].shape == (5, 4)
    assert made.arrays["tokens"].min() >= 3 and made.arrays["tokens"].max() <= 6
    assert made.arrays["mask"].dtype == np.bool_ and made.arrays["x"].dtype == np.float16
    assert np.abs(made.arrays["x"]).max() <= 1
    again = parity_inputs.generate((tokens, mask, x), sampling)
    assert all(np.array_equal(made.arrays[k], again.arrays[k]) for k in made.arrays)  # seeded
