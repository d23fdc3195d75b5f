"""Cluster manifests: read back from the written YAML and checked against the config; validated by real schemas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, compose_config, tool_env
from pipelines import kserve_api, manifests
from pipelines.errors import ConfigError
from serve import deploy

URI = "s3://my-bucket/train-to-triton/model_repository"


def repository(root: Path, *models: str) -> Path:
    for model in models:
        (root / model).mkdir(parents=True)
        (root / model / "config.pbtxt").write_text(f'name: "{model}"\n')
    return root


def generate(tmp_path: Path, *overrides: str) -> list[dict]:
    repo = repository(tmp_path / "repo", "mnist_onnx", "resnet50_onnx")
    cfg = compose_config("deploy", [f"model_repository={repo}", f"out={tmp_path / 'out.yaml'}", *overrides])
    out = deploy.run(cfg)
    return list(yaml.safe_load_all(out.read_text()))


def test_kubernetes_manifests_read_back_as_configured(tmp_path: Path) -> None:
    cfg = compose_config("deploy", [])
    docs = {d["kind"]: d for d in generate(tmp_path, f"repository_uri={URI}", "credentials_secret=s3-credentials")}
    assert set(docs) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == cfg.image == "nvcr.io/nvidia/tritonserver:24.10-py3"
    assert container["args"][:2] == ["tritonserver", f"--model-repository={URI}"]
    assert "--disable-auto-complete-config" in container["args"] and "--exit-timeout-secs=30" in container["args"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/v2/health/ready"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= cfg.startup_timeout_s
    assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "4Gi"}}
    assert docs["Deployment"]["spec"]["replicas"] == cfg.replicas
    assert docs["Deployment"]["metadata"]["annotations"]["train-to-triton/models"] == "mnist_onnx,resnet50_onnx"
    assert {p["port"] for p in docs["Service"]["spec"]["ports"]} == {8000, 8001, 8002}
    assert docs["Service"]["spec"]["selector"] == docs["Deployment"]["spec"]["selector"]["matchLabels"]
    hpa = docs["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "train-to-triton"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (cfg.min_replicas, cfg.max_replicas)
    assert hpa["metrics"] == [{"type": "Pods", "pods": {"metric": {"name": "avg_time_queue_us"},
                                                        "target": {"type": "AverageValue", "averageValue": "50"}}}]
    assert docs["PodDisruptionBudget"]["spec"]["minAvailable"] == 1


def test_a_volume_held_repository_is_mounted_read_only(tmp_path: Path) -> None:
    (deployment, *_) = generate(tmp_path, "repository_claim=model-repository")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "model-repository",
                               "persistentVolumeClaim": {"claimName": "model-repository", "readOnly": True}}]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "model-repository", "mountPath": "/models", "readOnly": True}]
    assert pod["containers"][0]["args"][1] == "--model-repository=/models"


def test_the_gpu_profile_asks_for_a_gpu(tmp_path: Path) -> None:
    (deployment, *_) = generate(tmp_path, "catalog=gpu", f"repository_uri={URI}")
    limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
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
    assert kserve_api.unknown_fields(isvc, "V1beta1InferenceService") == ["spec.predictor.triton.storageURI",
                                                                          "spec.metadata"]


def test_the_schemas_are_real_a_wrong_field_fails(tmp_path: Path) -> None:
    (deployment, *_) = generate(tmp_path, f"repository_uri={URI}")
    manifests.validate([deployment], "1.31.0")
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "eighty"
    with pytest.raises(ConfigError, match="Deployment train-to-triton does not validate against Kubernetes 1.31.0"):
        manifests.validate([deployment], "1.31.0")
    deployment["spec"]["replica"] = 3  # strict: a misspelled field is refused, not ignored
    with pytest.raises(ConfigError):
        manifests.validate([deployment], "1.31.0")


@pytest.mark.parametrize(("overrides", "says"), [
    ([], "set repository_uri"),
    ([f"repository_uri={URI}", "repository_claim=c"], "set repository_uri"),
    (["repository_uri=http://example.com/models"], "repository_uri must start with s3://, gs://, as://"),
    ([f"repository_uri={URI}", "min_replicas=1"], "target.min_available (1) must be below min_replicas (1)"),
    ([f"repository_uri={URI}", "name=Train_To_Triton"], "is not a Kubernetes name"),
    (["target=kserve", "repository_claim=c"], "target=kserve reads the repository from repository_uri"),
])
def test_settings_that_cannot_deploy_are_one_line(tmp_path: Path, overrides: list[str], says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace(")", r"\)")):
        generate(tmp_path, *overrides)


def test_cli_writes_a_validated_manifest(tmp_path: Path) -> None:
    repo = repository(tmp_path / "repo", "mnist_onnx")
    proc = subprocess.run([sys.executable, "-m", "serve.deploy", "target=kserve", f"repository_uri={URI}",
                           f"model_repository={repo}", f"out={tmp_path / 'kserve.yaml'}"], cwd=ROOT, env=tool_env(),
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "InferenceService train-to-triton" in proc.stdout and (tmp_path / "kserve.yaml").is_file()
    empty = subprocess.run([sys.executable, "-m", "serve.deploy", f"model_repository={tmp_path / 'none'}"], cwd=ROOT,
                           env=tool_env(), capture_output=True, text=True, timeout=180)
    assert empty.returncode == 2 and empty.stderr.strip().startswith("error: ") and len(empty.stderr.splitlines()) == 1
