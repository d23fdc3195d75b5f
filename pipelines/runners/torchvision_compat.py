"""Import torchvision on CPU-only torch builds.

The torchvision wheels are CUDA builds; with CPU torch `import torchvision` fails with
"operator torchvision::nms does not exist". Models still work once the op schemas exist, so we
define them, only when the normal import fails. Image decoding (torchvision.io) stays unavailable:
decode images with Pillow.

Detection models need non-maximum suppression, whose C++ kernel the wheel cannot load here, so `nms`
gets a CPU kernel of ours (torch.library), greedy as torchvision's own: boxes by descending score, each
kept box suppressing the later ones whose IoU with it exceeds the threshold. `torchvision.ops.nms`,
which refuses to run without the C++ extension, calls it instead. tests/test_torchvision_compat.py checks
it against ONNX Runtime's NonMaxSuppression, an independent implementation. The other ops detection uses
(roi_align, roi_pool) have torchvision's own Python fallbacks, which it takes without the extension.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

_schema_library = None  # kept alive: the definitions vanish with the Library object
torch: ModuleType | None = None  # torch, once the shim is taken (imported lazily: this module is imported early)


def import_torchvision() -> ModuleType:
    global _schema_library, torch  # noqa: PLW0603 - one load per process; `torch` for _nms, once imported
    try:
        import torchvision

        return torchvision
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
    import torch  # the module global _nms reads

    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    if _schema_library is None:
        _schema_library = torch.library.Library("torchvision", "DEF")
        _schema_library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _schema_library.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
        _schema_library.impl("nms", nms_cpu, "CPU")
    import torchvision
    from torchvision.ops import boxes

    boxes.nms = torchvision.ops.nms = _nms  # batched_nms and the detection models call boxes.nms
    return torchvision


def nms_cpu(dets, scores, iou_threshold: float):  # torch tensors (torch is imported lazily)
    """Indices of the boxes kept ([x1, y1, x2, y2], int64), by descending score: torchvision::nms on the CPU."""
    import torch

    if dets.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=dets.device)
    order = torch.argsort(scores, descending=True, stable=True)
    ordered = dets[order].to(torch.float64 if dets.dtype == torch.float64 else torch.float32)
    area = (ordered[:, 2] - ordered[:, 0]) * (ordered[:, 3] - ordered[:, 1])
    top_left = torch.maximum(ordered[:, None, :2], ordered[None, :, :2])
    bottom_right = torch.minimum(ordered[:, None, 2:], ordered[None, :, 2:])
    overlap = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    iou = overlap / (area[:, None] + area[None, :] - overlap)
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.int64)]


def _nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """torchvision.ops.nms without its check for the C++ extension: the kernel registered above runs. Scriptable
    (TorchScript reads `torch` from this module's globals, set when the shim is taken), as detection models are
    scripted and traced through it."""
    return torch.ops.torchvision.nms(boxes, scores, iou_threshold)
