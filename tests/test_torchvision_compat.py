"""torchvision on CPU torch: the NMS kernel of ours against ONNX Runtime's NonMaxSuppression (an independent
implementation), and torchvision's detection models running in process with it (random weights, offline)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from pipelines.runners.torchvision_compat import import_torchvision, nms_cpu

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
