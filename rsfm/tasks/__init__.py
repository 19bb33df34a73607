"""Lightning tasks: scene classification, building segmentation and change detection.

The task classes are imported on first use: the light modules of this package (the input
contract, :mod:`rsfm.tasks.onnx_metadata`) run without torch, so that an install without
PyTorch (``rsfm[runtime]``) can read exported models.
"""

import importlib
from typing import Any

_LAZY = {
    "BaseTask": "rsfm.tasks.base",
    "load_task": "rsfm.tasks.base",
    "register_task": "rsfm.tasks.base",
    "SceneClassificationTask": "rsfm.tasks.classification",
    "BuildingSegmentationTask": "rsfm.tasks.segmentation",
    "ChangeDetectionTask": "rsfm.tasks.change",
}

__all__ = [
    "BaseTask",
    "BuildingSegmentationTask",
    "ChangeDetectionTask",
    "SceneClassificationTask",
    "load_task",
    "register_task",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rsfm.tasks' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
