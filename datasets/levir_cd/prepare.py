"""Prepare LEVIR-CD (Chen & Shi, Remote Sensing 2020) for building change detection.

Reads train.zip, val.zip and test.zip from https://justchenhao.github.io/LEVIR/ (or the folder
they were extracted to): 637 pairs of 1024x1024 Google Earth RGB images at 0.5 m (train 445,
val 64, test 128) in A/ (before) and B/ (after), with building-change labels in label/
(0 = no change, 255 = change). By default every pair is cut into 16 non-overlapping 256x256
patches, the protocol of BIT and ChangeFormer (train 7,120, val 1,024, test 2,048 patches);
--patch-size 0 keeps the whole images. Writes OUTPUT/{A,B,label}/NAME.png (NAME = train_1 or,
for patches, train_1_r<row>_c<col> with the patch's top-left pixel), OUTPUT/list/{train,val,test}.txt
and MANIFEST.sha256. See datasets/levir_cd/README.md.
"""

import argparse
import sys
from typing import List, Optional, Sequence

from rsfm.data.prepare import PublishedChecksum, Report, Source, build_parser, prepare_change_pairs, run

_TORCHGEO = "torchgeo 0.8.1 (LEVIRCD.splits['{}']['md5'])"
PUBLISHED = tuple(
    PublishedChecksum(f"{split}.zip", "md5", digest, _TORCHGEO.format(split))
    for split, digest in (
        ("train", "a638e71f480628652dea78d8544307e4"),
        ("val", "f7b857978524f9aa8c3bf7f94e3047a4"),
        ("test", "07d5dd89e46f5c1359e2eca746989ed9"),
    )
)
# Chen & Shi 2020: image pairs per split
PUBLISHED_PAIRS = {"train": 445, "val": 64, "test": 128}
# BIT (Chen et al., TGRS 2022) and ChangeFormer (Bandara & Patel, IGARSS 2022): 256 px patches
PROTOCOL_PATCH_SIZE = 256
PUBLISHED_PATCHES = {"train": 7120, "val": 1024, "test": 2048}

EXAMPLE = """  python datasets/levir_cd/prepare.py ~/Downloads/train.zip ~/Downloads/val.zip ~/Downloads/test.zip \\
      --output data/levir_cd
  python datasets/levir_cd/prepare.py ~/Downloads/LEVIR-CD --output data/levir_cd_1024 --patch-size 0
  python datasets/levir_cd/prepare.py --verify --output data/levir_cd"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 data problems, 2 error)."""
    parser = build_parser("datasets/levir_cd/prepare.py", __doc__, EXAMPLE, several_sources=True)
    parser.add_argument(
        "--patch-size",
        type=int,
        default=PROTOCOL_PATCH_SIZE,
        help=f"cut pairs into non-overlapping patches of this many pixels (default {PROTOCOL_PATCH_SIZE}; 0: whole images)",
    )

    def prepare(args: argparse.Namespace, sources: List[Source], report: Report) -> None:
        published_outputs = PUBLISHED_PATCHES if args.patch_size == PROTOCOL_PATCH_SIZE else None
        prepare_change_pairs(
            sources, [str(path) for path in args.source], args.output, PUBLISHED_PAIRS, report,
            patch_size=args.patch_size, published_outputs=published_outputs, workers=args.workers,
            partial=args.partial,
        )  # fmt: skip

    return run(parser, prepare, "LEVIR-CD", PUBLISHED, argv)


if __name__ == "__main__":
    sys.exit(main())
