"""TensorRT without TensorRT: profiles, precision, metadata, version guard, configs, trtexec, host checks.

The repository tests use plan files whose bytes are opaque here: assembly never loads an engine,
it copies plans and decides from the metadata their build recorded, which is what is tested.
Building and serving real engines is in the `gpu` tests at the end, which skip without a GPU.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from pipelines.config.spec import model_spec
from pipelines.core.errors import ArtifactError, ConfigError, ServerError
from pipelines.model_repository import assembly, triton_config
from pipelines.serving import launcher
from pipelines.serving.settings import ServerSettings
from pipelines.trt import build, host, loadability, plans
from pipelines.trt.loadability import Loader

from conftest import compose_config

TRT_MODELS = ["mnist_trt", "resnet50_trt", "resnet50_trt_fp16", "resnet50_trt_int8"]


def trt_spec(name: str = "mnist_trt", *overrides: str, artifact: Path | None = None):
    spec = model_spec(name, compose_config("parity", [f"model={name}", *overrides]).model)
    return dataclasses.replace(spec, artifact=artifact) if artifact else spec


# Written by hand: the I/O that TensorRT reports for engines built from our ONNX exports with a dynamic
# batch axis (what the build records in each plan's metadata), independent of the specs under test.
ENGINE_IO = {
    "mnist_trt": [
        {"name": "image", "mode": "input", "dtype": "FP32", "shape": [-1, 28, 28, 1]},
        {"name": "probabilities", "mode": "output", "dtype": "FP32", "shape": [-1, 10]},
    ],
    "resnet50_trt": [
        {"name": "input", "mode": "input", "dtype": "FP32", "shape": [-1, 3, 224, 224]},
        {"name": "logits", "mode": "output", "dtype": "FP32", "shape": [-1, 1000]},
    ],
}


def recorded_io(spec) -> list[dict]:
    return [dict(t) for t in ENGINE_IO[spec.name.removesuffix("_fp16")]]


def write_plan(directory: Path, spec, cc: str = "8.0", **meta_changes) -> Path:
    settings = build.build_settings(spec)
    meta = plans.metadata(
        settings,
        tensorrt_version="10.4.0",
        cuda_version="12.6",
        gpu_name="NVIDIA A100",
        compute_capability=cc,
        io=recorded_io(spec),
        builder="python",
        onnx_sha256="0" * 64,
    )
    meta.update(meta_changes)
    directory.mkdir(parents=True, exist_ok=True)
    stem = plans.plan_stem(cc)
    (directory / f"{stem}.plan").write_bytes(b"opaque engine bytes")
    (directory / f"{stem}.json").write_text(json.dumps(meta))
    return directory / f"{stem}.plan"


# --------------------------------------------------------------------------- profiles and settings


def test_profile_max_batch_is_max_batch_size() -> None:
    spec = trt_spec("resnet50_trt")
    (profile,) = build.profiles(spec, 1, 4)
    assert profile.name == spec.inputs[0].name
    assert profile.min == (1, 3, 224, 224) and profile.opt == (4, 3, 224, 224) and profile.max == (8, 3, 224, 224)
    assert profile.trtexec("max") == f"{spec.inputs[0].name}:8x3x224x224"


def test_default_opt_batch_is_half_the_max() -> None:
    (profile,) = build.profiles(trt_spec("mnist_trt"), 1, None)
    assert profile.opt[0] == 32


@pytest.mark.parametrize(("min_batch", "opt_batch"), [(0, 4), (5, 4), (1, 9)])
def test_invalid_profile_order_is_a_config_error(min_batch: int, opt_batch: int) -> None:
    with pytest.raises(ConfigError, match="min_batch"):
        build.profiles(trt_spec("resnet50_trt"), min_batch, opt_batch)


def test_unbatched_tensorrt_model_is_refused() -> None:
    with pytest.raises(ConfigError, match="max_batch_size >= 1"):
        build.profiles(dataclasses.replace(trt_spec(), max_batch_size=0), 1, 1)


def test_precision_and_compatibility_become_builder_flags() -> None:
    fp32 = build.build_settings(trt_spec("resnet50_trt"))
    fp16_spec = trt_spec("resnet50_trt_fp16", "model.tensorrt.version_compatible=true")
    fp16 = build.build_settings(fp16_spec)
    assert fp32.flags == [] and fp16.flags == ["FP16", "VERSION_COMPATIBLE"]
    assert fp32.onnx == Path(compose_config("parity", ["model=resnet50_onnx"]).model.network.artifacts.onnx)
    assert fp32.workspace_bytes == 2048 << 20


def test_int8_is_built_strongly_typed_from_the_symmetric_qdq_file(tmp_path: Path) -> None:
    """TensorRT 10: explicit INT8 from the Q/DQ layers, in a strongly typed network, with no precision flags."""
    settings = build.build_settings(trt_spec("resnet50_trt_int8"))
    symmetric = compose_config("parity", ["model=resnet50_onnx_int8_symmetric"]).model
    assert settings.onnx == Path(str(symmetric.artifact))  # the file the CPU profile serves and judges
    assert settings.precision == "int8" and settings.strongly_typed and settings.flags == []
    cmd = build.trtexec_command(
        settings,
        image="nvcr.io/nvidia/tensorrt:24.10-py3",
        workdir=tmp_path,
        plan_name="model_sm80",
        timing_cache="timing.cache",
    )
    assert "--stronglyTyped" in cmd and not {"--fp16", "--int8", "--best"} & set(cmd)
    assert not build.build_settings(trt_spec("resnet50_trt_fp16")).strongly_typed


def test_only_a_signed_symmetric_qdq_file_becomes_an_int8_engine(tmp_path: Path) -> None:
    """Checked on CPU before a GPU builds: an FP32 file (no Q/DQ) and a U8S8 file (zero points 128) are refused."""
    import numpy as np
    from test_quantization import small_cnn

    from pipelines.artifacts import quantization
    from pipelines.config.spec import Quantization

    fp32, u8s8, s8s8 = tmp_path / "fp32.onnx", tmp_path / "u8s8.onnx", tmp_path / "s8s8.onnx"
    small_cnn(fp32)
    calibration = np.random.default_rng(0).random((32, 1, 8, 8)).astype(np.float32)
    quantization.to_int8(fp32, u8s8, "image", calibration, Quantization(activations="uint8"))
    quantization.to_int8(fp32, s8s8, "image", calibration, Quantization(activations="int8", symmetric=True))
    (no_qdq,) = build.explicit_int8_problems(fp32)
    assert "has no QuantizeLinear/DequantizeLinear nodes" in no_qdq
    (unsigned,) = build.explicit_int8_problems(u8s8)
    # the unsigned activations (UINT8, zero point 128) and the biases quantized to INT32: none of TensorRT's INT8
    assert "signed and symmetric (zero point 0); 10 Q/DQ nodes are not" in unsigned
    assert build.explicit_int8_problems(s8s8) == []


def test_an_int8_engine_needs_lossy_bounds() -> None:
    with pytest.raises(ConfigError, match="an INT8 engine needs `lossy:` bounds"):
        trt_spec("resnet50_trt_int8", "~model.lossy")


def test_bad_build_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="hardware_compatibility must be one of none, ampere_plus"):
        trt_spec("mnist_trt", "model.tensorrt.hardware_compatibility=hopper")
    with pytest.raises(ConfigError, match="no 'keras_h5' artifact"):
        build.build_settings(trt_spec("mnist_trt", "model.tensorrt.source=keras_h5"))
    with pytest.raises(ConfigError, match="not a TensorRT model"):
        build.build_settings(trt_spec("mnist_onnx"))


def test_fp16_model_has_the_fp16_preset_with_a_top1_gate() -> None:
    fp16, fp32 = trt_spec("resnet50_trt_fp16"), trt_spec("resnet50_trt")
    assert fp16.tolerance.atol > fp32.tolerance.atol
    assert fp16.tolerance.min_top1_agreement == 1.0


def test_gpu_catalog_holds_every_tensorrt_model() -> None:
    cfg = compose_config("repository", ["catalog=gpu"])
    assert set(TRT_MODELS) <= set(cfg.models)
    assert str(cfg.model_repository) != str(compose_config("repository").model_repository)
    for name in TRT_MODELS:
        assert Path(str(cfg.models[name].artifact)).name == name


# --------------------------------------------------------------------------- metadata and version guard


def test_plans_are_found_by_compute_capability(tmp_path: Path) -> None:
    spec = trt_spec()
    write_plan(tmp_path, spec, "8.0")
    write_plan(tmp_path, spec, "9.0")
    found = plans.plans(tmp_path)
    assert sorted(found) == ["8.0", "9.0"]
    assert found["9.0"][0].name == "model_sm90.plan"
    assert found["8.0"][1]["gpu_name"] == "NVIDIA A100"


def test_plan_without_metadata_or_plans_is_an_artifact_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="make pipeline-gpu"):
        plans.plans(tmp_path / "absent")
    with pytest.raises(ArtifactError, match=r"holds no \.plan"):
        plans.plans(tmp_path)
    (tmp_path / "model_sm80.plan").write_bytes(b"x")
    with pytest.raises(ArtifactError, match=r"model_sm80\.json not found"):
        plans.plans(tmp_path)


def test_recorded_io_and_profile_are_checked_against_the_spec() -> None:
    spec = trt_spec("resnet50_trt")
    settings = build.build_settings(spec)
    io = recorded_io(spec)
    io[1]["dtype"] = "FP16"
    meta = plans.metadata(
        settings,
        tensorrt_version="10.4.0",
        cuda_version=None,
        gpu_name="g",
        compute_capability="8.0",
        io=io,
        builder="python",
        onnx_sha256="x",
    )
    meta["profile"][spec.inputs[0].name]["max"][0] = 4
    problems = plans.plan_problems(spec, meta)
    assert any("dtype is FP16, spec says FP32" in p for p in problems)
    assert any("profile max batch 4 < max_batch_size 8" in p for p in problems)


@pytest.mark.parametrize(
    ("built", "compatible", "server", "ok"),
    [
        ("10.4.0", False, "10.4.0", True),
        ("10.8.0.43", False, "10.8", True),  # the table names major.minor only
        ("10.6.0", False, "10.4.0", False),
        ("10.4.0", True, "10.8", True),  # version-compatible: later 10.x loads it
        ("10.8.0", True, "10.4.0", False),  # ... but not an older one
        ("10.4.0", True, "11.0", False),  # ... nor another major
    ],
)
def test_version_guard(built: str, compatible: bool, server: str, ok: bool) -> None:
    meta = {"tensorrt_version": built, "version_compatible": compatible, "compute_capability": "8.0"}
    problem = loadability.tensorrt_problem(meta, server, "the Triton image X")
    assert (problem is None) == ok
    if not ok:
        assert built in problem and server in problem and "\n" not in problem


def test_compute_capability_guard() -> None:
    meta = {"tensorrt_version": "10.4.0", "compute_capability": "8.0"}
    assert "compute capability 8.0" in loadability.cc_problem(meta, "9.0", "this host")
    assert loadability.cc_problem(meta, "8.0", "this host") is None
    ampere_plus = {**meta, "hardware_compatibility": "ampere_plus"}
    assert loadability.cc_problem(ampere_plus, "9.0", "this host") is None
    assert "7.5" in loadability.cc_problem(ampere_plus, "7.5", "this host")


def test_several_architectures_serve_where_one_plan_fits() -> None:
    metas = [{"tensorrt_version": "10.5.0", "compute_capability": cc} for cc in ("8.0", "9.0")]
    assert Loader("this host", "10.5", "9.0").problem(metas) is None
    problem = Loader("this host", "10.5", "7.5").problem(metas)
    assert "compute capability 7.5" in problem and "8.0, 9.0" in problem
    older = [metas[0], {**metas[1], "tensorrt_version": "10.4.0"}]
    assert "TensorRT 10.4.0" in Loader("this host", "10.5", "9.0").problem(older)
    assert Loader("this host", "10.5", "8.0").problem(older) is None  # the 9.0 plan is not loaded


def test_version_table_maps_the_pinned_image() -> None:
    cfg = compose_config("repository")
    assert loadability.tensorrt_in_image(cfg.triton_image, cfg.triton_releases) == "10.5"
    assert loadability.tensorrt_in_image("nvcr.io/nvidia/tritonserver:25.02-py3", cfg.triton_releases) == "10.8"
    assert loadability.tensorrt_in_image("tritonserver:latest", cfg.triton_releases) is None
    unknown = loadability.image_loader("tritonserver:latest", cfg.triton_releases)
    assert "add its NGC release to conf/triton_versions.yaml" in unknown.problem(
        [{"tensorrt_version": "10.4.0", "compute_capability": "8.0"}]
    )
    # the builder's container and the server's image are one NGC release (read from each, not from one another)
    assert (loadability.release_of(cfg.tensorrt_image), loadability.release_of(cfg.triton_image)) == ("24.10", "24.10")
    assert loadability.release_of("nvcr.io/nvidia/tensorrt:25.02-py3") == "25.02"
    image = loadability.image_loader(cfg.triton_image, cfg.triton_releases)
    assert (image.tensorrt, image.compute_capability) == ("10.5", None)  # its GPU is known only at launch
    assert "TensorRT 10.4.0" in image.problem([{"tensorrt_version": "10.4.0", "compute_capability": "8.0"}])


def test_servers_on_a_host_without_a_gpu_load_no_plan() -> None:
    if host.local_gpu() is not None:
        pytest.skip("this host has a GPU")
    with pytest.raises(ServerError, match="no NVIDIA GPU"):
        loadability.server_loader("local")
    with pytest.raises(ServerError, match=r"server\.gpus=all on a host with an NVIDIA GPU"):
        loadability.server_loader("docker", "nvcr.io/nvidia/tritonserver:24.10-py3", gpus=True)


def test_version_compatible_plans_get_the_backend_option() -> None:
    assert loadability.backend_args([{"version_compatible": False}]) == []
    assert loadability.backend_args([{}, {"version_compatible": True}]) == [
        "--backend-config=tensorrt,version-compatible=true"
    ]


# --------------------------------------------------------------------------- configs and repository


def test_config_for_one_and_several_architectures() -> None:
    spec = trt_spec("resnet50_trt")
    single = triton_config.model_config(spec, "KIND_AUTO", {"8.0": "model_sm80.plan"})
    assert single.platform == "tensorrt_plan" and single.default_model_filename == "model_sm80.plan"
    assert not single.cc_model_filenames
    assert single.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU  # an engine runs on a GPU
    several = triton_config.model_config(spec, "KIND_AUTO", {"8.0": "model_sm80.plan", "9.0": "model_sm90.plan"})
    assert dict(several.cc_model_filenames) == {"8.0": "model_sm80.plan", "9.0": "model_sm90.plan"}
    assert triton_config.parse_config(triton_config.to_text(several)) == several


IMAGE = Loader("the Triton image nvcr.io/nvidia/tritonserver:24.10-py3", "10.4.0")


def test_repository_serves_plans_the_image_can_load(tmp_path: Path) -> None:
    spec = trt_spec(artifact=tmp_path / "plans")
    write_plan(spec.artifact, spec, "8.0")
    write_plan(spec.artifact, spec, "9.0")
    assembly.assemble([spec], tmp_path / "repo", "KIND_AUTO", IMAGE)
    model = tmp_path / "repo" / spec.name
    config = triton_config.parse_config((model / "config.pbtxt").read_text())
    assert config.platform == "tensorrt_plan" and set(config.cc_model_filenames) == {"8.0", "9.0"}
    assert (model / "1" / config.default_model_filename).is_file()
    assert (model / "1" / "model_sm90.plan").read_bytes() == b"opaque engine bytes"
    assert (model / "1" / "model_sm90.json").is_file()
    assert not (model / "1" / "model.py").exists()  # served by the platform's backend, nothing of ours inside


def test_repository_refuses_a_plan_the_image_cannot_load(tmp_path: Path) -> None:
    spec = trt_spec(artifact=tmp_path / "plans")
    write_plan(spec.artifact, spec, "8.0", tensorrt_version="10.6.0")
    with pytest.raises(ArtifactError) as info:
        assembly.assemble([spec], tmp_path / "repo", "KIND_AUTO", IMAGE)
    assert "TensorRT 10.6.0" in str(info.value) and "TensorRT 10.4.0" in str(info.value)
    assert not (tmp_path / "repo").exists()


def test_repository_refuses_a_plan_of_another_precision(tmp_path: Path) -> None:
    spec = trt_spec(artifact=tmp_path / "plans")
    write_plan(spec.artifact, spec, "8.0", precision="fp16")
    with pytest.raises(ArtifactError, match="plan precision is fp16, spec says fp32"):
        assembly.assemble([spec], tmp_path / "repo")


def test_server_launch_refuses_plans_without_a_gpu(tmp_path: Path) -> None:
    if host.local_gpu() is not None:
        pytest.skip("this host has a GPU")
    spec = trt_spec(artifact=tmp_path / "plans")
    write_plan(spec.artifact, spec)
    assembly.assemble([spec], tmp_path / "repo")
    local = compose_config("triton", [f"paths.logs={tmp_path}"])
    with pytest.raises(ServerError, match="no NVIDIA GPU"):
        launcher.serve(ServerSettings.from_cfg(local.server), tmp_path / "repo")
    docker = compose_config("triton", ["server=docker", "server.gpus=all"])
    with pytest.raises(ServerError, match=r"server\.gpus=all on a host with an NVIDIA GPU"):
        launcher.serve(ServerSettings.from_cfg(docker.server), tmp_path / "repo", docker.triton_releases)


# --------------------------------------------------------------------------- trtexec in the NGC container


def test_trtexec_command_matches_the_python_build(tmp_path: Path) -> None:
    spec = trt_spec("resnet50_trt_fp16", "model.tensorrt.version_compatible=true")
    settings = build.build_settings(spec)
    cfg = compose_config("tensorrt", ["model=resnet50_trt_fp16"])
    cmd = build.trtexec_command(
        settings, image=cfg.tensorrt_image, workdir=tmp_path, plan_name="model_sm80", timing_cache="timing.cache"
    )
    assert cmd[:5] == ["docker", "run", "--rm", "--gpus", "all"]
    assert cfg.tensorrt_image in cmd and cmd[cmd.index(cfg.tensorrt_image) + 1] == "trtexec"
    name = spec.inputs[0].name
    assert f"--minShapes={name}:1x3x224x224" in cmd and f"--maxShapes={name}:8x3x224x224" in cmd
    assert f"--optShapes={name}:4x3x224x224" in cmd
    assert "--fp16" in cmd and "--versionCompatible" in cmd
    assert "--memPoolSize=workspace:2048M" in cmd and "--timingCacheFile=/work/timing.cache" in cmd
    assert "--saveEngine=/work/model_sm80.plan" in cmd and "--profilingVerbosity=detailed" in cmd
    assert f"{tmp_path.resolve()}:/work" in cmd


# --------------------------------------------------------------------------- real engines (GPU hosts)

needs_tensorrt = pytest.mark.skipif(
    host.tensorrt_unavailable() is not None,
    reason=f"needs an NVIDIA GPU and TensorRT 10: {host.tensorrt_unavailable()}",
)


@pytest.mark.gpu
@needs_tensorrt
def test_build_a_real_engine_and_record_its_io(in_workspace: Path, tmp_path: Path) -> None:
    from export import tensorrt as export_tensorrt

    cfg = compose_config("tensorrt", ["model=mnist_trt", f"paths.tensorrt={tmp_path}"])
    from pipelines.trt import engine

    meta = export_tensorrt.run(cfg)
    gpu = host.local_gpu()
    assert meta["compute_capability"] == gpu.compute_capability
    stem = plans.plan_stem(gpu.compute_capability)
    # the recorded I/O is what a fresh load of the written plan reports
    assert [
        {k: t[k] for k in ("name", "mode", "dtype", "shape")}
        for t in engine.load_io(tmp_path / "mnist_trt" / f"{stem}.plan")
    ] == [{k: t[k] for k in ("name", "mode", "dtype", "shape")} for t in meta["io"]]
    assert json.loads((tmp_path / "mnist_trt" / f"{stem}.layers.json").read_text())["Layers"]
    assert (tmp_path / "timing.cache").stat().st_size > 0


@pytest.mark.gpu
@needs_tensorrt
def test_served_engine_matches_keras(in_workspace: Path, tmp_path: Path) -> None:
    from evaluate import parity as parity_cli
    from export import tensorrt as export_tensorrt

    overrides = [f"paths.tensorrt={tmp_path / 'plans'}", f"paths.logs={tmp_path}"]
    export_tensorrt.run(compose_config("tensorrt", ["model=mnist_trt", *overrides]))
    cfg = compose_config(
        "parity",
        [
            "model=mnist_trt",
            *overrides,
            f"paths.model_repository_gpu={tmp_path / 'repo'}",
            f"paths.parity_reports_gpu={tmp_path / 'reports'}",
        ],
    )
    assembly.assemble([model_spec("mnist_trt", cfg.model)], tmp_path / "repo")
    assert parity_cli.run(cfg) == 0
    report = json.loads((tmp_path / "reports" / "mnist_trt.json").read_text())
    assert report["accuracy"]["http"] == report["accuracy"]["framework"]
    assert report["engines"]
