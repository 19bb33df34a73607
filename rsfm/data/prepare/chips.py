"""Image chips with one footprint file per chip (SpaceNet) for the geo or the tile datamodule.

Images are ``.../<product>/<product>_<chip>.tif`` and labels ``<prefix>_<location>.geojson``,
where ``<chip>`` ends with ``<location>`` (SpaceNet 2: ``AOI_2_Vegas_img1``; SpaceNet 4:
``Atlanta_nadir7_catid_<id>_733601_3724689`` with location ``733601_3724689``, shared by the
27 collects of the same place). The prepared folder holds ``<split>/images/<chip>.tif`` and
either ``<split>/labels/<chip>.geojson`` (vectors, for ``BuildingGeoDataModule``) or
``<split>/masks/<chip>.tif`` (0/1 masks on the chip grid, for ``BuildingTileDataModule``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import rasterio
from tqdm import tqdm

from rsfm.data.buildings import BuildingTileDataset
from rsfm.data.io import read_image
from rsfm.data.prepare.checks import find_failures
from rsfm.data.prepare.rasters import rasterize_footprints
from rsfm.data.prepare.report import PrepareError, Report, shorten
from rsfm.data.prepare.sources import Source, place_file
from rsfm.data.samples import stratified_split

__all__ = ["Chip", "pair_chips", "prepare_chips"]

LABEL_MODES = ("vectors", "masks")


@dataclass(frozen=True)
class Chip:
    """One image chip and the footprint file of its location."""

    name: str
    image: Path
    labels: Path
    location: str


def _find_images(sources: Sequence[Source], product: Optional[str]) -> Tuple[str, List[Path]]:
    rasters = [path for source in sources for path in sorted(source.folder.rglob("*.tif"))]
    products = Counter(path.parent.name for path in rasters if path.stem.startswith(f"{path.parent.name}_"))
    if product is None:
        if len(products) != 1:
            found = shorten(sorted(products)) if products else "none"
            raise PrepareError(
                f"choose the imagery product with --product (found: {found}); "
                "an image lies in <product>/<product>_<chip>.tif"
            )
        product = next(iter(products))
    images = [path for path in rasters if path.parent.name == product]
    if not images:
        raise PrepareError(
            f"no {product}/ folder of .tif chips in the sources (products found: {shorten(sorted(products))})"
        )
    return product, images


def pair_chips(images: Sequence[Path], labels: Sequence[Path], product: str) -> Tuple[List[Chip], List[Path]]:
    """Match each image with the label file whose location its chip name ends with.

    A label file ``<prefix>_<location>.geojson`` has location = its name after the first
    ``_``; the longest matching location wins.

    Returns:
        (chips, images without a label file).
    """
    by_location = {path.stem.partition("_")[2]: path for path in labels}
    chips, unpaired = [], []
    for image in images:
        name = image.stem[len(product) + 1 :] if image.stem.startswith(f"{product}_") else image.stem
        parts = name.split("_")
        suffixes = ("_".join(parts[start:]) for start in range(len(parts)))
        location = next((suffix for suffix in suffixes if suffix in by_location), None)
        if location is None:
            unpaired.append(image)
        else:
            chips.append(Chip(name, image, by_location[location], location))
    return chips, unpaired


def _read_chips(chips: Sequence[Chip], workers: int, report: Report) -> Tuple[List[Chip], Dict[Path, int]]:
    """Read every image and footprint file once.

    Returns:
        (the chips that read, footprints per label file); failing chips are reported by name.
    """
    import geopandas

    counts: Dict[Path, int] = {}

    def check(chip: Chip) -> None:
        read_image(chip.image)
        with rasterio.open(chip.image) as src:
            if src.crs is None:
                raise ValueError(f"{chip.image}: has no CRS; the geo datamodule needs georeferenced chips")
        try:
            counts[chip.labels] = len(geopandas.read_file(chip.labels))
        except Exception as error:  # pyogrio/GDAL raise many types; the message must name the file
            raise ValueError(f"{chip.labels}: cannot read footprints ({type(error).__name__}: {error})") from error

    failures = find_failures(chips, check, workers, "reading chips and footprints")
    if failures:
        messages = [message for _, message in failures]
        report.problem(f"{len(failures)} chip(s) could not be read and were left out: {shorten(messages)}")
    failed = {chip.name for chip, _ in failures}
    return [chip for chip in chips if chip.name not in failed], counts


def _check_one_chip_per_location(chips: Sequence[Chip]) -> None:
    per_location = defaultdict(list)
    for chip in chips:
        per_location[chip.location].append(chip.name)
    shared = {location: names for location, names in per_location.items() if len(names) > 1}
    if shared:
        example = next(iter(shared.values()))
        raise PrepareError(
            f"{len(shared)} location(s) have chips from several collects (e.g. {shorten(example, 3)}); torchgeo "
            "mosaics overlapping rasters, so the geo datamodule would see only one of them. Choose one "
            "collect with --collect, or pass --labels masks to keep every collect as its own tile"
        )


def prepare_chips(
    sources: Sequence[Source],
    output: Path,
    product: Optional[str],
    collect: Optional[str],
    label_mode: str,
    val_fraction: float,
    seed: int,
    workers: int,
    report: Report,
) -> Dict[str, int]:
    """Pair chips with footprints, split them by location and write the chosen layout.

    Args:
        sources: extracted imagery and label archives.
        output: the prepared dataset folder (empty).
        product: imagery folder name, e.g. ``RGB-PanSharpen`` or ``Pan-Sharpen``; ``None``
            picks the only one present.
        collect: keep only images whose name contains this (a SpaceNet 4 collect, e.g.
            ``nadir7_catid_1030010003D22F00``).
        label_mode: ``vectors`` (copy the GeoJSON) or ``masks`` (burn it into 0/1 GeoTIFFs).
        val_fraction: share of locations held out for validation (seeded, all chips of a
            location in the same split).
        seed: split seed.
        workers: threads reading chips.
        report: receives notes and problems.

    Returns:
        Chips per split.

    Raises:
        PrepareError: no product/labels found, an invalid option, or (vectors) several
            collects of one location.
    """
    if label_mode not in LABEL_MODES:
        raise PrepareError(f"--labels must be one of {LABEL_MODES}, got {label_mode!r}")
    if not 0 <= val_fraction < 1:
        raise PrepareError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    product, images = _find_images(sources, product)
    if collect is not None:
        images = [image for image in images if collect in image.stem]
        if not images:
            raise PrepareError(f"no {product} image name contains --collect {collect!r}")
    labels = [path for source in sources for path in sorted(source.folder.rglob("*.geojson"))]
    if not labels:
        raise PrepareError("no .geojson footprint files in the sources; pass the label archive as well")
    chips, unpaired = pair_chips(images, labels, product)
    report.note(f"{len(chips)} {product} chips paired with footprints from {len(labels)} label files")
    if unpaired:
        names = [path.name for path in unpaired]
        report.problem(f"{len(unpaired)} image(s) have no footprint file and were left out: {shorten(names)}")
    if label_mode == "vectors":
        _check_one_chip_per_location(chips)
    chips, counts = _read_chips(chips, workers, report)
    locations = sorted({chip.location for chip in chips})
    places = [(Path(location), "chips") for location in locations]
    train, val = stratified_split(places, [1 - val_fraction, val_fraction], seed)
    split_of = {str(path): "train" for path, _ in train} | {str(path): "val" for path, _ in val}
    transfers = {source.transfer for source in sources}
    transfer = transfers.pop() if len(transfers) == 1 else "copy"
    per_split: Counter = Counter()
    for chip in tqdm(chips, desc=f"writing {label_mode}", unit="chip"):
        split = split_of[chip.location]
        image = output / split / "images" / f"{chip.name}.tif"
        place_file(chip.image, image, transfer)
        if label_mode == "vectors":
            place_file(chip.labels, output / split / "labels" / f"{chip.name}.geojson", "copy")
        else:
            rasterize_footprints(chip.labels, image, output / split / "masks" / f"{chip.name}.tif")
        per_split[split] += 1
    empty = sum(1 for chip in chips if counts[chip.labels] == 0)
    counts_text = f"train {per_split['train']} / val {per_split['val']} chips"
    report.note(f"{counts_text} ({len(locations)} locations, seed {seed}) in {output}")
    if empty and label_mode == "vectors":
        report.note(
            f"{empty} chip(s) have no buildings: torchgeo indexes a footprint file by the extent of its "
            "features, so the geo datamodule never samples them (--labels masks keeps them as background tiles)"
        )
    if label_mode == "masks":
        for split in per_split:
            BuildingTileDataset(output / split / "images", output / split / "masks")
    return dict(per_split)
