"""What each stand-in backend honours of a model config, and which fields it refuses.

The embedded tritonserver ships only the Python backend, so it serves the repository's ONNX,
SavedModel and TensorRT models through stand-ins (`serve/standin_backends/<backend>/model.py`,
Triton's "Python-based backends"). A stand-in must never serve a model differently from
Triton's own backend. So every config field is either done by Triton's core for any backend
(batching, instances, labels, warm-up), read by the stand-in as the real backend reads it, or
refused: repository assembly refuses it with one line, and so does the stand-in if a hand-edited
config reaches it.

This file is also copied beside each stand-in (the stub's interpreter cannot import `pipelines`),
so it imports nothing of the project: only the standard library and Triton's model-config protobuf.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from tritonclient.grpc import model_config_pb2 as mc

# platform -> the backend Triton loads for it (Triton's own mapping; a stand-in takes the backend's name)
PLATFORM_BACKENDS = {
    "onnxruntime_onnx": "onnxruntime",
    "tensorflow_savedmodel": "tensorflow",
    "tensorflow_graphdef": "tensorflow",
    "tensorrt_plan": "tensorrt",
    "pytorch_libtorch": "pytorch",
}
PYTHON_BASED_RUNTIME = "model.py"  # what Triton reports as `runtime` for a Python-based backend

# Done by Triton's core for every backend, so a stand-in gets their effect without reading them.
CORE_FIELDS = (
    "name",
    "backend",
    "version_policy",
    "max_batch_size",
    "input.name",
    "input.data_type",
    "input.dims",
    "input.format",
    "output.name",
    "output.data_type",
    "output.dims",
    "output.label_filename",
    "dynamic_batching",
    "instance_group.name",
    "instance_group.count",
    "instance_group.kind",
    "instance_group.gpus",
    "optimization.priority",
    "optimization.input_pinned_memory",
    "optimization.output_pinned_memory",
    "model_warmup",
    "response_cache",
    "metric_tags",
)
INSTANCE_KINDS = ("KIND_AUTO", "KIND_CPU", "KIND_GPU")  # those a config may ask for (KIND_MODEL: never)

# Read by the stand-in the way the real backend reads them. Parameters: key -> what it does.
STANDINS: dict[str, dict[str, Any]] = {
    "onnxruntime": {
        "runs": ("ONNX Runtime", "on the CPU"),
        "package": "onnxruntime",
        "platforms": ("onnxruntime_onnx",),
        "kinds": INSTANCE_KINDS,  # a GPU instance only where ONNX Runtime has its CUDA provider (checked at load)
        "default_model_filename": "model.onnx",
        "fields": ("default_model_filename", "optimization.graph.level"),
        "parameters": {
            "intra_op_thread_count": "SessionOptions.intra_op_num_threads (0: ONNX Runtime's default)",
            "inter_op_thread_count": "SessionOptions.inter_op_num_threads (0: ONNX Runtime's default)",
            "execution_mode": "SessionOptions.execution_mode: 0 sequential (default), 1 parallel",
        },
    },
    "tensorflow": {
        "runs": ("TensorFlow", "on the CPU"),
        "package": "tensorflow-cpu",
        "platforms": ("tensorflow_savedmodel",),
        "kinds": INSTANCE_KINDS,  # a GPU instance only where TensorFlow sees a GPU (checked at load)
        "default_model_filename": "model.savedmodel",
        "fields": ("default_model_filename",),
        "parameters": {
            "TF_SIGNATURE_DEF": "the signature to serve (default serving_default)",
            "TF_GRAPH_TAG": "the MetaGraph tag to load (default serve)",
            "TF_NUM_INTRA_THREADS": "TensorFlow's intra-op threads (0: its default)",
            "TF_NUM_INTER_THREADS": "TensorFlow's inter-op threads (0: its default)",
        },
    },
    "tensorrt": {
        "runs": ("the TensorRT runtime", "on the instance's GPU"),
        "package": "tensorrt",
        "platforms": ("tensorrt_plan",),
        "kinds": ("KIND_AUTO", "KIND_GPU"),  # Triton's TensorRT backend runs on GPUs only
        "default_model_filename": "model.plan",
        "fields": ("default_model_filename", "cc_model_filenames"),
        "parameters": {},
    },
}


def default_filename(platform: str) -> str:
    """The file Triton's backend for `platform` loads when the config names none (model.onnx, ...)."""
    return STANDINS[PLATFORM_BACKENDS[platform]]["default_model_filename"]


def backend_of(config: mc.ModelConfig) -> str:
    """The backend Triton runs a model with: its `backend`, else the one its `platform` maps to."""
    return config.backend or PLATFORM_BACKENDS.get(config.platform, "")


def set_fields(message: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every field that differs from its default, sub-messages flattened."""
    for field, value in message.ListFields():
        path = prefix + field.name
        if field.message_type is None:
            yield path, value
        elif field.message_type.GetOptions().map_entry:
            yield path, dict(value)
        elif field.is_repeated:
            for item in value:
                yield from set_fields(item, path + ".")
        else:
            yield from set_fields(value, path + ".")


def _covered(path: str, allowed: tuple[str, ...]) -> bool:
    return any(path == a or path.startswith(a + ".") for a in allowed)


def refusals(config: mc.ModelConfig) -> list[str]:
    """What the stand-in for `config`'s backend cannot honour, one phrase per field (empty: nothing).

    Models of other backends (python, ensemble) are served by Triton itself: nothing to refuse.
    """
    backend = backend_of(config)
    rules = STANDINS.get(backend)
    if rules is None:
        return []
    allowed = CORE_FIELDS + tuple(rules["fields"])
    problems: list[str] = []
    for path, value in set_fields(config):
        if path == "parameters":
            unknown = sorted(set(value) - set(rules["parameters"]))
            if unknown:
                honoured = ", ".join(rules["parameters"]) or "none"
                problems.append(f"parameters {unknown} (honoured: {honoured})")
        elif path == "runtime":
            if value != PYTHON_BASED_RUNTIME:  # Triton itself reports model.py for a stand-in
                problems.append(f"runtime {value!r} (it picks another backend library)")
        elif path == "instance_group.kind":
            kind = mc.ModelInstanceGroup.Kind.Name(value)
            if kind not in rules["kinds"]:
                problems.append(f"instance_group.kind {kind}")
        elif path == "platform":
            if value not in rules["platforms"]:
                problems.append(f"platform {value} (it serves {', '.join(rules['platforms'])})")
        elif not _covered(path, allowed):
            problems.append(path)
    return sorted(set(problems))


def refusal_message(config: mc.ModelConfig) -> str | None:
    """One line naming every field the stand-in would refuse, or None."""
    problems = refusals(config)
    if not problems:
        return None
    return (
        f"model {config.name!r}: the {backend_of(config)} stand-in backend that serves it here cannot honour "
        f"{'; '.join(problems)}: Triton's own backend would serve it differently, so it is refused"
    )


def served_by(
    config: mc.ModelConfig, local: bool = False, step_config: Callable[[str], mc.ModelConfig] | None = None
) -> dict[str, Any]:
    """What ran a model, from the config Triton itself reports for it.

    Triton reports `runtime: "model.py"` for a Python-based backend: a stand-in. A C++ backend
    (Triton's own, on an NGC image) reports its library or nothing. `local`: the stand-in runs in
    this environment, so the version of its runtime package is known. `step_config` (a step's name -> the
    config Triton serves for it): an ensemble's report also says what ran each of its steps.
    """
    backend = backend_of(config)
    if config.platform == "ensemble":
        implementation = "Triton's ensemble scheduler"
    elif config.runtime == PYTHON_BASED_RUNTIME and backend in STANDINS:
        implementation = f"{backend} stand-in ({PYTHON_BASED_RUNTIME}): {describe_standin(backend, local)}"
    elif backend == "python":
        implementation = "Triton's Python backend"
    else:
        implementation = f"Triton's own {backend} backend" + (f" ({config.runtime})" if config.runtime else "")
    described: dict[str, Any] = {
        "platform": config.platform,
        "backend": backend,
        "runtime": config.runtime,
        "implementation": implementation,
    }
    if config.platform == "ensemble" and step_config is not None:
        described["steps"] = {
            step.model_name: served_by(step_config(step.model_name), local) for step in config.ensemble_scheduling.step
        }
    return described


def describe_standin(backend: str, local: bool = True) -> str:
    """'ONNX Runtime 1.32.0 on the CPU': what a stand-in runs (the version where it runs in this environment)."""
    runtime, where = STANDINS[backend]["runs"]
    version = _version(STANDINS[backend]["package"]) if local else None
    return f"{runtime} {version} {where}" if version else f"{runtime} {where}"


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None
