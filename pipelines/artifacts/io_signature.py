"""Read a model artifact's own I/O signature and check it against the spec.

Export checks what it wrote; repository assembly checks again what it serves, so a stale or
hand-edited artifact can never be served under a config that does not match it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipelines.config import dtypes
from pipelines.config.spec import ModelSpec
from pipelines.config.tensors import TensorSpec
from pipelines.core.errors import ArtifactError
from pipelines.frameworks.tensorflow_import import tensorflow


@dataclass(frozen=True)
class ArtifactTensor:
    """A tensor as the artifact declares it; `shape` includes the batch dimension, -1 where dynamic."""

    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ArtifactSignature:
    inputs: tuple[ArtifactTensor, ...]
    outputs: tuple[ArtifactTensor, ...]


def sha256(path: Path) -> str:
    """SHA-256 of a file, or of a directory's files (relative names and contents, in sorted order)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def onnx_signature(path: Path) -> ArtifactSignature:
    import onnx  # lazy: onnx takes ~0.6 s; ONNX work only

    if not Path(path).is_file():
        raise ArtifactError(f"{path} not found: run the export stage first (`dvc repro`)")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise ArtifactError(f"{path}: not a readable ONNX model ({exc})") from exc
    initializers = {i.name for i in model.graph.initializer}

    def tensors(values: Iterable) -> tuple[ArtifactTensor, ...]:
        out = []
        for v in values:
            if v.name in initializers:
                continue
            t = v.type.tensor_type
            shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
            dtype = dtypes.from_onnx(t.elem_type) or f"onnx {onnx.TensorProto.DataType.Name(t.elem_type)}"
            out.append(ArtifactTensor(v.name, dtype, shape))
        return tuple(out)

    return ArtifactSignature(tensors(model.graph.input), tensors(model.graph.output))


def savedmodel_signature(path: Path, signature: str) -> ArtifactSignature:
    if not (Path(path) / "saved_model.pb").is_file():
        raise ArtifactError(f"{path} is not a SavedModel directory: run the export stage first (`dvc repro`)")

    tf = tensorflow()

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # TensorFlow's errors (missing variables, corrupt protobuf) share no useful base
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(
            f"{path}: TensorFlow cannot load this SavedModel ({detail}); run its export stage again (`dvc repro`)"
        ) from exc
    if signature not in loaded.signatures:
        raise ArtifactError(f"{path}: no signature {signature!r}; it has {sorted(loaded.signatures.keys())}")
    fn = loaded.signatures[signature]

    def tensors(specs: dict) -> tuple[ArtifactTensor, ...]:
        return tuple(
            ArtifactTensor(
                name,
                dtypes.from_tensorflow(s.dtype.name) or f"tf:{s.dtype.name}",
                tuple(-1 if d is None else int(d) for d in s.shape),
            )
            for name, s in sorted(specs.items())
        )

    return ArtifactSignature(tensors(fn.structured_input_signature[1]), tensors(fn.structured_outputs))


def read_signature(spec: ModelSpec) -> ArtifactSignature:
    if spec.format == "onnx":
        return onnx_signature(spec.artifact)
    if spec.format == "savedmodel":
        return savedmodel_signature(spec.artifact, spec.network.signature)
    raise ArtifactError(f"model {spec.name!r}: no signature reader for format {spec.format!r}")


def signature_mismatches(
    inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...], max_batch_size: int, signature: ArtifactSignature
) -> list[str]:
    """Every way the artifact disagrees with the spec's tensors (empty when it matches)."""
    problems: list[str] = []
    for kind, expected, actual in (("input", inputs, signature.inputs), ("output", outputs, signature.outputs)):
        by_name = {t.name: t for t in actual}
        if set(by_name) != {t.name for t in expected}:
            problems.append(f"{kind}s are {sorted(by_name)}, spec says {sorted(t.name for t in expected)}")
            continue
        for want in expected:
            problems.extend(_tensor_mismatches(kind, want, by_name[want.name], max_batch_size))
    return problems


def _tensor_mismatches(kind: str, want: TensorSpec, got: ArtifactTensor, max_batch_size: int) -> list[str]:
    problems = []
    if got.dtype != want.dtype:
        problems.append(f"{kind} {want.name!r} dtype is {got.dtype}, spec says {want.dtype}")
    if max_batch_size > 0:
        if not got.shape or got.shape[0] != -1:
            problems.append(
                f"{kind} {want.name!r} shape {list(got.shape)} has no dynamic batch dimension, "
                f"which max_batch_size {max_batch_size} needs"
            )
        dims = got.shape[1:]
    else:
        dims = got.shape
    if tuple(dims) != tuple(want.dims) and not _compatible(dims, want.dims):
        problems.append(f"{kind} {want.name!r} dims are {list(dims)}, spec says {list(want.dims)}")
    return problems


def _compatible(got: tuple[int, ...], want: tuple[int, ...]) -> bool:
    """A spec dim of -1 accepts any size; a fixed spec dim needs the same fixed size."""
    return len(got) == len(want) and all(w == -1 or g == w for g, w in zip(got, want))


def require_match(
    what: str,
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
    max_batch_size: int,
    signature: ArtifactSignature,
) -> ArtifactSignature:
    """`ArtifactError` listing every way `what` disagrees with the spec's tensors: the one artifact check that
    every exporter runs on what it wrote and the repository runs on what it serves."""
    problems = signature_mismatches(inputs, outputs, max_batch_size, signature)
    if problems:
        raise ArtifactError(f"{what} does not match its spec: " + "; ".join(problems))
    return signature


def check_signature(spec: ModelSpec, signature: ArtifactSignature | None = None) -> ArtifactSignature:
    """Raise `ArtifactError` listing every mismatch between `spec` and its artifact."""
    signature = signature or read_signature(spec)
    return require_match(
        f"{spec.artifact} (model {spec.name!r})", spec.inputs, spec.outputs, spec.max_batch_size, signature
    )
