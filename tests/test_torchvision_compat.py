"""torchvision on CPU torch: the NMS and RoIAlign kernels of ours against ONNX Runtime's NonMaxSuppression and
RoiAlign (independent implementations), roi_align exported by the TorchScript exporter as RoiAlign, and torchvision's
detection models running in process with them (random weights, offline)."""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from pipelines.frameworks.torchvision_compat import import_torchvision, nms_cpu, roi_align_cpu

torchvision = import_torchvision()


def onnx_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """ONNX Runtime's NonMaxSuppression, one batch and one class, every box kept that it keeps."""
    graph = helper.make_graph(
        [helper.make_node("NonMaxSuppression", ["boxes", "scores", "most", "iou"], ["selected"])],
        "nms",
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, None, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, None]),
        ],
        [helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3])],
        [
            onnx.numpy_helper.from_array(np.array([len(boxes)], np.int64), "most"),
            onnx.numpy_helper.from_array(np.array([iou_threshold], np.float32), "iou"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (selected,) = session.run(None, {"boxes": boxes[None], "scores": scores[None, None]})
    return selected[:, 2]


def random_boxes(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes in clusters (so that many overlap), distinct scores (ties would make the order arbitrary)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 100, (max(1, count // 8), 2))[rng.integers(0, max(1, count // 8), count)]
    centres += rng.normal(0, 3, (count, 2))
    sizes = rng.uniform(4, 30, (count, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1).astype(np.float32)
    return boxes, rng.permutation(count).astype(np.float32) / count


@pytest.mark.parametrize("iou_threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
@pytest.mark.parametrize("count", [0, 1, 50, 400])
def test_nms_keeps_what_onnx_runtime_keeps(count: int, iou_threshold: float) -> None:
    boxes, scores = random_boxes(count, seed=count)
    ours = nms_cpu(torch.from_numpy(boxes), torch.from_numpy(scores), iou_threshold).numpy()
    expected = onnx_nms(boxes, scores, iou_threshold) if count else np.empty(0, np.int64)
    assert ours.dtype == np.int64 and ours.tolist() == expected.tolist()
    assert (
        torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), iou_threshold).tolist() == ours.tolist()
    )


def test_nms_can_be_scripted() -> None:
    """Detection models are scripted and traced through torchvision.ops.nms (found by the corpus trial)."""
    scripted = torch.jit.script(torchvision.ops.nms)
    assert scripted(torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11]]), torch.tensor([0.9, 0.8]), 0.5).tolist() == [0]


def test_batched_nms_keeps_boxes_of_other_classes() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10]])
    kept = torchvision.ops.batched_nms(boxes, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 0, 1]), 0.5)
    assert kept.tolist() == [0, 2]  # box 1 overlaps box 0 of its class; box 2 is of another class


@pytest.mark.parametrize(
    "build",
    [
        lambda d: d.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, box_score_thresh=0.0),
        lambda d: d.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, score_thresh=0.0),
    ],
    ids=["fasterrcnn_mobilenet_v3_large_320_fpn", "ssdlite320_mobilenet_v3_large"],
)
def test_detection_models_run_in_process(build) -> None:
    """They ran through torchvision.ops.nms on the CPU (before the kernel: "Couldn't load custom C++ ops"); what NMS
    keeps is checked above against ONNX Runtime, since the per-image limit caps the boxes either way."""
    torch.manual_seed(0)
    model = build(torchvision.models.detection).eval()
    with torch.no_grad():
        (found,) = model([torch.rand(3, 320, 320)])
    limit = getattr(model, "detections_per_img", None) or model.roi_heads.detections_per_img  # SSD's, R-CNN's
    assert set(found) >= {"boxes", "scores", "labels"} and 0 < len(found["boxes"]) <= limit
    assert torch.all(found["scores"][:-1] >= found["scores"][1:])  # best first


def onnx_roi_align(
    features: np.ndarray, rois: np.ndarray, output_size: tuple[int, int], scale: float, sampling_ratio: int, mode: str
) -> np.ndarray:
    """ONNX Runtime's RoiAlign (opset 16, average), rois as torchvision's [K, 5]: batch index, x1, y1, x2, y2."""
    node = helper.make_node(
        "RoiAlign",
        ["features", "rois", "batch"],
        ["pooled"],
        coordinate_transformation_mode=mode,
        output_height=output_size[0],
        output_width=output_size[1],
        sampling_ratio=sampling_ratio,
        spatial_scale=scale,
    )
    graph = helper.make_graph(
        [node],
        "roi_align",
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, None, None, None]),
            helper.make_tensor_value_info("rois", TensorProto.FLOAT, [None, 4]),
            helper.make_tensor_value_info("batch", TensorProto.INT64, [None]),
        ],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [None, None, None, None])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"features": features, "rois": np.ascontiguousarray(rois[:, 1:]), "batch": rois[:, 0].astype(np.int64)}
    return session.run(None, feed)[0]


def random_rois(count: int, batch: int, side: float, seed: int) -> np.ndarray:
    """[count, 5] boxes on a side x side image of `batch` images: most inside it, some reaching beyond its edges
    (samples more than a pixel outside the map count as zero), some thinner than a pixel."""
    rng = np.random.default_rng(seed)
    corner = rng.uniform(-0.2 * side, 1.1 * side, (count, 2))
    size = rng.uniform(0.05, 0.8 * side, (count, 2)) * np.where(rng.random((count, 1)) < 0.2, 0.01, 1.0)
    index = rng.integers(0, batch, (count, 1))
    return np.concatenate([index, corner, corner + size], axis=1).astype(np.float32)


# (feature map [N, C, H, W], output size, spatial scale, sampling ratio: <= 0 adaptive)
ROI_ALIGN_CASES = [
    ((1, 3, 12, 15), (4, 3), 1.0, 2),
    ((2, 5, 9, 20), (7, 7), 0.25, 0),
    ((2, 4, 16, 16), (2, 5), 0.5, -1),
    ((3, 2, 7, 11), (3, 3), 0.125, 3),
    ((1, 8, 5, 5), (1, 1), 1 / 3, 1),
]


@pytest.mark.parametrize("aligned", [False, True], ids=["legacy", "aligned"])
@pytest.mark.parametrize(("shape", "output_size", "scale", "sampling_ratio"), ROI_ALIGN_CASES)
def test_roi_align_matches_onnx_runtime(shape, output_size, scale, sampling_ratio, aligned: bool) -> None:
    """torchvision's aligned=True is RoiAlign's half_pixel (boxes shifted by half a pixel), aligned=False its
    output_half_pixel (no shift, boxes at least a pixel a side), as torchvision's ONNX symbolic maps them; the other
    mode gives other values, so the comparison tells them apart. RoiAlign's sampling_ratio 0 is adaptive."""
    rng = np.random.default_rng(sum(shape) + output_size[0])
    features = rng.standard_normal(shape).astype(np.float32)
    rois = random_rois(40, shape[0], max(shape[2:]) / scale, seed=shape[1])
    ours = roi_align_cpu(
        torch.from_numpy(features), torch.from_numpy(rois), scale, *output_size, sampling_ratio, aligned
    )
    modes = ["output_half_pixel", "half_pixel"]
    expected = onnx_roi_align(features, rois, output_size, scale, max(sampling_ratio, 0), modes[aligned])
    assert ours.shape == (len(rois), shape[1], *output_size) and ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-5, atol=1e-5)
    other = onnx_roi_align(features, rois, output_size, scale, max(sampling_ratio, 0), modes[not aligned])
    assert not np.allclose(ours.numpy(), other, rtol=1e-5, atol=1e-5)
    # torchvision.ops.roi_align runs the kernel (its pure-Python fallback differs for boxes beyond the map)
    options = {"spatial_scale": scale, "sampling_ratio": sampling_ratio, "aligned": aligned}
    as_tensor = torchvision.ops.roi_align(torch.from_numpy(features), torch.from_numpy(rois), output_size, **options)
    per_image = [torch.from_numpy(rois[rois[:, 0] == i, 1:]) for i in range(shape[0])]
    order = np.argsort(rois[:, 0], kind="stable")  # a list of boxes per image gives the RoIs image by image
    as_list = torchvision.ops.roi_align(torch.from_numpy(features), per_image, output_size, **options)
    assert torch.equal(as_tensor, ours) and torch.equal(as_list, ours[order])


def test_roi_align_op_is_complete() -> None:
    """Schema, fake kernel (torch.compile, torch.export) and autograd registration (opcheck), and the gradient
    (gradcheck): training through roi_align works as it did with torchvision's differentiable fallback."""
    features = torch.randn(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    rois = torch.from_numpy(random_rois(6, 2, 6, seed=1)).double()
    torch.library.opcheck(
        torch.ops.torchvision.roi_align.default, (features.detach().float(), rois.float(), 0.5, 3, 2, 2, True)
    )
    for sampling_ratio, aligned in [(2, True), (-1, False)]:
        assert torch.autograd.gradcheck(
            lambda f, s=sampling_ratio, a=aligned: torchvision.ops.roi_align(f, rois, (3, 2), 0.8, s, a), (features,)
        )


def test_roi_align_can_be_scripted() -> None:
    features, rois = torch.rand(1, 2, 6, 6), torch.tensor([[0.0, 1, 1, 4, 5]])
    scripted = torch.jit.script(torchvision.ops.roi_align)
    assert torch.equal(
        scripted(features, rois, [2, 2], 1.0, 2, True), roi_align_cpu(features, rois, 1.0, 2, 2, 2, True)
    )
    pooler = torch.jit.script(torchvision.ops.RoIAlign((2, 2), 1.0, 2))
    assert torch.equal(pooler(features, [rois[:, 1:]]), roi_align_cpu(features, rois, 1.0, 2, 2, 2, False))


def test_roi_align_exports_as_onnx_roi_align() -> None:
    """The TorchScript exporter records torchvision::roi_align (not the torch.compile'd fallback, which it cannot
    trace) and torchvision's symbolic writes RoiAlign; the file runs in ONNX Runtime as the module does in eager, on
    boxes other than those it was traced with. Through MultiScaleRoIAlign (two levels), as Faster R-CNN calls it."""

    class Pool(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pooler = torchvision.ops.MultiScaleRoIAlign(["fine", "coarse"], 3, 2)
            self.align = torchvision.ops.RoIAlign((2, 4), 0.5, -1, aligned=True)

        def forward(self, fine, coarse, boxes):
            pooled = self.pooler({"fine": fine, "coarse": coarse}, [boxes], [(64, 64)])
            return pooled, self.align(fine, [boxes])

    torch.manual_seed(0)
    module, fine, coarse = Pool().eval(), torch.rand(1, 4, 16, 16), torch.rand(1, 4, 8, 8)
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            module,
            (fine, coarse, torch.from_numpy(random_rois(10, 1, 64, seed=2)[:, 1:])),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=["fine", "coarse", "boxes"],
            output_names=["pooled", "aligned"],
            dynamic_axes={"boxes": {0: "k"}, "pooled": {0: "k"}, "aligned": {0: "k"}},
        )
    graph = onnx.load_from_string(buffer.getvalue()).graph
    modes = sorted(
        helper.get_attribute_value(a).decode()
        for n in graph.node
        if n.op_type == "RoiAlign"
        for a in n.attribute
        if a.name == "coordinate_transformation_mode"
    )
    assert modes == ["half_pixel", "output_half_pixel", "output_half_pixel"]  # aligned; the pooler's two levels
    boxes = torch.from_numpy(random_rois(25, 1, 64, seed=3)[:, 1:]).clamp(0, 64)  # as the RPN's, inside the image
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"fine": fine.numpy(), "coarse": coarse.numpy(), "boxes": boxes.numpy()})
    with torch.no_grad():
        expected = module(fine, coarse, boxes)
    for ort_out, eager in zip(got, expected, strict=True):
        np.testing.assert_allclose(ort_out, eager.numpy(), rtol=1e-5, atol=1e-5)
