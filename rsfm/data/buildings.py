"""Building extraction from image/mask tile folders (WHU, Inria patches, Massachusetts, Xiamen).

Layout: ``ROOT/<split>/<image_dir>/NAME.ext`` and ``ROOT/<split>/<mask_dir>/NAME.ext``; an
image and its mask share ``NAME`` (extensions may differ). Images are PNG, JPEG, WebP or TIFF
(any band count and dtype; TIFFs are read with rasterio); masks are single-band with values
0/1 or 0/255 (background/building).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import albumentations as A
import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from rsfm.data.io import IMAGE_EXTENSIONS, RASTER_EXTENSIONS, ImageReadError, read_image
from rsfm.data.segmentation import building_train_transform, make_sample

__all__ = ["BuildingTileDataset", "BuildingTileDataModule", "read_mask"]


def read_mask(path: Union[str, os.PathLike]) -> np.ndarray:
    """Read a building mask as an (H, W) uint8 array with 0 = background, 1 = building.

    Palette PNGs are read as their indices, not their colours. Raises ``ImageReadError``
    naming the file when it cannot be read, has more than one band or has values other
    than 0/1 or 0/255.
    """
    path = Path(path)
    if path.suffix.lower() in RASTER_EXTENSIONS:
        array = read_image(path)
    else:
        try:
            with Image.open(path) as img:
                array = np.asarray(img)  # palette masks: the indices are the classes
        except (OSError, ValueError) as error:
            raise ImageReadError(f"{path}: cannot read mask ({type(error).__name__}: {error})") from error
    if array.ndim == 3:
        if array.shape[2] != 1:
            raise ImageReadError(f"{path}: a mask must have one band, this file has {array.shape[2]}")
        array = array[:, :, 0]
    values = set(np.unique(array).tolist())
    if values <= {0, 1}:
        return array.astype(np.uint8)
    if values <= {0, 255}:
        return (array == 255).astype(np.uint8)
    raise ImageReadError(
        f"{path}: mask values {sorted(values)[:10]} are not 0/1 or 0/255 (background/building); "
        "convert the labels to a binary building mask"
    )


def _index_folder(folder: Path) -> Dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder}: folder not found; tiles are read from <root>/<split>/<image_dir> and "
            "<root>/<split>/<mask_dir> (set the datamodule's root, image_dir and mask_dir)"
        )
    files: Dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if path.stem in files:
            raise ValueError(f"{folder}: {files[path.stem].name} and {path.name} have the same name; keep one")
        files[path.stem] = path
    if not files:
        raise FileNotFoundError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def _unpaired_error(names: Sequence[str], folder: Path, other: Path) -> str:
    shown = ", ".join(sorted(names)[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"{len(names)} file(s) in {folder} have no file of the same name in {other}: {shown}"


class BuildingTileDataset(Dataset):
    """Image tiles paired by file name with binary building masks.

    Args:
        images_dir: folder of image tiles.
        masks_dir: folder of masks with the same file names (the extension may differ).
        transform: albumentations transform applied jointly to image and mask.
        bands: 1-based image bands to keep, in this order (``None``: all).

    Raises:
        FileNotFoundError: a folder is missing or has no image files.
        ValueError: an image has no mask or a mask has no image (the files are named).

    Items are ``{'image': float32 (C, H, W) raw values, 'mask': int64 (H, W)}``; reading an
    item raises ``ValueError`` naming both files when image and mask sizes differ.
    """

    def __init__(
        self,
        images_dir: Union[str, os.PathLike],
        masks_dir: Union[str, os.PathLike],
        transform: Optional[A.BasicTransform] = None,
        bands: Optional[Sequence[int]] = None,
    ) -> None:
        self.images_dir, self.masks_dir = Path(images_dir), Path(masks_dir)
        images, masks = _index_folder(self.images_dir), _index_folder(self.masks_dir)
        problems = []
        if images.keys() - masks.keys():
            problems.append(_unpaired_error(list(images.keys() - masks.keys()), self.images_dir, self.masks_dir))
        if masks.keys() - images.keys():
            problems.append(_unpaired_error(list(masks.keys() - images.keys()), self.masks_dir, self.images_dir))
        if problems:
            raise ValueError("; ".join(problems))
        self.pairs: List[Tuple[Path, Path]] = [(images[name], masks[name]) for name in sorted(images)]
        self.transform = transform
        self.bands = bands

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        image_path, mask_path = self.pairs[index]
        image, mask = read_image(image_path, self.bands), read_mask(mask_path)
        if image.shape[:2] != mask.shape:
            raise ValueError(
                f"{image_path} is {image.shape[1]}x{image.shape[0]} px but its mask {mask_path} is "
                f"{mask.shape[1]}x{mask.shape[0]} px; image and mask must cover the same pixels"
            )
        return make_sample(image, mask, self.transform)


class BuildingTileDataModule(LightningDataModule):
    """Train/val/test building tile folders under one root.

    Args:
        root: dataset folder, e.g. ``../shared/data/xiamen_buildings``.
        train_split, val_split, test_split: split folder names under ``root``.
        image_dir, mask_dir: folder names of images and masks inside each split (WHU uses
            ``image``/``label``).
        patch_size: side of the square training crops, in pixels; smaller tiles are padded
            with ignored pixels. Validation and test tiles are used whole.
        scale_range: (min, max) random zoom of training tiles before cropping.
        batch_size: training batch size; ``val_batch_size`` defaults to it.
        num_workers: data loading processes.
        bands: 1-based image bands to feed the model, in this order (``None``: all).
    """

    def __init__(
        self,
        root: Union[str, os.PathLike],
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "test",
        image_dir: str = "images",
        mask_dir: str = "masks",
        patch_size: int = 512,
        scale_range: Tuple[float, float] = (1.0, 1.0),
        batch_size: int = 8,
        val_batch_size: Optional[int] = None,
        num_workers: int = 0,
        bands: Optional[List[int]] = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.hparams.root = str(root)  # checkpoints hold plain types, so resuming loads weights-only
        self.root = Path(root)
        self.train_transform = building_train_transform(patch_size, scale_range)
        self.val_batch_size = val_batch_size or batch_size

    def _dataset(self, split: str, transform: Optional[A.BasicTransform]) -> BuildingTileDataset:
        folder = self.root / split
        return BuildingTileDataset(
            folder / self.hparams.image_dir, folder / self.hparams.mask_dir, transform, self.hparams.bands
        )

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.train_dataset = self._dataset(self.hparams.train_split, self.train_transform)
        if stage in ("fit", "validate"):
            self.val_dataset = self._dataset(self.hparams.val_split, None)
        if stage == "test":
            self.test_dataset = self._dataset(self.hparams.test_split, None)

    def _loader(self, dataset: Dataset, batch_size: int, train: bool) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train,
            drop_last=train,  # batch norm needs more than one sample
            num_workers=workers,
            persistent_workers=workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, self.hparams.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, self.val_batch_size, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, self.val_batch_size, train=False)
