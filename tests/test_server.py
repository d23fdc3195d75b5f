"""Server lifecycle against the real embedded tritonserver: readiness, failure, cleanup; docker command."""

from __future__ import annotations

import shutil
from pathlib import Path

import psutil
import pytest
from omegaconf import OmegaConf

from pipelines.core.errors import ServerError
from pipelines.serving import docker_server, embedded, front_exposure, launcher, server_process
from pipelines.serving.endpoints import checked_port, free_ports, is_ready
from pipelines.serving.settings import ServerSettings

from conftest import compose_config, file_hashes, own_processes

pytestmark = pytest.mark.integration

BROKEN_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        raise pb_utils.TritonModelException("deliberately broken for the test")
"""
CONFIG = (
    'name: "broken"\nbackend: "python"\nmax_batch_size: 0\ninput { name: "x" data_type: TYPE_FP32 dims: [1] }\n'
    'output { name: "y" data_type: TYPE_FP32 dims: [1] }\ninstance_group { kind: KIND_CPU }\n'
)


def local_cfg(tmp_path: Path, **changes):
    cfg = compose_config("triton", [f"paths.logs={tmp_path / 'logs'}"]).server
    for key, value in changes.items():
        OmegaConf.update(cfg, key, value)
    return ServerSettings.from_cfg(cfg)


_OTHERS: set[int] = set()  # servers running before the test: the shared one, the background pipeline's


@pytest.fixture(autouse=True)
def others_before() -> None:
    _OTHERS.clear()
    _OTHERS.update(p.pid for p in psutil.Process().children(recursive=True) if p.name() == "tritonserver")


def tritonservers() -> list[psutil.Process]:
    """The tritonservers this test started (and left running)."""
    return [p for p in own_processes() if p.name() == "tritonserver" and p.pid not in _OTHERS]


def broken_repository(root: Path) -> Path:
    model = root / "broken"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(BROKEN_MODEL)
    (model / "config.pbtxt").write_text(CONFIG)
    return root


def test_server_that_fails_to_start_reports_its_log_line(tmp_path: Path) -> None:
    cfg = local_cfg(tmp_path)
    with pytest.raises(ServerError) as info, launcher.serve(cfg, broken_repository(tmp_path / "repo")):
        pytest.fail("a broken repository must not become ready")
    message = str(info.value)  # Triton serves what it could load; of this repository, nothing
    assert message.startswith("no model of the repository loaded: ") and "log:" in message
    assert "model 'broken' failed to load: Internal: TritonModelException: deliberately broken for the test" in message
    assert "\n" not in message
    assert not tritonservers()


def stubs_and_regions() -> list[tuple[psutil.Process, Path]]:
    """The Python-backend stubs of our tritonservers, with the shared-memory region each names on its command line."""
    return [
        (stub, Path("/dev/shm") / stub.cmdline()[2])
        for server in tritonservers()
        for stub in server.children(recursive=True)
        if stub.name().startswith("triton_python_b")
    ]


@pytest.mark.parametrize("graceful", [False, True], ids=["killed", "graceful"])
def test_server_stops_when_the_caller_fails(tmp_path: Path, workspace: Path, graceful: bool) -> None:
    """Killed (the default once the caller is done) or stopped by Triton's own shutdown (`serve.triton`), the
    server leaves no process and no shared-memory region behind."""
    cfg = local_cfg(tmp_path)
    repo = tmp_path / "repo"
    shutil.copytree(workspace / "model_repository" / "mnist_onnx", repo / "mnist_onnx")
    with pytest.raises(RuntimeError, match="caller failed"), launcher.serve(cfg, repo, graceful=graceful) as endpoints:
        assert is_ready(endpoints.http)
        assert len(tritonservers()) == 1
        stubs = stubs_and_regions()
        assert stubs and all(region.exists() for _, region in stubs)
        raise RuntimeError("caller failed")
    assert not tritonservers()
    assert not is_ready(endpoints.http)
    for stub, region in stubs:
        assert not stub.is_running() or stub.status() == psutil.STATUS_ZOMBIE, stub
        assert not region.exists(), region
    assert endpoints.log_file.parent == tmp_path / "logs"
    log = endpoints.log_file.read_text()
    assert "successfully loaded 'mnist_onnx'" in log
    assert ("successfully unloaded 'mnist_onnx'" in log) is graceful  # Triton's own shutdown, or none


def test_port_in_use_is_refused_not_mistaken_for_our_server(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        (tmp_path / "repo" / "m").mkdir(parents=True)
        with (
            pytest.raises(ServerError, match=f"port {port} on 127\\.0\\.0\\.1 is in use"),
            launcher.serve(local_cfg(tmp_path, http_port=port), tmp_path / "repo"),
        ):
            pass


def test_a_port_left_in_time_wait_is_free(tmp_path: Path) -> None:
    """After a quick restart the last connection's socket lingers in TIME_WAIT; Triton can bind there, so may we."""
    import socket

    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Triton's HTTP and gRPC listeners do
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()  # the server side closes first: its end of the connection waits in TIME_WAIT
        client.close()
    assert checked_port(port, "127.0.0.1") == port


def test_two_free_ports_are_never_the_same() -> None:
    """Chosen one at a time, the kernel handed out one port twice: the server got it for HTTP and gRPC and died."""
    for _ in range(200):
        http, grpc = free_ports(2)
        assert http != grpc


def test_binding_beyond_loopback_is_a_decision_and_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    from pipelines.core.errors import ConfigError
    from pipelines.serving.front_settings import FrontSettings

    alone = FrontSettings.from_cfg(compose_config("triton", ["balancer=none"]).balancer)
    for host in ("0.0.0.0", "192.0.2.7", "triton.example.com"):
        with pytest.raises(ConfigError, match=f"server.host={host} would serve beyond loopback"):
            front_exposure.exposure(ServerSettings("local", host=host), alone)
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        front_exposure.exposure(ServerSettings("local", host=host), alone)
    assert not caplog.records
    front_exposure.exposure(ServerSettings("local", host="0.0.0.0", expose=True), alone)
    assert "serving on 0.0.0.0, beyond loopback (server.expose=true): UNGUARDED" in caplog.text
    fronted = FrontSettings.from_cfg(compose_config("triton", ["balancer=nginx"]).balancer)
    front_exposure.exposure(ServerSettings("local", host="0.0.0.0", expose=True), fronted)
    assert "behind nginx (balancer=nginx), the replicas on loopback" in caplog.text
    server = ServerSettings.from_cfg(compose_config("triton", ["server.host=0.0.0.0", "server.expose=true"]).server)
    replica = server.replica(0)
    assert replica.host == "127.0.0.1"


def test_empty_repository_is_refused_before_launch(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    with pytest.raises(ServerError, match="dvc repro repository"):
        launcher.serve(local_cfg(tmp_path), tmp_path / "repo")


def test_docker_command_publishes_loopback_ports_and_mounts_the_repository_read_only(tmp_path: Path) -> None:
    cfg = ServerSettings.from_cfg(compose_config("triton", ["server=docker", "server.gpus=all"]).server)
    cmd = docker_server.docker_command(cfg, tmp_path / "repo", 8000, 8001, "ttt-test", operator_key="s3cret")
    assert cmd[:3] == ["docker", "run", "--rm"]
    assert cmd[cmd.index("--gpus") : cmd.index("--gpus") + 2] == ["--gpus", "all"]
    assert "127.0.0.1:8000:8000" in cmd and "127.0.0.1:8001:8001" in cmd
    assert f"{(tmp_path / 'repo').resolve()}:/models:ro" in cmd
    assert cfg.image in cmd and cfg.image.startswith("nvcr.io/nvidia/tritonserver:")
    assert cmd[cmd.index(cfg.image) + 1 :][:2] == ["tritonserver", "--model-repository=/models"]
    assert "--disable-auto-complete-config" in cmd
    restricted = "shared-memory,model-repository,statistics,trace,logging:triton-operator-key=s3cret"
    assert f"--http-restricted-api={restricted}" in cmd and f"--grpc-restricted-protocol={restricted}" in cmd


def test_a_crash_is_named_by_its_own_lines_not_an_earlier_crashs(tmp_path: Path) -> None:
    """Restarts share one log: the cause of a crash is read from the lines its process wrote."""
    log = tmp_path / "triton.log"
    earlier = "I1207 09:00:00 server.cc] started\nterminate called after throwing an instance of 'std::bad_alloc'\n"
    earlier += "  what():  std::bad_alloc\n"
    log.write_text(earlier + "I1207 09:00:07 server.cc] started again\n")
    assert server_process._crash_cause(log) == "std::bad_alloc"
    assert server_process._crash_cause(log, since=len(earlier.encode())) == ""


IDENTITY_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("y", pb_utils.get_input_tensor_by_name(r, "x").as_numpy())])
            for r in requests
        ]
"""


def test_the_embedded_server_loads_the_directory_docker_mounts(tmp_path: Path) -> None:
    """One repository: every launcher is handed the catalog's model_repository itself, nothing derived from it.

    The embedded server's answer is Triton's own (the option table its log starts with); docker's, the mount
    its command asks for."""
    repo = tmp_path / "model_repository"
    (repo / "identity" / "1").mkdir(parents=True)
    (repo / "identity" / "1" / "model.py").write_text(IDENTITY_MODEL)
    (repo / "identity" / "config.pbtxt").write_text(CONFIG.replace('"broken"', '"identity"'))
    local = compose_config("triton", [f"paths.model_repository={repo}", f"paths.logs={tmp_path / 'logs'}"])
    with launcher.serve(ServerSettings.from_cfg(local.server), local.model_repository) as endpoints:
        pass
    table = [line.split("|") for line in endpoints.log_file.read_text().splitlines() if line.startswith("|")]
    assert [row[2].strip() for row in table if row[1].strip().startswith("model_repository_path")] == [
        str(repo.resolve())
    ]
    docker = compose_config("triton", ["server=docker", f"paths.model_repository={repo}"])
    settings = ServerSettings.from_cfg(docker.server)
    repository = launcher.repository_for(settings, docker.model_repository)
    cmd = docker_server.docker_command(settings, repository, 1, 2, "n", operator_key="k")
    assert cmd[cmd.index("-v") : cmd.index("-v") + 5] == [
        "-v",
        f"{repo.resolve()}:/models:ro",
        settings.image,
        "tritonserver",
        "--model-repository=/models",
    ]


def test_backend_directory_holds_copies_of_the_python_backend_and_every_standin(tmp_path: Path) -> None:
    backends = embedded.EmbeddedTriton.find().backend_directory(tmp_path)
    files = {str(p.relative_to(backends)) for p in backends.rglob("*") if p.is_file()}
    for name in ("onnxruntime", "tensorflow", "tensorrt"):
        assert {f"{name}/model.py", f"{name}/standin_base.py", f"{name}/standins.py"} <= files
    assert {"python/libtriton_python.so", "python/triton_python_backend_stub"} <= files
    assert not [p for p in backends.rglob("*") if p.is_symlink()]  # Triton refuses libraries that escape the dir


def test_docker_without_gpus_asks_for_none(tmp_path: Path) -> None:
    cfg = ServerSettings.from_cfg(compose_config("triton", ["server=docker"]).server)
    assert "--gpus" not in docker_server.docker_command(cfg, tmp_path, 1, 2, "n", operator_key="k")


def test_docker_without_an_engine_is_one_line(tmp_path: Path) -> None:
    if docker_server._docker_engine_error() is None:
        pytest.skip("a Docker engine runs here")
    (tmp_path / "repo" / "m").mkdir(parents=True)
    cfg = ServerSettings.from_cfg(compose_config("triton", ["server=docker", f"paths.logs={tmp_path}"]).server)
    with pytest.raises(ServerError, match="needs a running Docker engine"), launcher.serve(cfg, tmp_path / "repo"):
        pass


def test_remote_launches_nothing_and_checks_reachability(tmp_path: Path) -> None:
    cfg = ServerSettings.from_cfg(
        compose_config("triton", ["server=remote", "server.http_url=127.0.0.1:9", "server.connect_timeout_s=1"]).server
    )
    with pytest.raises(ServerError, match="no ready Triton"), launcher.serve(cfg, tmp_path / "nowhere"):
        pass


def test_remote_urls_swapped_are_named_in_one_line(tmp_path: Path, workspace: Path) -> None:
    """HTTP pointed at the gRPC port (and the reverse) once printed binary HTTP/2 frames in a traceback."""
    mnist_onnx_copy(workspace, tmp_path / "repo")
    with launcher.serve(local_cfg(tmp_path), tmp_path / "repo") as endpoints:
        for http, grpc, says in (
            (endpoints.grpc, endpoints.http, "not over HTTP/1.1: is it the gRPC port?"),
            (endpoints.http, endpoints.http, "(server.grpc_url)"),
        ):
            remote = [
                "server=remote",
                f"server.http_url={http}",
                f"server.grpc_url={grpc}",
                "server.connect_timeout_s=3",
            ]
            cfg = ServerSettings.from_cfg(compose_config("triton", remote).server)
            with pytest.raises(ServerError) as info, launcher.serve(cfg, tmp_path / "nowhere"):
                pass
            message = str(info.value)
            assert says in message and "\n" not in message and message.isprintable(), message


def test_a_corrupt_config_is_named_with_its_model_and_file(tmp_path: Path, workspace: Path) -> None:
    model = mnist_onnx_copy(workspace, tmp_path / "repo")
    (model / "config.pbtxt").write_text(
        'name: "mnist_onnx"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 64\ninput {\n'
    )
    with pytest.raises(ServerError) as info, launcher.serve(local_cfg(tmp_path), tmp_path / "repo"):
        pytest.fail("a corrupt config must not become ready")
    assert "mnist_onnx" in str(info.value) and "config.pbtxt" in str(info.value), str(info.value)


def mnist_onnx_copy(workspace: Path, repo: Path) -> Path:
    shutil.copytree(workspace / "model_repository" / "mnist_onnx", repo / "mnist_onnx")
    return repo / "mnist_onnx"


def test_standin_refuses_a_hand_edited_field_at_load(tmp_path: Path, workspace: Path) -> None:
    """A config edited after assembly still never serves differently: the stand-in refuses it, naming the field."""
    model = mnist_onnx_copy(workspace, tmp_path / "repo")
    with open(model / "config.pbtxt", "a") as fh:
        fh.write('parameters { key: "enable_mem_arena" value { string_value: "0" } }\n')
    with pytest.raises(ServerError) as info, launcher.serve(local_cfg(tmp_path), tmp_path / "repo"):
        pytest.fail("a refused config must not become ready")
    assert "cannot honour parameters ['enable_mem_arena']" in str(info.value)
    assert not tritonservers()


def test_onnxruntime_standin_reads_default_model_filename(tmp_path: Path, workspace: Path) -> None:
    """A hand-written change: the model file renamed and named by default_model_filename, as Triton reads it."""
    import numpy as np
    import onnxruntime as ort

    from pipelines.config.spec import model_spec
    from pipelines.serving.served_model import ServedModel

    model = mnist_onnx_copy(workspace, tmp_path / "repo")
    (model / "1" / "model.onnx").rename(model / "1" / "digits.onnx")
    config = (
        (model / "config.pbtxt")
        .read_text()
        .replace('default_model_filename: "model.onnx"', 'default_model_filename: "digits.onnx"')
    )
    assert "digits.onnx" in config
    (model / "config.pbtxt").write_text(config)
    spec = model_spec("mnist_onnx", compose_config("parity", ["model=mnist_onnx"]).model)
    digits = np.random.default_rng(0).random((3, *spec.inputs[0].dims), dtype=np.float32)
    direct = ort.InferenceSession(str(model / "1" / "digits.onnx")).run(None, {spec.inputs[0].name: digits})[0]
    with launcher.serve(local_cfg(tmp_path), tmp_path / "repo") as endpoints, ServedModel(spec, endpoints) as m:
        served = m.infer("grpc", {spec.inputs[0].name: digits})[spec.outputs[0].name]
    np.testing.assert_array_equal(served, direct)


def test_tensorflow_standin_refuses_a_hand_edited_field_at_load(tmp_path: Path, workspace: Path) -> None:
    shutil.copytree(workspace / "model_repository" / "mnist_savedmodel", tmp_path / "repo" / "mnist_savedmodel")
    with open(tmp_path / "repo" / "mnist_savedmodel" / "config.pbtxt", "a") as fh:
        fh.write('parameters { key: "MAX_SESSION_SHARE_COUNT" value { string_value: "2" } }\n')
    with (
        pytest.raises(
            ServerError,
            match=r"model 'mnist_savedmodel' failed to load: .*the tensorflow stand-in .*"
            r"cannot honour parameters \['MAX_SESSION_SHARE_COUNT'\]",
        ),
        launcher.serve(local_cfg(tmp_path), tmp_path / "repo"),
    ):
        pytest.fail("a refused config must not become ready")


TF_CONFIG = """name: "{name}"
platform: "tensorflow_savedmodel"
max_batch_size: 4
{parameters}
input {{ name: "x" data_type: TYPE_FP32 dims: [3] }}
output {{ name: "y" data_type: TYPE_FP32 dims: [3] }}
instance_group {{ kind: KIND_CPU }}
"""


def test_tensorflow_standin_chooses_the_signature_as_tritons_backend_does(tmp_path: Path) -> None:
    """TF_SIGNATURE_DEF picks the signature; without it, serving_default; where that is missing, the first other."""
    import numpy as np
    import tensorflow as tf
    import tritonclient.grpc as grpcclient

    spec = tf.TensorSpec([None, 3], tf.float32)

    class Arithmetic(tf.Module):
        @tf.function(input_signature=[spec])
        def plus_one(self, x):
            return {"y": x + 1.0}

        @tf.function(input_signature=[spec])
        def double(self, x):
            return {"y": x * 2.0}

    module = Arithmetic()
    repo = tmp_path / "repo"
    both = {"serving_default": module.plus_one, "double": module.double}
    models = {  # served model -> (signatures in its SavedModel, TF_SIGNATURE_DEF, what it must compute)
        "asks_double": (both, "double", lambda x: x * 2),
        "asks_nothing": (both, None, lambda x: x + 1),
        "has_no_default": ({"only": module.double}, None, lambda x: x * 2),
    }
    saved: dict[frozenset[str], Path] = {}  # one SavedModel per set of signatures, copied where another serves it
    for name, (signatures, chosen, _) in models.items():
        target = repo / name / "1" / "model.savedmodel"
        if frozenset(signatures) in saved:
            shutil.copytree(saved[frozenset(signatures)], target)
        else:
            tf.saved_model.save(module, str(target), signatures=signatures)
            saved[frozenset(signatures)] = target
        parameters = f'parameters {{ key: "TF_SIGNATURE_DEF" value {{ string_value: "{chosen}" }} }}' if chosen else ""
        (repo / name / "config.pbtxt").write_text(TF_CONFIG.format(name=name, parameters=parameters))
    x = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 4.0]], dtype=np.float32)
    with launcher.serve(local_cfg(tmp_path), repo) as endpoints:
        client = grpcclient.InferenceServerClient(endpoints.grpc)
        for name, (_, _, expected) in models.items():
            request = grpcclient.InferInput("x", list(x.shape), "FP32")
            request.set_data_from_numpy(x)
            np.testing.assert_array_equal(client.infer(name, [request]).as_numpy("y"), expected(x), err_msg=name)
    assert "has_no_default: no signature 'serving_default'; serving 'only' instead" in endpoints.log_file.read_text()


def test_the_embedded_server_serves_the_repository_files_unchanged(
    running_triton, workspace: Path, repository_before_serving: dict[str, str]
) -> None:
    """Every model directory loads with the config on disk (Triton's own answer), and serving changes no file.

    The shared server has loaded and served the workspace's repository since before the first test that uses it.
    Triton's Python-backend stub compiles a Python model's model.py into __pycache__/ beside it (on NGC images
    too, unless the repository is mounted read-only); nothing else may appear.
    """
    import tritonclient.grpc as grpcclient

    from pipelines.model_repository import standins, triton_config

    repo = workspace / "model_repository"
    client = grpcclient.InferenceServerClient(running_triton.grpc)
    served = {m.name: m.state for m in client.get_model_repository_index(headers=running_triton.operator_grpc).models}
    assert served == {p.name: "READY" for p in repo.iterdir()}

    def fields(config) -> set[tuple[str, str]]:  # a map's order is not part of its value
        return {
            (path, str(sorted(value.items()) if isinstance(value, dict) else value))
            for path, value in standins.set_fields(config)
        }

    for model in repo.iterdir():
        on_disk = fields(triton_config.parse_config((model / "config.pbtxt").read_text()))
        loaded = fields(client.get_model_config(model.name).config)
        # the same reading of both sides: not an empty one (every config names its model: triton_config checks it)
        assert ("name", model.name) in on_disk and ("name", model.name) in loaded, model.name
        assert on_disk <= loaded, f"{model.name}: Triton serves {on_disk - loaded} otherwise"
    assert file_hashes(repo) == repository_before_serving
    assert "undefined symbol" not in running_triton.log_file.read_text()  # no stub ssl traceback in the log
