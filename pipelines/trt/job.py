"""An engine build: what `python -m export.tensorrt` was asked, typed once, and the build that answers it.

`EngineJob.from_cfg` is the one place the build config is read (the model, the builder, the timing
cache, the images and the version table); `build_engine` checks the host, builds with this host's
TensorRT (builder=python) or trtexec in the NGC TensorRT container (builder=trtexec, driven through
Docker here), checks the engine against its spec and writes the plan, its metadata and layer report.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from pipelines.artifacts import io_signature
from pipelines.config.spec import ModelSpec, model_spec
from pipelines.core.atomic import atomic_path, write_json, write_text
from pipelines.core.errors import ArtifactError, ConfigError, HostError, checked_choice
from pipelines.trt import build, engine, host, loadability, plans

log = logging.getLogger(__name__)
BUILDERS = ("python", "trtexec")


@dataclasses.dataclass(frozen=True)
class EngineJob:
    spec: ModelSpec
    builder: str  # python | trtexec
    timing_cache: Path
    tensorrt_image: str  # builder=trtexec: the NGC TensorRT container
    triton_image: str  # the image that serves the engine: the container must be its release
    gpus: str  # builder=trtexec: docker --gpus
    releases: Mapping[str, Any]  # conf/triton_versions.yaml

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> EngineJob:
        spec = model_spec(str(cfg.model.name), cfg.model)
        if spec.format != "tensorrt":
            raise ConfigError(f"model {spec.name!r} is {spec.format}; choose a TensorRT model (format: tensorrt)")
        return cls(
            spec=spec,
            builder=checked_choice(str(cfg.builder), BUILDERS, "builder"),
            timing_cache=Path(str(cfg.timing_cache)),
            tensorrt_image=str(cfg.tensorrt_image),
            triton_image=str(cfg.triton_image),
            gpus=str(cfg.gpus),
            releases=cfg.triton_releases,
        )


def _build_python(settings: build.BuildSettings, cache_path: Path) -> tuple[bytes, str, list, str, str | None]:
    cache = cache_path.read_bytes() if cache_path.is_file() else None
    built = engine.build_serialized_engine(settings, cache)
    with atomic_path(cache_path) as tmp:
        tmp.write_bytes(built.timing_cache)
    return built.plan, built.layers_json, built.io, str(host.tensorrt_version()), engine.cuda_version()


def _build_trtexec(
    job: EngineJob, settings: build.BuildSettings, cache_path: Path, stem: str
) -> tuple[bytes, str, list, str, str | None]:
    if shutil.which("docker") is None:
        raise HostError("builder=trtexec needs Docker with the NVIDIA container toolkit; the docker command is missing")
    image = job.tensorrt_image
    if loadability.release_of(image) != loadability.release_of(job.triton_image):
        raise ConfigError(
            f"tensorrt_image {image} and triton_image {job.triton_image} are different NGC releases: "
            "their TensorRT versions would differ (conf/triton_versions.yaml)"
        )
    with tempfile.TemporaryDirectory(prefix="trtexec-") as tmp:
        work = Path(tmp)
        shutil.copy2(settings.onnx, work / settings.onnx.name)
        if cache_path.is_file():
            shutil.copy2(cache_path, work / "timing.cache")
        cmd = build.trtexec_command(
            settings, image=image, workdir=work, plan_name=stem, timing_cache="timing.cache", gpus=job.gpus
        )
        log.info("running trtexec in %s", image)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
            raise ArtifactError(f"trtexec in {image} failed (exit {proc.returncode}):\n{tail}")
        with atomic_path(cache_path) as tmp_cache:
            shutil.copy2(work / "timing.cache", tmp_cache)
        plan = (work / f"{stem}.plan").read_bytes()
        layers = (work / f"{stem}.layers.json").read_text()
        # the container's TensorRT is the one the version table pins for the matching Triton image
        version = loadability.tensorrt_in_image(image, job.releases) or "unknown"
        local = host.tensorrt_version()
        if local is not None and (settings.version_compatible or loadability.same_version(version, local)):
            io = engine.load_io(work / f"{stem}.plan", settings.version_compatible)
        else:
            io = _io_without_tensorrt(settings)
    return plan, layers, io, version, None


def _io_without_tensorrt(settings: build.BuildSettings) -> list[dict]:
    """trtexec builds on hosts without TensorRT: record the I/O from the ONNX the engine was built from."""
    sig = io_signature.onnx_signature(settings.onnx)
    return [
        {"name": t.name, "mode": mode, "dtype": t.dtype, "shape": list(t.shape)}
        for mode, tensors in (("input", sig.inputs), ("output", sig.outputs))
        for t in tensors
    ]


def build_engine(job: EngineJob) -> dict[str, Any]:
    """Build the job's engine for this host's GPU; return the metadata written beside the plan."""
    spec = job.spec
    settings = build.build_settings(spec)
    gpu = host.local_gpu()
    if gpu is None:
        raise HostError(
            f"{spec.name} is built on a GPU host: this host has no NVIDIA GPU (TensorRT engines are not part of "
            "the CPU profile; on a GPU host run `make pipeline-gpu`)"
        )
    if job.builder == "python" and host.tensorrt_version() is None:
        raise HostError(
            f"builder=python needs TensorRT 10 here ({host.tensorrt_unavailable()}); "
            "or use builder=trtexec (NGC TensorRT container)"
        )
    if not settings.onnx.is_file():
        raise ArtifactError(f"{settings.onnx} not found: run the ONNX export first (`dvc repro`)")
    if settings.strongly_typed and (problems := build.explicit_int8_problems(settings.onnx)):
        raise ArtifactError(problems[0])
    stem = plans.plan_stem(gpu.compute_capability)
    cache_path = job.timing_cache
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    log.info(
        "building %s (%s, profile %s) for %s (sm %s) with builder=%s",
        spec.name,
        spec.precision,
        [(p.name, p.min[0], p.opt[0], p.max[0]) for p in settings.profiles],
        gpu.name,
        gpu.compute_capability,
        job.builder,
    )
    start = time.perf_counter()
    if job.builder == "python":
        plan, layers, io, trt_version, cuda = _build_python(settings, cache_path)
    else:
        plan, layers, io, trt_version, cuda = _build_trtexec(job, settings, cache_path, stem)
    meta = plans.metadata(
        settings,
        tensorrt_version=trt_version,
        cuda_version=cuda,
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        io=io,
        builder=job.builder,
        onnx_sha256=io_signature.sha256(settings.onnx),
    )
    meta["build_seconds"] = round(time.perf_counter() - start, 1)

    problems = plans.plan_problems(spec, meta)
    if problems:
        raise ArtifactError(f"the engine built for {spec.name!r} does not match its spec: " + "; ".join(problems))
    out_dir = spec.artifact
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / f"{stem}.plan") as tmp:
        tmp.write_bytes(plan)
    write_text(out_dir / f"{stem}.layers.json", layers)
    write_json(out_dir / f"{stem}.json", meta)  # last: a plan counts only once its metadata exists
    log.info(
        "wrote %s (%.1f MB, %d layers) in %.1f s",
        out_dir / f"{stem}.plan",
        len(plan) / 1e6,
        len(json.loads(layers).get("Layers", [])) if layers.strip().startswith("{") else -1,
        meta["build_seconds"],
    )
    return meta
