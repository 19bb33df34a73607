"""rsfm: remote-sensing foundation models.

The public API is imported lazily: ``import rsfm`` is cheap, and the first use of e.g.
``rsfm.create_model`` imports torch and timm. ``SceneClassifier``, ``BuildingExtractor``,
``ChangeDetector``, ``predict_raster`` and ``predict_change`` also run models exported to ONNX,
and then need no torch (``rsfm[runtime]``); the other names need PyTorch (``rsfm[torch]``) and
say so when it is missing.
"""

from __future__ import annotations

import importlib
from typing import Any

# environment defaults and the torchvision fix, armed for the first import of torchvision (no cost here)
from rsfm import _compat  # noqa: F401

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "create_model": "rsfm.models",
    "load_checkpoint": "rsfm.loading",
    "load_checkpoint_file": "rsfm.models",
    "ViTAEv2": "rsfm.models",
    "SceneClassifier": "rsfm.scene_classifier",
    "ScenePrediction": "rsfm.scene_classifier",
    "SceneClassificationTask": "rsfm.tasks",
    "SceneDataModule": "rsfm.data",
    "SegmentationModel": "rsfm.models",
    "BuildingSegmentationTask": "rsfm.tasks",
    "BuildingTileDataModule": "rsfm.data",
    "BuildingGeoDataModule": "rsfm.data.geo",
    "ChangeDetectionTask": "rsfm.tasks",
    "ChangeDetectionDataModule": "rsfm.data",
    "export_backbone": "rsfm.tasks.export",
    "export_onnx": "rsfm.tasks.onnx",
    "predict_raster": "rsfm.inference",
    "predict_change": "rsfm.inference",
    "BuildingExtractor": "rsfm.building_extractor",
    "BuildingPrediction": "rsfm.building_extractor",
    "ChangeDetector": "rsfm.change_detector",
    "ChangePrediction": "rsfm.change_detector",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rsfm' has no attribute '{name}'")
    try:
        value = getattr(importlib.import_module(module), name)
    except ImportError as error:
        from rsfm.inference.errors import is_missing_torch, needs_torch

        if is_missing_torch(error):
            raise needs_torch(f"rsfm.{name}") from error
        raise
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(__all__)
