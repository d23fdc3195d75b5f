"""Kubernetes and KServe manifests for the catalog's repository, built from the API's own typed objects.

The `kubernetes` package's models (V1Deployment, V1Service, V2HorizontalPodAutoscaler,
V1PodDisruptionBudget) and the `kserve` package's (V1beta1InferenceService), never text templates.
The pod runs the pinned NGC `tritonserver` image with the launcher's own server flags, probes on
Triton's health endpoints (a start-up probe long enough for model loading) and, in the GPU
profile, a GPU limit. Triton listens on loopback inside the pod; the pod's HTTP and gRPC ports are
the front's, an nginx container with the configuration `serve.triton` runs locally (a ConfigMap:
nginx.conf and the njs guard), so the requests that crash Triton never reach it (docs/hardening.md).
The autoscaler follows Triton's own Helm chart: a Pods metric
`avg_time_queue_us` that prometheus-adapter derives from `nv_inference_queue_duration_us`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client as k
from kubernetes.client import ApiClient
from omegaconf import DictConfig

from pipelines.cluster.kserve_api import api
from pipelines.core.errors import ConfigError, checked_number
from pipelines.serving import guard
from pipelines.serving.front_conf import nginx_config
from pipelines.serving.front_settings import FrontSettings

PORTS = (("http", 8000), ("grpc", 8001), ("metrics", 8002))
MOUNT = "/models"  # where a volume-held repository is mounted
QUEUE_METRIC = "avg_time_queue_us"  # Triton's Helm chart: prometheus-adapter's name for the average queue time
STARTUP_PERIOD_S = 10
TRITON_IN_POD = (
    ("http", 8010),
    ("grpc", 8011),
)  # Triton's own ports, on the pod's loopback: only the front reaches them
FRONT_DIR = "/etc/front"  # the ConfigMap: nginx.conf, guard.js
FRONT_WORK = "/tmp/front"  # nginx's pid and temporary files (an emptyDir)
NJS_IN_IMAGE = "/usr/lib/nginx/modules/ngx_http_js_module.so"  # the official nginx image carries the njs module
GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class DeploySettings:
    """`conf/deploy.yaml` and its target (`conf/target/`), checked (one-line ConfigErrors)."""

    name: str
    namespace: str
    image: str
    repository_uri: str | None
    repository_claim: str | None
    credentials_secret: str | None
    replicas: int
    cpu: str
    memory: str
    gpus: int
    startup_timeout_s: int
    min_replicas: int
    max_replicas: int
    queue_time_us: int
    min_available: int
    models: tuple[str, ...]
    front_image: str
    front_cpu: str
    front_memory: str

    @classmethod
    def from_cfg(cls, cfg: DictConfig, models: list[str]) -> DeploySettings:
        kind = str(cfg.target.kind)
        uri = str(cfg.repository_uri) if cfg.get("repository_uri") else None
        claim = str(cfg.repository_claim) if cfg.get("repository_claim") else None
        schemes = ("s3://", "gs://", "as://") + (("pvc://",) if kind == "kserve" else ())
        if kind == "kserve" and claim:
            raise ConfigError(
                "target=kserve reads the repository from repository_uri (KServe's storageUri): "
                "for a volume, repository_uri=pvc://<claim>/<path>"
            )
        if bool(uri) == bool(claim):
            raise ConfigError(
                "set repository_uri (where you pushed model_repository/: s3://, gs://, as://) or "
                "repository_claim (a PersistentVolumeClaim holding it), one of them"
            )
        if uri and not uri.startswith(schemes):
            raise ConfigError(f"repository_uri must start with {', '.join(schemes)}; got {uri!r}")
        count = lambda value, key, minimum=1: checked_number(value, key, int, minimum)  # noqa: E731
        target = cfg.target
        settings = cls(
            name=_dns_name(str(cfg.name)),
            namespace=_dns_name(str(cfg.namespace)),
            image=str(cfg.image),
            repository_uri=uri,
            repository_claim=claim,
            credentials_secret=str(cfg.credentials_secret) if cfg.get("credentials_secret") else None,
            replicas=count(cfg.replicas, "replicas"),
            cpu=str(cfg.resources.cpu),
            memory=str(cfg.resources.memory),
            gpus=count(cfg.gpus, "gpus", 0) if str(cfg.get("profile")) == "gpu" else 0,
            startup_timeout_s=count(cfg.startup_timeout_s, "startup_timeout_s", STARTUP_PERIOD_S),
            min_replicas=count(cfg.min_replicas, "min_replicas"),
            max_replicas=count(cfg.max_replicas, "max_replicas"),
            queue_time_us=count(target.get("queue_time_us", 1), "target.queue_time_us"),
            min_available=count(target.get("min_available", 0), "target.min_available", 0),
            models=tuple(models),
            front_image=str(cfg.front.image),
            front_cpu=str(cfg.front.cpu),
            front_memory=str(cfg.front.memory),
        )
        if settings.max_replicas < settings.min_replicas:
            raise ConfigError(f"max_replicas ({settings.max_replicas}) is below min_replicas ({settings.min_replicas})")
        if kind == "kubernetes" and settings.min_available >= settings.min_replicas:
            raise ConfigError(
                f"target.min_available ({settings.min_available}) must be below min_replicas "
                f"({settings.min_replicas}), or no pod could ever be evicted"
            )
        return settings

    @property
    def repository(self) -> str:
        return self.repository_uri or MOUNT

    @property
    def labels(self) -> dict[str, str]:
        return {"app.kubernetes.io/name": self.name, "app.kubernetes.io/component": "triton"}

    @property
    def annotations(self) -> dict[str, str]:
        return {"train-to-triton/models": ",".join(self.models)}


def _dns_name(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", value):
        raise ConfigError(f"{value!r} is not a Kubernetes name (lower-case letters, digits and '-', at most 63)")
    return value


def _resources(s: DeploySettings):
    limits = {"memory": s.memory, **({GPU_RESOURCE: str(s.gpus)} if s.gpus else {})}
    return k.V1ResourceRequirements(requests={"cpu": s.cpu, "memory": s.memory}, limits=limits)


def front_config(limits: list[guard.ModelLimits], settings: FrontSettings) -> str:
    """The pod's nginx.conf: the pod's HTTP and gRPC ports, Triton on loopback behind them, logs to the container's."""
    return nginx_config(
        settings,
        "0.0.0.0",
        PORTS[0][1],
        PORTS[1][1],
        [(f"127.0.0.1:{TRITON_IN_POD[0][1]}", f"127.0.0.1:{TRITON_IN_POD[1][1]}")],
        set(),
        Path(FRONT_WORK),
        Path(settings.log_file),
        limits,
        Path(NJS_IN_IMAGE),
        Path(FRONT_DIR),
    )


def front_config_map(s: DeploySettings, nginx_conf: str):
    return k.V1ConfigMap(
        api_version="v1",
        kind="ConfigMap",
        metadata=k.V1ObjectMeta(name=f"{s.name}-front", namespace=s.namespace, labels=s.labels),
        data={"nginx.conf": nginx_conf, guard.GUARD_SCRIPT.name: guard.GUARD_SCRIPT.read_text()},
    )


OPERATOR_ENV = "TRITON_OPERATOR_KEY"  # Kubernetes substitutes `$(TRITON_OPERATOR_KEY)` in the args from the Secret


def operator_env(s: DeploySettings) -> list:
    """The restricted APIs' key from the Secret `<name>-operator-key` (key `key`), which the operator creates:
    never in a manifest (docs/deploy.md)."""
    source = k.V1SecretKeySelector(name=f"{s.name}-operator-key", key="key")
    return [k.V1EnvVar(name=OPERATOR_ENV, value_from=k.V1EnvVarSource(secret_key_ref=source))]


def container_security():
    """A container's least privilege: no privilege escalation, no Linux capability (both listen above 1024)."""
    return k.V1SecurityContext(allow_privilege_escalation=False, capabilities=k.V1Capabilities(drop=["ALL"]))


def deployment(s: DeploySettings, server_args: list[str]):
    """Triton's pods: the pinned image on loopback behind the nginx front, the repository from the object store or a
    claim, Triton's health probes (through the front: the kubelet reaches only the pod's ports)."""
    front_port = PORTS[0][1]
    probe = lambda path, **timing: k.V1Probe(http_get=k.V1HTTPGetAction(path=path, port=front_port), **timing)  # noqa: E731
    loopback = [f"--{name}-address=127.0.0.1" for name, _ in TRITON_IN_POD] + [
        f"--{name}-port={port}" for name, port in TRITON_IN_POD
    ]
    container = k.V1Container(
        name="tritonserver",
        image=s.image,
        image_pull_policy="IfNotPresent",
        args=["tritonserver", f"--model-repository={s.repository}", *loopback, *server_args],
        env=operator_env(s) if any(OPERATOR_ENV in a for a in server_args) else None,
        ports=[k.V1ContainerPort(name=n, container_port=p) for n, p in PORTS if n == "metrics"],
        resources=_resources(s),
        env_from=[k.V1EnvFromSource(secret_ref=k.V1SecretEnvSource(name=s.credentials_secret))]
        if s.credentials_secret
        else None,
        volume_mounts=[k.V1VolumeMount(name="model-repository", mount_path=MOUNT, read_only=True)]
        if s.repository_claim
        else None,
        startup_probe=probe(
            "/v2/health/ready",
            period_seconds=STARTUP_PERIOD_S,
            failure_threshold=math.ceil(s.startup_timeout_s / STARTUP_PERIOD_S),
        ),
        readiness_probe=probe("/v2/health/ready", period_seconds=5, failure_threshold=3),
        liveness_probe=probe("/v2/health/live", period_seconds=10, failure_threshold=3),
        security_context=container_security(),
    )
    front = k.V1Container(
        name="front",
        image=s.front_image,
        image_pull_policy="IfNotPresent",
        args=["nginx", "-p", f"{FRONT_WORK}/", "-c", f"{FRONT_DIR}/nginx.conf", "-e", "/dev/stderr"],
        ports=[k.V1ContainerPort(name=n, container_port=p) for n, p in PORTS if n != "metrics"],
        resources=k.V1ResourceRequirements(
            requests={"cpu": s.front_cpu, "memory": s.front_memory}, limits={"memory": s.front_memory}
        ),
        volume_mounts=[
            k.V1VolumeMount(name="front-config", mount_path=FRONT_DIR, read_only=True),
            k.V1VolumeMount(name="front-work", mount_path=FRONT_WORK),
        ],
        liveness_probe=k.V1Probe(tcp_socket=k.V1TCPSocketAction(port=front_port), period_seconds=10),
        security_context=container_security(),
    )
    volumes = [
        k.V1Volume(name="front-config", config_map=k.V1ConfigMapVolumeSource(name=f"{s.name}-front")),
        k.V1Volume(name="front-work", empty_dir=k.V1EmptyDirVolumeSource()),
    ]
    if s.repository_claim:
        volumes.append(
            k.V1Volume(
                name="model-repository",
                persistent_volume_claim=k.V1PersistentVolumeClaimVolumeSource(
                    claim_name=s.repository_claim, read_only=True
                ),
            )
        )
    return k.V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=k.V1ObjectMeta(name=s.name, namespace=s.namespace, labels=s.labels, annotations=s.annotations),
        spec=k.V1DeploymentSpec(
            replicas=s.replicas,
            selector=k.V1LabelSelector(match_labels=s.labels),
            template=k.V1PodTemplateSpec(
                metadata=k.V1ObjectMeta(labels=s.labels, annotations=s.annotations),
                spec=k.V1PodSpec(
                    containers=[front, container],
                    volumes=volumes,
                    security_context=k.V1PodSecurityContext(
                        run_as_user=1000,
                        run_as_group=1000,
                        run_as_non_root=True,
                        fs_group=1000,
                        seccomp_profile=k.V1SeccompProfile(type="RuntimeDefault"),
                    ),
                ),
            ),
        ),
    )


def service(s: DeploySettings):
    return k.V1Service(
        api_version="v1",
        kind="Service",
        metadata=k.V1ObjectMeta(name=s.name, namespace=s.namespace, labels=s.labels),
        spec=k.V1ServiceSpec(
            selector=s.labels, ports=[k.V1ServicePort(name=n, port=p, target_port=n) for n, p in PORTS]
        ),
    )


def autoscaler(s: DeploySettings):
    metric = k.V2MetricSpec(
        type="Pods",
        pods=k.V2PodsMetricSource(
            metric=k.V2MetricIdentifier(name=QUEUE_METRIC),
            target=k.V2MetricTarget(type="AverageValue", average_value=str(s.queue_time_us)),
        ),
    )
    return k.V2HorizontalPodAutoscaler(
        api_version="autoscaling/v2",
        kind="HorizontalPodAutoscaler",
        metadata=k.V1ObjectMeta(name=s.name, namespace=s.namespace, labels=s.labels),
        spec=k.V2HorizontalPodAutoscalerSpec(
            scale_target_ref=k.V2CrossVersionObjectReference(api_version="apps/v1", kind="Deployment", name=s.name),
            min_replicas=s.min_replicas,
            max_replicas=s.max_replicas,
            metrics=[metric],
        ),
    )


def disruption_budget(s: DeploySettings):
    return k.V1PodDisruptionBudget(
        api_version="policy/v1",
        kind="PodDisruptionBudget",
        metadata=k.V1ObjectMeta(name=s.name, namespace=s.namespace, labels=s.labels),
        spec=k.V1PodDisruptionBudgetSpec(
            min_available=s.min_available, selector=k.V1LabelSelector(match_labels=s.labels)
        ),
    )


def inference_service(s: DeploySettings, runtime_version: str, server_args: list[str]):
    """A KServe InferenceService whose predictor is Triton (KServe's `kserve-tritonserver` runtime)."""

    kserve = api()
    return kserve.V1beta1InferenceService(
        api_version="serving.kserve.io/v1beta1",
        kind="InferenceService",
        metadata=k.V1ObjectMeta(name=s.name, namespace=s.namespace, labels=s.labels, annotations=s.annotations),
        spec=kserve.V1beta1InferenceServiceSpec(
            predictor=kserve.V1beta1PredictorSpec(
                min_replicas=s.min_replicas,
                max_replicas=s.max_replicas,
                triton=kserve.V1beta1TritonSpec(
                    name="kserve-container",
                    storage_uri=s.repository_uri,
                    runtime_version=runtime_version,
                    protocol_version="v2",
                    resources=_resources(s),
                    args=server_args,
                    env=operator_env(s) if any(OPERATOR_ENV in a for a in server_args) else None,
                ),
            )
        ),
    )


def plain_manifest(obj: Any) -> dict:
    """The object as the API server reads it (camelCase keys, no nulls), by its own package's serializer."""
    if type(obj).__module__.startswith("kserve."):
        from kserve.api_client import ApiClient as KServeClient  # lazy: the KServe client: KServe manifests only

        return KServeClient().sanitize_for_serialization(obj)

    return ApiClient().sanitize_for_serialization(obj)


def validate(documents: list[dict], kubernetes_version: str) -> None:
    """Each core object against the Kubernetes schemas (kubernetes-validate, strict: unknown fields fail)."""
    import kubernetes_validate  # lazy: manifest validation only

    for doc in documents:
        if doc.get("apiVersion", "").startswith("serving.kserve.io/"):
            continue  # a custom resource: kubernetes-validate has no schema for it (checked by kserve's models)
        try:
            kubernetes_validate.validate(doc, kubernetes_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise ConfigError(
                f"{doc['kind']} {doc['metadata']['name']} does not validate against Kubernetes "
                f"{kubernetes_version}: {exc.message} at {'/'.join(map(str, exc.path))}"
            ) from None
