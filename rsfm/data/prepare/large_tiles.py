"""Large labelled GeoTIFF tiles named ``<area><number>.tif`` (Inria), kept whole or cut into patches.

Source layout: ``train/<image_dir>/NAME.tif`` with masks ``train/<mask_dir>/NAME.tif`` and
unlabelled ``test/<image_dir>/NAME.tif``. Tiles whose number is in ``val_numbers`` form the
validation split. The prepared folder holds ``<split>/images`` and ``<split>/masks`` (whole
tiles for ``BuildingGeoDataModule`` or ``rsfm predict-raster``, or patches for
``BuildingTileDataModule``), and ``test/images`` (whole tiles, no masks).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import AbstractSet, Dict, List, Mapping, Optional, Sequence, Tuple

import rasterio
from tqdm import tqdm

from rsfm.data.buildings import BuildingTileDataset, read_mask
from rsfm.data.io import read_image
from rsfm.data.prepare.checks import find_failures
from rsfm.data.prepare.rasters import check_same_grid, write_patches
from rsfm.data.prepare.report import PrepareError, Report, shorten
from rsfm.data.prepare.sources import Source, find_folder, place_file

__all__ = ["TILE_MODES", "prepare_large_tiles"]

TILE_MODES = ("rasters", "patches")
_TILE_NAME = re.compile(r"^(?P<area>.*?)(?P<number>\d+)$")


def _tif_files(folder: Path) -> List[Path]:
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.suffix.lower() in (".tif", ".tiff"))


def _check_pair(pair: Tuple[Path, Path]) -> None:
    image, mask = pair
    check_same_grid(image, mask)
    read_image(image)
    read_mask(mask)


def _area_crs(images: Sequence[Path]) -> Dict[str, set]:
    crs_by_area = defaultdict(set)
    for image in images:
        with rasterio.open(image) as src:
            crs_by_area[_TILE_NAME.match(image.stem).group("area")].add(str(src.crs))
    return crs_by_area


def prepare_large_tiles(
    source: Source,
    output: Path,
    image_dir: str,
    mask_dir: str,
    val_numbers: AbstractSet[int],
    mode: str,
    patch_size: int,
    areas: Optional[Sequence[str]],
    published: Mapping[str, int],
    workers: int,
    partial: bool,
    report: Report,
) -> Counter:
    """Check the labelled tiles, split them by tile number and write rasters or patches.

    Args:
        source: the extracted download (``train/`` and ``test/`` at any depth).
        output: the prepared dataset folder (empty).
        image_dir, mask_dir: source folder names (Inria: ``images`` and ``gt``).
        val_numbers: tile numbers that go to validation (Inria convention: 1-5 of each area).
        mode: ``rasters`` (whole tiles) or ``patches`` (``patch_size`` GeoTIFF patches).
        patch_size: patch side in pixels.
        areas: keep only these areas (e.g. ``austin``); ``None`` keeps all.
        published: published tile counts of ``train`` (labelled) and ``test``.
        workers: threads reading tiles.
        partial: report count differences as notes, not problems.
        report: receives notes and problems.

    Returns:
        Tiles per output split.

    Raises:
        PrepareError: no ``train/<image_dir>`` folder, an unknown mode, or a tile name without
            a number.
    """
    if mode not in TILE_MODES:
        raise PrepareError(f"--mode must be one of {TILE_MODES}, got {mode!r}")
    root = find_folder(
        source.folder,
        lambda folder: int((folder / "train" / image_dir).is_dir()) + int((folder / "train" / mask_dir).is_dir()),
        f"train/{image_dir} and train/{mask_dir}",
        perfect=2,
    )
    labelled, unlabelled = _tif_files(root / "train" / image_dir), _tif_files(root / "test" / image_dir)
    for split, files in (("train", labelled), ("test", unlabelled)):
        if split in published and len(files) != published[split]:
            message = f"{split}/{image_dir}: {len(files)} tiles, the published dataset has {published[split]}"
            report.mismatch(message, partial)
    unnamed = [path.name for path in labelled + unlabelled if not _TILE_NAME.match(path.stem)]
    if unnamed:
        raise PrepareError(f"{root}: tile names without a number (expected <area><number>.tif): {shorten(unnamed)}")
    if areas is not None:
        labelled = [path for path in labelled if _TILE_NAME.match(path.stem).group("area") in areas]
        unlabelled = [path for path in unlabelled if _TILE_NAME.match(path.stem).group("area") in areas]
        if not labelled:
            raise PrepareError(f"no labelled tile of the areas {list(areas)} in {root / 'train' / image_dir}")
    pairs = [(image, root / "train" / mask_dir / image.name) for image in labelled]
    missing = [image.name for image, mask in pairs if not mask.is_file()]
    if missing:
        report.problem(f"{len(missing)} tile(s) have no mask in train/{mask_dir} and were left out: {shorten(missing)}")
    pairs = [(image, mask) for image, mask in pairs if mask.is_file()]
    failures = find_failures(pairs, _check_pair, workers, "reading tiles and masks")
    if failures:
        messages = [message for _, message in failures]
        report.problem(f"{len(failures)} tile pair(s) could not be used and were left out: {shorten(messages)}")
    bad = {pair for pair, _ in failures}
    pairs = [pair for pair in pairs if pair not in bad]
    crs_by_area = _area_crs([image for image, _ in pairs])
    report.note("CRS per area: " + "; ".join(f"{area} {', '.join(sorted(crs))}" for area, crs in crs_by_area.items()))
    if mode == "rasters" and len(set().union(*crs_by_area.values())) > 1:
        report.note(
            "the areas use different CRSs: the geo datamodule reprojects everything to one CRS, so train "
            "it on one area at a time (--areas) or use --mode patches for all areas together"
        )
    tiles: Counter = Counter()
    for image, mask in tqdm(pairs, desc=f"writing {mode}", unit="tile"):
        split = "val" if int(_TILE_NAME.match(image.stem).group("number")) in val_numbers else "train"
        if mode == "rasters":
            place_file(image, output / split / "images" / image.name, source.transfer)
            place_file(mask, output / split / "masks" / mask.name, source.transfer)
        else:
            write_patches(image, output / split / "images", patch_size)
            write_patches(mask, output / split / "masks", patch_size)
        tiles[split] += 1
    for image in tqdm(unlabelled, desc="test tiles", unit="tile"):
        place_file(image, output / "test" / "images" / image.name, source.transfer)
        tiles["test"] += 1
    for split in ("train", "val"):
        if tiles[split] and mode == "patches":
            patches = len(BuildingTileDataset(output / split / "images", output / split / "masks"))
            report.note(f"{split}: {tiles[split]} tiles -> {patches} image/mask patches of {patch_size} px")
    report.note(f"tiles: train {tiles['train']}, val {tiles['val']}, test {tiles['test']} (unlabelled) in {output}")
    return tiles
