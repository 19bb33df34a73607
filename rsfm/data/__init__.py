"""Data: image reading, scene lists and splits, building tiles, augmentation and datamodules.

Names are imported on first use, so that light tools (the dataset preparation scripts) do not
pay for Lightning and albumentations. Georeferenced building data (torchgeo) lives in
``rsfm.data.geo``.
"""

import importlib
from typing import Any

_LAZY = {
    "BuildingTileDataModule": "rsfm.data.buildings",
    "BuildingTileDataset": "rsfm.data.buildings",
    "ChangeDetectionDataModule": "rsfm.data.change",
    "ChangePairDataset": "rsfm.data.change",
    "IMAGE_EXTENSIONS": "rsfm.data.io",
    "ImageReadError": "rsfm.data.io",
    "read_image": "rsfm.data.io",
    "read_sample_list": "rsfm.data.samples",
    "scan_class_folders": "rsfm.data.samples",
    "stratified_split": "rsfm.data.samples",
    "SceneDataModule": "rsfm.data.scene",
    "SceneDataset": "rsfm.data.scene",
    "band_statistics": "rsfm.data.stats",
    "scene_eval_transform": "rsfm.data.transforms",
    "scene_train_transform": "rsfm.data.transforms",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rsfm.data' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
