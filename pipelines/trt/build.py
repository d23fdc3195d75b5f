"""How a TensorRT engine is built, decided without TensorRT: profiles, precision, flags, the trtexec command.

`pipelines.trt.engine` (GPU hosts only) carries these settings out with the TensorRT API;
`builder=trtexec` carries them out inside the NGC TensorRT container.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.config.spec import ModelSpec
from pipelines.core.errors import ConfigError

# TensorRT BuilderFlag names. INT8 comes from the Q/DQ layers of the source in a strongly typed network, where
# "precision-control build flags are not required and should not be specified" (TensorRT 10, explicit quantization)
PRECISION_FLAGS: dict[str, list[str]] = {"fp32": [], "fp16": ["FP16"], "int8": []}
STRONGLY_TYPED = ("int8",)
HARDWARE_LEVELS = ("none", "ampere_plus")
MIB = 1 << 20


@dataclass(frozen=True)
class Profile:
    """One input's optimization-profile shapes (batch axis included)."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def trtexec(self, which: str) -> str:
        return f"{self.name}:{'x'.join(str(d) for d in getattr(self, which))}"


@dataclass(frozen=True)
class BuildSettings:
    """What a build needs, decided from the spec and `tensorrt:` config of a TensorRT model."""

    onnx: Path
    precision: str
    profiles: tuple[Profile, ...]
    workspace_bytes: int
    version_compatible: bool
    hardware_compatibility: str

    @property
    def strongly_typed(self) -> bool:
        """Every tensor's type comes from the network (the Q/DQ layers), not from builder flags."""
        return self.precision in STRONGLY_TYPED

    @property
    def flags(self) -> list[str]:
        flags = list(PRECISION_FLAGS[self.precision])
        if self.version_compatible:
            flags.append("VERSION_COMPATIBLE")
        return flags


def profiles(spec: ModelSpec, min_batch: int, opt_batch: int | None) -> tuple[Profile, ...]:
    """min/opt/max shapes for every input; max batch is the model's max_batch_size, as Triton requires."""
    max_batch = spec.max_batch_size
    if max_batch < 1:
        raise ConfigError(f"model {spec.name!r}: TensorRT models need max_batch_size >= 1 (a dynamic batch axis)")
    opt = opt_batch if opt_batch is not None else max(min_batch, max_batch // 2)
    if not 1 <= min_batch <= opt <= max_batch:
        raise ConfigError(
            f"model {spec.name!r}: need 1 <= min_batch ({min_batch}) <= opt_batch ({opt}) "
            f"<= max_batch_size ({max_batch})"
        )
    if any(d < 0 for t in spec.inputs for d in t.dims):
        raise ConfigError(f"model {spec.name!r}: TensorRT profiles need fixed non-batch dims")
    return tuple(Profile(t.name, (min_batch, *t.dims), (opt, *t.dims), (max_batch, *t.dims)) for t in spec.inputs)


def build_settings(spec: ModelSpec) -> BuildSettings:
    """The build of a TensorRT model, from its spec's `tensorrt` settings and its network's source artifact."""
    trt = spec.tensorrt
    if spec.format != "tensorrt" or trt is None:
        raise ConfigError(f"model {spec.name!r} is {spec.format}, not a TensorRT model")
    if trt.workspace_mib < 16:
        raise ConfigError(f"tensorrt.workspace_mib must be >= 16, got {trt.workspace_mib}")
    return BuildSettings(
        onnx=spec.network.artifact(trt.source),
        precision=spec.precision,
        profiles=profiles(spec, trt.min_batch, trt.opt_batch),
        workspace_bytes=trt.workspace_mib * MIB,
        version_compatible=trt.version_compatible,
        hardware_compatibility=trt.hardware_compatibility,
    )


def trtexec_command(
    settings: BuildSettings, *, image: str, workdir: Path, plan_name: str, timing_cache: str, gpus: str = "all"
) -> list[str]:
    """`trtexec` inside the NGC TensorRT container whose version matches the Triton image.

    `workdir` is mounted at /work and must hold the ONNX file; the plan, the layer report and the
    timing cache are written there.
    """

    def shapes(which: str) -> str:
        return ",".join(p.trtexec(which) for p in settings.profiles)

    cmd = [
        "docker",
        "run",
        "--rm",
        "--gpus",
        gpus,
        "-v",
        f"{Path(workdir).resolve()}:/work",
        "-w",
        "/work",
        image,
        "trtexec",
        f"--onnx=/work/{settings.onnx.name}",
        f"--saveEngine=/work/{plan_name}.plan",
        f"--minShapes={shapes('min')}",
        f"--optShapes={shapes('opt')}",
        f"--maxShapes={shapes('max')}",
        f"--memPoolSize=workspace:{settings.workspace_bytes // MIB}M",
        f"--timingCacheFile=/work/{timing_cache}",
        "--profilingVerbosity=detailed",
        f"--exportLayerInfo=/work/{plan_name}.layers.json",
        "--skipInference",
    ]
    if settings.precision == "fp16":
        cmd.append("--fp16")
    if settings.strongly_typed:
        cmd.append("--stronglyTyped")
    if settings.version_compatible:
        cmd.append("--versionCompatible")
    if settings.hardware_compatibility == "ampere_plus":
        cmd.append("--hardwareCompatibilityLevel=ampere+")
    return cmd


def explicit_int8_problems(onnx_path: Path) -> list[str]:
    """Why an ONNX file cannot become an explicitly quantized INT8 engine (empty: it can).

    TensorRT quantizes symmetrically: signed INT8 with zero point 0 (its docs); a file without Q/DQ nodes
    would need the implicit calibrator that TensorRT 10 deprecates. Checked on CPU, before a GPU builds.
    """
    import onnx  # lazy: onnx takes ~0.6 s; ONNX work only
    from onnx import TensorProto, numpy_helper  # lazy: onnx takes ~0.6 s; ONNX work only

    model = onnx.load(str(onnx_path), load_external_data=False)
    init = {i.name: i for i in model.graph.initializer}
    init.update(
        {
            n.output[0]: a.t
            for n in model.graph.node
            if n.op_type == "Constant"  # exporters write these too
            for a in n.attribute
            if a.name == "value"
        }
    )
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not qdq:
        return [
            f"{onnx_path} has no QuantizeLinear/DequantizeLinear nodes: TensorRT builds INT8 from a Q/DQ model "
            "(`python -m export.quantize` with quantization.activations int8, symmetric true)"
        ]
    problems = []
    for node in qdq:
        point = init.get(node.input[2]) if len(node.input) > 2 else None
        if point is None:
            continue  # no zero point: 0, and the type follows the scale's (TensorRT's default)
        if point.data_type != TensorProto.INT8 or numpy_helper.to_array(point).any():
            kind = TensorProto.DataType.Name(point.data_type)
            problems.append(
                f"{node.op_type} of {node.input[0]!r} has a {kind} zero point "
                f"{numpy_helper.to_array(point).ravel()[:3].tolist()}"
            )
    if problems:
        return [
            f"{onnx_path}: TensorRT's INT8 is signed and symmetric (zero point 0); {len(problems)} Q/DQ "
            f"nodes are not, first: {problems[0]}"
        ]
    return []
