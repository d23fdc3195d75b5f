"""A deployment: what `python -m serve.deploy` was asked, typed once, and the manifests that answer it.

`DeployJob.from_cfg` is the one place the deploy config is read (the repository and its models, the
target, the server flags, the pod's front); `documents` builds every object for the target from the
Kubernetes and KServe APIs' own types and validates it: core objects against the Kubernetes schemas,
an InferenceService's fields against KServe's API models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from pipelines.cluster import kserve_api, manifests
from pipelines.core.errors import ArtifactError, ConfigError
from pipelines.serving import guard, launcher
from pipelines.serving.front_settings import FrontSettings
from pipelines.serving.settings import ServerSettings, TritonFlags

TARGETS = ("kubernetes", "kserve")


@dataclass(frozen=True)
class DeployJob:
    repository: Path
    models: list[str]  # what the repository serves
    target: str  # kubernetes | kserve
    settings: manifests.DeploySettings
    server_args: list[str]  # the tritonserver flags of every launch here, with what the repository's plans need
    front: FrontSettings  # target=kubernetes: the nginx in each pod, before its one Triton
    kubernetes_version: str
    out: Path

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> DeployJob:
        repository = Path(str(cfg.model_repository))
        models = sorted(p.parent.name for p in repository.glob("*/config.pbtxt")) if repository.is_dir() else []
        if not models:
            raise ArtifactError(
                f"{repository} holds no models: run `dvc repro repository` first (the manifests serve the "
                "repository you push from there)"
            )
        target = str(cfg.target.kind)
        if target not in TARGETS:
            raise ConfigError(f"target must be kubernetes or kserve; got {target!r}")
        settings = manifests.DeploySettings.from_cfg(cfg, models)
        flags = TritonFlags.from_cfg(cfg.server)
        server = ServerSettings(kind="docker", image=settings.image, gpus="all" if settings.gpus else None, flags=flags)
        return cls(
            repository=repository,
            models=models,
            target=target,
            settings=settings,
            server_args=flags.args(
                launcher.guard_plans(server, repository, cfg.triton_releases), f"$({manifests.OPERATOR_ENV})"
            ),
            front=FrontSettings.from_cfg(cfg.front, "front"),
            kubernetes_version=str(cfg.kubernetes_version),
            out=Path(str(cfg.out)),
        )


def documents(job: DeployJob) -> list[dict]:
    """Every object of the target as plain YAML-ready dicts, validated."""
    settings, args = job.settings, job.server_args
    if job.target == "kubernetes":
        front = job.front
        limits = guard.repository_limits(
            job.repository, front.max_dynamic_dim, front.max_string_bytes, front.max_json_string_bytes
        )
        objects = [
            manifests.front_config_map(settings, manifests.front_config(limits, job.front)),
            manifests.deployment(settings, args),
            manifests.service(settings),
            manifests.autoscaler(settings),
            manifests.disruption_budget(settings),
        ]
    else:
        objects = [manifests.inference_service(settings, runtime_version(settings.image), args)]
    docs = [manifests.plain_manifest(o) for o in objects]
    manifests.validate(docs, job.kubernetes_version)
    if job.target == "kserve":
        kserve_fields(docs[0])
    return docs


def runtime_version(image: str) -> str:
    """KServe's `runtimeVersion` for Triton: the image tag (nvcr.io/nvidia/tritonserver:<tag>)."""
    name, _, tag = image.rpartition(":")
    if not tag or "/" in tag or not name.endswith("tritonserver"):
        raise ConfigError(
            f"image {image!r} is not a tritonserver image with a tag, which KServe's runtimeVersion needs"
        )
    return tag


def kserve_fields(document: dict) -> None:
    """Every field written must be one that KServe's own InferenceService model (and the core types in it) knows."""
    unknown = kserve_api.unknown_fields(document, "V1beta1InferenceService")
    if unknown:
        raise ConfigError(f"KServe's InferenceService has no field {', '.join(unknown)}")
