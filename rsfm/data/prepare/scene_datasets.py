"""The published scene datasets, one ``SceneDatasetSpec`` each, and their preparation command.

``datasets/<name>/prepare.py`` is ``scene_dataset_main("<name>")``: everything that differs
between AID, UC Merced, NWPU-RESISC45 and Million-AID (classes, published counts and
checksums, split protocols, label levels, the ``--help`` text) is data in ``SCENE_DATASETS``.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Dict, List, Optional, Sequence

from rsfm.data.prepare.checksums import PublishedChecksum
from rsfm.data.prepare.report import Report
from rsfm.data.prepare.runner import build_parser, run
from rsfm.data.prepare.scene import LabelLevel, SceneDatasetSpec, prepare_scene_dataset
from rsfm.data.prepare.sources import Source
from rsfm.data.prepare.splits import SplitProtocol

__all__ = ["SCENE_DATASETS", "scene_dataset_main"]

# Xia et al. 2017, Table II: images per class (10,000 in all)
_AID_IMAGES_PER_CLASS = {
    "Airport": 360, "BareLand": 310, "BaseballField": 220, "Beach": 400, "Bridge": 360,
    "Center": 260, "Church": 240, "Commercial": 350, "DenseResidential": 410, "Desert": 300,
    "Farmland": 370, "Forest": 250, "Industrial": 390, "Meadow": 280, "MediumResidential": 290,
    "Mountain": 340, "Park": 350, "Parking": 390, "Playground": 370, "Pond": 420,
    "Port": 380, "RailwayStation": 260, "Resort": 290, "River": 410, "School": 300,
    "SparseResidential": 300, "Square": 330, "Stadium": 290, "StorageTanks": 360, "Viaduct": 420,
}  # fmt: skip

_UCM_CLASSES = (
    "agricultural", "airplane", "baseballdiamond", "beach", "buildings", "chaparral", "denseresidential",
    "forest", "freeway", "golfcourse", "harbor", "intersection", "mediumresidential", "mobilehomepark",
    "overpass", "parkinglot", "river", "runway", "sparseresidential", "storagetanks", "tenniscourt",
)  # fmt: skip

_NWPU_CLASSES = (
    "airplane", "airport", "baseball_diamond", "basketball_court", "beach", "bridge", "chaparral", "church",
    "circular_farmland", "cloud", "commercial_area", "dense_residential", "desert", "forest", "freeway",
    "golf_course", "ground_track_field", "harbor", "industrial_area", "intersection", "island", "lake",
    "meadow", "medium_residential", "mobile_home_park", "mountain", "overpass", "palace", "parking_lot",
    "railway", "railway_station", "rectangular_farmland", "river", "roundabout", "runway", "sea_ice", "ship",
    "snowberg", "sparse_residential", "stadium", "storage_tank", "tennis_court", "terrace",
    "thermal_power_station", "wetland",
)  # fmt: skip

_MILLIONAID_LEVEL1 = (
    "agriculture_land", "commercial_land", "industrial_land", "public_service_land",
    "residential_land", "transportation_land", "unutilized_land", "water_area",
)  # fmt: skip
_MILLIONAID_LEAVES = (
    "apartment", "apron", "bare_land", "baseball_field", "basketball_court", "beach", "bridge", "cemetery",
    "church", "commercial_area", "dam", "desert", "detached_house", "dry_field", "forest", "golf_course",
    "greenhouse", "ground_track_field", "helipad", "ice_land", "intersection", "island", "lake", "meadow",
    "mine", "mobile_home_park", "oil_field", "orchard", "paddy_field", "parking_lot", "pier", "quarry",
    "railway", "river", "road", "rock_land", "roundabout", "runway", "solar_power_plant",
    "sparse_shrub_land", "stadium", "storage_tank", "substation", "swimming_pool", "tennis_court",
    "terraced_field", "train_station", "viaduct", "wastewater_plant", "wind_turbine", "works",
)  # fmt: skip

# keyed by the folder of the script: datasets/<key>/prepare.py
SCENE_DATASETS: Dict[str, SceneDatasetSpec] = {
    "aid": SceneDatasetSpec(
        name="AID",
        class_names=tuple(_AID_IMAGES_PER_CLASS),
        images_per_class=_AID_IMAGES_PER_CLASS,
        protocols=(
            SplitProtocol("2-8", train=0.2, val=0.0, test=0.8),
            SplitProtocol("5-5", train=0.5, val=0.0, test=0.5),
        ),
        description="""\
Prepare AID (Aerial Image Dataset; Xia et al., TGRS 2017) for rsfm's SceneDataModule.

Reads AID.zip from https://captain-whu.github.io/AID/ (or the folder it was extracted to)
and writes OUTPUT/<Class>/<class>_<n>.jpg (30 classes, 10,000 600x600 JPEGs), split lists
for the 2:8 and 5:5 protocols (20 % / 50 % of each class for training, the rest for
testing; stratified, seeded) and MANIFEST.sha256. See datasets/aid/README.md.""",
        example="""\
  python datasets/aid/prepare.py ~/Downloads/AID.zip --output data/aid
  python datasets/aid/prepare.py ~/Downloads/AID.zip --output data/aid --seeds 0 1 2 3 4
  python datasets/aid/prepare.py --verify --output data/aid""",
    ),
    "ucm": SceneDatasetSpec(
        name="UCM",
        class_names=_UCM_CLASSES,
        images_per_class=dict.fromkeys(_UCM_CLASSES, 100),
        protocols=(SplitProtocol("8-2", train=0.8, val=0.0, test=0.2),),
        published=(
            PublishedChecksum(
                "UCMerced_LandUse.zip",
                "md5",
                "5b7ec56793786b6dc8a908e8854ac0e4",
                "torchgeo 0.8.1 (torchgeo.datasets.UCMerced.md5)",
            ),
        ),
        description="""\
Prepare UC Merced Land Use (UCM; Yang and Newsam, ACM SIGSPATIAL 2010) for rsfm's SceneDataModule.

Reads UCMerced_LandUse.zip from http://weegee.vision.ucmerced.edu/datasets/landuse.html (or
the folder it was extracted to) and writes OUTPUT/<class>/<class><nn>.tif (21 classes x 100
RGB TIFFs of about 256x256 px, 0.3 m), split lists for the 8:2 protocol (80 % of each class
for training, 20 % for testing; stratified, seeded) and MANIFEST.sha256. See
datasets/ucm/README.md.""",
        example="""\
  python datasets/ucm/prepare.py ~/Downloads/UCMerced_LandUse.zip --output data/ucm
  python datasets/ucm/prepare.py --verify --output data/ucm""",
    ),
    "nwpu_resisc45": SceneDatasetSpec(
        name="NWPU-RESISC45",
        class_names=_NWPU_CLASSES,
        images_per_class=dict.fromkeys(_NWPU_CLASSES, 700),
        protocols=(
            SplitProtocol("1-9", train=0.1, val=0.0, test=0.9),
            SplitProtocol("2-8", train=0.2, val=0.0, test=0.8),
        ),
        published=(
            PublishedChecksum(
                "NWPU-RESISC45.zip",
                "md5",
                "75206b2e16446591afa88e2628744886",
                "torchgeo 0.8.1 for its Hugging Face copy (torchgeo.datasets.RESISC45.md5)",
            ),
        ),
        description="""\
Prepare NWPU-RESISC45 (Cheng et al., Proc. IEEE 2017) for rsfm's SceneDataModule.

The official download is NWPU-RESISC45.rar: extract it first (unrar x NWPU-RESISC45.rar, or
7z x NWPU-RESISC45.rar) and pass the folder; a .zip repackaging (e.g. the one torchgeo
downloads) is read directly. Writes OUTPUT/<class>/<class>_<nnn>.jpg (45 classes x 700
256x256 JPEGs), split lists for the 1:9 and 2:8 protocols (10 % / 20 % of each class for
training, the rest for testing; stratified, seeded) and MANIFEST.sha256. See
datasets/nwpu_resisc45/README.md.""",
        example="""\
  unrar x ~/Downloads/NWPU-RESISC45.rar ~/Downloads/     # or 7z x NWPU-RESISC45.rar
  python datasets/nwpu_resisc45/prepare.py ~/Downloads/NWPU-RESISC45 --output data/nwpu_resisc45
  python datasets/nwpu_resisc45/prepare.py --verify --output data/nwpu_resisc45""",
    ),
    "millionaid": SceneDatasetSpec(
        name="Million-AID",
        class_names=_MILLIONAID_LEVEL1,
        published=(
            PublishedChecksum(
                "train.zip", "md5", "1b40503cafa9b0601653ca36cd788852", "torchgeo 0.8.1 (MillionAID.md5s['train'])"
            ),
        ),
        # some level-2 classes have no third level: their level-2 folder is the leaf
        label_levels=(
            LabelLevel(1, folder_level=1, title="level-1", class_count=8, class_names=_MILLIONAID_LEVEL1),
            LabelLevel(2, folder_level=2, title="level-2", class_count=28),
            LabelLevel(3, folder_level=-1, title="leaf", class_count=51, class_names=_MILLIONAID_LEAVES),
        ),
        val_fraction=0.1,
        description="""\
Prepare Million-AID (Long et al., JSTARS 2021) for rsfm's SceneDataModule (RSP pretraining).

Reads the labelled Million-AID tree (train.zip from https://captain-whu.github.io/DiRS/, or
the folder it was extracted to; extract .rar parts first) holding
<level-1>/<level-2>/[<level-3>/]<image>.jpg: 8 level-1, 28 level-2 and 51 leaf classes
(some level-2 classes have no third level; their level-2 folder is the leaf). Writes
OUTPUT/<level-1>/<level-2>/[<level-3>/]*.jpg, a stratified seeded train/val split at the
chosen label level (split_level<N>_seed<S>_{train,val}.csv) and MANIFEST.sha256. See
datasets/millionaid/README.md.""",
        example="""\
  python datasets/millionaid/prepare.py ~/Downloads/train.zip --output data/millionaid
  python datasets/millionaid/prepare.py ~/Downloads/train.zip --output data/millionaid_l1 --label-level 1
  python datasets/millionaid/prepare.py --verify --output data/millionaid""",
    ),
}


def _open_fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


def _add_label_level_options(parser: argparse.ArgumentParser, spec: SceneDatasetSpec) -> None:
    default = spec.label_levels[-1]
    choices = ", ".join(f"{level.number} ({level.class_count} {level.title} classes)" for level in spec.label_levels)
    parser.add_argument(
        "--label-level", type=int, choices=[level.number for level in spec.label_levels], default=default.number,
        help=f"class level of the lists: {choices}; default {default.number}",
    )  # fmt: skip
    parser.add_argument(
        "--val-fraction", type=_open_fraction, default=spec.val_fraction,
        help=f"share of each class held out for validation (default {spec.val_fraction})",
    )  # fmt: skip


def scene_dataset_main(name: str, argv: Optional[Sequence[str]] = None) -> int:
    """The command line of ``datasets/<name>/prepare.py`` for the scene dataset ``SCENE_DATASETS[name]``.

    Args:
        name: key of ``SCENE_DATASETS``, the script's folder under ``datasets/``, e.g. ``aid``.
        argv: arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 ok, 1 data problems (listed), 2 the data cannot be prepared.

    Raises:
        KeyError: ``name`` is not a registered scene dataset.
    """
    if name not in SCENE_DATASETS:
        raise KeyError(f"{name!r} is not a scene dataset; registered: {', '.join(sorted(SCENE_DATASETS))}")
    spec = SCENE_DATASETS[name]
    parser = build_parser(f"datasets/{name}/prepare.py", spec.description, spec.example, seeds=True)
    levels = {level.number: level for level in spec.label_levels}
    if levels:
        _add_label_level_options(parser, spec)

    def prepare(args: argparse.Namespace, sources: List[Source], report: Report) -> None:
        dataset, folder_level = spec, -1
        if levels:
            level, val = levels[args.label_level], args.val_fraction
            protocol = SplitProtocol(f"level{level.number}", train=1 - val, val=val, test=0.0)
            dataset, folder_level = dataclasses.replace(spec, protocols=(protocol,)), level.folder_level
        prepare_scene_dataset(
            dataset, sources[0], args.output, args.seeds, folder_level, args.workers, args.partial, report
        )

    return run(parser, prepare, spec.name, spec.published, argv)
