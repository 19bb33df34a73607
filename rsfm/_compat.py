"""Environment fixes for the packages rsfm imports: applied when ``rsfm`` is imported, paid for
only when torchvision is.

The torchvision wheel on CPU-only machines may be a CUDA build whose native library cannot
load next to a CPU torch; ``import torchvision`` then fails with "operator torchvision::nms
does not exist". When that happens we register a pure-torch ``nms`` under torchvision's
operator name so that the Python package imports and ``torchvision.ops.nms`` still works.

Importing this module costs nothing: it sets environment defaults (and turns off GDAL's Python
pixel functions, which a hostile raster could use to run code) and puts an import hook in
front of ``sys.meta_path`` that waits for the first ``import torchvision`` (directly, or through
timm, torchgeo, Lightning, torchmetrics or albumentations; a probe with
``importlib.util.find_spec`` first is fine) and applies the fix just before torchvision's own code
runs. So ``import rsfm`` may come before or after ``import torch``, and
code that never imports torchvision (an exported model run through ONNX Runtime) never imports
torch either. Where torchvision was imported before rsfm there is nothing left to fix.
"""

from __future__ import annotations

import glob
import importlib.abc
import importlib.machinery
import os
import sys
from typing import Any, Optional, Sequence

# Albumentations checks PyPI for updates at import time; never make network calls on import.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# A GDAL VRT (any file name: GDAL goes by content) may carry Python pixel functions, which GDAL
# runs in this process when GDAL_VRT_ENABLE_PYTHON=YES: never let a raster decide what code runs.
os.environ["GDAL_VRT_ENABLE_PYTHON"] = "NO"

# None until torchvision is imported: then whether its native library serves its operators
NATIVE_TORCHVISION: Optional[bool] = None
# the operator library of the fallback (kept referenced while it serves nms), when installed
_LIBRARY = None


def _nms(boxes: Any, scores: Any, iou_threshold: float) -> Any:
    """Greedy non-maximum suppression with the same numerics as torchvision's CPU kernel."""
    import numpy as np
    import torch

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


def _native_torchvision_loads(package_dir: str) -> bool:
    import torch

    # torchvision <= 0.28 ships _C.so, >= 0.29 _C_stable.so
    for library in glob.glob(os.path.join(package_dir, "_C*.so")):
        try:
            torch.ops.load_library(library)
            return True
        except OSError:
            pass
    return False


def _define_nms() -> None:
    """Register the pure-torch ``nms`` under torchvision's operator names (before torchvision
    registers its fake kernels for them at import)."""
    global _LIBRARY
    import torch

    if hasattr(torch.ops.torchvision, "nms"):
        return
    _LIBRARY = torch.library.Library("torchvision", "DEF")  # must stay referenced
    for op in ("nms", "qnms"):
        _LIBRARY.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARY.impl("nms", _nms, "CompositeExplicitAutograd")


class _FallbackLoader(importlib.abc.Loader):
    """torchvision's own loader, followed by one patch: ``torchvision.ops`` checks for the
    native library before each call; with the fallback serving ``nms`` the check is lifted."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        sys.modules["torchvision.ops.boxes"]._assert_has_ops = lambda: None

    def __getattr__(self, name: str) -> Any:  # resource readers and the like: the original's
        return getattr(self._loader, name)


class _TorchvisionHook(importlib.abc.MetaPathFinder):
    """Finds torchvision where Python would (``PathFinder``), and the first time it is asked
    checks the native library and defines the fallback when needed; while the fallback serves,
    the spec it returns carries :class:`_FallbackLoader`. It stays in place until torchvision is
    imported: packages probe for torchvision with ``importlib.util.find_spec`` before importing it."""

    def find_spec(self, name: str, path: Optional[Sequence[str]] = None, target: Any = None) -> Any:
        global NATIVE_TORCHVISION
        if name != "torchvision" or name in sys.modules:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.origin is None:
            return None  # not installed, or not where Python looks by default: nothing to fix
        if NATIVE_TORCHVISION is None:
            NATIVE_TORCHVISION = _native_torchvision_loads(os.path.dirname(spec.origin))
            if not NATIVE_TORCHVISION:
                _define_nms()
        if not NATIVE_TORCHVISION:
            spec.loader = _FallbackLoader(spec.loader)
        return spec


if "torchvision" not in sys.modules and not any(isinstance(f, _TorchvisionHook) for f in sys.meta_path):
    sys.meta_path.insert(0, _TorchvisionHook())
