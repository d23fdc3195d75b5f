"""Assemble the Triton model repository: one directory per served model, per flavour, written atomically.

    model_repository/
      native/<model>/config.pbtxt, 1/model.onnx | 1/model.savedmodel/ | 1/model_sm<cc>.plan, labels.txt
      python/<model>/config.pbtxt, 1/model.py + the same artifact, labels.txt

Every config is parsed back and checked against the spec, and every artifact's own signature is
checked against the spec, before the new repository replaces the old one. TensorRT plans are
checked through the metadata their build wrote (engine I/O, profile, versions), and refused
where the flavour's server could not load them.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from pipelines import artifacts, ensemble, tensorrt_plan, triton_config
from pipelines.atomic import atomic_path
from pipelines.errors import ArtifactError, ConfigError
from pipelines.spec import ModelSpec

log = logging.getLogger(__name__)

PYTHON_BACKEND = Path(__file__).resolve().parent.parent / "serve" / "python_backend"
PYTHON_BACKEND_MODEL = PYTHON_BACKEND / "model.py"
IMAGES_MODULE = Path(__file__).resolve().parent / "images.py"  # shared with the client-side reference
VERSION = "1"


def _copy_artifact(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst)
    elif src.is_file():
        shutil.copy2(src, dst)
    else:
        raise ArtifactError(f"{src} not found: run the export stages first (`dvc repro`)")


@dataclass(frozen=True)
class ServingTarget:
    """What will load a flavour's TensorRT plans; None where unknown (then only the spec is checked)."""

    where: str
    tensorrt: str | None = None
    compute_capability: str | None = None


def plan_problems(spec: ModelSpec, meta: Mapping) -> list[str]:
    """How a plan's recorded I/O, profile and precision disagree with the spec."""
    problems = artifacts.mismatches(spec.inputs, spec.outputs, spec.max_batch_size, tensorrt_plan.signature(meta))
    problems += tensorrt_plan.profile_problems(spec, meta)
    if meta.get("precision") != spec.precision:
        problems.append(f"plan precision is {meta.get('precision')}, spec says {spec.precision}")
    return problems


def _copy_plans(spec: ModelSpec, version_dir: Path, target: ServingTarget | None) -> dict[str, str]:
    found = tensorrt_plan.plans(spec.artifact)
    if target is not None:
        problem = tensorrt_plan.servable_problem([m for _, m in found.values()], target.tensorrt,
                                                 target.compute_capability, target.where)
        if problem:
            raise ArtifactError(f"{spec.name} cannot be served: {problem}")
    cc_plans = {}
    for cc, (plan, meta) in found.items():
        problems = plan_problems(spec, meta)
        if problems:
            raise ArtifactError(f"{plan} cannot be served as {spec.name!r}: " + "; ".join(problems))
        shutil.copy2(plan, version_dir / plan.name)
        shutil.copy2(plan.with_suffix(".json"), version_dir / plan.with_suffix(".json").name)
        cc_plans[cc] = plan.name
    return cc_plans


def write_model(spec: ModelSpec, flavour: str, root: Path, instance_kind: str = "KIND_AUTO",
                target: ServingTarget | None = None) -> Path:
    """Write one model directory under `root` and validate what was written."""
    model_dir = root / spec.name
    version_dir = model_dir / VERSION
    version_dir.mkdir(parents=True)
    cc_plans = None
    if spec.format == "tensorrt":
        cc_plans = _copy_plans(spec, version_dir, target)
    else:
        _copy_artifact(spec.artifact, version_dir / triton_config.artifact_filename(spec))
    config = triton_config.build(spec, flavour, instance_kind, cc_plans)
    if flavour == "python":
        shutil.copy2(PYTHON_BACKEND_MODEL, version_dir / triton_config.PYTHON_MODEL_FILENAME)
    if any(t.labels for t in spec.outputs):
        shutil.copy2(_labels(spec), model_dir / triton_config.LABELS_FILENAME)
    text = triton_config.to_text(config)
    (model_dir / "config.pbtxt").write_text(text)
    validate_model_dir(model_dir, spec)
    return model_dir


def write_ensemble(parts: ensemble.Parts, root: Path) -> list[Path]:
    """The ensemble's pre- and post-processing models and the ensemble itself (its classifier is served on its own)."""
    written = []
    for step, role in ((parts.preprocess, "preprocess"), (parts.postprocess, "postprocess")):
        version_dir = root / step.name / VERSION
        version_dir.mkdir(parents=True)
        shutil.copy2(PYTHON_BACKEND / f"{role}.py", version_dir / triton_config.PYTHON_MODEL_FILENAME)
        shutil.copy2(IMAGES_MODULE, version_dir / IMAGES_MODULE.name)
        if role == "postprocess":
            shutil.copy2(_labels(parts.classifier), version_dir / triton_config.LABELS_FILENAME)
        _write_config(root / step.name, ensemble.step_config(step, role, parts), step)
        written.append(root / step.name)
    (root / parts.ensemble.name / VERSION).mkdir(parents=True)  # Triton wants a version even for an ensemble
    _write_config(root / parts.ensemble.name, ensemble.ensemble_config(parts), parts.ensemble)
    return [*written, root / parts.ensemble.name]


def _labels(spec: ModelSpec) -> Path:
    """The model's labels file, one label per class of its labelled output."""
    if spec.labels_file is None or not spec.labels_file.is_file():
        raise ArtifactError(f"model {spec.name!r}: labels file {spec.labels_file} not found; run the export stage")
    count = len(spec.labels_file.read_text().splitlines())
    classes = next(t.dims[-1] for t in spec.outputs if t.labels)
    if count != classes:
        raise ArtifactError(f"{spec.labels_file} has {count} labels for {classes} classes")
    return spec.labels_file


def _write_config(model_dir: Path, config, spec: ModelSpec) -> None:
    (model_dir / "config.pbtxt").write_text(triton_config.to_text(config))
    problems = triton_config.mismatches(triton_config.parse((model_dir / "config.pbtxt").read_text()), spec)
    if problems:
        raise ConfigError(f"{model_dir}/config.pbtxt: " + "; ".join(problems))


def validate_model_dir(model_dir: Path, spec: ModelSpec) -> None:
    """The written config parses, agrees with the spec, and the served artifact agrees with both."""
    config = triton_config.parse((model_dir / "config.pbtxt").read_text())
    problems = triton_config.mismatches(config, spec)
    if problems:
        raise ConfigError(f"{model_dir}/config.pbtxt: " + "; ".join(problems))
    if spec.format == "tensorrt":
        for cc, (plan, meta) in tensorrt_plan.plans(model_dir / VERSION).items():
            problems = plan_problems(spec, meta)
            if problems:
                raise ArtifactError(f"{plan}: " + "; ".join(problems))
        return
    served = ModelSpec(**{**spec.__dict__, "artifact": model_dir / VERSION / triton_config.artifact_filename(spec)})
    artifacts.check(served)


def assemble(specs: Iterable[ModelSpec], flavours: Iterable[str], target: Path, instance_kind: str,
             targets: Mapping[str, ServingTarget] | None = None) -> Path:
    """Build every flavour of every model into a temporary directory, then swap it into `target`.

    `targets`: per flavour, what will load its TensorRT plans (version guard).
    """
    specs = list(specs)
    targets = targets or {}
    served = {spec.name: spec for spec in specs}
    with atomic_path(target, directory=True) as tmp:
        for flavour in flavours:
            for spec in specs:
                if spec.format == "ensemble":
                    parts = ensemble.parts(spec, served)
                    log.info("%s/%s: ensemble over %s", flavour, spec.name, parts.classifier.name)
                    write_ensemble(parts, tmp / flavour)
                    continue
                log.info("%s/%s: %s", flavour, spec.name, spec.artifact)
                write_model(spec, flavour, tmp / flavour, instance_kind, targets.get(flavour))
    log.info("model repository ready: %s (%s)", target, ", ".join(flavours))
    return target
