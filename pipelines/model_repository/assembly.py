"""Assemble the Triton model repository: one directory per served model, written atomically.

    model_repository/
      <model>/config.pbtxt, labels.txt, 1/model.onnx | 1/model.savedmodel/ | 1/model_sm<cc>.plan (+ .json)
      <ensemble>_preprocess/ and _postprocess/: config.pbtxt, 1/model.py, 1/images.py (, 1/labels.txt)
      <ensemble>/config.pbtxt, 1/

This is what `tritonserver` in the pinned NGC image loads, and the embedded server, `server=docker`
and a remote server serve this same directory. Every config is parsed back and checked against
the spec and against what the embedded server's stand-in backends can honour; every artifact's
own signature is checked against the spec; TensorRT plans are checked through the metadata their
build wrote, and refused where the pinned image could not load them.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from pipelines.artifacts import export_failure, io_signature
from pipelines.config import ensemble_parts
from pipelines.config.spec import ModelSpec
from pipelines.core.atomic import atomic_path
from pipelines.core.errors import ArtifactError, ConfigError, ServerError
from pipelines.core.paths import PROJECT_ROOT, project_path
from pipelines.data import labels
from pipelines.model_repository import standins, triton_config
from pipelines.model_repository.triton_config import CONFIG_FILENAME, PYTHON_MODEL_FILENAME, VERSION
from pipelines.trt import plans as trt_plans
from pipelines.trt.loadability import Loader

log = logging.getLogger(__name__)

ENSEMBLE_STEPS = PROJECT_ROOT / "serve" / "ensemble_steps"  # preprocess.py, postprocess.py
IMAGES_MODULE = Path(__file__).resolve().parents[1] / "data" / "images.py"  # shared with the client-side reference


def _copy_artifact(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst)
    elif src.is_file():
        shutil.copy2(src, dst)
    else:
        raise ArtifactError(f"{src} not found: run the export stages first (`dvc repro`)")


def _copy_plans(spec: ModelSpec, version_dir: Path, loader: Loader | None) -> dict[str, str]:
    found = trt_plans.plans(spec.artifact)
    if loader is not None:  # which GPU will load them is known only at launch, where the launcher asks again
        problem = loader.problem([m for _, m in found.values()])
        if problem:
            raise ArtifactError(f"{spec.name} cannot be served: {problem}")
    cc_plans = {}
    for cc, (plan, meta) in found.items():
        problems = trt_plans.plan_problems(spec, meta)
        if problems:
            raise ArtifactError(f"{plan} cannot be served as {spec.name!r}: " + "; ".join(problems))
        shutil.copy2(plan, version_dir / plan.name)
        shutil.copy2(plan.with_suffix(".json"), version_dir / plan.with_suffix(".json").name)
        cc_plans[cc] = plan.name
    return cc_plans


def write_model(spec: ModelSpec, root: Path, instance_kind: str = "KIND_AUTO", loader: Loader | None = None) -> Path:
    """Write one model directory under `root` and validate what was written."""
    config = triton_config.model_config(spec, instance_kind)  # config errors before any copying
    _refuse_what_standins_cannot_honour(config)
    model_dir = root / spec.name
    version_dir = model_dir / VERSION
    version_dir.mkdir(parents=True)
    if spec.format == "tensorrt":
        config = triton_config.model_config(spec, instance_kind, _copy_plans(spec, version_dir, loader))
    else:
        _copy_artifact(spec.artifact, version_dir / config.default_model_filename)
    if any(t.labels for t in spec.outputs):
        shutil.copy2(_labels(spec), model_dir / labels.FILENAME)
    _write_config(model_dir, config, spec)
    _check_artifact(model_dir, spec, config)
    return model_dir


def write_ensemble(parts: ensemble_parts.Parts, root: Path) -> list[Path]:
    """The ensemble's pre- and post-processing models and the ensemble itself (its classifier is served on its own)."""
    written = []
    for step, role in ((parts.preprocess, "preprocess"), (parts.postprocess, "postprocess")):
        version_dir = root / step.name / VERSION
        version_dir.mkdir(parents=True)
        shutil.copy2(ENSEMBLE_STEPS / f"{role}.py", version_dir / PYTHON_MODEL_FILENAME)
        shutil.copy2(IMAGES_MODULE, version_dir / IMAGES_MODULE.name)
        if role == "postprocess":
            shutil.copy2(_labels(parts.classifier), version_dir / labels.FILENAME)
        _write_config(root / step.name, triton_config.ensemble_step(step, step_settings(parts, role)), step)
        written.append(root / step.name)
    (root / parts.ensemble.name / VERSION).mkdir(parents=True)  # Triton wants a version even for an ensemble
    _write_config(root / parts.ensemble.name, triton_config.ensemble(parts), parts.ensemble)
    return [*written, root / parts.ensemble.name]


def step_settings(parts_: ensemble_parts.Parts, role: str) -> dict[str, object]:
    """What a step's code needs beyond its tensors: the image transform and limits, or k and the labels file."""
    assert parts_.ensemble.ensemble is not None  # ensemble_parts.parts checked it
    if role == "preprocess":
        pre = parts_.ensemble.network.require_preprocessing("the ensemble's pre-processing step")
        return {**pre.settings(), "limits": parts_.ensemble.ensemble.image_limits.settings()}
    return {"top_k": parts_.ensemble.ensemble.top_k, "labels": labels.FILENAME}  # the labels are copied beside it


def _refuse_what_standins_cannot_honour(config: mc.ModelConfig) -> None:
    problem = standins.refusal_message(config)
    if problem:
        raise ConfigError(problem)


def _labels(spec: ModelSpec) -> Path:
    """The model's labels file, one label per class of its labelled output."""
    labels.read_labels(spec.network)  # exists, one label per class
    assert spec.labels_file is not None
    return spec.labels_file


def _write_config(model_dir: Path, config: mc.ModelConfig, spec: ModelSpec) -> None:
    """Write the config, then check what was written: it parses and agrees with the spec."""
    path = model_dir / CONFIG_FILENAME
    path.write_text(triton_config.to_text(config))
    problems = triton_config.config_mismatches(triton_config.parse_config(path.read_text()), spec)
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))


def _check_artifact(model_dir: Path, spec: ModelSpec, config: mc.ModelConfig) -> None:
    """The served copy of the artifact agrees with the spec (and so with the config)."""
    if spec.format == "tensorrt":
        for plan, meta in trt_plans.plans(model_dir / VERSION).values():
            problems = trt_plans.plan_problems(spec, meta)
            if problems:
                raise ArtifactError(f"{plan}: " + "; ".join(problems))
        return
    served = ModelSpec(**{**spec.__dict__, "artifact": model_dir / VERSION / config.default_model_filename})
    try:
        io_signature.check_signature(served)
    except ArtifactError as exc:  # name the file the user has, not its copy in a temporary repository
        raise ArtifactError(str(exc).replace(str(served.artifact), str(spec.artifact))) from exc


def served_copies(spec: ModelSpec, served: Mapping[str, ModelSpec]) -> list[tuple[Path, Path]]:
    """(path in the repository, the file it was copied from) for every file that carries a model's behaviour:
    its artifact (each plan with its metadata), its labels; for an ensemble, its steps' code and labels and
    everything of the classifier it calls.

    What parity checks before it vouches for a model: the repository serves the current exports
    and the current step code, not an older copy.
    """
    if spec.format == "ensemble":
        parts = ensemble_parts.parts(spec, served)
        steps = [
            pair
            for step, role in ((parts.preprocess, "preprocess"), (parts.postprocess, "postprocess"))
            for pair in (
                (Path(step.name, VERSION, PYTHON_MODEL_FILENAME), ENSEMBLE_STEPS / f"{role}.py"),
                (Path(step.name, VERSION, IMAGES_MODULE.name), IMAGES_MODULE),
            )
        ]
        label_copy = (Path(parts.postprocess.name, VERSION, labels.FILENAME), _labels(parts.classifier))
        return [*steps, label_copy, *served_copies(parts.classifier, served)]
    if spec.format == "tensorrt":
        copies = [
            (Path(spec.name, VERSION, f.name), f)
            for plan, _ in trt_plans.plans(spec.artifact).values()
            for f in (plan, plan.with_suffix(".json"))
        ]
    else:
        copies = [(Path(spec.name, VERSION, triton_config.artifact_filename(spec)), spec.artifact)]
    if any(t.labels for t in spec.outputs):
        copies.append((Path(spec.name, labels.FILENAME), _labels(spec)))
    return copies


def expected_configs(
    spec: ModelSpec, served: Mapping[str, ModelSpec], instance_kind: str = "KIND_AUTO"
) -> list[tuple[Path, mc.ModelConfig]]:
    """(path in the repository, the config the spec generates) of every config.pbtxt that serves `spec`: an
    ensemble's own, its steps' and its classifier's."""
    if spec.format == "ensemble":
        parts = ensemble_parts.parts(spec, served)
        steps = [
            (Path(step.name, CONFIG_FILENAME), triton_config.ensemble_step(step, step_settings(parts, role)))
            for step, role in ((parts.preprocess, "preprocess"), (parts.postprocess, "postprocess"))
        ]
        return [
            (Path(spec.name, CONFIG_FILENAME), triton_config.ensemble(parts)),
            *steps,
            *expected_configs(parts.classifier, served, instance_kind),
        ]
    cc_plans = (
        {cc: plan.name for cc, (plan, _) in trt_plans.plans(spec.artifact).items()}
        if spec.format == "tensorrt"
        else None
    )
    return [(Path(spec.name, CONFIG_FILENAME), triton_config.model_config(spec, instance_kind, cc_plans))]


def check_served_configs(
    spec: ModelSpec,
    served: Mapping[str, ModelSpec],
    fetch: Callable[[str], mc.ModelConfig],
    instance_kind: str = "KIND_AUTO",
) -> None:
    """ServerError (one line, the differing fields) when a running server's config of `spec` (or of its ensemble's
    steps and classifier) differs from the spec's in any field the spec sets: for a remote server, whose files
    cannot be read here. `fetch`: a model name -> the config that server reports."""
    for relative, config in expected_configs(spec, served, instance_kind):
        differences = triton_config.served_differences(config, fetch(config.name))
        if differences:
            shown = "; ".join(differences[:3]) + (f"; and {len(differences) - 3} more" if len(differences) > 3 else "")
            raise ServerError(
                f"the server's {relative.parent} is not what the spec generates ({shown}): it serves "
                "other settings than those proven; deploy the repository this checkout builds"
            )


def check_configs(
    spec: ModelSpec, served: Mapping[str, ModelSpec], repository: Path, instance_kind: str = "KIND_AUTO"
) -> None:
    """ArtifactError (one line, the differing fields) when a config.pbtxt in the repository is not the one the
    spec generates, field for field: a served copy edited by hand (a queue delay raised from 100 us to 5 s
    passed parity before) must not become the tracked proof."""
    for relative, config in expected_configs(spec, served, instance_kind):
        path = Path(repository) / relative
        if not path.is_file():
            raise ArtifactError(f"{path} not found: rebuild the repository (`dvc repro repository`)")
        differences = triton_config.field_differences(config, triton_config.parse_config(path.read_text()))
        if differences:
            shown = "; ".join(differences[:3]) + (f"; and {len(differences) - 3} more" if len(differences) > 3 else "")
            raise ArtifactError(
                f"{path} is not what the spec generates ({shown}): Triton would serve other "
                "settings than those proven; rebuild the repository (`dvc repro repository`)"
            )


def provenance(spec: ModelSpec, served: Mapping[str, ModelSpec], repository: Path | None) -> list[dict[str, str]]:
    """SHA-256 of every file that carries a model's behaviour, checked against the repository's copy.

    ArtifactError (one line) when the repository serves another file than the current export or step
    code. `repository` None: a remote server's, which cannot be read here; only the sources are recorded.
    """
    records = []
    for relative, source in served_copies(spec, served):
        if not source.exists():
            raise ArtifactError(f"{source} not found: run the export stages first (`dvc repro`)")
        digest = io_signature.sha256(source)
        if repository is not None:
            copy = Path(repository) / relative
            if not copy.exists():
                raise ArtifactError(f"{copy} not found: rebuild the repository (`dvc repro repository`)")
            if (served_digest := io_signature.sha256(copy)) != digest:
                raise ArtifactError(
                    f"{copy} is not the current {project_path(source)} (sha256 {served_digest[:12]} vs {digest[:12]}): "
                    "Triton would serve an older copy; rebuild the repository (`dvc repro repository`)"
                )
        records.append({"served": relative.as_posix(), "source": project_path(source), "sha256": digest})
    return records


def assemble(
    specs: Iterable[ModelSpec], target: Path, instance_kind: str = "KIND_AUTO", loader: Loader | None = None
) -> Path:
    """Build every model into a temporary directory, then swap it into `target`.

    `loader`: what will load the TensorRT plans (the pinned image), for the version guard.
    """
    specs = list(specs)
    served = {spec.name: spec for spec in specs}
    with atomic_path(target, directory=True) as tmp:
        for spec in specs:
            if spec.format == "ensemble":
                parts = ensemble_parts.parts(spec, served)
                log.info("%s: ensemble over %s", spec.name, parts.classifier.name)
                write_ensemble(parts, tmp)
                continue
            failed = export_failure.reason(spec)
            if failed is not None:  # that model's failure: the others are still served (parity fails it)
                log.warning("%s: left out of the repository, its export failed: %s", spec.name, failed)
                continue
            log.info("%s: %s", spec.name, spec.artifact)
            write_model(spec, tmp, instance_kind, loader)
    log.info("model repository ready: %s (%d models)", target, len(list(target.iterdir())))
    return target
