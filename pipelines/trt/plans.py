"""TensorRT plan files and the metadata recorded beside each, checked against the spec.

Plans are stored per served model as `<artifact dir>/model_sm<cc>.plan`, one per GPU compute
capability, each with `model_sm<cc>.json` (metadata: versions, GPU, precision, profile, ONNX
hash, engine I/O) and `model_sm<cc>.layers.json` (the engine inspector's report) beside it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipelines.artifacts import io_signature
from pipelines.artifacts.io_signature import ArtifactSignature, ArtifactTensor
from pipelines.config.spec import ModelSpec
from pipelines.core.errors import ArtifactError
from pipelines.trt.build import BuildSettings

PLAN_PREFIX = "model_sm"  # a plan's file name: this, then its compute capability's digits


def plan_stem(compute_capability: str) -> str:
    """'8.0' -> 'model_sm80': the naming Triton's cc_model_filenames examples use."""
    if not re.fullmatch(r"\d+\.\d+", compute_capability):
        raise ArtifactError(f"compute capability must look like 8.0, got {compute_capability!r}")
    return PLAN_PREFIX + compute_capability.replace(".", "")


def metadata(
    settings: BuildSettings,
    *,
    tensorrt_version: str,
    cuda_version: str | None,
    gpu_name: str,
    compute_capability: str,
    io: list[dict],
    builder: str,
    onnx_sha256: str,
) -> dict[str, Any]:
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


def served_plans(repository: Path) -> list[tuple[str, dict[str, Any]]]:
    """(model, metadata) of every TensorRT plan in a model repository (`<model>/<version>/model_smXX.json`)."""
    return [
        (meta_file.parent.parent.name, load_metadata(meta_file))
        for meta_file in sorted(repository.glob(f"*/*/{PLAN_PREFIX}*.json"))
    ]


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


def plan_signature(meta: Mapping[str, Any]) -> ArtifactSignature:
    """The engine's own I/O as recorded at build time; the batch axis is -1 (dynamic) when profiled."""

    def tensors(mode: str) -> tuple[ArtifactTensor, ...]:
        return tuple(
            ArtifactTensor(t["name"], str(t["dtype"]), tuple(int(d) for d in t["shape"]))
            for t in meta["io"]
            if t["mode"] == mode
        )

    return ArtifactSignature(tensors("input"), tensors("output"))


def plan_problems(spec: ModelSpec, meta: Mapping) -> list[str]:
    """How a plan's recorded I/O, profile and precision disagree with the spec."""
    problems = io_signature.signature_mismatches(spec.inputs, spec.outputs, spec.max_batch_size, plan_signature(meta))
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
