"""Change detection data: pairs of co-registered images of two dates with a change mask.

Layouts read (``A`` = before, ``B`` = after, ``label`` = change mask; one ``NAME`` per pair,
extensions may differ):

* list files (BIT, ChangeFormer, what ``datasets/{levir_cd,whu_cd,cdd}/prepare.py`` write):
  ``ROOT/{A,B,label}/NAME.ext`` and ``ROOT/list/<split>.txt`` naming the pairs of each split;
* split folders (LEVIR-CD as published): ``ROOT/<split>/{A,B,label}/NAME.ext``;
* one folder of pairs without splits (small samples): ``ROOT/{A,B,label}/NAME.ext``, split into
  train and validation pairs by ``val_fraction`` with a seeded draw.

A sample is ``{'image': float32 (2 * C, H, W), 'mask': int64 (H, W)}``: the before date's bands
then the after date's, raw values (the task normalises each date with its own statistics), and
0 no change, 1 change, 255 not labelled. Masks follow ``mask_values`` as building masks do;
``"classes"`` reads semantic change masks whose values are class indices (0 = no change, 1, 2,
... the kinds of change, 255 not labelled).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Union

import albumentations as A
import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import Dataset

from rsfm.data.buildings import _mask_meaning, _read_mask_array, check_mask_values, read_mask
from rsfm.data.io import IMAGE_EXTENSIONS, read_image
from rsfm.data.pixel_range import describe_pixels, merge_pixel_ranges
from rsfm.data.seeding import SeededLoaders
from rsfm.data.segmentation import IGNORE_INDEX

__all__ = [
    "CLASS_INDICES",
    "ChangeDetectionDataModule",
    "ChangePairDataset",
    "ChangeTrainTransform",
    "find_change_pairs",
    "read_class_mask",
]

#: a pair's files: before image, after image, change mask
Pair = Tuple[Path, Path, Path]
#: semantic change masks: the stored values are the class indices (255 = not labelled)
CLASS_INDICES = "classes"
#: the ``mask_values`` a change datamodule takes: the binary conventions of building masks, and
#: class indices
ChangeMaskValues = Literal["0/255", "0/1", "0/1/255=ignore", "classes"]
_PIXEL_RANGE_PAIRS = 128


def _check_mask_values(mask_values: str) -> None:
    if mask_values != CLASS_INDICES:
        _mask_meaning(mask_values)


def read_class_mask(path: Union[str, os.PathLike]) -> np.ndarray:
    """A semantic change mask as stored: (H, W) uint8 class indices, 255 = not labelled.

    Raises:
        ImageReadError: the file cannot be read or has more than one band.
        ValueError: values outside 0-255 (e.g. a 16-bit mask), naming the file.
    """
    array = _read_mask_array(Path(path))
    if array.dtype != np.uint8 and (array.min() < 0 or array.max() > 255):
        raise ValueError(f"{path}: class indices must be 0-254 (255 = not labelled), found {array.min()}-{array.max()}")
    return array.astype(np.uint8)


def _index(folder: Path) -> Dict[str, Path]:
    files: Dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            if path.stem in files:
                raise ValueError(f"{folder}: {files[path.stem].name} and {path.name} have the same name; keep one")
            files[path.stem] = path
    return files


def _pairs_in(folder: Path, dirs: Tuple[str, str, str], names: Optional[Sequence[str]], listed_in: str) -> List[Pair]:
    """The pairs of ``folder/{A,B,label}``: those ``names`` lists, or all of them."""
    indexes = []
    for name in dirs:
        if not (folder / name).is_dir():
            raise FileNotFoundError(f"{folder / name}: folder not found ({listed_in})")
        indexes.append(_index(folder / name))
    before, after, labels = indexes
    wanted = sorted(before) if names is None else list(names)
    problems = []
    for index, folder_name in zip(indexes, dirs):
        missing = [name for name in wanted if name not in index]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            problems.append(f"{len(missing)} pair(s) have no file in {folder / folder_name}: {shown}")
    if names is None:
        extra = sorted((after.keys() | labels.keys()) - before.keys())
        if extra:
            problems.append(f"{len(extra)} file(s) in {folder / dirs[1]} or {folder / dirs[2]} have no before image")
    if problems:
        raise ValueError("; ".join(problems) + f" ({listed_in})")
    if not wanted:
        raise FileNotFoundError(f"{folder}: no pairs ({listed_in})")
    return [(before[name], after[name], labels[name]) for name in wanted]


def find_change_pairs(
    root: Union[str, os.PathLike],
    split: str,
    dirs: Tuple[str, str, str] = ("A", "B", "label"),
    list_dir: str = "list",
) -> Optional[List[Pair]]:
    """The pairs of ``split`` under ``root``, from list files or split folders (module docstring).

    Returns:
        The (before, after, mask) files, or ``None`` when ``root`` holds one folder of pairs
        without splits (the caller splits it).

    Raises:
        FileNotFoundError: ``root`` has none of the layouts, or the split is missing.
        ValueError: a listed pair misses a file, or two files share a name.
    """
    root = Path(root)
    lists = root / list_dir
    if lists.is_dir():
        listing = lists / f"{split}.txt"
        if not listing.is_file():
            raise FileNotFoundError(
                f"{listing}: split list not found (the splits listed are {sorted(p.stem for p in lists.glob('*.txt'))})"
            )
        names = [Path(line.strip()).stem for line in listing.read_text().splitlines() if line.strip()]
        return _pairs_in(root, dirs, names, f"listed in {listing}")
    if (root / split / dirs[0]).is_dir():
        return _pairs_in(root / split, dirs, None, f"split folder {root / split}")
    if (root / dirs[0]).is_dir():
        return None
    raise FileNotFoundError(
        f"{root}: no change-detection pairs found; expected {root}/{{{','.join(dirs)}}}/NAME.png with "
        f"{root}/{list_dir}/{split}.txt, or {root}/{split}/{{{','.join(dirs)}}}/ (datasets/README.md)"
    )


class ChangeTrainTransform:
    """Training augmentation of a pair: the same geometry for both dates and the mask (random
    rescale, crop, flips and 90-degree rotations), then photometric jitter drawn for each date
    on its own (the dates differ in light and season anyway), then a random swap of the dates
    (change is symmetric: a model should find demolition as well as construction).

    Works on raw values of any dtype and band count (jitter is relative to each image's mean).

    Args:
        patch_size: side of the square training patch, in pixels; smaller images are padded
            with zeros and ignored mask pixels.
        scale_range: (min, max) zoom factor; ``(1, 1)`` disables rescaling.
        jitter: brightness and contrast change per date, as a fraction (0 disables it).
        swap_p: probability of swapping the dates.
        paste_p: probability of a synthetic change: a rectangle of one date (10-35 % of each
            side) is replaced by another part of the same image, and marked as change. With few
            labelled pairs this teaches "the content differs between the dates" beyond the
            changes the labels show (0 disables it).
    """

    def __init__(
        self,
        patch_size: int,
        scale_range: Sequence[float] = (1.0, 1.0),
        jitter: float = 0.2,
        swap_p: float = 0.5,
        paste_p: float = 0.0,
    ) -> None:
        if patch_size <= 0:
            raise ValueError(f"patch_size must be a positive number of pixels, got {patch_size}")
        low, high = (float(s) for s in scale_range)
        if not 0 < low <= high:
            raise ValueError(f"scale_range must be (min, max) with 0 < min <= max, got {tuple(scale_range)}")
        for name, value in (("swap_p", swap_p), ("paste_p", paste_p)):
            if not 0 <= value <= 1:
                raise ValueError(f"{name} is a probability, between 0 and 1; got {value}")
        if jitter < 0:
            raise ValueError(f"jitter must be 0 or more, got {jitter}")
        steps: List[A.BasicTransform] = []
        if (low, high) != (1.0, 1.0):
            steps.append(A.RandomScale(scale_limit=(low - 1.0, high - 1.0), p=1.0))
        steps.append(A.RandomCrop(patch_size, patch_size, pad_if_needed=True, fill=0, fill_mask=IGNORE_INDEX))
        steps.append(A.SquareSymmetry(p=1.0))
        self.geometry = A.Compose(steps, additional_targets={"after": "image"})
        self.photometric = (
            A.Compose(
                [A.RandomBrightnessContrast(jitter, jitter, brightness_by_max=False, p=0.8)],
            )
            if jitter > 0
            else None
        )
        self.swap_p = swap_p
        self.paste_p = paste_p
        self.rng = np.random.default_rng()

    def set_random_seed(self, seed: int) -> None:
        """Seed every random draw (``rsfm.data.seeding.AugmentationSeeds`` calls this)."""
        self.geometry.set_random_seed(seed)
        if self.photometric is not None:
            self.photometric.set_random_seed(seed + 1)
        self.rng = np.random.default_rng(seed + 2)

    def _jitter(self, image: np.ndarray) -> np.ndarray:
        # albumentations clips float images to [0, 1]: scale by the dtype's maximum and back
        top = float(np.iinfo(image.dtype).max) if np.issubdtype(image.dtype, np.integer) else 1.0
        scaled = image.astype(np.float32) / top
        return self.photometric(image=scaled)["image"] * top

    def _paste(self, before: np.ndarray, after: np.ndarray, mask: np.ndarray) -> Tuple[np.ndarray, ...]:
        height, width = mask.shape
        rows, cols = (max(1, int(self.rng.uniform(0.1, 0.35) * side)) for side in (height, width))
        top, left = self.rng.integers(0, height - rows + 1), self.rng.integers(0, width - cols + 1)
        from_top, from_left = self.rng.integers(0, height - rows + 1), self.rng.integers(0, width - cols + 1)
        change_before = self.rng.random() < 0.5
        changed = (before if change_before else after).copy()
        changed[top : top + rows, left : left + cols] = changed[
            from_top : from_top + rows, from_left : from_left + cols
        ]
        mask = mask.copy()
        region = mask[top : top + rows, left : left + cols]
        region[region != IGNORE_INDEX] = 1
        return (changed, after, mask) if change_before else (before, changed, mask)

    def __call__(self, before: np.ndarray, after: np.ndarray, mask: np.ndarray) -> Tuple[np.ndarray, ...]:
        out = self.geometry(image=before, after=after, mask=mask)
        before, after, mask = out["image"], out["after"], out["mask"]
        if self.photometric is not None:
            before, after = self._jitter(before), self._jitter(after)
        if self.rng.random() < self.paste_p:
            before, after, mask = self._paste(before, after, mask)
        if self.rng.random() < self.swap_p:
            before, after = after, before
        return before, after, mask


class ChangePairDataset(Dataset):
    """(before, after, change mask) files as samples (module docstring).

    Args:
        pairs: the files of each pair.
        transform: a :class:`ChangeTrainTransform` (or any callable with its signature).
        bands: 1-based bands to keep of both dates, in this order (``None``: all).
        mask_values: what the mask values mean, a key of ``rsfm.data.buildings.MASK_VALUES``, or
            ``"classes"`` (class indices)
            (``"0/255"``: 0 no change, 255 change).

    Reading an item raises ``ValueError`` naming the files when the dates or the mask differ in
    size or the dates in band count.
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        transform: Optional[ChangeTrainTransform] = None,
        bands: Optional[Sequence[int]] = None,
        mask_values: str = "0/255",
    ) -> None:
        _check_mask_values(mask_values)
        self.pairs = [tuple(Path(path) for path in pair) for pair in pairs]
        self.transform = transform
        self.bands = bands
        self.mask_values = mask_values

    def __len__(self) -> int:
        return len(self.pairs)

    def read(self, index: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The raw (H, W, C) before and after images and the (H, W) mask of pair ``index``."""
        before_path, after_path, mask_path = self.pairs[index]
        before, after = read_image(before_path, self.bands), read_image(after_path, self.bands)
        mask = (
            read_class_mask(mask_path) if self.mask_values == CLASS_INDICES else read_mask(mask_path, self.mask_values)
        )
        if before.shape != after.shape:
            raise ValueError(
                f"{before_path} ({before.shape[1]}x{before.shape[0]} px, {before.shape[2]} bands) and {after_path} "
                f"({after.shape[1]}x{after.shape[0]} px, {after.shape[2]} bands) differ; both dates of a pair must "
                "cover the same pixels with the same bands"
            )
        if mask.shape != before.shape[:2]:
            raise ValueError(
                f"{mask_path} is {mask.shape[1]}x{mask.shape[0]} px but its images ({before_path}) are "
                f"{before.shape[1]}x{before.shape[0]} px; the mask must cover the same pixels"
            )
        return before, after, mask

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        before, after, mask = self.read(index)
        if self.transform is not None:
            before, after, mask = self.transform(before, after, mask)
        pair = np.concatenate([before, after], axis=2).transpose(2, 0, 1)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(pair, dtype=np.float32)),
            "mask": torch.from_numpy(mask.astype(np.int64)),
        }


class ChangeDetectionDataModule(SeededLoaders, LightningDataModule):
    """Train/val/test pairs under one or more roots (layouts in the module docstring).

    Args:
        root: dataset folder, or a list of them (their pairs are pooled split by split), e.g.
            ``[../shared/data/change/levir_samples, ../shared/data/change/dsifn_samples]``.
        train_split, val_split, test_split: split names (list files or folders).
        before_dir, after_dir, mask_dir: folder names of the dates and masks (CDD calls the
            masks ``OUT``).
        val_fraction: for roots without splits: the share of pairs held out (rounded, at least
            one), drawn with ``split_seed``; they are both the validation and the test pairs.
        split_seed: seed of that draw.
        patch_size, scale_range, jitter, swap_p, paste_p: training augmentation
            (:class:`ChangeTrainTransform`).
        batch_size: training batch size; ``val_batch_size`` defaults to it.
        num_workers: data loading processes.
        bands: 1-based bands fed to the model from both dates, in this order (``None``: all).
        mask_values: what the mask values mean: ``"0/255"`` (LEVIR-CD, WHU-CD, CDD as prepared),
            ``"0/1"``, or ``"0/1/255=ignore"`` (255 marks pixels without labels, skipped by
            loss and metrics). Every mask of the splits prepared is checked at ``setup``.
            ``"classes"``: semantic change, the values are class indices (0 no change, 1, 2, ...
            the kinds of change; 255 not labelled); the task's ``class_names`` name them.

    After ``setup("fit")``, ``pixel_range`` describes the raw training pixels of both dates.
    """

    def __init__(
        self,
        root: Union[List[str], str, os.PathLike],  # the list first: jsonargparse tries them in order
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "test",
        before_dir: str = "A",
        after_dir: str = "B",
        mask_dir: str = "label",
        val_fraction: float = 0.2,
        split_seed: int = 0,
        patch_size: int = 256,
        scale_range: Tuple[float, float] = (1.0, 1.0),
        jitter: float = 0.2,
        swap_p: float = 0.5,
        paste_p: float = 0.0,
        batch_size: int = 8,
        val_batch_size: Optional[int] = None,
        num_workers: int = 0,
        bands: Optional[List[int]] = None,
        mask_values: ChangeMaskValues = "0/255",
    ) -> None:
        super().__init__()
        _check_mask_values(mask_values)
        if mask_values == CLASS_INDICES and paste_p > 0:
            raise ValueError("paste_p marks synthetic change as class 1: use it with binary masks, not 'classes'")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
        # kept out of the logger: the task logs bands and mask_values under the same keys
        self.save_hyperparameters(logger=False)
        roots = root if isinstance(root, (list, tuple)) else [root]
        self.hparams.root = [str(path) for path in roots]  # plain types in checkpoints
        self.roots = [Path(path) for path in roots]
        self.train_transform = ChangeTrainTransform(patch_size, scale_range, jitter, swap_p, paste_p)
        self.val_batch_size = val_batch_size or batch_size
        self._pixel_range: Optional[Dict[str, Any]] = None

    @property
    def image_size(self) -> int:
        """Side of the training patches in pixels (``patch_size``)."""
        return int(self.hparams.patch_size)

    @property
    def bands(self) -> Optional[List[int]]:
        return list(self.hparams.bands) if self.hparams.bands is not None else None

    @property
    def mask_values(self) -> str:
        return str(self.hparams.mask_values)

    @property
    def pixel_range(self) -> Optional[Dict[str, Any]]:
        """Data type and value range of the raw training pixels of both dates, described on at
        most 128 training pairs spread over the split. ``None`` before ``setup("fit")``."""
        dataset = getattr(self, "train_dataset", None)
        if dataset is None:
            return None
        if self._pixel_range is None:
            count = min(len(dataset), _PIXEL_RANGE_PAIRS)
            chosen = np.unique(np.linspace(0, len(dataset) - 1, count).round().astype(int)).tolist()
            self._pixel_range = merge_pixel_ranges(
                describe_pixels(read_image(path, self.hparams.bands))
                for index in chosen
                for path in dataset.pairs[index][:2]
            )
        return self._pixel_range

    def split_pairs(self, split: str) -> List[Pair]:
        """The pairs of ``split`` (``train``, ``val`` or ``test`` as named by the split options)
        pooled over the roots."""
        hp = self.hparams
        dirs = (hp.before_dir, hp.after_dir, hp.mask_dir)
        pairs: List[Pair] = []
        for root in self.roots:
            found = find_change_pairs(root, split, dirs)
            if found is None:  # one folder of pairs: a seeded hold-out
                everything = _pairs_in(root, dirs, None, f"pairs of {root}, split by val_fraction")
                held = max(1, round(len(everything) * hp.val_fraction))
                order = np.random.default_rng(hp.split_seed).permutation(len(everything))
                chosen = order[:held] if split != hp.train_split else order[held:]
                found = [everything[index] for index in sorted(chosen.tolist())]
            pairs += found
        return pairs

    def _dataset(self, split: str, transform: Optional[ChangeTrainTransform]) -> ChangePairDataset:
        pairs = self.split_pairs(split)
        if self.hparams.mask_values != CLASS_INDICES:  # class masks are checked against the classes in training
            check_mask_values([mask for _, _, mask in pairs], self.hparams.mask_values)
        return ChangePairDataset(pairs, transform, self.hparams.bands, self.hparams.mask_values)

    def setup(self, stage: str) -> None:
        hp = self.hparams
        if stage == "fit":
            self.train_dataset = self._dataset(hp.train_split, self.train_transform)
            self._pixel_range = None
        if stage in ("fit", "validate"):
            self.val_dataset = self._dataset(hp.val_split, None)
        if stage == "test":
            self.test_dataset = self._dataset(hp.test_split, None)
