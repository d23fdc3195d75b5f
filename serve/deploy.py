"""`python -m serve.deploy target=kubernetes|kserve`: manifests that serve the catalog's repository on a cluster.

Writes `deploy/<target>.yaml` (every object, for `kubectl apply -f`) from the Kubernetes and KServe
API's own typed objects. Before writing, each core object is validated against the Kubernetes
schemas (kubernetes-validate, strict), and every field of an InferenceService must be one that
KServe's own API models know. The server flags are the ones every launch here uses; on Kubernetes an
nginx container in each pod is Triton's front, configured as `serve.triton` configures it locally;
in the GPU profile the repository's TensorRT plans are checked against the pinned image first.
Exit 0, or 2 with one line for a setting or repository that cannot be deployed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.cluster import manifests
from pipelines.core.atomic import write_text
from pipelines.core.cli import hydra_main
from pipelines.core.errors import ArtifactError, ConfigError, checked_number
from pipelines.serving import balancer, guard, launcher
from pipelines.serving.settings import ServerSettings, TritonFlags


def runtime_version(image: str) -> str:
    """KServe's `runtimeVersion` for Triton: the image tag (nvcr.io/nvidia/tritonserver:<tag>)."""
    name, _, tag = image.rpartition(":")
    if not tag or "/" in tag or not name.endswith("tritonserver"):
        raise ConfigError(
            f"image {image!r} is not a tritonserver image with a tag, which KServe's runtimeVersion needs"
        )
    return tag


def server_args(cfg: Any, settings: manifests.DeploySettings, repository: Path) -> list[str]:
    """The tritonserver flags of every launch here, and what the repository's TensorRT plans need of the image."""
    flags = TritonFlags.from_cfg(cfg.server)
    server = ServerSettings(kind="docker", image=settings.image, gpus="all" if settings.gpus else None, flags=flags)
    return flags.args(launcher.guard_plans(server, repository, cfg.triton_releases))


def front_settings(cfg: Any) -> balancer.FrontSettings:
    """`front` in conf/deploy.yaml: the nginx in each pod, before its one Triton."""
    front = cfg.front
    return balancer.FrontSettings(
        kind="nginx",
        replicas=1,
        retries=1,
        max_dynamic_dim=checked_number(front.max_dynamic_dim, "front.max_dynamic_dim", int, 1),
        max_string_bytes=checked_number(front.max_string_bytes, "front.max_string_bytes", int, 1),
    )


def kserve_fields(document: dict) -> None:
    """Every field written must be one that KServe's own InferenceService model (and the core types in it) knows."""
    from pipelines.cluster import kserve_api

    unknown = kserve_api.unknown_fields(document, "V1beta1InferenceService")
    if unknown:
        raise ConfigError(f"KServe's InferenceService has no field {', '.join(unknown)}")


def run(cfg: Any) -> Path:
    repository = Path(str(cfg.model_repository))
    models = sorted(p.parent.name for p in repository.glob("*/config.pbtxt")) if repository.is_dir() else []
    if not models:
        raise ArtifactError(
            f"{repository} holds no models: run `dvc repro repository` first (the manifests serve the "
            "repository you push from there)"
        )
    settings = manifests.DeploySettings.from_cfg(cfg, models)
    args = server_args(cfg, settings, repository)
    kind = str(cfg.target.kind)
    if kind == "kubernetes":
        front = front_settings(cfg)
        limits = guard.repository_limits(repository, front.max_dynamic_dim, front.max_string_bytes)
        objects = [
            manifests.front_config_map(settings, manifests.front_config(limits, front)),
            manifests.deployment(settings, args),
            manifests.service(settings),
            manifests.autoscaler(settings),
            manifests.disruption_budget(settings),
        ]
    elif kind == "kserve":
        objects = [manifests.inference_service(settings, runtime_version(settings.image), args)]
    else:
        raise ConfigError(f"target must be kubernetes or kserve; got {kind!r}")
    documents = [manifests.plain(o) for o in objects]
    manifests.validate(documents, str(cfg.kubernetes_version))
    if kind == "kserve":
        kserve_fields(documents[0])
    import yaml

    out = Path(str(cfg.out))
    write_text(out, yaml.safe_dump_all(documents, sort_keys=False))
    checked = (
        "its fields checked against KServe's API models"
        if kind == "kserve"
        else f"validated against Kubernetes {cfg.kubernetes_version}"
    )
    print(
        f"wrote {out}: {', '.join(d['kind'] + ' ' + d['metadata']['name'] for d in documents)} "
        f"({len(models)} models; {checked})",
        flush=True,
    )
    print(
        f"next: push {repository}/ to {settings.repository_uri or 'the claim ' + str(settings.repository_claim)}, "
        f"then `kubectl apply -f {out}`",
        flush=True,
    )
    return out


main = hydra_main("deploy", run, __doc__)

if __name__ == "__main__":
    main()
