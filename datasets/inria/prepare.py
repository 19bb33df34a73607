"""Prepare the Inria Aerial Image Labeling dataset (Maggiori et al., IGARSS 2017) for building extraction.

Reads NEW2-AerialImageDataset.zip (the official download is a split 7z archive: run
"7z x aerialimagelabeling.7z.001" first, which gives this zip), or the extracted
AerialImageDataset folder. The 180 labelled 5000x5000 GeoTIFF tiles (0.3 m; Austin,
Chicago, Kitsap, West Tyrol, Vienna; 36 each; masks 0/255) are split by tile number:
1-5 of each city for validation (the usual convention, also torchgeo's), the rest for
training. The 180 unlabelled test tiles go to test/images for prediction.

  --mode rasters  keeps whole tiles: OUTPUT/{train,val}/{images,masks}/<city><n>.tif, for
                  BuildingGeoDataModule (one city at a time: each city has its own CRS)
                  or rsfm predict-raster.
  --mode patches  cuts them into --patch-size GeoTIFF patches that keep their
                  georeferencing: OUTPUT/{train,val}/{images,masks}/<city><n>_r<row>_c<col>.tif,
                  for BuildingTileDataModule. The last row and column overlap their
                  neighbours instead of being padded.

Writes MANIFEST.sha256. See datasets/inria/README.md.
"""

import argparse
import sys
from typing import List, Optional, Sequence

from rsfm.data.prepare import PublishedChecksum, Report, Source, build_parser, prepare_large_tiles, run
from rsfm.data.prepare.large_tiles import TILE_MODES

PUBLISHED = (
    PublishedChecksum(
        "NEW2-AerialImageDataset.zip", "md5", "4b1acfe84ae9961edc1a6049f940380f",
        "torchgeo 0.8.1 (InriaAerialImageLabeling.md5)",
    ),
)  # fmt: skip
PUBLISHED_TILES = {"train": 180, "test": 180}
VALIDATION_NUMBERS = frozenset(range(1, 6))

EXAMPLE = """  7z x ~/Downloads/aerialimagelabeling.7z.001 -o$HOME/Downloads     # gives NEW2-AerialImageDataset.zip
  python datasets/inria/prepare.py ~/Downloads/NEW2-AerialImageDataset.zip --output data/inria_patches --mode patches
  python datasets/inria/prepare.py ~/Downloads/AerialImageDataset --output data/inria_austin \\
      --mode rasters --areas austin
  python datasets/inria/prepare.py --verify --output data/inria_patches"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 data problems, 2 error)."""
    parser = build_parser("datasets/inria/prepare.py", __doc__, EXAMPLE)
    parser.add_argument("--mode", choices=TILE_MODES, default="patches", help="whole rasters or patches (default)")
    parser.add_argument("--patch-size", type=int, default=512, help="patch side in pixels (default 512)")
    parser.add_argument("--areas", nargs="+", help="keep only these cities, e.g. austin vienna (default: all)")

    def prepare(args: argparse.Namespace, sources: List[Source], report: Report) -> None:
        if args.patch_size < 1:
            raise ValueError(f"--patch-size must be a positive number of pixels, got {args.patch_size}")
        prepare_large_tiles(
            sources[0], args.output, "images", "gt", VALIDATION_NUMBERS, args.mode, args.patch_size,
            args.areas, PUBLISHED_TILES, args.workers, args.partial or args.areas is not None, report,
        )  # fmt: skip

    return run(parser, prepare, "Inria", PUBLISHED, argv)


if __name__ == "__main__":
    sys.exit(main())
