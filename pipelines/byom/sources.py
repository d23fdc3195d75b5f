"""A user's model file: what kind it is, and the tensors it declares (`python -m export.add`).

Kinds: a Keras 3 `.keras` file, a TensorFlow SavedModel directory (one named signature), a
torch.export program (`.pt2`), a TorchScript file, and an ONNX file. Names, dtypes and shapes come
from the artifact's own signature; TorchScript records no dtypes or shapes, so its inputs are read
from the user's sample and its outputs from one run on it. Every problem is one line (ArtifactError).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.artifacts import io_signature
from pipelines.config import dtypes
from pipelines.core.errors import ArtifactError, first_line
from pipelines.runners import keras_models, torch_models

# kind -> the reference that runs it (pipelines/runners/reference.py) and the formats it is served as
KINDS = {
    "keras": ("keras", ("savedmodel", "onnx")),
    "savedmodel": ("tensorflow", ("savedmodel", "onnx")),
    "torch_export": ("torch_export", ("onnx",)),
    "torchscript": ("torchscript", ("onnx",)),
    "onnx": ("onnx", ("onnx",)),
}


@dataclass(frozen=True)
class Source:
    """A model file and what it declares: tensors with the batch axis included (-1 where open)."""

    path: Path
    kind: str
    inputs: tuple[io_signature.ArtifactTensor, ...]
    outputs: tuple[io_signature.ArtifactTensor, ...]
    signature: str = "serving_default"

    @property
    def reference(self) -> str:
        return KINDS[self.kind][0]

    @property
    def formats(self) -> tuple[str, ...]:
        return KINDS[self.kind][1]


def kind_of(path: Path) -> str:
    """The kind of a model file, from its form (not its name alone: a .pt file may be TorchScript or a program)."""
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "savedmodel"
        raise ArtifactError(f"{path} is a directory without saved_model.pb: not a SavedModel")
    if not path.is_file():
        raise ArtifactError(f"{path} not found")
    if path.suffix == ".keras":
        return "keras"
    if path.suffix == ".onnx":
        return "onnx"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(n.endswith("serialized_exported_program.json") or "/models/model.json" in n for n in names):
            return "torch_export"
        if any(n.endswith("/code/__torch__.py") or "/code/" in n for n in names) and any(
            n.endswith("constants.pkl") for n in names
        ):
            return "torchscript"
        if any(n.endswith("data.pkl") for n in names):
            raise ArtifactError(
                f"{path} is a plain PyTorch checkpoint (torch.save), which holds weights but no "
                "program: save it with torch.export.save (.pt2) or torch.jit.save"
            )
    raise ArtifactError(
        f"{path}: not a model of a supported kind (a .keras file, a SavedModel directory, a "
        "torch.export .pt2, a TorchScript file or an .onnx file)"
    )


def read_source(path: Path, signature: str = "serving_default", sample: Any = None) -> Source:
    """The source and its declared tensors. `sample`: parity_inputs.ParityInputs, needed for TorchScript."""
    kind = kind_of(path)
    if kind == "keras":
        inputs, outputs = _keras(path)
    elif kind == "savedmodel":
        found = io_signature.savedmodel_signature(path, signature)
        inputs, outputs = found.inputs, found.outputs
    elif kind == "torch_export":
        inputs, outputs = _torch_export(path)
    elif kind == "torchscript":
        inputs, outputs = _torchscript(path, sample)
    else:
        found = io_signature.onnx_signature(path)
        inputs, outputs = found.inputs, found.outputs
    return Source(path, kind, tuple(inputs), tuple(outputs), signature)


def _tensor(
    name: str, dtype: str, shape: tuple[int, ...], where: Path, strings: bool = False
) -> io_signature.ArtifactTensor:
    """A tensor of a numpy or torch dtype (by name) as Triton types it; a dtype parity cannot check: one line.
    `strings`: Keras's `string` is BYTES (torch has no string tensors)."""
    numeric = [d for d in dtypes.SPEC_DTYPES if d != "BYTES"]  # torch's dtypes have numpy's names: "float32"
    if strings and dtype == "string":
        return io_signature.ArtifactTensor(name, "BYTES", shape)
    triton = dtypes.from_numpy(dtype) if dtype != "object" else None
    if triton not in numeric:
        raise ArtifactError(
            f"{where}: tensor {name!r} has dtype {dtype}, which Triton parity does not support "
            f"(supported: {', '.join(sorted(numeric))})"
        )
    return io_signature.ArtifactTensor(name, triton, shape)


def _keras(path: Path) -> tuple[list[io_signature.ArtifactTensor], list[io_signature.ArtifactTensor]]:
    try:
        model = keras_models.load_keras(path)
    except ArtifactError:
        raise
    except Exception as exc:  # Keras's load errors (bad zip, unknown layer) share no base class
        raise ArtifactError(f"{path}: Keras cannot load it ({first_line(exc)})") from exc
    inputs, outputs = keras_models.keras_signature(model)
    return (
        [_tensor(n, d, s, path, strings=True) for n, d, s in inputs],
        [_tensor(n, d, s, path, strings=True) for n, d, s in outputs],
    )


def _torch_export(path: Path) -> tuple[list[io_signature.ArtifactTensor], list[io_signature.ArtifactTensor]]:
    """Inputs named as the program's arguments; outputs `output_<i>` (a program's outputs have no names of their own).
    A dimension is open (-1) where the program declares it symbolic."""
    program = torch_models.load_torch_export(path)
    user_inputs = set(program.graph_signature.user_inputs)

    def described(name: str, value: Any) -> io_signature.ArtifactTensor:
        shape = tuple(int(d) if isinstance(d, int) else -1 for d in value.shape)
        return _tensor(name, str(value.dtype).removeprefix("torch."), shape, path)

    inputs, outputs = [], []
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            inputs.append(described(node.name, node.meta["val"]))
        elif node.op == "output":
            values = list(node.args[0])
            outputs = [described(f"output_{i}", v.meta["val"]) for i, v in enumerate(values)]
    return inputs, outputs


def _torchscript(
    path: Path, sample: Any
) -> tuple[list[io_signature.ArtifactTensor], list[io_signature.ArtifactTensor]]:
    """Inputs: forward's argument names, dtypes and shapes from the sample; outputs from one run on it.

    The batch axis and the sample's shapes are what is known; every other dimension is taken as fixed."""
    import torch  # lazy: torch takes ~6 s to import; torch work only

    module = torch_models.load_torchscript(path)
    names = [a.name for a in module.forward.schema.arguments[1:]]
    if sample is None:
        raise ArtifactError(
            f"{path} is TorchScript, which records no input dtypes or shapes: give "
            f"sample=<file.npz> with one array per argument of forward ({', '.join(names)})"
        )
    missing = sorted(set(names) - set(sample.arrays))
    if missing:
        raise ArtifactError(f"{path}: the sample has no arrays {missing} for forward's arguments {names}")
    arrays = [np.ascontiguousarray(sample.arrays[n][:2]) for n in names]
    try:
        with torch.no_grad():
            out = module(*[torch.from_numpy(a) for a in arrays])
    except Exception as exc:  # the module's own errors: the sample does not fit it
        raise ArtifactError(f"{path}: running it on the sample failed ({first_line(exc)})") from exc
    outs = out if isinstance(out, (list, tuple)) else [out]
    inputs = [_tensor(n, a.dtype.name, (-1, *a.shape[1:]), path) for n, a in zip(names, arrays)]
    outputs = [
        _tensor(f"output_{i}", str(o.dtype).removeprefix("torch."), (-1, *o.shape[1:]), path)
        for i, o in enumerate(outs)
    ]
    return inputs, outputs
