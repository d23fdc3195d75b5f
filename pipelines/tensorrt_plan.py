"""Everything about TensorRT engines that needs no TensorRT: profiles, precision, metadata, version guard.

The TensorRT calls themselves live in `pipelines.tensorrt_engine` (imported only on GPU hosts);
this module is plain Python so that CPU machines and CI test all the decisions around them.

Plans are stored per served model as `<artifact dir>/model_sm<cc>.plan`, one per GPU compute
capability, each with `model_sm<cc>.json` (metadata: versions, GPU, precision, profile, ONNX
hash, engine I/O) and `model_sm<cc>.layers.json` (the engine inspector's report) beside it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from pipelines import artifacts
from pipelines.artifacts import ArtifactSignature, ArtifactTensor
from pipelines.errors import ArtifactError, ConfigError
from pipelines.spec import ModelSpec

PRECISION_FLAGS = {"fp32": [], "fp16": ["FP16"]}  # TensorRT BuilderFlag names
HARDWARE_LEVELS = ("none", "ampere_plus")
MIB = 1 << 20


@dataclass(frozen=True)
class Profile:
    """One input's optimization-profile shapes (batch axis included)."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def trtexec(self, which: str) -> str:
        return f"{self.name}:{'x'.join(str(d) for d in getattr(self, which))}"


@dataclass(frozen=True)
class BuildSettings:
    """What a build needs, decided from the spec and `tensorrt:` config of a TensorRT model."""

    onnx: Path
    precision: str
    profiles: tuple[Profile, ...]
    workspace_bytes: int
    version_compatible: bool
    hardware_compatibility: str

    @property
    def flags(self) -> list[str]:
        flags = list(PRECISION_FLAGS[self.precision])
        if self.version_compatible:
            flags.append("VERSION_COMPATIBLE")
        return flags


def profiles(spec: ModelSpec, min_batch: int, opt_batch: int | None) -> tuple[Profile, ...]:
    """min/opt/max shapes for every input; max batch is the model's max_batch_size, as Triton requires."""
    max_batch = spec.max_batch_size
    if max_batch < 1:
        raise ConfigError(f"model {spec.name!r}: TensorRT models need max_batch_size >= 1 (a dynamic batch axis)")
    opt = opt_batch if opt_batch is not None else max(min_batch, max_batch // 2)
    if not 1 <= min_batch <= opt <= max_batch:
        raise ConfigError(
            f"model {spec.name!r}: need 1 <= min_batch ({min_batch}) <= opt_batch ({opt}) <= max_batch_size ({max_batch})"
        )
    if any(d < 0 for t in spec.inputs for d in t.dims):
        raise ConfigError(f"model {spec.name!r}: TensorRT profiles need fixed non-batch dims")
    return tuple(
        Profile(t.name, (min_batch, *t.dims), (opt, *t.dims), (max_batch, *t.dims)) for t in spec.inputs
    )


def build_settings(spec: ModelSpec) -> BuildSettings:
    """The build of a TensorRT model, from its spec's `tensorrt` settings and its network's source artifact."""
    trt = spec.tensorrt
    if spec.format != "tensorrt" or trt is None:
        raise ConfigError(f"model {spec.name!r} is {spec.format}, not a TensorRT model")
    if trt.workspace_mib < 16:
        raise ConfigError(f"tensorrt.workspace_mib must be >= 16, got {trt.workspace_mib}")
    return BuildSettings(
        onnx=spec.network.artifact(trt.source),
        precision=spec.precision,
        profiles=profiles(spec, trt.min_batch, trt.opt_batch),
        workspace_bytes=trt.workspace_mib * MIB,
        version_compatible=trt.version_compatible,
        hardware_compatibility=trt.hardware_compatibility,
    )


# --------------------------------------------------------------------------- plan files and metadata


def plan_stem(compute_capability: str) -> str:
    """'8.0' -> 'model_sm80': the naming Triton's cc_model_filenames examples use."""
    if not re.fullmatch(r"\d+\.\d+", compute_capability):
        raise ArtifactError(f"compute capability must look like 8.0, got {compute_capability!r}")
    return "model_sm" + compute_capability.replace(".", "")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def metadata(settings: BuildSettings, *, tensorrt_version: str, cuda_version: str | None, gpu_name: str,
             compute_capability: str, io: list[dict], builder: str, onnx_sha256: str) -> dict[str, Any]:
    """What is recorded beside every plan: enough to refuse serving it where it cannot load."""
    return {
        "tensorrt_version": tensorrt_version,
        "cuda_version": cuda_version,
        "gpu_name": gpu_name,
        "compute_capability": compute_capability,
        "precision": settings.precision,
        "version_compatible": settings.version_compatible,
        "hardware_compatibility": settings.hardware_compatibility,
        "workspace_bytes": settings.workspace_bytes,
        "profile": {p.name: {"min": list(p.min), "opt": list(p.opt), "max": list(p.max)} for p in settings.profiles},
        "onnx": str(settings.onnx),
        "onnx_sha256": onnx_sha256,
        "io": io,
        "builder": builder,
    }


REQUIRED_METADATA = ("tensorrt_version", "compute_capability", "precision", "io", "profile", "onnx_sha256")


def load_metadata(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path} not found: every plan needs the metadata its build writes") from exc
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable plan metadata ({exc})") from exc
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise ArtifactError(f"{path}: plan metadata lacks {missing}")
    return meta


def plans(directory: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """compute capability -> (plan file, metadata) for every plan in a TensorRT model's artifact directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(
            f"{directory} not found: TensorRT engines are built on GPU hosts (`make pipeline-gpu` there)"
        )
    found: dict[str, tuple[Path, dict[str, Any]]] = {}
    for plan in sorted(directory.glob("*.plan")):
        meta = load_metadata(plan.with_suffix(".json"))
        cc = str(meta["compute_capability"])
        if plan.stem != plan_stem(cc):
            raise ArtifactError(f"{plan}: metadata says compute capability {cc}, file name says otherwise")
        found[cc] = (plan, meta)
    if not found:
        raise ArtifactError(f"{directory} holds no .plan: build it on a GPU host (`python -m export.tensorrt`)")
    return found


def signature(meta: Mapping[str, Any]) -> ArtifactSignature:
    """The engine's own I/O as recorded at build time; the batch axis is -1 (dynamic) when profiled."""
    def tensors(mode: str) -> tuple[ArtifactTensor, ...]:
        return tuple(
            ArtifactTensor(t["name"], str(t["dtype"]), tuple(int(d) for d in t["shape"]))
            for t in meta["io"] if t["mode"] == mode
        )

    return ArtifactSignature(tensors("input"), tensors("output"))


def plan_problems(spec: ModelSpec, meta: Mapping) -> list[str]:
    """How a plan's recorded I/O, profile and precision disagree with the spec."""
    problems = artifacts.mismatches(spec.inputs, spec.outputs, spec.max_batch_size, signature(meta))
    problems += profile_problems(spec, meta)
    if meta.get("precision") != spec.precision:
        problems.append(f"plan precision is {meta.get('precision')}, spec says {spec.precision}")
    return problems


def profile_problems(spec: ModelSpec, meta: Mapping[str, Any]) -> list[str]:
    """Triton's rule: max_batch_size must not exceed any input profile's max batch, and batch 1 must fit."""
    problems = []
    for tensor in spec.inputs:
        shapes = meta["profile"].get(tensor.name)
        if shapes is None:
            problems.append(f"input {tensor.name!r} has no optimization profile")
            continue
        if shapes["max"][0] < spec.max_batch_size:
            problems.append(
                f"input {tensor.name!r} profile max batch {shapes['max'][0]} < max_batch_size {spec.max_batch_size}"
            )
        if shapes["min"][0] > 1:
            problems.append(f"input {tensor.name!r} profile min batch {shapes['min'][0]} > 1")
    return problems


# --------------------------------------------------------------------------- version guard


def release_of(image: str) -> str | None:
    """'nvcr.io/nvidia/tritonserver:24.10-py3' -> '24.10'."""
    match = re.search(r":(\d\d\.\d\d)", image)
    return match.group(1) if match else None


def tensorrt_in_image(image: str, releases: Mapping[str, Mapping[str, Any]]) -> str | None:
    release = release_of(image)
    entry = releases.get(release) if release else None
    return str(entry["tensorrt"]) if entry else None


def same_version(built: str, server: str) -> bool:
    """Equal on every component both name ('10.8' matches '10.8.0.43'; '10.4.0' does not match '10.4.1')."""
    a, b = built.split("."), server.split(".")
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def servable_problem(metas: list[Mapping[str, Any]], server_tensorrt: str | None, server_cc: str | None,
                     where: str) -> str | None:
    """Why a model's plans (one per GPU architecture) cannot serve on a server; None when they can.

    Triton picks the plan for its GPU's compute capability, so one loadable plan suffices; plans
    for other architectures are served to other GPUs. The plan that will load must match the
    server's TensorRT.
    """
    candidates = [m for m in metas if cc_problem(m, server_cc, where) is None]
    if not candidates:
        built_for = ", ".join(sorted(str(m["compute_capability"]) for m in metas))
        if len(metas) == 1:
            return cc_problem(metas[0], server_cc, where)
        return (f"no plan for {where}'s GPU (compute capability {server_cc}); plans exist for {built_for}: "
                "build one on that GPU")
    for meta in candidates:
        problem = tensorrt_problem(meta, server_tensorrt, where)
        if problem:
            return problem
    return None


def tensorrt_problem(meta: Mapping[str, Any], server_tensorrt: str | None, where: str) -> str | None:
    built = str(meta["tensorrt_version"])
    if server_tensorrt is not None:
        if meta.get("version_compatible"):
            if built.split(".")[0] != server_tensorrt.split(".")[0] or _older(server_tensorrt, built):
                return (f"plan built with TensorRT {built} (version-compatible) cannot load in {where}'s "
                        f"TensorRT {server_tensorrt}: it needs the same major version, {built} or newer")
        elif not same_version(built, server_tensorrt):
            return (f"plan built with TensorRT {built} cannot load in {where}'s TensorRT {server_tensorrt}; "
                    f"rebuild it with TensorRT {server_tensorrt} (builder=trtexec uses the matching container) "
                    "or build it version-compatible")
    return None


def cc_problem(meta: Mapping[str, Any], server_cc: str | None, where: str) -> str | None:
    if server_cc is not None:
        cc = str(meta["compute_capability"])
        if meta.get("hardware_compatibility") == "ampere_plus":
            if float(server_cc) < 8.0:
                return f"plan is Ampere-plus hardware-compatible, but {where}'s GPU has compute capability {server_cc}"
        elif cc != server_cc:
            return (f"plan built for compute capability {cc} cannot load on {where}'s GPU ({server_cc}); "
                    "build one on that GPU (several archs: one plan each, served through cc_model_filenames)")
    return None


def _older(a: str, b: str) -> bool:
    def key(v: str) -> list[int]:
        return [int(p) for p in v.split(".") if p.isdigit()]

    return key(a) < key(b)


def backend_args(metas: list[Mapping[str, Any]]) -> list[str]:
    """Triton must be told to load version-compatible plans."""
    if any(m.get("version_compatible") for m in metas):
        return ["--backend-config=tensorrt,version-compatible=true"]
    return []


# --------------------------------------------------------------------------- trtexec in the NGC container


def trtexec_command(settings: BuildSettings, *, image: str, workdir: Path, plan_name: str,
                    timing_cache: str, gpus: str = "all") -> list[str]:
    """`trtexec` inside the NGC TensorRT container whose version matches the Triton image.

    `workdir` is mounted at /work and must hold the ONNX file; the plan, the layer report and the
    timing cache are written there.
    """
    def shapes(which: str) -> str:
        return ",".join(p.trtexec(which) for p in settings.profiles)

    cmd = [
        "docker", "run", "--rm", "--gpus", gpus, "-v", f"{Path(workdir).resolve()}:/work", "-w", "/work", image,
        "trtexec",
        f"--onnx=/work/{settings.onnx.name}",
        f"--saveEngine=/work/{plan_name}.plan",
        f"--minShapes={shapes('min')}",
        f"--optShapes={shapes('opt')}",
        f"--maxShapes={shapes('max')}",
        f"--memPoolSize=workspace:{settings.workspace_bytes // MIB}M",
        f"--timingCacheFile=/work/{timing_cache}",
        "--profilingVerbosity=detailed",
        f"--exportLayerInfo=/work/{plan_name}.layers.json",
        "--skipInference",
    ]
    if settings.precision == "fp16":
        cmd.append("--fp16")
    if settings.version_compatible:
        cmd.append("--versionCompatible")
    if settings.hardware_compatibility == "ampere_plus":
        cmd.append("--hardwareCompatibilityLevel=ampere+")
    return cmd
