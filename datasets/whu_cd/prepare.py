"""Prepare WHU-CD, the WHU building change detection dataset (Ji et al., TGRS 2019), for change detection.

Reads the "Building change detection dataset" archive from
http://gpcv.whu.edu.cn/data/building_dataset.html (or the folder it was extracted to): aerial
RGB GeoTIFFs of Christchurch, New Zealand, before (2012) and after (2016) rebuilding, and the
change label, each 32507 x 15354 px, in "1. The two-period image data/{before/before.tif,
after/after.tif, change label/change_label.tif}". Cuts them into non-overlapping 256x256
patches and splits the patches at random, 8:1:1 with the default fractions: the protocol of
BIT (Chen et al., TGRS 2022), whose published split has train 6,096, val 762, test 762
patches; the patch grid and counts are the same, the random membership is this script's
(seeded). The last row and column of patches, which reach past the rasters, are zero-padded
(--edges pad, label 0 there: the 60 x 127 = 7,620 patches of that protocol) or left out
(--edges drop: 59 x 126 = 7,434). Writes OUTPUT/{A,B,label}/r<row>_c<col>.png named after the
patch's top-left pixel, OUTPUT/list/{train,val,test}.txt, OUTPUT/source_grid.json (the
rasters' CRS and transform, to georeference any patch) and MANIFEST.sha256.
See datasets/whu_cd/README.md.
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from rsfm.data.prepare import EDGE_MODES, PrepareError, Report, Source, build_parser, prepare_change_scene, run
from rsfm.data.prepare.report import shorten

# Ji et al. 2019 / the dataset page: one scene, width x height in pixels
PUBLISHED_SIZE = (32507, 15354)
# BIT (Chen, Qi & Shi, TGRS 2022): 256 px patches split at random into 6096 / 762 / 762
PROTOCOL_PATCH_SIZE = 256
PUBLISHED_SPLIT = {"train": 6096, "val": 762, "test": 762}
RASTER_NAMES = {"before": "before.tif", "after": "after.tif", "label": "change_label.tif"}

EXAMPLE = """  python datasets/whu_cd/prepare.py "$HOME/Downloads/Building change detection dataset.zip" --output data/whu_cd
  python datasets/whu_cd/prepare.py "$HOME/Downloads/Building change detection dataset" --output data/whu_cd \\
      --seed 1 --edges drop
  python datasets/whu_cd/prepare.py --verify --output data/whu_cd"""


def find_rasters(folder: Path) -> List[Path]:
    """The before, after and change-label GeoTIFFs below ``folder``, found by file name.

    Raises:
        PrepareError: a raster is missing or there are several of one name.
    """
    found = []
    for role, name in RASTER_NAMES.items():
        matches = sorted(path for path in folder.rglob("*") if path.name.lower() == name and path.is_file())
        if len(matches) != 1:
            what = "no" if not matches else f"{len(matches)} ({shorten(matches, 3)})"
            raise PrepareError(
                f"{folder}: {what} {name} found, expected one ({role} raster). Pass the whole-scene "
                "'Building change detection dataset' archive, whose '1. The two-period image data' holds "
                "before/before.tif, after/after.tif and 'change label/change_label.tif' (the '_add' release, "
                "with pre-cut 512 px tiles and one change label per split, is not read)"
            )
        found.append(matches[0])
    return found


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 data problems, 2 error)."""
    parser = build_parser("datasets/whu_cd/prepare.py", __doc__, EXAMPLE)
    parser.add_argument(
        "--patch-size",
        type=int,
        default=PROTOCOL_PATCH_SIZE,
        help=f"patch side in pixels (default {PROTOCOL_PATCH_SIZE})",
    )
    parser.add_argument(
        "--edges",
        choices=EDGE_MODES,
        default="pad",
        help="zero-pad (default) or drop the patches that reach past the scene",
    )
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of patches for validation (0.1)")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="share of patches for test (0.1)")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default 0)")

    def prepare(args: argparse.Namespace, sources: List[Source], report: Report) -> None:
        before, after, label = find_rasters(sources[0].folder)
        counts = prepare_change_scene(
            before, after, label, args.output, report, patch_size=args.patch_size, edges=args.edges,
            val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed,
            published_size=PUBLISHED_SIZE, workers=args.workers, partial=args.partial,
        )  # fmt: skip
        if counts == PUBLISHED_SPLIT:
            report.note(
                "the counts are those of BIT's published split (6096/762/762); which patches are in each split "
                f"differs (random membership, seed {args.seed})"
            )

    return run(parser, prepare, "WHU-CD", argv=argv)


if __name__ == "__main__":
    sys.exit(main())
