"""Prepare AID (Aerial Image Dataset; Xia et al., TGRS 2017) for rsfm's SceneDataModule.

Reads AID.zip from https://captain-whu.github.io/AID/ (or the folder it was extracted to)
and writes OUTPUT/<Class>/<class>_<n>.jpg (30 classes, 10,000 600x600 JPEGs), split lists
for the 2:8 and 5:5 protocols (20 % / 50 % of each class for training, the rest for
testing; stratified, seeded) and MANIFEST.sha256. See datasets/aid/README.md.
"""

import argparse
import sys
from typing import List, Optional, Sequence

from rsfm.data.prepare import Report, SceneDatasetSpec, Source, SplitProtocol, build_parser, prepare_scene_dataset, run

# Xia et al. 2017, Table II: images per class (10,000 in all)
IMAGES_PER_CLASS = {
    "Airport": 360, "BareLand": 310, "BaseballField": 220, "Beach": 400, "Bridge": 360,
    "Center": 260, "Church": 240, "Commercial": 350, "DenseResidential": 410, "Desert": 300,
    "Farmland": 370, "Forest": 250, "Industrial": 390, "Meadow": 280, "MediumResidential": 290,
    "Mountain": 340, "Park": 350, "Parking": 390, "Playground": 370, "Pond": 420,
    "Port": 380, "RailwayStation": 260, "Resort": 290, "River": 410, "School": 300,
    "SparseResidential": 300, "Square": 330, "Stadium": 290, "StorageTanks": 360, "Viaduct": 420,
}  # fmt: skip

SPEC = SceneDatasetSpec(
    name="AID",
    class_names=tuple(IMAGES_PER_CLASS),
    images_per_class=IMAGES_PER_CLASS,
    protocols=(SplitProtocol("2-8", train=0.2, val=0.0, test=0.8), SplitProtocol("5-5", train=0.5, val=0.0, test=0.5)),
)

EXAMPLE = """  python datasets/aid/prepare.py ~/Downloads/AID.zip --output data/aid
  python datasets/aid/prepare.py ~/Downloads/AID.zip --output data/aid --seeds 0 1 2 3 4
  python datasets/aid/prepare.py --verify --output data/aid"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 data problems, 2 error)."""
    parser = build_parser("datasets/aid/prepare.py", __doc__, EXAMPLE, seeds=True)

    def prepare(args: argparse.Namespace, sources: List[Source], report: Report) -> None:
        prepare_scene_dataset(SPEC, sources[0], args.output, args.seeds, -1, args.workers, args.partial, report)

    return run(parser, prepare, "AID", argv=argv)


if __name__ == "__main__":
    sys.exit(main())
