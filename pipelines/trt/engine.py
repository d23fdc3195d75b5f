"""The thin TensorRT layer: build a serialized engine from ONNX and read an engine's I/O.

Only this module imports `tensorrt` (10.x API: explicit batch is implicit, no `build_engine`,
no `max_workspace_size`, no binding indices). Every decision around it is in
`pipelines.trt` (build, plans, loadability), tested on CPU machines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.config.dtypes import TENSORRT_TO_TRITON
from pipelines.core.errors import ArtifactError
from pipelines.trt.build import BuildSettings


@dataclass(frozen=True)
class Engine:
    plan: bytes
    layers_json: str
    timing_cache: bytes
    io: list[dict[str, Any]]


def _parse_errors(parser: Any) -> str:
    """One line per parser error, naming the ONNX node that failed."""
    lines = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        node_name = error.node_name() if hasattr(error, "node_name") else ""
        where = f"node {error.node()}" + (f" ({node_name})" if node_name else "")
        lines.append(f"  {where}: {error.desc()}")
    return "\n".join(lines)


def io_of(engine: Any) -> list[dict[str, Any]]:
    """Name, mode, dtype, shape (-1 where dynamic) and profile-0 shapes of every I/O tensor."""
    import tensorrt as trt  # lazy: TensorRT exists only on GPU hosts

    io = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = "input" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "output"
        entry = {
            "name": name,
            "mode": mode,
            "dtype": TENSORRT_TO_TRITON.get(engine.get_tensor_dtype(name).name, engine.get_tensor_dtype(name).name),
            "shape": [int(d) for d in engine.get_tensor_shape(name)],
        }
        if mode == "input":
            entry["profile"] = [list(s) for s in engine.get_tensor_profile_shape(name, 0)]
        io.append(entry)
    return io


def build_serialized_engine(settings: BuildSettings, timing_cache: bytes | None = None) -> Engine:
    """ONNX -> serialized engine with one optimization profile, detailed profiling and a timing cache."""
    import tensorrt as trt  # lazy: TensorRT exists only on GPU hosts

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if settings.strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(settings.onnx.read_bytes()):
        raise ArtifactError(f"TensorRT could not parse {settings.onnx}:\n{_parse_errors(parser)}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_bytes)
    for flag in settings.flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if settings.hardware_compatibility == "ampere_plus":
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    profile = builder.create_optimization_profile()
    for p in settings.profiles:
        profile.set_shape(p.name, p.min, p.opt, p.max)
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(timing_cache or b"")
    if not config.set_timing_cache(cache, ignore_mismatch=False):  # made by another GPU or TensorRT: start afresh
        logger.log(trt.Logger.WARNING, "timing cache does not match this GPU/TensorRT; building a new one")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ArtifactError(f"TensorRT could not build an engine from {settings.onnx} (see the log above)")
    engine = _deserialize(bytes(plan), settings.version_compatible, str(settings.onnx))
    layers = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    return Engine(bytes(plan), layers, bytes(cache.serialize()), io_of(engine))


def cuda_version() -> str | None:
    try:
        import torch  # lazy: torch takes ~6 s to import; torch work only

        return torch.version.cuda
    except Exception:  # noqa: BLE001
        return None


def _deserialize(plan: bytes, version_compatible: bool, what: str) -> Any:
    import tensorrt as trt  # lazy: TensorRT exists only on GPU hosts

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    if version_compatible:  # such plans embed the lean runtime, which runs only when allowed
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise ArtifactError(f"{what}: TensorRT {trt.__version__} cannot load the engine")
    return engine


def load_io(plan_path: Path, version_compatible: bool = False) -> list[dict[str, Any]]:
    """The I/O of an existing plan file (GPU hosts only)."""
    return io_of(_deserialize(Path(plan_path).read_bytes(), version_compatible, str(plan_path)))
