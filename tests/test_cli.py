"""The commands users type: one-line errors with exit code 2, and a --help that answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, tool_env


def run_module(module: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[-1]


def test_unknown_model_is_a_usage_error() -> None:
    assert_one_line_error(
        run_module("evaluate.parity", "model=resnet51_onnx"), "unknown model 'resnet51_onnx'", "resnet50_onnx"
    )


def test_missing_model_choice_is_a_usage_error() -> None:
    assert_one_line_error(run_module("evaluate.parity"), "choose a model: model=<all|", "|mnist_onnx|")


def test_bad_value_type_is_a_usage_error() -> None:
    assert_one_line_error(
        run_module("evaluate.parity", "model=mnist_onnx", "model.max_batch_size=lots"),
        "model 'mnist_onnx': invalid config",
    )


def test_wrong_network_for_a_stage_points_to_the_right_one() -> None:
    assert_one_line_error(run_module("train.mnist", "network=resnet50"), "handles keras networks")


def test_unreachable_remote_server_is_one_line(tmp_path: Path) -> None:
    proc = run_module(
        "evaluate.parity",
        "model=mnist_onnx",
        "server=remote",
        "server.http_url=127.0.0.1:9",
        "server.connect_timeout_s=1",
    )
    assert_one_line_error(proc, "no ready Triton at http://127.0.0.1:9")


def test_missing_artifacts_name_the_stage_to_run(tmp_path: Path) -> None:
    proc = run_module(
        "serve.repository",
        f"paths.model_repository={tmp_path / 'repo'}",
        f"paths.mnist_savedmodel={tmp_path / 'absent'}",
    )
    assert_one_line_error(proc, "run the export stage")
    assert not (tmp_path / "repo").exists()


def test_required_value_is_named() -> None:
    assert_one_line_error(run_module("train.prepare_data", "data=local"), "data.path is required")


def test_unknown_group_option_lists_the_choices() -> None:
    assert_one_line_error(run_module("train.prepare_data", "data=imagenet"), "mnist_offline")


def test_offline_download_fails_with_the_offline_option(tmp_path: Path) -> None:
    proc = run_module("export.torchvision_onnx", "weights=IMAGENET1K_V2", f"paths.classifiers={tmp_path}")
    if proc.returncode == 0:
        pytest.skip("this machine can download torchvision weights")
    assert_one_line_error(proc, "weights=null")
    assert list(tmp_path.iterdir()) == []


def test_tensorrt_commands_explain_themselves_on_a_cpu_host() -> None:
    from pipelines.trt import host

    if host.tensorrt_unavailable() is None:
        pytest.skip("this host can build and serve TensorRT engines")
    assert_one_line_error(run_module("export.tensorrt", "model=resnet50_trt"), "GPU host", "make pipeline-gpu")
    assert_one_line_error(
        run_module("evaluate.parity", "model=resnet50_trt"), "resnet50_trt", "not part of the CPU profile"
    )
    assert_one_line_error(run_module("export.tensorrt", "model=resnet50_onnx"), "choose a TensorRT model")
    assert_one_line_error(run_module("pipelines.trt.host"), "GPU profile", "cannot run here")  # make pipeline-gpu


@pytest.mark.parametrize(
    "module", ["evaluate.parity", "serve.triton", "serve.repository", "train.mnist", "export.tensorrt"]
)
def test_help_answers(module: str) -> None:
    proc = run_module(module, "--help")
    assert proc.returncode == 0
    assert "usage: python -m " + module in proc.stdout
    assert "config (conf/" in proc.stdout


def test_the_composed_config_prints_as_help_says() -> None:
    """`--cfg job` (what --help points to) passes the pre-Hydra check: its value `job` is no override."""
    proc = run_module("evaluate.parity", "model=mnist_onnx", "model.tolerance.atol=0.5", "--cfg", "job")
    assert proc.returncode == 0, proc.stderr
    assert "atol: 0.5" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model=resnet50_ensemble", "image=/nonexistent/mug.jpg"], "image /nonexistent/mug.jpg not found"),
        (["model=resnet50_ensemble", "image=README.md"], "not an image Pillow can decode"),
        (["model=resnet50_ensemble", "image=sample:dog.png"], "chelsea.png"),
        (["model=resnet50_ensemble"], "image=<file> is required"),
        (["model=mug_classifier", "image=x.jpg"], "unknown model 'mug_classifier'"),
        (
            ["model=resnet50_ensemble", "image=sample:chelsea.png", "image_limits.max_pixels=1000"],
            "image sample:chelsea.png is 451x300: over 1000 pixels (image_limits in conf/common.yaml)",
        ),
        (
            ["model=resnet50_ensemble", "image=sample:chelsea.png", "image_limits.max_aspect=0.5"],
            "image_limits must be positive",
        ),
    ],
)
def test_client_errors_are_one_line(args: list[str], message: str) -> None:
    assert_one_line_error(run_module("serve.client", *args), message)


@pytest.mark.parametrize(
    ("module", "args", "message"),
    [
        (
            "evaluate.parity",
            ["model=mnist_onnx", "modle.tolerance.atol=1"],
            "unknown key 'modle.tolerance.atol': misspelled? `--help` shows the config",
        ),
        ("evaluate.parity", ["model=mnist_onnx", "model.tolerance.atol=[1"], "no viable alternative at input '[1'"),
        ("serve.triton", ["server.http_port=70000"], "server.http_port must be a port number 1..65535"),
        ("serve.triton", ["server.grpc_port=eighty"], "server.grpc_port must be a port number"),
        (
            "serve.triton",
            ["server.http_port=8000", "server.grpc_port=8000"],
            "server.http_port and server.grpc_port are both 8000: each needs its own port",
        ),
        (
            "serve.triton",
            ["server.host=0.0.0.0"],  # before: bound every interface without a word
            "server.host=0.0.0.0 would serve beyond loopback, where anyone who reaches the port can send the requests "
            "that crash Triton (docs/hardening.md); add server.expose=true to serve there anyway",
        ),
        (
            "serve.client",
            ["model=resnet50_ensemble", "image=sample:chelsea.png", "top_k=abc"],
            "top_k must be a whole number >= 1, got 'abc'",
        ),
    ],
)
def test_user_errors_are_exactly_one_line(module: str, args: list[str], message: str) -> None:
    """Each of these once ended in a traceback (exit 3) or in Hydra's six-line message."""
    proc = run_module(module, *args)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(f"error: {message}"), proc.stderr


def test_running_out_of_memory_is_the_users_one_line() -> None:
    """numpy's own ArrayMemoryError (an absurd request, e.g. model.parity.samples=100000000) is exit 2, not a bug."""
    code = (
        "import sys, numpy as np; from pipelines.core.cli import hydra_main; sys.argv = ['x']; "
        "hydra_main('triton', lambda cfg: np.empty(10**16, dtype=np.float32))()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert_one_line_error(proc, "out of memory (Unable to allocate", "ask for less")


def test_tensorflow_start_up_chatter_is_dropped_and_nothing_else() -> None:
    """TensorFlow imported in a thread (as parity does) while the main thread writes to stderr and then exits the way
    every entry point does (not waiting for the thread): its known start-up lines are dropped, every line of the
    main thread arrives."""
    code = (
        "import sys, threading, time\nfrom pipelines.core import cli\n"
        "from pipelines.runners.tensorflow_import import tensorflow\n"
        "threading.Thread(target=tensorflow, daemon=True).start()\n"
        "for i in range(10):\n    print(f'main {i}', file=sys.stderr); time.sleep(0.05)\n"
        "print('error: stopped', file=sys.stderr)\n"
        "cli._exit_now(143)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    lines = proc.stderr.splitlines()
    assert proc.returncode == 143 and lines[-1] == "error: stopped", proc.stderr
    assert [line for line in lines if line.startswith("main ")] == [f"main {i}" for i in range(10)]
    assert not [line for line in lines if "InitializeLog" in line or "oneDNN custom operations" in line], lines


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # before: ran with the catalog's 1e-4 and wrote the tracked report
        (
            ["model=mnist_onnx", "models.mnist_onnx.tolerance.atol=1"],
            "models.mnist_onnx.tolerance.atol does nothing with model=mnist_onnx, which reads model.* (models.* is the "
            "catalog, read with model=all): override model.tolerance.atol instead",
        ),
        (
            ["model=mnist_onnx", "models.resnet50_onnx.tolerance.atol=1"],
            "models.resnet50_onnx.tolerance.atol does nothing with model=mnist_onnx",
        ),
        # before: accepted, where `foo=bar` is refused
        (["model=mnist_onnx", "++foo=bar"], "++foo adds a key that nothing reads ('foo' is not in the config)"),
        (["model=all", "+server.nothing=1"], "+server.nothing adds a key that nothing reads"),
    ],
)
def test_overrides_that_would_change_nothing_are_refused(overrides: list[str], message: str) -> None:
    from pipelines.core.cli import check_read
    from pipelines.core.errors import PipelineError

    with pytest.raises(PipelineError) as refused:
        check_read(overrides, "parity")
    assert str(refused.value).startswith(message)


def test_overrides_the_run_reads_pass() -> None:
    from pipelines.config.spec import model_spec
    from pipelines.core.cli import check_read

    from conftest import compose_config

    for overrides in (
        ["model=mnist_onnx", "model.tolerance.atol=1"],
        ["model=all", "models.mnist_onnx.tolerance.atol=1"],
        ["model=mnist_onnx", "++protocols=[grpc]"],
        ["model=mnist_onnx", "+model.extra_config=x"],
    ):
        check_read(overrides, "parity")
    cfg = compose_config("parity", ["model=mnist_onnx", "+model.no_such_key=1"])  # its spec refuses what it never reads
    with pytest.raises(Exception, match="model 'mnist_onnx': unknown key no_such_key"):
        model_spec("mnist_onnx", cfg.model)
