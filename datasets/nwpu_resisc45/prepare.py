"""Prepare NWPU-RESISC45 (Cheng et al., Proc. IEEE 2017) for rsfm's SceneDataModule.

The official download is NWPU-RESISC45.rar: extract it first (unrar x NWPU-RESISC45.rar, or
7z x NWPU-RESISC45.rar) and pass the folder; a .zip repackaging (e.g. the one torchgeo
downloads) is read directly. Writes OUTPUT/<class>/<class>_<nnn>.jpg (45 classes x 700
256x256 JPEGs), split lists for the 1:9 and 2:8 protocols (10 % / 20 % of each class for
training, the rest for testing; stratified, seeded) and MANIFEST.sha256. See
datasets/nwpu_resisc45/README.md.
"""

import argparse
import sys
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

CLASS_NAMES = (
    "airplane", "airport", "baseball_diamond", "basketball_court", "beach", "bridge", "chaparral", "church",
    "circular_farmland", "cloud", "commercial_area", "dense_residential", "desert", "forest", "freeway",
    "golf_course", "ground_track_field", "harbor", "industrial_area", "intersection", "island", "lake",
    "meadow", "medium_residential", "mobile_home_park", "mountain", "overpass", "palace", "parking_lot",
    "railway", "railway_station", "rectangular_farmland", "river", "roundabout", "runway", "sea_ice", "ship",
    "snowberg", "sparse_residential", "stadium", "storage_tank", "tennis_court", "terrace",
    "thermal_power_station", "wetland",
)  # fmt: skip

SPEC = SceneDatasetSpec(
    name="NWPU-RESISC45",
    class_names=CLASS_NAMES,
    images_per_class=dict.fromkeys(CLASS_NAMES, 700),
    protocols=(SplitProtocol("1-9", train=0.1, val=0.0, test=0.9), SplitProtocol("2-8", train=0.2, val=0.0, test=0.8)),
)

PUBLISHED = (
    PublishedChecksum(
        "NWPU-RESISC45.zip",
        "md5",
        "75206b2e16446591afa88e2628744886",
        "torchgeo 0.8.1 for its Hugging Face copy (torchgeo.datasets.RESISC45.md5)",
    ),
)

EXAMPLE = """  unrar x ~/Downloads/NWPU-RESISC45.rar ~/Downloads/     # or 7z x NWPU-RESISC45.rar
  python datasets/nwpu_resisc45/prepare.py ~/Downloads/NWPU-RESISC45 --output data/nwpu_resisc45
  python datasets/nwpu_resisc45/prepare.py --verify --output data/nwpu_resisc45"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 data problems, 2 error)."""
    parser = build_parser("datasets/nwpu_resisc45/prepare.py", __doc__, EXAMPLE, seeds=True)

    def prepare(args: argparse.Namespace, sources: List[Source], report: Report) -> None:
        prepare_scene_dataset(SPEC, sources[0], args.output, args.seeds, -1, args.workers, args.partial, report)

    return run(parser, prepare, "NWPU-RESISC45", PUBLISHED, argv)


if __name__ == "__main__":
    sys.exit(main())
