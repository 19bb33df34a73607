"""Data: image reading, scene lists and splits, building tiles, augmentation and datamodules.

Georeferenced building data (torchgeo) lives in ``rsfm.data.geo``, imported on use.
"""

from rsfm import _compat  # noqa: F401  (must run before albumentations/lightning import torchvision)
from rsfm.data.buildings import BuildingTileDataModule, BuildingTileDataset
from rsfm.data.io import IMAGE_EXTENSIONS, ImageReadError, read_image
from rsfm.data.samples import read_sample_list, scan_class_folders, stratified_split
from rsfm.data.scene import SceneDataModule, SceneDataset
from rsfm.data.stats import band_statistics
from rsfm.data.transforms import scene_eval_transform, scene_train_transform

__all__ = [
    "BuildingTileDataModule",
    "BuildingTileDataset",
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "SceneDataModule",
    "SceneDataset",
    "band_statistics",
    "read_image",
    "read_sample_list",
    "scan_class_folders",
    "scene_eval_transform",
    "scene_train_transform",
    "stratified_split",
]
