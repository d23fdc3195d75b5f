"""Blame the first layer: where a served ONNX model starts to differ from its reference, tensor by tensor.

A failing parity says that an output differs, not where. As Polygraphy marks every tensor an output
(`--onnx-outputs mark all`) and ONNX Runtime's `qdq_loss_debug` matches a quantized model's activations
with the float model's, this builds a debug copy of the served file with every floating-point
intermediate tensor exposed as an output, serves it from a scratch repository (never the deployable
one), and compares each served tensor with the same tensor of the reference run in ONNX Runtime: the
FP32 export for an FP16/INT8 model, else the served file itself. Tensors are matched by name in
topological order; the first whose relative error (max |served - reference| over max |reference|)
exceeds the bound is the layer to blame.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipelines.config import dtypes
from pipelines.config.spec import ModelSpec
from pipelines.config.tensors import TensorSpec
from pipelines.outputs.answers import request_pairs
from pipelines.outputs.validator import validate_output

log = logging.getLogger(__name__)
ACTIVATION_DTYPES = ("FP32", "FP16")  # the activations compared: what an FP32, FP16 or INT8 (dequantized) file carries
DEBUG_SUFFIX = "__localize"  # the debug copy's model name
DEQUANTIZED = "_DequantizeLinear_Output"  # ONNX Runtime's quantizer names an activation's dequantized copy so


@dataclass(frozen=True)
class LayerError:
    """One intermediate tensor: the node that wrote it, and how far the served value is from the reference."""

    index: int  # position in the graph's topological order
    node: str
    op: str
    tensor: str
    max_abs: float
    relative: float  # max_abs over max |reference|
    over: bool


@dataclass
class Localization:
    """Every compared tensor in order, and the first over the bound (None: none is)."""

    model: str
    reference: str
    samples: int
    bound: float
    layers: list[LayerError] = field(default_factory=list)

    @property
    def first(self) -> LayerError | None:
        return next((layer for layer in self.layers if layer.over), None)

    def to_dict(self) -> dict[str, Any]:
        first = self.first
        return {
            "model": self.model,
            "reference": self.reference,
            "samples": self.samples,
            "bound": self.bound,
            "first_over_bound": None if first is None else asdict(first),
            "layers": [asdict(layer) for layer in self.layers],
        }

    def table(self) -> str:
        first = self.first
        lines = [
            f"Localize: {self.model} vs {self.reference} on {self.samples} samples, {len(self.layers)} tensors "
            f"(bound: relative error {self.bound:g})",
            f"{'#':>4} {'op':<18} {'tensor':<48} {'max_abs':>10} {'relative':>9}",
        ]
        shown = [layer for layer in self.layers if first is None or layer.index <= first.index + 3]
        lines += [
            f"{layer.index:>4} {layer.op:<18} {layer.tensor[-48:]:<48} {layer.max_abs:>10.3g} "
            f"{layer.relative:>9.3g}{'  <- first over the bound' if layer is first else ''}"
            for layer in shown
        ]
        if len(shown) < len(self.layers):
            lines.append(f"     ... {len(self.layers) - len(shown)} more in the report")
        lines.append(
            f"first over the bound: node {first.node!r} ({first.op}, #{first.index}), tensor {first.tensor!r}"
            if first
            else "no tensor over the bound"
        )
        return "\n".join(lines)

    def plot(self, path: Path) -> None:
        """Relative error against depth, the bound as a line, the first tensor over it marked."""
        import matplotlib  # lazy: matplotlib takes ~2 s; plots only

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # lazy: matplotlib takes ~2 s; plots only

        fig, ax = plt.subplots(figsize=(8, 4))
        ax.plot(
            [layer.index for layer in self.layers],
            [max(layer.relative, 1e-12) for layer in self.layers],
            marker=".",
            label="relative error",
        )
        ax.axhline(self.bound, color="red", linestyle="--", label=f"bound {self.bound:g}")
        if self.first is not None:
            ax.axvline(self.first.index, color="orange", label=f"first over: {self.first.node}")
        ax.set_yscale("log")
        ax.set_xlabel("node (topological order)")
        ax.set_ylabel("max |served - reference| / max |reference|")
        ax.set_title(f"{self.model} vs {self.reference}")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


@dataclass(frozen=True)
class Exposed:
    """An intermediate tensor made a graph output: its spec (for the config) and the node that writes it."""

    tensor: TensorSpec
    index: int
    node: str
    op: str


def expose(source: Path, target: Path, batched: bool = True) -> list[Exposed]:
    """Write a copy of `source` with every floating-point tensor a node writes as an extra graph output.

    Shapes come from ONNX shape inference; a tensor whose rank it cannot tell is left out. The model's own
    outputs are in the list (compared last, as the graph computes them) and stay outputs once.
    """
    import onnx  # lazy: onnx takes ~0.6 s; ONNX work only

    model = onnx.load(str(source))
    inferred = onnx.shape_inference.infer_shapes(model)
    known = {vi.name: vi for vi in [*inferred.graph.value_info, *inferred.graph.output]}
    outputs = {o.name for o in model.graph.output}
    activations = {i.name for i in model.graph.input}  # what depends on an input: not a weight being dequantized
    exposed: list[Exposed] = []
    for index, node in enumerate(model.graph.node):
        if not activations & set(node.input):
            continue
        activations.update(node.output)
        for name in node.output:
            info = known.get(name)
            if not name or info is None or not info.type.tensor_type.HasField("shape"):
                continue
            kind = dtypes.from_onnx(info.type.tensor_type.elem_type)
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in info.type.tensor_type.shape.dim]
            dims = dims[1:] if batched else dims
            if kind not in ACTIVATION_DTYPES or not dims or any(d == 0 for d in dims):
                continue  # not an activation, or no dimension Triton could declare beside the batch
            exposed.append(Exposed(TensorSpec(name, kind, tuple(dims)), index, node.name or name, node.op_type))
            if name not in outputs:  # the model's own outputs are compared too, and are outputs already
                model.graph.output.append(info)
    onnx.save(model, str(target))
    return exposed


def debug_spec(spec: ModelSpec, artifact: Path, exposed: list[Exposed]) -> ModelSpec:
    """The served model's spec for its debug copy: its outputs and every exposed tensor, no batching to wait for."""
    own = {t.name for t in spec.outputs}
    return dataclasses.replace(
        spec,
        name=spec.name + DEBUG_SUFFIX,
        artifact=artifact,
        outputs=spec.outputs + tuple(e.tensor for e in exposed if e.tensor.name not in own),
        dynamic_batching=None,
        instance_count=1,
        extra_config="",
        lossy=None,
        quantization=None,
        output_tolerance={},
    )


def compare(
    model: str,
    reference_name: str,
    exposed: list[Exposed],
    served: Mapping[str, Any],
    reference: Mapping[str, Any],
    bound: float,
) -> Localization:
    """Each exposed tensor the reference also computes, in topological order, judged by its relative error (its
    largest difference, any NaN/inf one infinite, over its largest finite reference value). `served`, `reference`:
    batch first, or request by request (`answers.Ragged`)."""
    result = Localization(model, reference_name, len(next(iter(served.values()))) if served else 0, bound)
    by_name = {e.tensor.name: e for e in exposed}
    names = set(by_name)
    for item in exposed:
        name = item.tensor.name
        # a quantized activation is what its DequantizeLinear gives back (as `qdq_loss_debug` matches them): the
        # quantizer drops a Relu that the quantized range clips anyway, and leaves its name on the Conv before it
        if name + DEQUANTIZED in names:
            continue
        matched = name.removesuffix(DEQUANTIZED)
        if matched not in reference or name not in served:
            continue  # a tensor of the quantized graph only, or one the reference does not compute
        compared = validate_output(item.tensor, request_pairs(served[name], reference[matched]))
        if compared.metrics is None:
            continue  # another shape: nothing element by element
        max_abs = float("inf") if compared.metrics.nonfinite else compared.metrics.max_abs
        scale = compared.scale
        relative = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
        producer = by_name.get(matched, item)  # the node that computed it, not the DequantizeLinear after it
        result.layers.append(
            LayerError(producer.index, producer.node, producer.op, matched, max_abs, relative, not relative <= bound)
        )
    return result
