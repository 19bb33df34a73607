"""Image/mask tile folders (WHU building, Inria patches, SpaceNet masks) for ``BuildingTileDataModule``.

Layout: ``OUTPUT/<split>/<image_dir>/NAME.ext`` and ``OUTPUT/<split>/<mask_dir>/NAME.ext``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional

from tqdm import tqdm

from rsfm.data.buildings import BuildingTileDataset
from rsfm.data.io import IMAGE_EXTENSIONS
from rsfm.data.prepare.checks import QUARANTINE, find_failures, quarantine
from rsfm.data.prepare.report import Report, shorten
from rsfm.data.prepare.sources import Source, find_folder, place_file

__all__ = ["check_tile_split", "prepare_tile_pairs"]


def _images(folder: Path) -> List[Path]:
    return sorted(path for path in folder.iterdir() if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS)


def check_tile_split(split_dir: Path, image_dir: str, mask_dir: str, workers: int, output: Path, report: Report) -> int:
    """Pair images and masks by name, read every pair once, and move failing files aside.

    Files without a partner, pairs that cannot be read, masks with values other than 0/1 or
    0/255, and pairs of different sizes are moved to ``output/.unreadable/`` and reported by
    name. What stays is read by ``BuildingTileDataset`` (and so by the datamodule).

    Args:
        split_dir: e.g. ``OUTPUT/train``.
        image_dir, mask_dir: folder names inside ``split_dir``.
        workers: threads reading pairs.
        output: the prepared dataset root (where ``.unreadable`` goes).
        report: receives notes and problems.

    Returns:
        The number of good pairs.
    """
    images, masks = _images(split_dir / image_dir), _images(split_dir / mask_dir)
    image_names, mask_names = {path.stem for path in images}, {path.stem for path in masks}
    unpaired = [path for path in images if path.stem not in mask_names] + [
        path for path in masks if path.stem not in image_names
    ]
    if unpaired:
        quarantine(unpaired, output)
        report.problem(
            f"{split_dir.name}: {len(unpaired)} file(s) without a partner of the same name in "
            f"{image_dir}/ or {mask_dir}/, moved to {output / QUARANTINE}: "
            f"{shorten([path.relative_to(output) for path in unpaired])}"
        )
    dataset = BuildingTileDataset(split_dir / image_dir, split_dir / mask_dir)
    failures = find_failures(range(len(dataset)), dataset.__getitem__, workers, f"reading {split_dir.name} pairs")
    if failures:
        quarantine([path for index, _ in failures for path in dataset.pairs[index]], output)
        report.problem(
            f"{split_dir.name}: {len(failures)} pair(s) could not be used and were moved to "
            f"{output / QUARANTINE}: {shorten([message for _, message in failures])}"
        )
    return len(dataset) - len(failures)


def _split_score(splits: Mapping[str, Optional[int]], image_dir: str, mask_dir: str):
    def score(folder: Path) -> int:
        return sum((folder / split / image_dir).is_dir() and (folder / split / mask_dir).is_dir() for split in splits)

    return score


def prepare_tile_pairs(
    source: Source,
    output: Path,
    splits: Mapping[str, Optional[int]],
    image_dir: str,
    mask_dir: str,
    workers: int,
    partial: bool,
    report: Report,
) -> Dict[str, int]:
    """Place ``<split>/<image_dir>`` and ``<split>/<mask_dir>`` folders in ``output`` and check them.

    Args:
        source: the extracted download, holding ``<split>/<image_dir>`` and ``<split>/<mask_dir>``
            at any depth.
        output: the prepared dataset folder (empty).
        splits: split folder name -> published number of pairs (``None``: not published).
        image_dir, mask_dir: folder names of images and masks, kept as they are.
        workers: threads reading pairs.
        partial: report missing splits and count differences as notes, not problems.
        report: receives notes and problems.

    Returns:
        Good pairs per split found.

    Raises:
        PrepareError: no folder holding the split folders is found.
    """
    what = f"{'/'.join(splits)} folders with {image_dir}/ and {mask_dir}/"
    root = find_folder(source.folder, _split_score(splits, image_dir, mask_dir), what, len(splits))
    counts: Dict[str, int] = {}
    for split, published in splits.items():
        if not (root / split / image_dir).is_dir():
            report.mismatch(f"split {split}/ is missing under {root}", partial)
            continue
        for folder in (image_dir, mask_dir):
            for path in tqdm(_images(root / split / folder), desc=f"{source.transfer} {split}/{folder}", unit="file"):
                place_file(path, output / split / folder / path.name, source.transfer)
        found = len(_images(output / split / image_dir))
        counts[split] = check_tile_split(output / split, image_dir, mask_dir, workers, output, report)
        report.note(f"{split}: {counts[split]} image/mask pairs in {output / split}")
        if published is not None and found != published:
            report.mismatch(f"{split}: {found} images, the published dataset has {published}", partial)
    return counts
