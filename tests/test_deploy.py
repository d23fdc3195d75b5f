"""Cluster manifests: read back from the written YAML and checked against the config; validated by real schemas."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.cluster import kserve_api, manifests
from pipelines.core.errors import ConfigError
from serve import deploy

from conftest import ROOT, compose_config, tool_env

URI = "s3://my-bucket/train-to-triton/model_repository"


def repository(root: Path, *models: str) -> Path:
    for model in models:
        (root / model).mkdir(parents=True)
        (root / model / "config.pbtxt").write_text(
            f'name: "{model}"\nmax_batch_size: 8\ninput {{ name: "x" data_type: TYPE_FP32 dims: [3, 4] }}\n'
        )
    return root


def containers(deployment: dict) -> dict[str, dict]:
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def generate(tmp_path: Path, *overrides: str) -> list[dict]:
    repo = repository(tmp_path / "repo", "mnist_onnx", "resnet50_onnx")
    cfg = compose_config("deploy", [f"model_repository={repo}", f"out={tmp_path / 'out.yaml'}", *overrides])
    out = deploy.run(cfg)
    return list(yaml.safe_load_all(out.read_text()))


def test_kubernetes_manifests_read_back_as_configured(tmp_path: Path) -> None:
    cfg = compose_config("deploy", [])
    docs = {d["kind"]: d for d in generate(tmp_path, f"repository_uri={URI}", "credentials_secret=s3-credentials")}
    assert set(docs) == {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    pods = containers(docs["Deployment"])
    container, front = pods["tritonserver"], pods["front"]
    assert container["image"] == cfg.image == "nvcr.io/nvidia/tritonserver:24.10-py3"
    assert container["args"][:2] == ["tritonserver", f"--model-repository={URI}"]
    assert "--disable-auto-complete-config" in container["args"] and "--exit-timeout-secs=30" in container["args"]
    # Triton on the pod's loopback; the pod's HTTP and gRPC ports are the front's (metrics stay Triton's)
    assert {"--http-address=127.0.0.1", "--http-port=8010", "--grpc-address=127.0.0.1", "--grpc-port=8011"} <= set(
        container["args"]
    )
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 8002}
    assert {p["name"]: p["containerPort"] for p in front["ports"]} == {"http": 8000, "grpc": 8001}
    assert front["image"] == "nginx:1.27.3"
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8000}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8000}
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/v2/health/ready"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= cfg.startup_timeout_s
    assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    # Triton's management APIs behind a key from a Secret the operator creates: Kubernetes substitutes $(VAR)
    restricted = "shared-memory,model-repository,statistics,trace,logging:triton-operator-key=$(TRITON_OPERATOR_KEY)"
    assert {f"--http-restricted-api={restricted}", f"--grpc-restricted-protocol={restricted}"} <= set(container["args"])
    key = {"name": "train-to-triton-operator-key", "key": "key"}
    assert container["env"] == [{"name": "TRITON_OPERATOR_KEY", "valueFrom": {"secretKeyRef": key}}]
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "4Gi"}}
    # least privilege: as user 1000, never root, no escalation, no capability, the runtime's seccomp profile
    pod = docs["Deployment"]["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsUser"] == 1000 and pod["runAsNonRoot"] and pod["seccompProfile"] == {"type": "RuntimeDefault"}
    for each in (container, front):
        assert each["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert docs["Deployment"]["spec"]["replicas"] == cfg.replicas
    assert docs["Deployment"]["metadata"]["annotations"]["train-to-triton/models"] == "mnist_onnx,resnet50_onnx"
    assert {p["port"] for p in docs["Service"]["spec"]["ports"]} == {8000, 8001, 8002}
    assert docs["Service"]["spec"]["selector"] == docs["Deployment"]["spec"]["selector"]["matchLabels"]
    hpa = docs["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "train-to-triton"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (cfg.min_replicas, cfg.max_replicas)
    assert hpa["metrics"] == [
        {
            "type": "Pods",
            "pods": {"metric": {"name": "avg_time_queue_us"}, "target": {"type": "AverageValue", "averageValue": "50"}},
        }
    ]
    assert docs["PodDisruptionBudget"]["spec"]["minAvailable"] == 1


def test_a_volume_held_repository_is_mounted_read_only(tmp_path: Path) -> None:
    (_, deployment, *_) = generate(tmp_path, "repository_claim=model-repository")
    pod = deployment["spec"]["template"]["spec"]
    assert {
        "name": "model-repository",
        "persistentVolumeClaim": {"claimName": "model-repository", "readOnly": True},
    } in pod["volumes"]
    triton = containers(deployment)["tritonserver"]
    assert triton["volumeMounts"] == [{"name": "model-repository", "mountPath": "/models", "readOnly": True}]
    assert triton["args"][1] == "--model-repository=/models"


def test_the_gpu_profile_asks_for_a_gpu(tmp_path: Path) -> None:
    (_, deployment, *_) = generate(tmp_path, "catalog=gpu", f"repository_uri={URI}")
    limits = containers(deployment)["tritonserver"]["resources"]["limits"]
    assert limits == {"memory": "4Gi", "nvidia.com/gpu": "1"}


def test_kserve_inference_service(tmp_path: Path) -> None:
    (isvc,) = generate(tmp_path, "target=kserve", f"repository_uri={URI}")
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    predictor = isvc["spec"]["predictor"]
    assert predictor["triton"]["storageUri"] == URI and predictor["triton"]["runtimeVersion"] == "24.10-py3"
    assert predictor["triton"]["protocolVersion"] == "v2"
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 6)
    # the field check is KServe's own: a misplaced or misspelled field is named
    isvc["spec"]["predictor"]["triton"]["storageURI"] = URI
    isvc["spec"]["metadata"] = {}
    assert kserve_api.unknown_fields(isvc, "V1beta1InferenceService") == [
        "spec.predictor.triton.storageURI",
        "spec.metadata",
    ]


def test_the_schemas_are_real_a_wrong_field_fails(tmp_path: Path) -> None:
    (_, deployment, *_) = generate(tmp_path, f"repository_uri={URI}")
    manifests.validate([deployment], "1.31.0")
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "eighty"
    with pytest.raises(ConfigError, match=r"Deployment train-to-triton does not validate against Kubernetes 1\.31\.0"):
        manifests.validate([deployment], "1.31.0")
    deployment["spec"]["replica"] = 3  # strict: a misspelled field is refused, not ignored
    with pytest.raises(ConfigError):
        manifests.validate([deployment], "1.31.0")


NGINX = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (`make test` installs it where it can: .ci/tools)")
def test_the_pods_front_is_a_configuration_nginx_accepts(tmp_path: Path) -> None:
    """The ConfigMap's nginx.conf and guard, checked by this host's nginx (`nginx -t`) with the pod's paths moved
    here; the per-model cap is the model's largest legal request, worked out by hand: 8 x 3 x 4 FP32 values as JSON,
    26 characters each."""
    (config_map, deployment, *_) = generate(tmp_path, f"repository_uri={URI}")
    files = config_map["data"]
    assert set(files) == {"nginx.conf", "guard.js"}
    conf = files["nginx.conf"]
    assert "listen 0.0.0.0:8000 reuseport;" in conf and "listen 0.0.0.0:8001 http2 reuseport;" in conf
    assert "server 127.0.0.1:8010 " in conf and "server 127.0.0.1:8011 " in conf
    assert f"client_max_body_size {8 * 3 * 4 * 26 + 64 * 1024};" in conf
    mounts = {m["mountPath"]: m for m in containers(deployment)["front"]["volumeMounts"]}
    assert mounts["/etc/front"]["readOnly"] and "/tmp/front" in mounts
    etc, work = tmp_path / "etc", tmp_path / "work"
    etc.mkdir(), work.mkdir()
    (etc / "guard.js").write_text(files["guard.js"])
    njs = Path("/usr/lib/nginx/modules/ngx_http_js_module.so")
    if not njs.is_file():
        conf = conf.replace("load_module", "# load_module").replace("js_", "# js_")
    conf = (
        conf.replace("/etc/front/", f"{etc}/")
        .replace("/tmp/front/", f"{work}/")
        .replace("/usr/lib/nginx/modules/", f"{njs.parent}/")
        .replace("0.0.0.0:", "127.0.0.1:")
    )
    (etc / "nginx.conf").write_text(conf)
    proc = subprocess.run(
        [NGINX, "-t", "-p", f"{work}/", "-c", str(etc / "nginx.conf"), "-e", "/dev/stderr"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ([], "set repository_uri"),
        ([f"repository_uri={URI}", "repository_claim=c"], "set repository_uri"),
        (["repository_uri=http://example.com/models"], "repository_uri must start with s3://, gs://, as://"),
        ([f"repository_uri={URI}", "min_replicas=1"], "target.min_available (1) must be below min_replicas (1)"),
        ([f"repository_uri={URI}", "name=Train_To_Triton"], "is not a Kubernetes name"),
        (["target=kserve", "repository_claim=c"], "target=kserve reads the repository from repository_uri"),
    ],
)
def test_settings_that_cannot_deploy_are_one_line(tmp_path: Path, overrides: list[str], says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace(")", r"\)")):
        generate(tmp_path, *overrides)


def test_cli_writes_a_validated_manifest(tmp_path: Path) -> None:
    repo = repository(tmp_path / "repo", "mnist_onnx")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "serve.deploy",
            "target=kserve",
            f"repository_uri={URI}",
            f"model_repository={repo}",
            f"out={tmp_path / 'kserve.yaml'}",
        ],
        cwd=ROOT,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "InferenceService train-to-triton" in proc.stdout and (tmp_path / "kserve.yaml").is_file()
    empty = subprocess.run(
        [sys.executable, "-m", "serve.deploy", f"model_repository={tmp_path / 'none'}"],
        cwd=ROOT,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert empty.returncode == 2 and empty.stderr.strip().startswith("error: ") and len(empty.stderr.splitlines()) == 1
