"""Prepare the WHU building dataset, aerial part (Ji et al., TGRS 2019) for BuildingTileDataModule.

Reads "3. The cropped aerial image tiles and raster labels.zip" from
http://gpcv.whu.edu.cn/data/building_dataset.html (or the folder it was extracted to) and
writes OUTPUT/{train,val,test}/{image,label}/NAME.tif: 512x512 RGB tiles at 0.3 m
(Christchurch, New Zealand) and their masks, 0 = background, 255 = building (read as is, no
conversion). Checks that every tile has its mask, that both read and have the same size,
that masks are 0/255 or 0/1, and the published counts (train 4,736, val 1,036, test 2,416).
Writes MANIFEST.sha256. See datasets/whu_building/README.md.
"""

import argparse
import sys
from typing import List, Optional, Sequence

from rsfm.data.prepare import Report, Source, build_parser, prepare_tile_pairs, run

# Ji et al. 2019: the cropped aerial tiles per split
PUBLISHED_PAIRS = {"train": 4736, "val": 1036, "test": 2416}

EXAMPLE = """  python datasets/whu_building/prepare.py \\
      "$HOME/Downloads/3. The cropped aerial image tiles and raster labels.zip" --output data/whu_buildings
  python datasets/whu_building/prepare.py --verify --output data/whu_buildings"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 data problems, 2 error)."""
    parser = build_parser("datasets/whu_building/prepare.py", __doc__, EXAMPLE)

    def prepare(args: argparse.Namespace, sources: List[Source], report: Report) -> None:
        prepare_tile_pairs(
            sources[0], args.output, PUBLISHED_PAIRS, "image", "label", args.workers, args.partial, report
        )

    return run(parser, prepare, "WHU building", argv=argv)


if __name__ == "__main__":
    sys.exit(main())
