"""Parity against the real embedded Triton, on artifacts the pipeline built: pass, fail, protocols, remote."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from tritonclient.grpc import model_config_pb2 as mc

from evaluate import gate as gate_cli
from evaluate import parity as parity_cli
from pipelines.artifacts import export_failure
from pipelines.comparison import job as parity_job
from pipelines.config.spec import model_spec, served_specs
from pipelines.core.errors import ArtifactError
from pipelines.model_repository import assembly
from pipelines.serving.served_model import ServedModel

from conftest import compose_config

pytestmark = pytest.mark.integration

PROTOCOLS = {"http", "http_json", "grpc", "grpc_burst"}
# Written by hand: what an NGC Triton reports for each model of the CPU catalog (metadata platform,
# config backend). Here the embedded server must report the same, its stand-ins marked runtime "model.py".
NATIVE = {
    "mnist_savedmodel": ("tensorflow_savedmodel", "tensorflow"),
    "mnist_onnx": ("onnxruntime_onnx", "onnxruntime"),
    "mnist_onnx_fp16": ("onnxruntime_onnx", "onnxruntime"),
    "mnist_onnx_int8": ("onnxruntime_onnx", "onnxruntime"),
    "resnet50_onnx_int8": ("onnxruntime_onnx", "onnxruntime"),
    "resnet50_onnx_int8_symmetric": ("onnxruntime_onnx", "onnxruntime"),
    "resnet50_onnx": ("onnxruntime_onnx", "onnxruntime"),
    "densenet121_onnx": ("onnxruntime_onnx", "onnxruntime"),
    "mobilenet_v2_onnx": ("onnxruntime_onnx", "onnxruntime"),
    "resnet50_ensemble": ("ensemble", ""),
    "resnet50_ensemble_preprocess": ("python", "python"),
    "resnet50_ensemble_postprocess": ("python", "python"),
    # the models of a user's own that the test workspace adds (tests/user_models.py)
    "twoin_savedmodel": ("tensorflow_savedmodel", "tensorflow"),
    "twoin_onnx": ("onnxruntime_onnx", "onnxruntime"),
    "sigmodel_savedmodel": ("tensorflow_savedmodel", "tensorflow"),
    "sigmodel_onnx": ("onnxruntime_onnx", "onnxruntime"),
    "text_onnx": ("onnxruntime_onnx", "onnxruntime"),
    "scripted_onnx": ("onnxruntime_onnx", "onnxruntime"),
    "argmax_onnx": ("onnxruntime_onnx", "onnxruntime"),
    "scores_onnx": ("onnxruntime_onnx", "onnxruntime"),
    "strings_savedmodel": ("tensorflow_savedmodel", "tensorflow"),
    "strings_onnx": ("onnxruntime_onnx", "onnxruntime"),
}
EMBEDDED_TRITON = "2.51.0"  # the tritonserver inside nvidia-pytriton 0.7.0 (NGC 24.10)


@pytest.mark.parametrize("model", list(compose_config("repository").models))
def test_served_model_matches_its_framework(pipeline_run: tuple[Path, Any], model: str) -> None:
    """The pipeline's parity stage (one server for every model) proved each model: its report says how."""
    workspace, result = pipeline_run
    cfg = compose_config("parity", [f"model={model}"])
    report = json.loads((workspace / cfg.parity_reports / f"{model}.json").read_text())
    assert report["passed"] and report["failures"] == []
    # the proof says what served it: the embedded Triton, and the stand-in for the model's native backend
    assert report["server"]["kind"] == "local" and report["server"]["triton_version"] == EMBEDDED_TRITON
    assert report["server"]["description"].startswith("embedded tritonserver (nvidia-pytriton ")
    platform, backend = NATIVE[model]
    assert (report["served_by"]["platform"], report["served_by"]["backend"]) == (platform, backend)
    if backend:
        assert report["served_by"]["runtime"] == "model.py" and "stand-in" in report["served_by"]["implementation"]
    else:
        assert {step: b["backend"] for step, b in report["served_by"]["steps"].items()} == {
            "resnet50_ensemble_preprocess": "python",
            "resnet50_onnx": "onnxruntime",
            "resnet50_ensemble_postprocess": "python",
        }
    if cfg.model.format == "ensemble":  # raw image bytes cannot travel as JSON
        assert set(report["protocols"]) == PROTOCOLS - {"http_json"} and "http_json" in report["skipped_protocols"]
        assert report["protocol_agreement"] == {"grpc": True}
        labels = next(o.name for o in cfg.model.outputs if o.dtype == "BYTES")
        assert all(p["outputs"][labels]["mismatched_samples"] == 0 for p in report["protocols"].values())
        assert report["preprocessing"]["passed"] and report["preprocessing"]["max_abs"] == 0.0
    else:
        assert set(report["protocols"]) == PROTOCOLS
        assert report["protocol_agreement"] == {"http_json": True, "grpc": True}
    batch_cases = report["protocols"]["grpc"]["cases"]
    assert batch_cases["batch_1"] == 1 and batch_cases[f"batch_{cfg.model.max_batch_size}"] == cfg.model.max_batch_size
    assert report["dynamic_batching"]["requests"] == cfg.model.parity.concurrent_requests
    labelled = [t.name for t in model_spec(model, cfg.model).outputs if t.labels]
    if labelled:  # Triton's classification extension agrees with the raw logits, over every protocol
        assert {p: sorted(e) for p, e in report["classification"].items()} == dict.fromkeys(
            ("http", "http_json", "grpc"), labelled
        )
        assert all(check["passed"] for entry in report["classification"].values() for check in entry.values())
    else:
        assert report["classification"] is None
    lossy = cfg.model.precision != "fp32"
    if lossy:  # judged twice: its own file in process (strict), and the FP32 framework model (its bounds)
        assert report["reference"] == "its own file in onnxruntime, in process"
        assert report["lossy"]["passed"] and report["lossy"]["failures"] == []
        assert report["lossy"]["reference"] == cfg.model.network.reference
    else:
        assert "lossy" not in report
    if model.startswith("mnist"):
        accuracy = report["accuracy"]
        strict = "own_file" if lossy else "framework"
        assert accuracy[strict] > 0.5
        assert accuracy["http"] == accuracy["grpc"] == accuracy["http_json"] == accuracy[strict]
        if lossy:  # the FP32 model's accuracy on the same digits is what mnist_onnx's parity measured of Keras
            fp32 = json.loads((workspace / cfg.parity_reports / "mnist_onnx.json").read_text())["accuracy"]["framework"]
            assert report["lossy"]["fp32_accuracy"] == fp32
            assert report["lossy"]["accuracy_drop"] == pytest.approx(fp32 - accuracy["http"])
        output = cfg.model.network.outputs[0].name
        assert report["protocols"]["http"]["outputs"][output]["samples"] == cfg.model.parity.samples + sum(
            int(case.split("_")[1]) for case in batch_cases if case.startswith("batch_")
        )
    table = result.stdout[result.stdout.index(f"Parity: {model} ") :]
    table = table[: table.index("RESULT: ")] + table[table.index("RESULT: ") :].splitlines()[0]
    assert table.endswith("RESULT: PASS") and "\ngrpc " in table
    assert ("\nhttp_json skipped" if cfg.model.format == "ensemble" else "\nhttp_json ") in table


def test_every_model_answers_as_on_an_ngc_server(running_triton) -> None:
    """Metadata, config and statistics of every served model (ensemble steps too), as Triton reports them."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    http = httpclient.InferenceServerClient(running_triton.http)
    grpc = grpcclient.InferenceServerClient(running_triton.grpc)
    operator = running_triton.operator  # the restricted APIs' key of this launch
    index = {m["name"]: m["state"] for m in http.get_model_repository_index(headers=operator)}
    assert index == dict.fromkeys(NATIVE, "READY")
    for name, (platform, backend) in NATIVE.items():
        assert http.get_model_metadata(name)["platform"] == platform, name
        config = grpc.get_model_config(name).config
        assert config.backend == backend, name
        assert config.runtime == ("model.py" if backend in ("onnxruntime", "tensorflow") else ""), name
        (stats,) = http.get_inference_statistics(name, headers=operator)["model_stats"]
        assert stats["name"] == name and "inference_stats" in stats


@pytest.mark.parametrize("model", ["resnet50_onnx", "densenet121_onnx", "mobilenet_v2_onnx"])
def test_classifiers_meet_what_tritons_image_client_requires(running_triton, model: str) -> None:
    """The stock image_client's model checks (parse_model): one input with a layout and 3 dims, one FP32 output
    with at most one dim > 1, labels for its classification request."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    metadata = httpclient.InferenceServerClient(running_triton.http).get_model_metadata(model)
    config = grpcclient.InferenceServerClient(running_triton.grpc).get_model_config(model).config
    (inp,), (out,) = metadata["inputs"], metadata["outputs"]
    assert len(config.input) == 1 and config.input[0].format == mc.ModelInput.FORMAT_NCHW
    assert config.max_batch_size > 0 and len(inp["shape"]) == 4 and inp["shape"][1] in (1, 3)
    assert out["datatype"] == "FP32" and sum(d > 1 for d in out["shape"][1:]) <= 1
    assert config.output[0].label_filename


def client_cfg(endpoints, *overrides: str):
    return compose_config(
        "client",
        ["server=remote", f"server.http_url={endpoints.http}", f"server.grpc_url={endpoints.grpc}", *overrides],
    )


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_client_classifies_a_photograph_like_the_framework(in_workspace: Path, running_triton, protocol: str) -> None:
    from pipelines.config import ensemble_parts
    from pipelines.data import parity_inputs
    from pipelines.runners import reference
    from serve import client

    rows = client.run(
        client_cfg(running_triton, "model=resnet50_ensemble", "image=sample:chelsea.png", f"protocol={protocol}")
    )
    catalog = served_specs(compose_config("repository").models)
    parts = ensemble_parts.parts(catalog["resnet50_ensemble"], catalog)
    photo = next(p for p in parity_inputs.sample_photo_paths() if p.name == "chelsea.png").read_bytes()
    expected = reference.load_ensemble(parts)({parts.image.name: np.array([[photo]], dtype=object)})
    assert [label for label, _ in rows] == [line.decode() for line in expected[parts.labels.name][0]]
    np.testing.assert_allclose([p for _, p in rows], expected[parts.probabilities.name][0], atol=1e-4)
    # the plain classifier, pre-processed client-side, labelled by Triton's classification extension, agrees
    direct = client.run(
        client_cfg(running_triton, "model=resnet50_onnx", "image=sample:chelsea.png", f"protocol={protocol}")
    )
    assert [label for label, _ in direct] == [label for label, _ in rows]
    np.testing.assert_allclose([p for _, p in direct], [p for _, p in rows], atol=1e-4)


def test_client_shows_metadata_and_config(in_workspace: Path, running_triton) -> None:
    from serve import client

    metadata = json.loads(client.run(client_cfg(running_triton, "model=resnet50_ensemble", "show=metadata")))
    assert metadata["platform"] == "ensemble" and metadata["inputs"][0]["datatype"] == "BYTES"
    config = client.run(client_cfg(running_triton, "model=mnist_onnx", "show=config"))
    assert 'name: "mnist_onnx"' in config and "max_batch_size: 64" in config


def perturb_last_bias(src: Path, dst: Path, delta: float) -> None:
    """A copy of the ONNX model whose 10-class output bias is nudged: same graph, wrong numbers."""
    model = onnx.load(str(src))
    biases = [i for i in model.graph.initializer if list(i.dims) == [10]]
    assert biases, "no 10-element initializer to perturb"
    values = numpy_helper.to_array(biases[-1]).copy()
    values[3] += delta
    biases[-1].CopyFrom(numpy_helper.from_array(values, biases[-1].name))
    onnx.save(model, str(dst))


def test_perturbed_model_fails_parity(in_workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    perturbed = tmp_path / "perturbed.onnx"
    perturb_last_bias(in_workspace / compose_config("parity", ["model=mnist_onnx"]).paths.mnist_onnx, perturbed, 0.05)
    overrides = [
        "model=mnist_onnx",
        f"paths.mnist_onnx={perturbed}",
        f"paths.model_repository={tmp_path / 'repo'}",
        f"paths.parity_reports={tmp_path / 'reports'}",
        f"paths.logs={tmp_path}",
    ]
    cfg = compose_config("parity", overrides)
    assembly.assemble([model_spec("mnist_onnx", cfg.model)], tmp_path / "repo")
    assert parity_cli.run(cfg) == 1
    report = json.loads((tmp_path / "reports" / "mnist_onnx.json").read_text())
    assert not report["passed"]
    http = report["protocols"]["http"]["outputs"][cfg.model.network.outputs[0].name]
    assert not http["passed"]
    assert http["needed_atol"] > cfg.model.tolerance.atol  # the report says what would have been needed
    assert any("needs atol" in f for f in report["failures"])
    # the served copy is wrong identically over every protocol: the fault is the model, not the transport
    assert report["protocol_agreement"] == {"http_json": True, "grpc": True}
    assert "RESULT: FAIL" in capsys.readouterr().out


def test_a_model_that_cannot_be_served_fails_alone_and_the_others_are_proven(
    in_workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A config Triton refuses at load (its version policy names a version the repository lacks) and an export that
    failed (its folder holds the failure record export_added writes) cost those models alone: the repository
    leaves the failed export out, the server serves the rest, parity proves them and fails the two with Triton's
    and the exporter's reasons, and the gate names both."""
    keep = ("mnist_onnx", "mnist_onnx_fp16", "mnist_onnx_int8", "mnist_savedmodel")
    policy = "version_policy { specific { versions: [ 2 ] } }"  # only version 1 is served
    quantized = tmp_path / "quantized"
    shutil.copytree(
        in_workspace / compose_config("parity", ["model=mnist_onnx"]).paths.quantized / "mnist_onnx_fp16",
        quantized / "mnist_onnx_fp16",
    )
    export_failure.record(quantized / "mnist_onnx_int8", "the calibration data could not be read (for the test)")
    others = [f"~models.{m}" for m in compose_config("parity", ["model=all"]).models if m not in keep]
    overrides = [
        "model=all",
        *others,
        f"+models.mnist_onnx_fp16.extra_config='{policy}'",
        f"paths.quantized={quantized}",
        f"paths.model_repository={tmp_path / 'repo'}",
        f"paths.parity_reports={tmp_path / 'reports' / 'parity'}",
        f"paths.logs={tmp_path}",
    ]
    cfg = compose_config("parity", overrides)
    assembly.assemble(list(served_specs(cfg.models).values()), tmp_path / "repo")
    assert not (tmp_path / "repo" / "mnist_onnx_int8").exists()
    assert parity_cli.run(cfg) == 1
    out = capsys.readouterr().out
    assert "parity FAILED for: mnist_onnx_fp16, mnist_onnx_int8" in out and "served by: nothing" in out
    reports = {m: json.loads((tmp_path / "reports" / "parity" / f"{m}.json").read_text()) for m in keep}
    assert reports["mnist_onnx"]["passed"] and reports["mnist_savedmodel"]["passed"]
    assert set(reports["mnist_onnx"]["protocols"]) >= {"http", "http_json", "grpc"}
    (unloaded,) = reports["mnist_onnx_fp16"]["failures"]
    # Triton's own words, from its log (the index leaves out a model refused before any version)
    assert unloaded.startswith("Triton did not load 'mnist_onnx_fp16': at least one version must be available")
    assert reports["mnist_onnx_int8"]["failures"] == [
        "its export failed: the calibration data could not be read (for the test)"
    ]
    gate = compose_config(
        "gate",
        [
            f"baseline_dir={in_workspace}",
            f"output={tmp_path / 'gate.md'}",
            "serving_dirs=[]",
            f"metrics_dirs=[{tmp_path / 'reports' / 'parity' / 'metrics'}]",
        ],
    )
    assert gate_cli.run(gate) == 1
    reasons = (tmp_path / "gate.md").read_text().split("Failed because:")[1].strip().splitlines()
    assert reasons == ["- metrics/mnist_onnx_fp16: fails parity", "- metrics/mnist_onnx_int8: fails parity"], reasons
    # one model asked for: the server loads it alone, whatever else the repository holds
    logs = tmp_path / "one"
    single = [
        "model=mnist_onnx",
        f"paths.model_repository={tmp_path / 'repo'}",
        f"paths.parity_reports={tmp_path / 'one' / 'parity'}",
        f"paths.logs={logs}",
    ]
    assert parity_cli.run(compose_config("parity", single)) == 0
    (log,) = logs.glob("triton-*.log")
    assert "'mnist_onnx_fp16'" not in log.read_text() and "mnist_savedmodel" not in log.read_text()


def test_a_broken_quantization_fails_parity(in_workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """mnist_onnx_int8 calibrated on all-zero images: served exactly as its file computes, far from the FP32 model."""
    from pipelines.artifacts import quantization

    spec = model_spec("mnist_onnx_int8", compose_config("parity", ["model=mnist_onnx_int8"]).model)
    broken = tmp_path / "quantized" / spec.name / "model.onnx"
    broken.parent.mkdir(parents=True)
    (image,) = spec.inputs
    quantization.to_int8(
        quantization.source(spec), broken, image.name, np.zeros((64, *image.dims), np.float32), spec.quantization
    )
    overrides = [
        "model=mnist_onnx_int8",
        f"paths.quantized={tmp_path / 'quantized'}",
        f"paths.model_repository={tmp_path / 'repo'}",
        f"paths.parity_reports={tmp_path / 'reports'}",
        f"paths.logs={tmp_path}",
    ]
    cfg = compose_config("parity", overrides)
    assembly.assemble([model_spec("mnist_onnx_int8", cfg.model)], tmp_path / "repo")
    assert parity_cli.run(cfg) == 1
    report = json.loads((tmp_path / "reports" / "mnist_onnx_int8.json").read_text())
    # serving added nothing: every protocol matches the broken file run in process ...
    assert all(o["passed"] for p in report["protocols"].values() for o in p["outputs"].values())
    # ... and the precision's cost is what fails, the accuracy drop first among the reasons
    lossy = report["lossy"]
    assert not lossy["passed"] and lossy["accuracy_drop"] > spec.lossy.max_accuracy_drop
    assert next(f for f in report["failures"] if f.startswith("vs FP32 ")).startswith("vs FP32 keras: accuracy 0.")
    assert "RESULT: FAIL" in capsys.readouterr().out


LABEL_CORRUPTIONS = {  # what a wrong export could write, and the one line parity must fail with
    "permuted": (lambda names: names[1:] + names[:1], "in 1000 of 1000 classes (class 0 is 'goldfish', "),
    "one_missing": (lambda names: names[:-1], ""),  # refused earlier: the repository is never built
    "pair_swapped": (lambda names: [names[1], names[0], *names[2:]], "in 2 of 1000 classes (class 0 is 'goldfish', "),
}


@pytest.mark.parametrize("corruption", list(LABEL_CORRUPTIONS))
def test_labels_written_wrong_at_export_fail_parity(
    in_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corruption: str
) -> None:
    """The export writes labels.txt, the repository serves it, Triton answers with it: all agree, and parity must
    still fail, because it reads the names from torchvision's metadata, not from what the export wrote."""
    from export import torchvision_onnx
    from pipelines.data import labels

    corrupt, problem = LABEL_CORRUPTIONS[corruption]
    right = labels.write_labels
    with monkeypatch.context() as patch:  # only the export writes labels: parity reads torchvision's own names
        patch.setattr(labels, "write_labels", lambda path, names: right(path, corrupt(names)))
        torchvision_onnx.run(
            compose_config(
                "export_classifier",
                [
                    "network=mobilenet_v2",
                    f"paths.classifiers={tmp_path / 'classifiers'}",
                    f"paths.export_reports={tmp_path / 'export'}",
                ],
            )
        )
    overrides = [
        "model=mobilenet_v2_onnx",
        f"paths.classifiers={tmp_path / 'classifiers'}",
        f"paths.model_repository={tmp_path / 'repo'}",
        f"paths.parity_reports={tmp_path / 'reports'}",
        f"paths.logs={tmp_path}",
        "model.parity.samples=3",
        "model.parity.concurrent_requests=0",
    ]
    cfg = compose_config("parity", overrides)
    if corruption == "one_missing":  # a count that differs from the output's classes never becomes a repository
        with pytest.raises(ArtifactError, match=r"labels.txt has 999 labels for 1000 classes$"):
            assembly.assemble([model_spec("mobilenet_v2_onnx", cfg.model)], tmp_path / "repo")
        return
    assembly.assemble([model_spec("mobilenet_v2_onnx", cfg.model)], tmp_path / "repo")
    assert parity_cli.run(cfg) == 1
    report = json.loads((tmp_path / "reports" / "mobilenet_v2_onnx.json").read_text())
    (line,) = [f for f in report["failures"] if f.startswith("labels: ")]
    assert problem in line and "\n" not in line
    assert not report["labels"]["passed"]


def test_a_constant_written_wrong_in_conf_fails_parity(in_workspace: Path, tmp_path: Path) -> None:
    """The ImageNet mean in BGR order: the reference and the served side read the same constant, so every figure
    agrees, and parity must still fail (exit 1), naming it: the constants are audited against torchvision's own
    transform of the weights (pipelines/data/preprocessing_audit.py)."""
    cfg = compose_config(
        "parity",
        [
            "model=mobilenet_v2_onnx",
            "model.network.preprocessing.mean=[0.406,0.456,0.485]",
            f"paths.parity_adhoc={tmp_path / 'adhoc'}",
            f"paths.logs={tmp_path}",
            "model.parity.samples=3",
            "model.parity.concurrent_requests=0",
        ],
    )
    assert parity_cli.run(cfg) == 1
    report = json.loads((tmp_path / "adhoc" / "mobilenet_v2_onnx.json").read_text())
    assert report["failures"] == [
        "pre-processing constants: preprocessing.mean is [0.406, 0.456, 0.485], torchvision's mobilenet_v2 "
        "IMAGENET1K_V1 transform has [0.485, 0.456, 0.406]"
    ]
    assert not report["constants"]["passed"]


def test_remote_server_and_served_config(in_workspace: Path, tmp_path: Path, running_triton) -> None:
    """server=remote checks a Triton someone else started; the served config agrees with the spec."""
    import tritonclient.http as httpclient

    endpoints = running_triton
    cfg = compose_config(
        "parity",
        [
            "model=mnist_onnx",
            "server=remote",
            f"server.http_url={endpoints.http}",
            f"server.grpc_url={endpoints.grpc}",
            f"server.operator_key={endpoints.operator['triton-operator-key']}",  # its statistics count the burst
            f"paths.parity_reports={tmp_path / 'reports'}",
        ],
    )
    client = httpclient.InferenceServerClient(endpoints.http)

    def requests() -> int:  # Triton's own count of the model's successful requests
        return int(
            client.get_inference_statistics("mnist_onnx", headers=endpoints.operator)["model_stats"][0][
                "inference_stats"
            ]["success"]["count"]
        )

    before = requests()
    (report,) = parity_job.check_parity(parity_job.ParityJob.from_cfg(cfg))
    # each distinct request once per protocol: batch_1, batch_7, and all samples in chunks of 64 (the first of
    # which is batch_64), over 3 protocols; then the burst, one request per sample
    settings, chunk = cfg.model.parity, cfg.model.max_batch_size
    distinct = {(0, b) for b in settings.batch_sizes} | {
        (start, min(start + chunk, settings.samples)) for start in range(0, settings.samples, chunk)
    }
    assert requests() - before == 3 * len(distinct) + settings.concurrent_requests == 3 * 18 + 32
    assert report.passed and report.server["kind"] == "remote"
    assert report.server["description"] == f"remote http://{endpoints.http}"
    assert report.server["triton_version"] == EMBEDDED_TRITON
    # Triton itself says a Python-based backend stood in; which runtime version runs there is not ours to know
    assert report.served_by["implementation"] == "onnxruntime stand-in (model.py): ONNX Runtime on the CPU"
    spec = model_spec("mnist_onnx", cfg.model)
    with ServedModel(spec, endpoints) as served:
        served.check_ready()
        digits = np.zeros((2, *spec.inputs[0].dims), dtype=np.float32)
        out = served.infer("grpc", {spec.inputs[0].name: digits})[spec.outputs[0].name]
        assert out.shape == (2, *spec.outputs[0].dims)
        assert np.allclose(out.sum(axis=1), 1.0, atol=1e-5)  # softmax probabilities


def test_spec_that_disagrees_with_the_served_config_is_refused(running_triton) -> None:
    cfg = compose_config("parity", ["model=resnet50_onnx", "model.max_batch_size=4"])
    spec = model_spec("resnet50_onnx", cfg.model)
    with ServedModel(spec, running_triton) as served:
        from pipelines.core.errors import ServerError

        with pytest.raises(ServerError, match="max_batch_size is 8, spec says 4"):
            served.check_ready()


def test_a_remote_server_serving_other_settings_than_the_spec_is_refused(
    in_workspace: Path, tmp_path: Path, running_triton
) -> None:
    """A remote server's files cannot be read, so what it reports is compared, in every field the spec sets:
    here the spec's queue delay differs from the one served (100 us, the config this checkout generated)."""
    cfg = compose_config(
        "parity",
        [
            "model=mnist_onnx",
            "server=remote",
            f"server.http_url={running_triton.http}",
            f"server.grpc_url={running_triton.grpc}",
            f"paths.parity_reports={tmp_path / 'reports'}",
            "model.dynamic_batching.max_queue_delay_microseconds=5000000",
        ],
    )
    from pipelines.core.errors import ServerError

    with pytest.raises(
        ServerError,
        match=r"the server's mnist_onnx is not what the spec generates \("
        r"dynamic_batching.max_queue_delay_microseconds: 100, expected 5000000\)",
    ):
        parity_job.check_parity(parity_job.ParityJob.from_cfg(cfg))
    assert not (tmp_path / "reports").exists()


def test_localize_blames_the_layer_whose_quantization_was_broken(
    in_workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """mnist_onnx_int8 with one activation's DequantizeLinear scale times 10: parity fails, and localize=true names
    that activation's layer as the first over the bound (nothing before it is), serving its debug copy apart."""
    spec = model_spec("mnist_onnx_int8", compose_config("parity", ["model=mnist_onnx_int8"]).model)
    model = onnx.load(str(in_workspace / spec.artifact))
    broken = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and "conv2d_1_2/Relu" in n.input[0])
    scale = next(i for i in model.graph.initializer if i.name == broken.input[1])
    values = numpy_helper.to_array(scale)
    model.graph.initializer.append(numpy_helper.from_array((values * 10).astype(values.dtype), scale.name + "_x10"))
    broken.input[1] = scale.name + "_x10"
    target = tmp_path / "quantized" / spec.name / "model.onnx"
    target.parent.mkdir(parents=True)
    onnx.save(model, str(target))
    overrides = [
        "model=mnist_onnx_int8",
        f"paths.quantized={tmp_path / 'quantized'}",
        f"paths.model_repository={tmp_path / 'repo'}",
        f"paths.parity_reports={tmp_path / 'reports'}",
        f"paths.parity_adhoc={tmp_path / 'adhoc'}",
        f"paths.logs={tmp_path}",
    ]
    cfg = compose_config("parity", overrides)
    assembly.assemble([model_spec("mnist_onnx_int8", cfg.model)], tmp_path / "repo")
    assert parity_cli.run(cfg) == 1
    assert parity_cli.run(compose_config("parity", [*overrides, "localize=true"])) == 1
    report = json.loads((tmp_path / "adhoc" / "localize" / "mnist_onnx_int8.json").read_text())
    first = report["first_over_bound"]
    activation = broken.input[0].removesuffix("_QuantizeLinear_Output")
    assert first["tensor"] == activation, first
    before = [layer for layer in report["layers"] if layer["index"] < first["index"]]
    assert before and all(layer["relative"] < 0.05 for layer in before)  # the layers before it are fine
    assert first["relative"] > 5  # dequantized ten times too large
    assert (tmp_path / "adhoc" / "localize" / "mnist_onnx_int8.png").stat().st_size > 0
    assert "first over the bound: node" in capsys.readouterr().out
    assert not any("__localize" in p.name for p in (tmp_path / "repo").iterdir())  # the debug copy served apart


def test_a_passed_proof_is_kept_while_nothing_it_was_made_from_changes(
    in_workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """reuse=true (the parity stage's setting): a second run with nothing changed starts no server, and the
    report is kept as it was; a changed input file (here: one pixel of the test digits) makes the proof again."""
    data = tmp_path / "mnist.npz"
    shutil.copy2(in_workspace / compose_config("parity", ["model=mnist_onnx"]).paths.data, data)
    logs = tmp_path / "logs"
    overrides = [
        "model=mnist_onnx",
        "reuse=true",
        f"paths.data={data}",
        f"paths.parity_reports={tmp_path / 'reports'}",
        f"paths.logs={logs}",
    ]
    report = tmp_path / "reports" / "mnist_onnx.json"
    assert parity_cli.run(compose_config("parity", overrides)) == 0
    first = report.read_bytes()
    assert len(list(logs.glob("triton-*.log"))) == 1 and json.loads(first)["proof_key"]
    assert parity_cli.run(compose_config("parity", overrides)) == 0
    assert len(list(logs.glob("triton-*.log"))) == 1  # no server started: nothing to prove again
    assert report.read_bytes() == first and "kept 1 passed report(s)" in capsys.readouterr().out
    with np.load(data) as arrays:
        digits = dict(arrays)
    digits["x_test"] = digits["x_test"].copy()
    digits["x_test"].flat[0] ^= 1
    np.savez(data, **digits)
    assert parity_cli.run(compose_config("parity", overrides)) == 0
    assert len(list(logs.glob("triton-*.log"))) == 2
    assert json.loads(report.read_text())["proof_key"] != json.loads(first)["proof_key"]
