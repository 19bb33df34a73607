"""Building extraction from image/mask tile folders (WHU, Inria patches, Massachusetts, Xiamen).

Layout: ``ROOT/<split>/<image_dir>/NAME.ext`` and ``ROOT/<split>/<mask_dir>/NAME.ext``; an
image and its mask share ``NAME`` (extensions may differ). Images are PNG, JPEG, WebP or TIFF
(any band count and dtype; TIFFs are read with rasterio); masks are single-band. What the
mask values mean is the datamodule's ``mask_values`` option (``MASK_VALUES``), never guessed
from one file: a tile of 255s in a 0/1 dataset is then an error (or "not labelled" with
``"0/1/255=ignore"``) instead of a tile of buildings.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import AbstractSet, Any, Dict, FrozenSet, List, Literal, Optional, Sequence, Set, Tuple, Union

import albumentations as A
import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from PIL import Image
from torch.utils.data import Dataset

from rsfm.data.io import IMAGE_EXTENSIONS, RASTER_EXTENSIONS, ImageReadError, read_image
from rsfm.data.pixel_range import describe_pixels, merge_pixel_ranges
from rsfm.data.samples import shorten
from rsfm.data.seeding import SeededLoaders
from rsfm.data.segmentation import IGNORE_INDEX, building_train_transform, make_sample, mask_value_set, model_band_mean

__all__ = ["MASK_VALUES", "BuildingTileDataset", "BuildingTileDataModule", "check_mask_values", "read_mask"]

#: ``mask_values`` conventions: stored mask value -> class (0 background, 1 building,
#: ``IGNORE_INDEX`` not labelled: excluded from loss and metrics).
MASK_VALUES: Dict[str, Dict[int, int]] = {
    "0/1": {0: 0, 1: 1},
    "0/255": {0: 0, 255: 1},
    "0/1/255=ignore": {0: 0, 1: 1, 255: IGNORE_INDEX},
}
#: the names of ``MASK_VALUES``, as a type (the command line lists them in its errors)
MaskValues = Literal["0/1", "0/255", "0/1/255=ignore"]
_MEANINGS = {
    "0/1": "0 background, 1 building",
    "0/255": "0 background, 255 building",
    "0/1/255=ignore": "0 background, 1 building, 255 not labelled",
}
# training tiles described for pixel_range
_PIXEL_RANGE_IMAGES = 256
# threads reading masks for the whole-dataset check (file reads and decoding release the GIL)
_CHECK_THREADS = 8


def read_mask(path: Union[str, os.PathLike], mask_values: Optional[str] = None) -> np.ndarray:
    """Read a building mask as an (H, W) uint8 array: 0 background, 1 building, ``IGNORE_INDEX``
    (255) not labelled.

    Palette PNGs are read as their indices, not their colours.

    Args:
        path: a single-band mask (PNG, TIFF, ...).
        mask_values: what the stored values mean, a key of ``MASK_VALUES``: ``"0/1"``,
            ``"0/255"`` or ``"0/1/255=ignore"``. ``None`` accepts 0/1 or 0/255 as this one file
            holds them: for checking single files only; datasets pass their convention.

    Raises:
        ImageReadError: the file cannot be read, has more than one band, or holds values
            outside the convention (the message names the file, the values and the option).
        ValueError: ``mask_values`` is not a key of ``MASK_VALUES``.
    """
    meaning = _mask_meaning(mask_values) if mask_values is not None else None
    array = _read_mask_array(Path(path))
    values = mask_value_set(array)
    if meaning is None:
        if values <= {0, 1}:
            return array.astype(np.uint8)
        if values <= {0, 255}:
            return (array == 255).astype(np.uint8)
        raise ImageReadError(
            f"{path}: mask values {sorted(values)[:10]} are not 0/1 or 0/255 (background/building); "
            "convert the labels to a binary building mask"
        )
    if not values <= set(meaning):
        raise ImageReadError(
            f"{path}: mask holds {_and(sorted(values))}, which do not fit mask_values='{mask_values}' "
            f"({_MEANINGS[mask_values]}); {_mask_hint(values, mask_values)}"
        )
    if all(value == meaning[value] for value in values):
        return array.astype(np.uint8)
    classes = np.zeros(array.shape, dtype=np.uint8)
    for value, label in meaning.items():
        if label:
            classes[array == value] = label
    return classes


def check_mask_values(
    masks: Sequence[Union[str, os.PathLike]], mask_values: str, root: Optional[Union[str, os.PathLike]] = None
) -> None:
    """Read every mask once and check that its values fit ``mask_values``.

    All offending files are reported together. Masks are read in threads, and the values of
    each file are cached by path, size and modification time, so a second check is instant.

    Args:
        masks: mask files.
        mask_values: a key of ``MASK_VALUES``.
        root: files are named relative to this folder in the message.

    Raises:
        ValueError: some masks hold other values: the message counts them, names up to ten
            with their values, and says which ``mask_values`` fits (or to convert the masks).
        ImageReadError: a mask cannot be read.
    """
    allowed = set(_mask_meaning(mask_values))
    paths = [Path(mask) for mask in masks]
    with ThreadPoolExecutor(min(_CHECK_THREADS, os.cpu_count() or 1)) as pool:
        found = list(pool.map(_cached_values, paths))
    offending = [(path, values) for path, values in zip(paths, found) if not values <= allowed]
    if not offending:
        return
    everything = frozenset().union(*found)
    named = [
        f"{path.relative_to(root) if root is not None else path} ({_and(sorted(values)[:10])})"
        for path, values in offending
    ]
    raise ValueError(
        f"{len(offending)} of {len(paths)} mask(s) do not fit mask_values='{mask_values}' "
        f"({_MEANINGS[mask_values]}): {shorten(named)}. The masks hold {_and(sorted(everything)[:10])}: "
        + _mask_hint(everything, mask_values)
    )


def _mask_meaning(mask_values: str) -> Dict[int, int]:
    if mask_values not in MASK_VALUES:
        raise ValueError(f"mask_values='{mask_values}' is not one of {sorted(MASK_VALUES)}")
    return MASK_VALUES[mask_values]


def _mask_hint(values: AbstractSet[float], mask_values: str) -> str:
    """What to set for masks holding ``values`` (all files together)."""
    fitting = [name for name, meaning in MASK_VALUES.items() if values <= set(meaning) and name != mask_values]
    if values <= {0, 1, 255} and 1 in values and 255 in values:
        # 255 may mark unlabelled pixels of 0/1 masks, or buildings of 0/255 masks mixed in
        return (
            "if 255 marks pixels without labels set mask_values='0/1/255=ignore'; if some masks mark "
            "buildings with 255 and others with 1, convert them to one convention"
        )
    if fitting:
        return f"set mask_values='{fitting[0]}'"
    conventions = "; ".join(f"'{name}': {meaning}" for name, meaning in _MEANINGS.items())
    return f"convert the masks to one of the mask_values conventions ({conventions})"


def _and(values: Sequence[object]) -> str:
    """``0``, ``0 and 255``, ``0, 1 and 255``."""
    text = [str(value) for value in values]
    return text[0] if len(text) == 1 else ", ".join(text[:-1]) + " and " + text[-1]


def _cached_values(path: Path) -> FrozenSet[float]:
    stat = path.stat()
    return _mask_file_values(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=1 << 17)
def _mask_file_values(path: str, size: int, mtime_ns: int) -> FrozenSet[float]:
    """The values of one mask file (size and time in the key: a rewritten file is read again)."""
    return mask_value_set(_read_mask_array(Path(path)))


def _read_mask_array(path: Path) -> np.ndarray:
    """The stored (H, W) values of a single-band mask."""
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
    return array


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
        mask_values: what mask values mean, a key of ``MASK_VALUES`` (see ``read_mask``);
            ``None`` takes 0/1 or 0/255 as each file holds them (for preparation scripts that
            check single pairs; ``BuildingTileDataModule`` always passes its convention).

    Raises:
        FileNotFoundError: a folder is missing or has no image files.
        ValueError: an image has no mask or a mask has no image (the files are named).

    Items are ``{'image': float32 (C, H, W) raw values, 'mask': int64 (H, W)}``; reading an
    item raises ``ValueError`` naming both files when image and mask sizes differ, and
    ``ImageReadError`` when the mask's values do not fit ``mask_values``.
    """

    def __init__(
        self,
        images_dir: Union[str, os.PathLike],
        masks_dir: Union[str, os.PathLike],
        transform: Optional[A.BasicTransform] = None,
        bands: Optional[Sequence[int]] = None,
        mask_values: Optional[str] = None,
    ) -> None:
        if mask_values is not None:
            _mask_meaning(mask_values)
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
        self.mask_values = mask_values

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        image_path, mask_path = self.pairs[index]
        image, mask = read_image(image_path, self.bands), read_mask(mask_path, self.mask_values)
        if image.shape[:2] != mask.shape:
            raise ValueError(
                f"{image_path} is {image.shape[1]}x{image.shape[0]} px but its mask {mask_path} is "
                f"{mask.shape[1]}x{mask.shape[0]} px; image and mask must cover the same pixels"
            )
        return make_sample(image, mask, self.transform)


class BuildingTileDataModule(SeededLoaders, LightningDataModule):
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
        mask_values: what the mask values mean, the same for every mask of every split:
            ``"0/1"`` (0 background, 1 building; the Xiamen tiles, ``rsfm`` prepared SpaceNet
            chips), ``"0/255"`` (0 background, 255 building; WHU, Inria) or
            ``"0/1/255=ignore"`` (0/1 masks where 255 marks pixels without labels, which loss
            and metrics skip). ``setup`` reads every mask of the splits it prepares once and
            raises one ``ValueError`` naming the files whose values do not fit, with the
            option that does (e.g. "masks hold 0 and 255: set mask_values='0/255'").
        nodata_p: probability that a training patch gets synthetic nodata (clouds or a straight
            border, ``rsfm.data.segmentation.RandomNodata``) set to the model's band mean and
            left out of the loss, as tiled inference fills nodata; 0 disables it. The mean is
            read from the task when training starts.

    After ``setup("fit")``, ``pixel_range`` describes the raw training pixels.
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
        mask_values: MaskValues = "0/1",
        nodata_p: float = 0.0,
    ) -> None:
        super().__init__()
        _mask_meaning(mask_values)
        # kept out of the logger: the task logs bands and mask_values under the same keys
        self.save_hyperparameters(logger=False)
        self.hparams.root = str(root)  # checkpoints hold plain types, so resuming loads weights-only
        self.root = Path(root)
        if not 0 <= nodata_p <= 1:
            raise ValueError(f"nodata_p is a probability, between 0 and 1; got {nodata_p}")
        self.train_transform = building_train_transform(patch_size, scale_range)  # nodata joins at setup
        self.val_batch_size = val_batch_size or batch_size
        self._checked_masks: Set[Path] = set()
        self._pixel_range: Optional[Dict[str, Any]] = None

    @property
    def image_size(self) -> int:
        """Side of the training patches in pixels (``patch_size``)."""
        return int(self.hparams.patch_size)

    @property
    def bands(self) -> Optional[List[int]]:
        """1-based image bands fed to the model (``None``: all)."""
        return list(self.hparams.bands) if self.hparams.bands is not None else None

    @property
    def mask_values(self) -> str:
        """The masks' convention (a key of ``MASK_VALUES``)."""
        return str(self.hparams.mask_values)

    @property
    def pixel_range(self) -> Optional[Dict[str, Any]]:
        """Data type and value range of the raw training pixels, e.g. ``{"dtype": "uint8", "min":
        0.0, "max": 255.0}`` (see ``rsfm.data.pixel_range.describe_pixels``), described on a
        sample of at most 256 training tiles spread evenly over the split (read on first use).
        ``None`` before ``setup("fit")``."""
        dataset = getattr(self, "train_dataset", None)
        if dataset is None:
            return None
        if self._pixel_range is None:
            count = min(len(dataset), _PIXEL_RANGE_IMAGES)
            chosen = np.unique(np.linspace(0, len(dataset) - 1, count).round().astype(int)).tolist()
            self._pixel_range = merge_pixel_ranges(
                describe_pixels(read_image(dataset.pairs[index][0], self.hparams.bands)) for index in chosen
            )
        return self._pixel_range

    def _dataset(self, split: str, transform: Optional[A.BasicTransform]) -> BuildingTileDataset:
        folder = self.root / split
        return BuildingTileDataset(
            folder / self.hparams.image_dir,
            folder / self.hparams.mask_dir,
            transform,
            self.hparams.bands,
            self.hparams.mask_values,
        )

    def setup(self, stage: str) -> None:
        datasets = []
        if stage == "fit":
            if self.hparams.nodata_p > 0:
                hp = self.hparams
                self.train_transform = building_train_transform(
                    hp.patch_size, hp.scale_range, hp.nodata_p, model_band_mean(self)
                )
            self.train_dataset = self._dataset(self.hparams.train_split, self.train_transform)
            self._pixel_range = None
            datasets.append(self.train_dataset)
        if stage in ("fit", "validate"):
            self.val_dataset = self._dataset(self.hparams.val_split, None)
            datasets.append(self.val_dataset)
        if stage == "test":
            self.test_dataset = self._dataset(self.hparams.test_split, None)
            datasets.append(self.test_dataset)
        self._check_masks(datasets)

    def _check_masks(self, datasets: Sequence[BuildingTileDataset]) -> None:
        """Every mask of ``datasets`` against ``mask_values``, all splits in one report."""
        unchecked = [dataset for dataset in datasets if dataset.masks_dir not in self._checked_masks]
        masks = [mask for dataset in unchecked for _, mask in dataset.pairs]
        if masks:
            check_mask_values(masks, self.hparams.mask_values, root=self.root)
        self._checked_masks.update(dataset.masks_dir for dataset in unchecked)
