"""Prepare Million-AID (Long et al., JSTARS 2021) for rsfm's SceneDataModule (RSP pretraining).

Reads the labelled Million-AID tree (train.zip from https://captain-whu.github.io/DiRS/, or
the folder it was extracted to; extract .rar parts first) holding
<level-1>/<level-2>/[<level-3>/]<image>.jpg: 8 level-1, 28 level-2 and 51 leaf classes
(some level-2 classes have no third level; their level-2 folder is the leaf). Writes
OUTPUT/<level-1>/<level-2>/[<level-3>/]*.jpg, a stratified seeded train/val split at the
chosen label level (split_level<N>_seed<S>_{train,val}.csv) and MANIFEST.sha256. See
datasets/millionaid/README.md.
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from rsfm.data.prepare import (
    PublishedChecksum,
    Report,
    SceneDatasetSpec,
    Source,
    SplitProtocol,
    build_parser,
    prepare_scene_dataset,
    run,
)
from rsfm.data.prepare.report import shorten
from rsfm.data.samples import scan_class_folders

LEVEL1_NAMES = (
    "agriculture_land", "commercial_land", "industrial_land", "public_service_land",
    "residential_land", "transportation_land", "unutilized_land", "water_area",
)  # fmt: skip
LEVEL2_COUNT = 28
LEAF_NAMES = (
    "apartment", "apron", "bare_land", "baseball_field", "basketball_court", "beach", "bridge", "cemetery",
    "church", "commercial_area", "dam", "desert", "detached_house", "dry_field", "forest", "golf_course",
    "greenhouse", "ground_track_field", "helipad", "ice_land", "intersection", "island", "lake", "meadow",
    "mine", "mobile_home_park", "oil_field", "orchard", "paddy_field", "parking_lot", "pier", "quarry",
    "railway", "river", "road", "rock_land", "roundabout", "runway", "solar_power_plant",
    "sparse_shrub_land", "stadium", "storage_tank", "substation", "swimming_pool", "tennis_court",
    "terraced_field", "train_station", "viaduct", "wastewater_plant", "wind_turbine", "works",
)  # fmt: skip

# --label-level -> scan_class_folders label_level: 3 is the leaf folder, whatever its depth
SCAN_LEVEL = {1: 1, 2: 2, 3: -1}

PUBLISHED = (
    PublishedChecksum(
        "train.zip", "md5", "1b40503cafa9b0601653ca36cd788852", "torchgeo 0.8.1 (MillionAID.md5s['train'])"
    ),
)

EXAMPLE = """  python datasets/millionaid/prepare.py ~/Downloads/train.zip --output data/millionaid
  python datasets/millionaid/prepare.py ~/Downloads/train.zip --output data/millionaid_l1 --label-level 1
  python datasets/millionaid/prepare.py --verify --output data/millionaid"""


def check_hierarchy(output: Path, partial: bool, report: Report) -> None:
    """Compare the level-2 count and the leaf class names with the published hierarchy."""
    level2 = {label for _, label in scan_class_folders(output, 2)}
    leaves = {label for _, label in scan_class_folders(output, -1)}
    if len(level2) != LEVEL2_COUNT:
        report.mismatch(f"{len(level2)} level-2 classes, the published hierarchy has {LEVEL2_COUNT}", partial)
    missing, unexpected = sorted(set(LEAF_NAMES) - leaves), sorted(leaves - set(LEAF_NAMES))
    if missing:
        message = f"{len(missing)} of the {len(LEAF_NAMES)} leaf classes are missing: {shorten(missing)}"
        report.mismatch(message, partial)
    if unexpected:
        report.problem(f"{len(unexpected)} leaf folder(s) are not Million-AID classes: {shorten(unexpected)}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 data problems, 2 error)."""
    parser = build_parser("datasets/millionaid/prepare.py", __doc__, EXAMPLE, seeds=True)
    parser.add_argument(
        "--label-level", type=int, choices=(1, 2, 3), default=3,
        help="class level of the lists: 1 (8 classes), 2 (28) or 3 (51 leaf classes; default)",
    )  # fmt: skip
    parser.add_argument(
        "--val-fraction", type=float, default=0.1, help="share of each class held out for validation (default 0.1)"
    )

    def prepare(args: argparse.Namespace, sources: List[Source], report: Report) -> None:
        if not 0 < args.val_fraction < 1:
            raise ValueError(f"--val-fraction must be between 0 and 1, got {args.val_fraction}")
        name, val = f"level{args.label_level}", args.val_fraction
        protocol = SplitProtocol(name, train=1 - val, val=val, test=0.0)
        spec = SceneDatasetSpec(name="Million-AID", class_names=LEVEL1_NAMES, protocols=(protocol,))
        level = SCAN_LEVEL[args.label_level]
        prepare_scene_dataset(spec, sources[0], args.output, args.seeds, level, args.workers, args.partial, report)
        check_hierarchy(args.output, args.partial, report)

    return run(parser, prepare, "Million-AID", PUBLISHED, argv)


if __name__ == "__main__":
    sys.exit(main())
