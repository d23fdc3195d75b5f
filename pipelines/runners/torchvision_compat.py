"""Import torchvision on CPU-only torch builds.

The torchvision wheels are CUDA builds; with CPU torch `import torchvision` fails with
"operator torchvision::nms does not exist". Models still work once the op schemas exist, so we
define them, only when the normal import fails. Image decoding (torchvision.io) and ops.nms stay
unavailable: decode images with Pillow.
"""

from __future__ import annotations

import sys
from types import ModuleType

_schema_library = None  # kept alive: the definitions vanish with the Library object


def import_torchvision() -> ModuleType:
    global _schema_library  # noqa: PLW0603 - one load per process
    try:
        import torchvision

        return torchvision
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
    import torch

    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    if _schema_library is None:
        _schema_library = torch.library.Library("torchvision", "DEF")
        _schema_library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _schema_library.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision

    return torchvision
