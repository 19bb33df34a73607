"""Environment fixes applied before anything imports torchvision (timm, torchgeo, lightning).

The torchvision wheel on CPU-only machines may be a CUDA build whose native library cannot
load next to a CPU torch; ``import torchvision`` then fails with "operator torchvision::nms
does not exist". When that happens we register a pure-torch ``nms`` under torchvision's
operator name so that the Python package imports and ``torchvision.ops.nms`` still works.
With a working native library this module only sets environment defaults, and without torch
(an install that only runs ONNX models) it does nothing else either.
"""

from __future__ import annotations

import glob
import importlib.util
import os

# Albumentations checks PyPI for updates at import time; never make network calls on import.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np

try:
    import torch
except ImportError:  # an install without PyTorch (rsfm[runtime]): no torchvision either, nothing to fix
    torch = None


def _nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression with the same numerics as torchvision's CPU kernel."""
    order = scores.argsort(descending=True)
    ranked = boxes[order].detach().cpu()
    x1, y1, x2, y2 = ranked.to(torch.promote_types(ranked.dtype, torch.float32)).numpy().T
    area = (x2 - x1) * (y2 - y1)
    candidates = np.arange(len(ranked))
    keep = []
    while candidates.size:
        best, rest = candidates[0], candidates[1:]
        keep.append(best)
        overlap_w = (np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest])).clip(min=0)
        overlap_h = (np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest])).clip(min=0)
        inter = overlap_w * overlap_h
        with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 gives NaN and is kept, as in C++
            iou = inter / (area[best] + area[rest] - inter)
        candidates = rest[~(iou.astype(np.float64) > iou_threshold)]
    keep_index = torch.as_tensor(np.array(keep, dtype=np.int64), device=order.device)
    return order[keep_index]


def _native_torchvision_loads() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return True  # nothing to patch
    package_dir = os.path.dirname(spec.origin)
    # torchvision <= 0.28 ships _C.so, >= 0.29 _C_stable.so
    for library in glob.glob(os.path.join(package_dir, "_C*.so")):
        try:
            torch.ops.load_library(library)
            return True
        except OSError:
            pass
    return False


def _install_nms_fallback() -> None:
    global _LIBRARY
    if hasattr(torch.ops.torchvision, "nms"):
        return
    _LIBRARY = torch.library.Library("torchvision", "DEF")  # must stay referenced
    for op in ("nms", "qnms"):  # torchvision registers fake kernels for both at import
        _LIBRARY.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARY.impl("nms", _nms, "CompositeExplicitAutograd")
    import torchvision.ops.boxes as boxes

    boxes._assert_has_ops = lambda: None


_LIBRARY = None
NATIVE_TORCHVISION = torch is None or _native_torchvision_loads()
if not NATIVE_TORCHVISION:
    _install_nms_fallback()
