"""Prepare SpaceNet building chips (SpaceNet 2 AOIs, SpaceNet 4 Atlanta off-nadir) for building extraction.

Reads the training tarballs from s3://spacenet-dataset (or their extracted folders): for
SpaceNet 2 one tarball per AOI holding <product>/<product>_AOI_<n>_<City>_img<k>.tif and
geojson/buildings/buildings_AOI_<n>_<City>_img<k>.geojson; for SpaceNet 4 one tarball per
collect (Atlanta_nadir<angle>_catid_<id>.tar.gz) plus geojson.tar.gz, whose
spacenet-buildings_<x>_<y>.geojson serves all 27 collects of a location. Chips are paired
with their footprints, split by location (seeded) and written as

  --labels vectors  OUTPUT/{train,val}/images/<chip>.tif + labels/<chip>.geojson, the
                    footprints unchanged, for BuildingGeoDataModule (one collect per
                    location: torchgeo mosaics overlapping rasters; choose with --collect);
  --labels masks    OUTPUT/{train,val}/images/<chip>.tif + masks/<chip>.tif, footprints
                    burned into 0/1 masks on the chip grid, for BuildingTileDataModule
                    (any number of collects; chips without buildings stay as background).

Imagery keeps its georeferencing and raw values (e.g. 11-bit in uint16). The public test
tarballs have no labels and are not read. Writes MANIFEST.sha256. See
datasets/spacenet/README.md.
"""

import argparse
import sys
from typing import List, Optional, Sequence

from rsfm.data.prepare import PublishedChecksum, Report, Source, build_parser, prepare_chips, run
from rsfm.data.prepare.chips import LABEL_MODES

_TORCHGEO = "torchgeo 0.8.1 ({}.md5s)"
PUBLISHED = tuple(
    PublishedChecksum(name, "md5", digest, _TORCHGEO.format(dataset))
    for dataset, entries in {
        "SpaceNet2": (
            ("SN2_buildings_train_AOI_2_Vegas.tar.gz", "307da318bc43aaf9481828f92eda9126"),
            ("SN2_buildings_train_AOI_3_Paris.tar.gz", "4db469e3e4e7bf025368ad730aec0888"),
            ("SN2_buildings_train_AOI_4_Shanghai.tar.gz", "986129eecd3e842ebc2063d43b407adb"),
            ("SN2_buildings_train_AOI_5_Khartoum.tar.gz", "462b4bf0466c945d708befabd4d9115b"),
        ),
        "SpaceNet4": (
            ("Atlanta_nadir7_catid_1030010003D22F00.tar.gz", "d41ab6ec087b07e1e046c55d1fa5754b"),
            ("Atlanta_nadir8_catid_10300100023BC100.tar.gz", "72f04a7c0c34dd4595c181ee1ae6cb4c"),
            ("Atlanta_nadir10_catid_1030010003993E00.tar.gz", "89559f42ac11a8de570cef9802a577ad"),
            ("Atlanta_nadir10_catid_1030010003CAF100.tar.gz", "5489ac756249c336ea506ef0acb3c09d"),
            ("Atlanta_nadir13_catid_1030010002B7D800.tar.gz", "bd9ed231cedd8631683ea51ea0602de1"),
            ("Atlanta_nadir14_catid_10300100039AB000.tar.gz", "c497a8a448ed7ccdf63e7706507c0603"),
            ("Atlanta_nadir16_catid_1030010002649200.tar.gz", "45d54eeecefdc60aa38320be6f29a17c"),
            ("Atlanta_nadir19_catid_1030010003C92000.tar.gz", "611528c0188bbc7e9cdf98609c6b0c49"),
            ("Atlanta_nadir21_catid_1030010003127500.tar.gz", "532fbf1ca73d3d2e8b03c585f61b7316"),
            ("Atlanta_nadir23_catid_103001000352C200.tar.gz", "538f48429b0968b6cfad97eb61fa8de1"),
            ("Atlanta_nadir25_catid_103001000307D800.tar.gz", "3c48e94bc6d9e66e27c3a9bc8d35d65d"),
            ("Atlanta_nadir27_catid_1030010003472200.tar.gz", "b78cdf951e7bf4fedbe9259abd1e047a"),
            ("Atlanta_nadir29_catid_1030010003315300.tar.gz", "f307ce3c623d12d5a2fd5acb1e0607e0"),
            ("Atlanta_nadir30_catid_10300100036D5200.tar.gz", "9a17574332cd5513d68a0bcc9c607bdd"),
            ("Atlanta_nadir32_catid_103001000392F600.tar.gz", "fe905ca809f7bd2ceef75bde23c326f3"),
            ("Atlanta_nadir34_catid_1030010003697400.tar.gz", "d9f2e4a5c8462f6f9f7d5c573d9a1dc6"),
            ("Atlanta_nadir36_catid_1030010003895500.tar.gz", "f9425ff38dc82bf0e8f25a6287ff1ad1"),
            ("Atlanta_nadir39_catid_1030010003832800.tar.gz", "7a6005d6fd972d5ce04caf9b42b36897"),
            ("Atlanta_nadir42_catid_10300100035D1B00.tar.gz", "7c5aa16bb64cacf766cf88f89b3093bd"),
            ("Atlanta_nadir44_catid_1030010003CCD700.tar.gz", "8f7e959eb0156ad2dfb0b966a1de06a9"),
            ("Atlanta_nadir46_catid_1030010003713C00.tar.gz", "62c4babcbe70034b7deb7c14d5ff61c2"),
            ("Atlanta_nadir47_catid_10300100033C5200.tar.gz", "8001d75f67534edf6932242324b8c1a7"),
            ("Atlanta_nadir49_catid_1030010003492700.tar.gz", "bc299cb5de432b5f5a1ce65a3bdb0abc"),
            ("Atlanta_nadir50_catid_10300100039E6200.tar.gz", "d7640eda7c4efaf825665e853037bec9"),
            ("Atlanta_nadir52_catid_1030010003BDDC00.tar.gz", "d4e1931551e9d3c6fd9bf1d8adfd07a0"),
            ("Atlanta_nadir53_catid_1030010003193D00.tar.gz", "b313e23ead8fe6e2c8671a49f2c9de37"),
            ("Atlanta_nadir53_catid_1030010003CD4300.tar.gz", "3bd8f07ad57bff841d0cf91c91c6f5ed"),
            ("geojson.tar.gz", "2556339e26a09e57559452eb240ef29c"),
        ),
    }.items()
    for name, digest in entries
)

EXAMPLE = """  python datasets/spacenet/prepare.py ~/Downloads/SN2_buildings_train_AOI_2_Vegas.tar.gz \\
      --product RGB-PanSharpen --output data/spacenet_vegas
  python datasets/spacenet/prepare.py ~/Downloads/Atlanta_nadir7_catid_1030010003D22F00.tar.gz \\
      ~/Downloads/geojson.tar.gz --product Pan-Sharpen --output data/spacenet_atlanta_nadir7
  python datasets/spacenet/prepare.py ~/Downloads/Atlanta_nadir*.tar.gz ~/Downloads/geojson.tar.gz \\
      --product Pan-Sharpen --labels masks --output data/spacenet_atlanta_tiles
  python datasets/spacenet/prepare.py --verify --output data/spacenet_vegas"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 data problems, 2 error)."""
    parser = build_parser("datasets/spacenet/prepare.py", __doc__, EXAMPLE, several_sources=True)
    parser.add_argument(
        "--product", help="imagery folder, e.g. RGB-PanSharpen, PAN, Pan-Sharpen (default: the only one present)"
    )
    parser.add_argument("--collect", help="keep only image names containing this, e.g. nadir7_catid_1030010003D22F00")
    parser.add_argument("--labels", choices=LABEL_MODES, default="vectors", help="GeoJSON (default) or 0/1 masks")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="share of locations for validation (0.2)")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default 0)")

    def prepare(args: argparse.Namespace, sources: List[Source], report: Report) -> None:
        prepare_chips(
            sources, args.output, args.product, args.collect, args.labels, args.val_fraction, args.seed,
            args.workers, report,
        )  # fmt: skip

    return run(parser, prepare, "SpaceNet", PUBLISHED, argv)


if __name__ == "__main__":
    sys.exit(main())
