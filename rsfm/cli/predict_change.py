"""``rsfm predict-change``: the command line over :func:`rsfm.predict_change`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, List, Optional, Sequence

from rsfm.cli.predict_raster import add_prediction_options, run_command

if TYPE_CHECKING:
    from rsfm.inference.predict import PredictionResult

EPILOG = """examples:
  rsfm predict-change before.tif after.tif --checkpoint change.ckpt --output change.tif --vector change.gpkg
  rsfm predict-change 2015.tif 2021.tif --checkpoint change.ckpt --output change.tif --resampling cubic --resume

The rasters may differ in CRS, resolution and extent: the output is on the after raster's grid
where the before raster overlaps it, and the before raster is warped onto it tile by tile."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rsfm predict-change",
        description="Map the change between two GeoTIFF scenes of one place with a change-detection checkpoint "
        "(or its ONNX export), tile by tile, into a georeferenced change raster and polygons.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("before", metavar="BEFORE", help="raster of the earlier date")
    parser.add_argument("after", metavar="AFTER", help="raster of the later date; its grid is the output grid")
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="change-detection task checkpoint (.ckpt, PyTorch) or a model exported from one with 'rsfm export' "
        "(.onnx, onnxruntime)",
    )
    parser.add_argument("--output", required=True, help="output GeoTIFF of the change (.tif)")
    parser.add_argument("--vector", help="polygons of the change: .gpkg or .geojson file (area, mean probability)")
    add_prediction_options(parser)
    parser.add_argument(
        "--resampling",
        default="bilinear",
        choices=["bilinear", "nearest", "cubic"],
        help="how the before raster is resampled onto the after raster's grid (default bilinear)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _run(args: argparse.Namespace) -> List["PredictionResult"]:
    from rsfm.inference.predict import predict_change  # heavy (rasterio; torch for a .ckpt): not for --help

    result = predict_change(
        args.before,
        args.after,
        args.checkpoint,
        args.output,
        vector=args.vector,
        tile_size=args.tile_size,
        overlap=args.overlap,
        batch_size=args.batch_size,
        bands=args.bands,
        device=args.device,
        precision=args.precision,
        output_type=args.output_type,
        cog=args.cog,
        simplify=args.simplify,
        min_area=args.min_area,
        resampling=args.resampling,
        resume=args.resume,
        overwrite=args.overwrite,
        strict=args.strict,
        progress=not args.quiet,
    )
    return [result]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv`` and run (``rsfm.cli.predict_raster.run_command`` reports and sets the
    exit status: 2 with one line for bad inputs, 130 after Ctrl-C)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(parser, lambda: _run(args))
