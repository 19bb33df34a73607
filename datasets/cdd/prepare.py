"""Prepare CDD, the season-varying change detection dataset (Lebedev et al., ISPRS Archives 2018).

Reads the folder extracted from ChangeDetectionDataset.rar (the Google Drive file the dataset is shared as;
extract it first with "unrar x ChangeDetectionDataset.rar"), or a zip/tar of it. Uses the real
season-varying part, ChangeDetectionDataset/Real/subset/{train,val,test}/{A,B,OUT}/NAME.jpg:
256x256 Google Earth RGB pairs (train 10,000, val 3,000, test 3,000) with change labels in
OUT/. The synthetic Model/ part is not read. The labels are JPEG, so besides 0 and 255 they
hold compression noise: they are thresholded at 128 (>= 128 is change) and written as
lossless 0/255 PNGs. The before/after JPEGs are converted to PNG (the decoded pixels, no
further loss). Names repeat across splits, so every NAME is prefixed with its split
(train_00000). Writes OUTPUT/{A,B,label}/NAME.png, OUTPUT/list/{train,val,test}.txt and
MANIFEST.sha256. See datasets/cdd/README.md.
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from rsfm.data.prepare import PrepareError, Report, Source, build_parser, prepare_change_pairs, run
from rsfm.data.prepare.sources import find_folder

# Lebedev et al. 2018: real season-varying pairs per split
PUBLISHED_PAIRS = {"train": 10000, "val": 3000, "test": 3000}
LABEL_DIR = "OUT"
LABEL_THRESHOLD = 128

EXAMPLE = """  unrar x ~/Downloads/ChangeDetectionDataset.rar ~/Downloads/
  python datasets/cdd/prepare.py ~/Downloads/ChangeDetectionDataset --output data/cdd
  python datasets/cdd/prepare.py --verify --output data/cdd"""


def real_subset(folder: Path) -> Path:
    """``Real/subset`` below ``folder`` (the real pairs, not the synthetic ``Model/`` part), else ``folder``."""
    try:
        return find_folder(
            folder,
            lambda path: int(path.name.lower() == "subset" and path.parent.name.lower() == "real"),
            "Real/subset",
            perfect=1,
        )
    except PrepareError:
        return folder  # the user's own copy of the split folders


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 data problems, 2 error)."""
    parser = build_parser("datasets/cdd/prepare.py", __doc__, EXAMPLE)

    def prepare(args: argparse.Namespace, sources: List[Source], report: Report) -> None:
        subset = Source(real_subset(sources[0].folder), sources[0].transfer)
        report.note(f"reading {subset.folder}")
        prepare_change_pairs(
            [subset], [str(args.source)], args.output, PUBLISHED_PAIRS, report, label_dir=LABEL_DIR,
            label_threshold=LABEL_THRESHOLD, workers=args.workers, partial=args.partial,
        )  # fmt: skip

    return run(parser, prepare, "CDD", argv=argv)


if __name__ == "__main__":
    sys.exit(main())
