"""Import torchvision on CPU-only torch builds.

The torchvision wheels are CUDA builds; with CPU torch `import torchvision` fails with
"operator torchvision::nms does not exist". Models still work once the op schemas exist, so we
define them, only when the normal import fails. Image decoding (torchvision.io) stays unavailable:
decode images with Pillow.

Detection models need non-maximum suppression, whose C++ kernel the wheel cannot load here, so `nms`
gets a CPU kernel of ours (torch.library), greedy as torchvision's own: boxes by descending score, each
kept box suppressing the later ones whose IoU with it exceeds the threshold. `torchvision.ops.nms`,
which refuses to run without the C++ extension, calls it instead. tests/test_torchvision_compat.py checks
it against ONNX Runtime's NonMaxSuppression, an independent implementation.

`roi_align` (Faster/Mask/Keypoint R-CNN's MultiScaleRoIAlign) gets a CPU kernel of ours too, a port of
torchvision's C++ one (sampling points per bin, bilinear interpolation, samples beyond a pixel outside the
map count as zero), with a backward (recomputed through autograd) and a fake kernel (torch.compile,
torch.export). Without it torchvision falls back to a torch.compile'd pure-Python roi_align, which the
TorchScript ONNX exporter cannot trace ("Detected that you are using FX to torch.jit.trace a
dynamo-optimized function"); that fallback also differs from the C++ kernel for samples beyond the map and,
with adaptive sampling, gathers a [K, C, PH, PW, H, W] tensor when not compiled. With the kernel,
`torchvision.ops.roi_align` (which reads whether the C++ extension loaded from its module's own
`_has_ops`/`_assert_has_ops`, replaced there) calls `torch.ops.torchvision.roi_align`, so the exporter
records the op and torchvision's registered ONNX symbolic turns it into RoiAlign. The tests check the
kernel against ONNX Runtime's RoiAlign. roi_pool and the other ops keep torchvision's behaviour without
the extension.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

_schema_library = None  # kept alive: the definitions vanish with the Library object
torch: ModuleType | None = None  # torch, once the shim is taken (imported lazily: this module is imported early)

_ROI_ALIGN_SCHEMA = (
    "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
    "int sampling_ratio, bool aligned) -> Tensor"
)  # torchvision's own (csrc/ops/roi_align.cpp)
_GATHER_ELEMENTS = 1 << 24  # samples x channels gathered at once (64 MiB of float32): RoIs are taken in chunks


def import_torchvision() -> ModuleType:
    global _schema_library, torch  # noqa: PLW0603 - one load per process; `torch` for _nms, once imported
    try:
        import torchvision  # lazy: imports torch (~6 s); torch work only

        return torchvision
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
    import torch  # lazy: torch takes ~6 s to import; torch work only (the module global _nms reads)

    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    if _schema_library is None:
        library = torch.library.Library("torchvision", "DEF")
        library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
        library.impl("nms", nms_cpu, "CPU")
        library.define(_ROI_ALIGN_SCHEMA)
        library.impl("roi_align", roi_align_cpu, "CPU")
        torch.library.register_fake("torchvision::roi_align", _roi_align_fake, lib=library)
        torch.library.register_autograd(
            "torchvision::roi_align", _roi_align_backward, setup_context=_roi_align_setup_context, lib=library
        )
        _schema_library = library
    import torchvision  # lazy: imports torch (~6 s); torch work only
    from torchvision.ops import boxes  # lazy: imports torch (~6 s); torch work only

    boxes.nms = torchvision.ops.nms = _nms  # batched_nms and the detection models call boxes.nms
    # torchvision.ops.roi_align (eager, scripted and traced; MultiScaleRoIAlign and the R-CNN heads call it) takes
    # its pure-Python fallback when its module's _has_ops() is false, and _assert_has_ops() refuses the op: there,
    # and only there, the op counts as loaded, so it calls torch.ops.torchvision.roi_align, the kernel above.
    roi_align_module = importlib.import_module("torchvision.ops.roi_align")
    roi_align_module._has_ops = _roi_align_has_kernel
    roi_align_module._assert_has_ops = _assert_roi_align_has_kernel
    return torchvision


def nms_cpu(dets, scores, iou_threshold: float):  # torch tensors (torch is imported lazily)
    """Indices of the boxes kept ([x1, y1, x2, y2], int64), by descending score: torchvision::nms on the CPU."""
    import torch  # lazy: torch takes ~6 s to import; torch work only

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


def roi_align_cpu(
    input,  # [N, C, H, W] (torchvision's names)
    rois,  # [K, 5]: batch index, x1, y1, x2, y2 (input coordinates before spatial_scale)
    spatial_scale: float,
    pooled_height: int,
    pooled_width: int,
    sampling_ratio: int,
    aligned: bool,
):
    """torchvision::roi_align on the CPU: [K, C, pooled_height, pooled_width], each bin the mean of its
    sampling_ratio x sampling_ratio bilinear samples (adaptive, ceil(bin size) a side, when sampling_ratio <= 0).
    As torchvision's C++ kernel (csrc/ops/cpu/roi_align_kernel.cpp, roi_align_common.h): aligned shifts the
    box by half a pixel, legacy boxes are at least one pixel a side, a sample more than one pixel outside the
    map is zero, one within that pixel takes the edge value."""
    import torch  # lazy: torch takes ~6 s to import; torch work only

    torch._check(input.dim() == 4, lambda: f"input should be [N, C, H, W], got {input.dim()}D")
    torch._check(rois.dim() == 2 and rois.size(1) == 5, lambda: "rois must have shape as Tensor[K, 5]")
    torch._check(
        input.dtype == rois.dtype,
        lambda: f"input and rois should have the same dtype, got {input.dtype} and {rois.dtype}",
    )
    count, channels, height, width = rois.size(0), input.size(1), input.size(2), input.size(3)
    if count == 0 or input.numel() == 0:
        return input.new_zeros(count, channels, pooled_height, pooled_width)
    dtype = torch.float64 if input.dtype == torch.float64 else torch.float32
    features = input.to(dtype).permute(0, 2, 3, 1)  # [N, H, W, C]: one gather takes every channel
    rois = rois.to(dtype)
    offset = 0.5 if aligned else 0.0
    start = rois[:, 1:3] * spatial_scale - offset  # [K, (x, y)]
    extent = rois[:, 3:5] * spatial_scale - offset - start
    if not aligned:
        extent = extent.clamp(min=1.0)  # legacy: a box is at least one pixel a side
    x_taps, x_grid = _roi_align_taps(start[:, 0], extent[:, 0], pooled_width, sampling_ratio, width)
    y_taps, y_grid = _roi_align_taps(start[:, 1], extent[:, 1], pooled_height, sampling_ratio, height)
    samples = (y_grid * x_grid).clamp(min=1).to(dtype)  # [K]: what each bin's sum is divided by
    batch = rois[:, 0].long()
    per_roi = pooled_height * pooled_width * y_taps[0][0].size(2) * x_taps[0][0].size(2) * channels
    step = max(1, _GATHER_ELEMENTS // per_roi)
    parts = []
    for first in range(0, count, step):
        part = slice(first, first + step)
        image = batch[part, None, None, None, None]
        total = 0
        for y, y_weight in y_taps:  # the four neighbours of each sample: (low, high) rows x (low, high) columns
            for x, x_weight in x_taps:
                values = features[image, y[part, :, None, :, None], x[part, None, :, None, :]]  # [k, PH, PW, IY, IX, C]
                weight = y_weight[part, :, None, :, None] * x_weight[part, None, :, None, :]  # [k, PH, PW, IY, IX]
                total = total + torch.einsum("kpqyxc,kpqyx->kcpq", values, weight)
        parts.append(total)
    output = torch.cat(parts) / samples[:, None, None, None]
    return output.to(input.dtype).contiguous()


def _roi_align_taps(start, extent, pooled: int, sampling_ratio: int, length: int):
    """Along one axis, for each RoI [K], bin [P] and sample [I] (I: the most samples any RoI takes): the low and
    high neighbouring pixels with their bilinear weights, zero for samples the RoI does not take or that lie more
    than a pixel outside the map, as ([(low, weight), (high, weight)], samples per bin [K])."""
    import torch  # lazy: torch takes ~6 s to import; torch work only

    bin_size = extent / pooled
    if sampling_ratio > 0:
        grid = torch.full_like(bin_size, sampling_ratio, dtype=torch.int64)
    else:
        grid = torch.ceil(bin_size).long()  # C++: ceil(roi_height / pooled_height), as an int
    index = torch.arange(max(int(grid.max()), 1), dtype=extent.dtype)
    bins = torch.arange(pooled, dtype=extent.dtype)
    position = (
        start[:, None, None]
        + bins[None, :, None] * bin_size[:, None, None]
        + (index + 0.5)[None, None, :] * bin_size[:, None, None] / grid.clamp(min=1)[:, None, None].to(extent.dtype)
    )  # [K, P, I], summed in the C++ kernel's order
    taken = (index[None, None, :] < grid[:, None, None]) & (position >= -1.0) & (position <= length)
    position = torch.where(taken, position, 0.0).clamp(min=0.0)
    low = position.long()
    edge = low >= length - 1
    low = torch.where(edge, length - 1, low)
    high = torch.where(edge, length - 1, low + 1)
    fraction = torch.where(edge, 0.0, position - low)
    return [(low, torch.where(taken, 1.0 - fraction, 0.0)), (high, torch.where(taken, fraction, 0.0))], grid


def _roi_align_fake(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    """The output's shape and dtype without the data (torch.compile, torch.export): torchvision's meta kernel."""
    import torch  # lazy: torch takes ~6 s to import; torch work only

    torch._check(rois.size(1) == 5, lambda: "rois must have shape as Tensor[K, 5]")
    torch._check(input.dtype == rois.dtype, lambda: "input and rois should have the same dtype")
    return input.new_empty((rois.size(0), input.size(1), pooled_height, pooled_width))


def _roi_align_setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[0], inputs[1])
    ctx.arguments = inputs[2:]


def _roi_align_backward(ctx, grad):
    """The gradient for the input, through autograd over the kernel recomputed (it is linear in the input); none
    for the boxes, as in torchvision."""
    import torch  # lazy: torch takes ~6 s to import; torch work only

    input, rois = ctx.saved_tensors
    with torch.enable_grad():
        leaf = input.detach().requires_grad_()
        (grad_input,) = torch.autograd.grad(roi_align_cpu(leaf, rois.detach(), *ctx.arguments), leaf, grad)
    return grad_input, None, None, None, None, None, None


def _roi_align_has_kernel() -> bool:
    """torchvision.ops.roi_align's `_has_ops`: the op has a kernel here (ours). Scriptable."""
    return True


def _assert_roi_align_has_kernel() -> None:
    """torchvision.ops.roi_align's `_assert_has_ops`: nothing to refuse. Scriptable."""
    return None
