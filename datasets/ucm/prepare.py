"""Prepare UC Merced Land Use (UCM; Yang and Newsam, ACM SIGSPATIAL 2010) for rsfm's SceneDataModule.

Reads UCMerced_LandUse.zip from http://weegee.vision.ucmerced.edu/datasets/landuse.html (or
the folder it was extracted to) and writes OUTPUT/<class>/<class><nn>.tif (21 classes x 100
RGB TIFFs of about 256x256 px, 0.3 m), split lists for the 8:2 protocol (80 % of each class
for training, 20 % for testing; stratified, seeded) and MANIFEST.sha256. See
datasets/ucm/README.md.
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
    "agricultural", "airplane", "baseballdiamond", "beach", "buildings", "chaparral", "denseresidential",
    "forest", "freeway", "golfcourse", "harbor", "intersection", "mediumresidential", "mobilehomepark",
    "overpass", "parkinglot", "river", "runway", "sparseresidential", "storagetanks", "tenniscourt",
)  # fmt: skip

SPEC = SceneDatasetSpec(
    name="UCM",
    class_names=CLASS_NAMES,
    images_per_class=dict.fromkeys(CLASS_NAMES, 100),
    protocols=(SplitProtocol("8-2", train=0.8, val=0.0, test=0.2),),
)

PUBLISHED = (
    PublishedChecksum(
        "UCMerced_LandUse.zip",
        "md5",
        "5b7ec56793786b6dc8a908e8854ac0e4",
        "torchgeo 0.8.1 (torchgeo.datasets.UCMerced.md5)",
    ),
)

EXAMPLE = """  python datasets/ucm/prepare.py ~/Downloads/UCMerced_LandUse.zip --output data/ucm
  python datasets/ucm/prepare.py --verify --output data/ucm"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 data problems, 2 error)."""
    parser = build_parser("datasets/ucm/prepare.py", __doc__, EXAMPLE, seeds=True)

    def prepare(args: argparse.Namespace, sources: List[Source], report: Report) -> None:
        prepare_scene_dataset(SPEC, sources[0], args.output, args.seeds, -1, args.workers, args.partial, report)

    return run(parser, prepare, "UCM", PUBLISHED, argv)


if __name__ == "__main__":
    sys.exit(main())
