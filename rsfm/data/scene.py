"""Scene classification data: ``SceneDataset`` (files to tensors) and ``SceneDataModule``.

Images leave the datamodule in raw pixel units (float32, e.g. 0-255 or 0-65535): the task
normalises them with the per-band mean/std it keeps in its checkpoint, so a trained model
can be fed raw files later without knowing how the datamodule was configured.
"""

from __future__ import annotations

import random
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Dataset, default_collate

from rsfm.data.io import IMAGE_EXTENSIONS, ImageReadError, read_image
from rsfm.data.pixel_range import describe_pixels, merge_pixel_ranges
from rsfm.data.samples import (
    Sample,
    index_class_folders,
    missing_files_problem,
    read_sample_list,
    shorten,
    stratified_split,
)
from rsfm.data.seeding import AugmentationSeeds
from rsfm.data.stats import band_statistics
from rsfm.data.transforms import scene_eval_transform, scene_train_transform

__all__ = ["SceneDataModule", "SceneDataset", "collate_scene_batch"]

_SPLITS = ("train", "val", "test")
# training images described for pixel_range when the mean/std pass does not run
_PIXEL_RANGE_IMAGES = 256
# class names listed in a data problem before "and N more"
_LISTED_CLASSES = 60
_SKIP_HINT = "Fix or remove the file, or set skip_bad_files=True to skip unreadable files"


class SceneDataset(Dataset):
    """Images and class indices read from files.

    Each item is a dict: ``image`` float32 ``(bands, H, W)`` in the file's pixel units,
    ``label`` (class index, -1 when unlabelled) and ``path``. A single-band image in a 3-band
    dataset (a greyscale JPEG among RGB ones) is repeated to 3 bands.

    Args:
        samples: ``(path, class index)`` pairs.
        in_chans: number of bands every image must have (after ``bands``).
        transform: albumentations pipeline applied to the image scaled to [0, 1].
        bands: 1-based band numbers to read (see ``rsfm.data.read_image``).
        max_pixel_value: the value that maps to 1 for augmentation; default: the dtype's
            maximum for integers (255, 65535), 1 for floats.
        skip_bad_files: return ``None`` for unreadable files (``collate_scene_batch`` drops and
            counts them) instead of raising.
    """

    def __init__(
        self,
        samples: Sequence[Tuple[Path, int]],
        in_chans: int,
        transform: Optional[Callable[..., Dict[str, Any]]] = None,
        bands: Optional[Sequence[int]] = None,
        max_pixel_value: Optional[float] = None,
        skip_bad_files: bool = False,
    ) -> None:
        self.samples = list(samples)
        self.in_chans = in_chans
        self.transform = transform
        self.bands = list(bands) if bands is not None else None
        self.max_pixel_value = max_pixel_value
        self.skip_bad_files = skip_bad_files

    def __len__(self) -> int:
        return len(self.samples)

    def read(self, index: int) -> np.ndarray:
        """The raw ``(H, W, in_chans)`` image of sample ``index``; raises ``ImageReadError``."""
        path = self.samples[index][0]
        image = read_image(path, self.bands)
        if image.shape[2] == 1 and self.in_chans == 3:
            image = np.repeat(image, 3, axis=2)
        if image.shape[2] != self.in_chans:
            raise ImageReadError(
                f"{path}: has {image.shape[2]} band(s), the other images have {self.in_chans} "
                "(choose bands with bands=[...])"
            )
        return image

    def __getitem__(self, index: int) -> Optional[Dict[str, Any]]:
        path, label = self.samples[index]
        try:
            image = self.read(index)
        except ImageReadError as error:
            if not self.skip_bad_files:
                raise ImageReadError(f"{error}. {_SKIP_HINT}") from error
            warnings.warn(f"{error}; skipped (skip_bad_files=True)", stacklevel=2)
            return None
        if self.max_pixel_value is not None:
            max_value = float(self.max_pixel_value)
        elif np.issubdtype(image.dtype, np.integer):
            max_value = float(np.iinfo(image.dtype).max)
        else:
            max_value = 1.0
        scaled = image.astype(np.float32) / max_value
        if self.transform is not None:
            scaled = self.transform(image=scaled)["image"]
        tensor = torch.from_numpy(np.ascontiguousarray(scaled.transpose(2, 0, 1))) * max_value
        return {"image": tensor, "label": label, "path": str(path)}


def collate_scene_batch(samples: List[Optional[Dict[str, Any]]]) -> Dict[str, Any]:
    """``default_collate`` that drops skipped (``None``) samples and counts them in ``num_skipped``."""
    kept = [sample for sample in samples if sample is not None]
    if kept:
        batch = default_collate(kept)
    else:
        batch = {"image": torch.empty(0), "label": torch.empty(0, dtype=torch.long), "path": []}
    batch["num_skipped"] = len(samples) - len(kept)
    return batch


class SceneDataModule(LightningDataModule):
    """Scene classification datamodule for class folders or sample lists.

    Samples come from, in this order of precedence:

    1. ``train_list`` (and optionally ``val_list``, ``test_list``): given splits;
    2. ``sample_list``: one list of all samples, split by ``split`` with ``seed``;
    3. ``root``: a folder of class folders (any depth, label from ``label_level``), split by
       ``split`` with ``seed``.

    List formats are described in ``rsfm.data.read_sample_list``. Splits are stratified and
    deterministic (``rsfm.data.stratified_split``): ``split=[0.2, 0, 0.8]`` is the AID 2:8
    protocol, ``[0.5, 0, 0.5]`` the 5:5 one. An empty validation split turns validation off.

    The samples are checked when they are first indexed (``setup``, or reading
    ``class_names``): listed images that do not exist, class folders without images, labels
    missing from ``class_names``, and classes with no training image (a label typo such as
    ``Airprot`` makes a class of one image, which a split may leave out of training) are
    collected and raised together in one ``ValueError`` that names the files and classes and
    shows the image count of every class. A class of a single image is warned about.

    Args:
        root: class-folder root, or the folder that list paths are relative to (default: each
            list's own folder).
        sample_list / train_list / val_list / test_list: CSV or TXT sample lists.
        predict_root: folder of (unlabelled) images, any depth, for ``rsfm predict``; default:
            the test split.
        split: fractions of each class for train, val and test (sum at most 1).
        seed: split seed; the same seed gives the same split on every machine.
        label_level: folder level naming the class (see ``rsfm.data.scan_class_folders``).
        class_names: class order (the classifier's output order); default: sorted names found.
        bands: 1-based band numbers to read from each file; default: all.
        image_size: side of the model input in pixels.
        mean, std: per-band statistics in raw pixel units; default: computed on up to
            ``stats_max_images`` training images.
        max_pixel_value: value that augmentation treats as full scale (see ``SceneDataset``).
        crop_scale: area range of the random resized crop.
        flips: random flips and 90-degree rotations.
        color_jitter: brightness/contrast jitter strength; 0 turns it off.
        rand_ops: RandAugment-style ops per image; 0 turns them off.
        batch_size: training batch size per device; ``eval_batch_size`` defaults to it.
        num_workers: data loading processes.
        skip_bad_files: skip unreadable images (and count them in the log) instead of failing.
    """

    def __init__(
        self,
        root: Optional[str] = None,
        sample_list: Optional[str] = None,
        train_list: Optional[str] = None,
        val_list: Optional[str] = None,
        test_list: Optional[str] = None,
        predict_root: Optional[str] = None,
        split: Sequence[float] = (0.8, 0.1, 0.1),
        seed: int = 0,
        label_level: int = -1,
        class_names: Optional[List[str]] = None,
        bands: Optional[List[int]] = None,
        image_size: int = 224,
        mean: Optional[List[float]] = None,
        std: Optional[List[float]] = None,
        stats_max_images: int = 1000,
        max_pixel_value: Optional[float] = None,
        crop_scale: Tuple[float, float] = (0.08, 1.0),
        flips: bool = True,
        color_jitter: float = 0.4,
        rand_ops: int = 2,
        batch_size: int = 64,
        eval_batch_size: Optional[int] = None,
        num_workers: int = 4,
        skip_bad_files: bool = False,
    ) -> None:
        super().__init__()
        # kept out of the logger: the task logs class names, bands and statistics under the same keys
        self.save_hyperparameters(logger=False)
        if root is None and sample_list is None and train_list is None:
            raise ValueError("SceneDataModule needs root (class folders), sample_list or train_list")
        if train_list is not None and sample_list is not None:
            raise ValueError(
                "give either train_list (with val_list/test_list) or sample_list (split by ratio), not both"
            )
        if (val_list is not None or test_list is not None) and train_list is None:
            raise ValueError("val_list/test_list need train_list as well")
        if len(split) != 3:
            raise ValueError(f"split={list(split)}: give three fractions, for train, val and test")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std (per band, raw pixel units) or neither")
        self.batch_size = batch_size
        self.num_skipped = 0
        self._splits: Optional[Dict[str, List[Tuple[Path, int]]]] = None
        self._class_names: List[str] = []
        self._in_chans: Optional[int] = None
        self._stats: Optional[Tuple[List[float], List[float]]] = (list(mean), list(std)) if mean is not None else None
        self._pixel_range: Optional[Dict[str, Any]] = None
        self.datasets: Dict[str, SceneDataset] = {}

    # what a task reads to build itself ------------------------------------------------

    @property
    def class_names(self) -> List[str]:
        """Class names in classifier output order."""
        self._index()
        return list(self._class_names)

    @property
    def in_chans(self) -> int:
        """Bands per image: ``len(bands)``, or the most common band count of the images."""
        if self._in_chans is None:
            if self.hparams.bands is not None:
                self._in_chans = len(self.hparams.bands)
            else:
                self._in_chans = self._common_band_count()
        return self._in_chans

    @property
    def mean(self) -> List[float]:
        """Per-band mean in raw pixel units (given, or computed on training images)."""
        return self._band_stats()[0]

    @property
    def std(self) -> List[float]:
        """Per-band standard deviation in raw pixel units (given, or computed)."""
        return self._band_stats()[1]

    @property
    def pixel_range(self) -> Optional[Dict[str, Any]]:
        """Data type and value range of the raw training pixels, e.g. ``{"dtype": "uint8", "min":
        0.0, "max": 255.0}`` (see ``rsfm.data.pixel_range.describe_pixels``).

        Taken from the images that the mean/std pass reads when mean/std are computed here (up
        to ``stats_max_images``); when they are given, from a sample of at most 256 training
        images spread evenly over the split. ``None`` until the samples are indexed (``setup``,
        or reading ``class_names``) and when the training split is empty.
        """
        if self._splits is None or not self._splits["train"]:
            return None
        if self._pixel_range is None:
            if self.hparams.mean is None:
                self._band_stats()  # one pass over the images gives both
            else:
                self._pixel_range = self._describe_training_sample()
        return self._pixel_range

    @property
    def image_size(self) -> int:
        """Model input side in pixels."""
        return self.hparams.image_size

    @property
    def bands(self) -> Optional[List[int]]:
        """1-based band numbers read from each file (``None``: all)."""
        return self.hparams.bands

    def split_samples(self, split: str) -> List[Tuple[Path, int]]:
        """``(path, class index)`` pairs of ``'train'``, ``'val'`` or ``'test'``."""
        self._index()
        return list(self._splits[split])

    # Lightning hooks --------------------------------------------------------------------

    def setup(self, stage: Optional[str] = None) -> None:
        self._index()
        hparams = self.hparams
        common = dict(
            in_chans=self.in_chans,
            bands=hparams.bands,
            max_pixel_value=hparams.max_pixel_value,
            skip_bad_files=hparams.skip_bad_files,
        )
        train_transform = scene_train_transform(
            hparams.image_size,
            scale=tuple(hparams.crop_scale),
            flips=hparams.flips,
            color_jitter=hparams.color_jitter,
            rand_ops=hparams.rand_ops,
        )
        eval_transform = scene_eval_transform(hparams.image_size)
        self.datasets = {
            "train": SceneDataset(self._splits["train"], transform=train_transform, **common),
            "val": SceneDataset(self._splits["val"], transform=eval_transform, **common),
            "test": SceneDataset(self._splits["test"], transform=eval_transform, **common),
        }
        if hparams.predict_root is not None:
            unlabelled = [(path, -1) for path in sorted(_scan_images(hparams.predict_root))]
            self.datasets["predict"] = SceneDataset(unlabelled, transform=eval_transform, **common)
        else:
            self.datasets["predict"] = self.datasets["test"]

    def train_dataloader(self) -> DataLoader:
        dataset = self.datasets["train"]
        if len(dataset) == 0:
            raise ValueError("the training split is empty: check split (its first fraction) or train_list")
        seeds = AugmentationSeeds(dataset.transform).seed_from_torch()
        return self._loader(
            dataset, self.batch_size, shuffle=True, drop_last=len(dataset) > self.batch_size, worker_init_fn=seeds
        )

    def val_dataloader(self) -> Any:
        dataset = self.datasets["val"]
        return self._loader(dataset, self._eval_batch_size()) if len(dataset) else []

    def test_dataloader(self) -> DataLoader:
        dataset = self.datasets["test"]
        if len(dataset) == 0:
            raise ValueError("the test split is empty: check split (its last fraction) or test_list")
        return self._loader(dataset, self._eval_batch_size())

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["predict"], self._eval_batch_size())

    def on_after_batch_transfer(self, batch: Dict[str, Any], dataloader_idx: int) -> Dict[str, Any]:
        skipped = int(batch.pop("num_skipped", 0))
        if skipped:
            self.num_skipped += skipped
            rank_zero_warn(f"{self.num_skipped} unreadable image(s) skipped so far (skip_bad_files=True)")
        return batch

    # internals ----------------------------------------------------------------------------

    def _eval_batch_size(self) -> int:
        return self.hparams.eval_batch_size or self.batch_size

    def _loader(
        self,
        dataset: SceneDataset,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        worker_init_fn: Optional[AugmentationSeeds] = None,
    ) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            collate_fn=collate_scene_batch,
            worker_init_fn=worker_init_fn,
        )

    def _index(self) -> None:
        if self._splits is not None:
            return
        hparams = self.hparams
        problems: List[str] = []
        named: Dict[str, List[Sample]]
        if hparams.train_list is not None:
            sources = dict(zip(_SPLITS, (hparams.train_list, hparams.val_list, hparams.test_list)))
            named = {split: self._read_list(path, problems) if path else [] for split, path in sources.items()}
            everything = [sample for samples in named.values() for sample in samples]
        else:
            if hparams.sample_list is not None:
                everything = self._read_list(hparams.sample_list, problems)
                source = hparams.sample_list
            else:
                found = index_class_folders(hparams.root, hparams.label_level)
                everything = found.samples
                if found.empty_folders:
                    problems.append(
                        f"{len(found.empty_folders)} class folder(s) under {hparams.root} hold no image "
                        f"({', '.join(IMAGE_EXTENSIONS)}), so their classes would be missing: "
                        f"{shorten(found.empty_folders)}; add the images or remove the folders"
                    )
                source = hparams.root
            named = dict(zip(_SPLITS, stratified_split(everything, hparams.split, hparams.seed)))
            sources = dict.fromkeys(_SPLITS, source)
        found_names = sorted({label for _, label in everything})
        self._class_names = list(hparams.class_names) if hparams.class_names is not None else found_names
        problems.extend(self._class_problems(named, everything, sources))
        if problems:
            raise ValueError(
                f"scene data: {len(problems)} problem(s) found while reading the samples:\n- " + "\n- ".join(problems)
            )
        index = {name: position for position, name in enumerate(self._class_names)}
        self._splits = {split: [(path, index[label]) for path, label in samples] for split, samples in named.items()}
        rank_zero_info(
            f"scene data: {len(self._class_names)} classes; "
            + ", ".join(f"{split} {len(samples)}" for split, samples in self._splits.items())
            + " images"
        )

    def _read_list(self, list_file: str, problems: List[str]) -> List[Sample]:
        samples = read_sample_list(list_file, self.hparams.root, check_files=False)
        problem = missing_files_problem(list_file, samples, self.hparams.root)
        if problem is not None:
            problems.append(problem)
        return samples

    def _class_problems(
        self, named: Dict[str, List[Sample]], everything: List[Sample], sources: Dict[str, Optional[str]]
    ) -> List[str]:
        """Labels outside class_names and classes without training images (typos), with counts."""
        hparams = self.hparams
        totals = Counter(label for _, label in everything)
        per_split = {split: Counter(label for _, label in samples) for split, samples in named.items()}
        problems = []
        known = set(self._class_names)
        for split in named:
            unknown = sorted(set(per_split[split]) - known)
            if unknown:
                listed = ", ".join(f"'{name}' ({per_split[split][name]} image(s))" for name in unknown[:10])
                problems.append(
                    f"{sources[split]}: labels {listed}{' and more' if len(unknown) > 10 else ''} are not in "
                    f"class_names ({len(self._class_names)} names); add them to class_names or fix the labels"
                )
        train_wanted = hparams.train_list is not None or hparams.split[0] > 0
        starved = []
        for name in self._class_names if train_wanted else []:
            if per_split["train"][name] > 0:
                continue
            if totals[name] == 0:
                starved.append(f"class '{name}' (from class_names) has no image")
            elif hparams.train_list is not None:
                elsewhere = ", ".join(f"{split} {per_split[split][name]}" for split in _SPLITS[1:])
                starved.append(f"class '{name}' has {totals[name]} image(s), none in train_list ({elsewhere})")
            else:
                starved.append(
                    f"class '{name}' has {totals[name]} image(s), 0 after the split into train "
                    f"(split={list(hparams.split)})"
                )
        if starved:
            problems.append(
                f"{len(starved)} class(es) have no training image, so the model cannot learn them: "
                + "; ".join(starved)
                + f". Images per class: {_class_counts(totals, self._class_names)}. A class of one or two "
                "images is usually a label typo: fix the label (or the folder name), remove the class from "
                "class_names, or give it more images"
            )
        elif len(totals) > 1:
            typical = float(np.median(list(totals.values())))
            single = sorted(name for name, count in totals.items() if count == 1)
            if single and typical >= 5:
                rank_zero_warn(
                    f"scene data: class(es) {single[:10]} have a single image (the median class has "
                    f"{typical:g}); a label typo? Images per class: {_class_counts(totals, self._class_names)}"
                )
        return problems

    def _common_band_count(self) -> int:
        """Most common band count among up to 16 images spread over the samples."""
        self._index()
        samples = self._splits["train"] or self._splits["val"] or self._splits["test"]
        counts: Counter = Counter()
        for path, _ in samples[:: max(1, len(samples) // 16)]:
            try:
                counts[read_image(path, self.hparams.bands).shape[2]] += 1
            except ImageReadError as error:
                if not self.hparams.skip_bad_files:
                    raise ImageReadError(f"{error}. {_SKIP_HINT}") from error
        if not counts:
            raise ValueError("no readable image found to count the bands; set bands=[...]")
        return max(counts, key=lambda bands: (counts[bands], bands))

    def _band_stats(self) -> Tuple[List[float], List[float]]:
        if self._stats is None:
            self._index()
            dataset = SceneDataset(self._splits["train"], in_chans=self.in_chans, bands=self.hparams.bands)
            if len(dataset) == 0:
                raise ValueError("cannot compute mean/std: the training split is empty; give mean and std")
            count = min(len(dataset), self.hparams.stats_max_images)
            chosen = sorted(random.Random(self.hparams.seed).sample(range(len(dataset)), count))
            described: List[Dict[str, Any]] = []
            self._stats = band_statistics(_describing(self._readable_images(dataset, chosen), described))
            self._pixel_range = merge_pixel_ranges(described)
            rank_zero_info(
                f"scene data: per-band mean {[round(value, 3) for value in self._stats[0]]}, std "
                f"{[round(value, 3) for value in self._stats[1]]} from {count} training images "
                "(set data mean/std to reuse them)"
            )
        return self._stats

    def _describe_training_sample(self) -> Optional[Dict[str, Any]]:
        dataset = SceneDataset(self._splits["train"], in_chans=self.in_chans, bands=self.hparams.bands)
        count = min(len(dataset), _PIXEL_RANGE_IMAGES)
        chosen = np.unique(np.linspace(0, len(dataset) - 1, count).round().astype(int)).tolist()
        return merge_pixel_ranges(describe_pixels(image) for image in self._readable_images(dataset, chosen))

    def _readable_images(self, dataset: SceneDataset, indices: Sequence[int]) -> Iterator[np.ndarray]:
        for index in indices:
            try:
                yield dataset.read(index)
            except ImageReadError as error:
                if not self.hparams.skip_bad_files:
                    raise ImageReadError(f"{error}. {_SKIP_HINT}") from error


def _describing(images: Iterator[np.ndarray], described: List[Dict[str, Any]]) -> Iterator[np.ndarray]:
    """Pass ``images`` through, appending the ``describe_pixels`` of each to ``described``."""
    for image in images:
        described.append(describe_pixels(image))
        yield image


def _class_counts(totals: Counter, class_names: Sequence[str]) -> str:
    """``Airport 40, Airprot 1, ...``: every class (found or named) by name, so a typo sits next to its class."""
    names = sorted(set(totals) | set(class_names))
    shown = ", ".join(f"{name} {totals[name]}" for name in names[:_LISTED_CLASSES])
    return shown + (f" and {len(names) - _LISTED_CLASSES} more classes" if len(names) > _LISTED_CLASSES else "")


def _scan_images(root: str) -> List[Path]:
    folder = Path(root)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: predict_root folder not found")
    images = [path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()]
    if not images:
        raise FileNotFoundError(f"{folder}: no image files found for prediction")
    return images
