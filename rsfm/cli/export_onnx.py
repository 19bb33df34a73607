"""``rsfm export``: the command line over :func:`rsfm.export_onnx` (FP32, or INT8 behind an accuracy gate)."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

# kept here (not imported from rsfm.tasks.quantize) so that --help imports no torch
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
MASK_VALUES = ("0/1", "0/255", "0/1/255=ignore")

EPILOG = """\
INT8: '--int8 --calibration DATA' writes an ONNX Runtime static-quantized model (QDQ, int8
weights per channel, uint8 activations) calibrated on DATA: image folders, a building tile
folder or GeoTIFFs like the ones the model will see. Add '--validate LABELLED --max-drop 0.01'
to measure FP32 and INT8 (top-1 accuracy of scene models on class folders; building IoU/F1 of
segmenters on a folder with images/ and masks/) and write nothing (exit 2) when INT8 loses more
than the bound. The figures go into the file's 'rsfm_quantization' metadata. The INT8 model is
written to --output; --keep-fp32 keeps the FP32 model next to it (model.fp32.onnx). Both are
then timed here, and the CPU's int8 instructions (VNNI/AMX) are reported.

examples:
  rsfm export runs/scene/last.ckpt --output scene.onnx
  rsfm export runs/scene/last.ckpt --output scene_int8.onnx --int8 --calibration data/aid/train \\
      --validate data/aid/val --max-drop 0.01
  rsfm export runs/buildings/last.ckpt --output buildings_int8.onnx --int8 \\
      --calibration scenes/*.tif --calibration-foreground --validate tiles/val --keep-fp32
"""


def _fraction(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more (a fraction: 0.01 is one point), got {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def main(argv: Optional[List[str]] = None) -> int:
    """``rsfm export CKPT --output model.onnx [--int8 --calibration DATA] [--validate DATA]``."""
    parser = argparse.ArgumentParser(
        prog="rsfm export",
        description="Write a trained task checkpoint as an ONNX model that takes raw pixels (B, bands, H, W)\n"
        "float32 of any batch and size, and carries the input contract (bands, range, classes) in its metadata.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", help="task checkpoint (.ckpt) written by 'rsfm fit'")
    parser.add_argument("--output", "-o", required=True, help="ONNX file to write, e.g. model.onnx")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset version (default: 18)")
    int8 = parser.add_argument_group("INT8 quantization")
    int8.add_argument("--int8", action="store_true", help="write an INT8 model calibrated on --calibration")
    int8.add_argument(
        "--calibration",
        nargs="+",
        metavar="DATA",
        help="images, GeoTIFFs or folders of them (class folders and building tile folders too) like the "
        "model's input; tiles of the model's input size are drawn from rasters, nodata filled with the band mean",
    )
    int8.add_argument("--calibration-size", type=_count, default=64, help="calibration images or tiles (default: 64)")
    int8.add_argument(
        "--calibration-method",
        choices=CALIBRATION_METHODS,
        default="minmax",
        help="how activation ranges are set from the calibration data (default: minmax)",
    )
    int8.add_argument(
        "--calibration-foreground",
        action="store_true",
        help="segmentation: calibrate mostly on tiles where the FP32 model finds buildings (3/4 from the top "
        "of 4x as many candidates, 1/4 random), so that small objects are not drowned in background",
    )
    int8.add_argument("--seed", type=int, default=0, help="seed of the calibration tile draw (default: 0)")
    int8.add_argument(
        "--keep-fp32", action="store_true", help="also keep the FP32 model next to --output (NAME.fp32.onnx)"
    )
    int8.add_argument("--no-timing", action="store_true", help="do not time FP32 against INT8 on this machine")
    gate = parser.add_argument_group("accuracy gate")
    gate.add_argument(
        "--validate",
        metavar="DATA",
        help="labelled data: class folders or a sample list (scene models), a folder with images/ and masks/ "
        "(segmenters); the figure(s) go into the 'rsfm_quantization' metadata",
    )
    gate.add_argument(
        "--max-drop",
        type=_fraction,
        default=None,
        help="with --int8 --validate: the largest allowed loss of top-1 accuracy or IoU, as a fraction "
        "(default: 0.01, one point); a larger loss writes nothing and exits 2",
    )
    gate.add_argument(
        "--mask-values",
        choices=MASK_VALUES,
        help="the validation masks' convention, when not the training masks' (default: the model's)",
    )
    args = parser.parse_args(argv)
    if args.int8 and not args.calibration:
        parser.error("--int8 needs --calibration DATA (images, a tile folder or GeoTIFFs like the model's input)")
    if not args.int8:
        given = [
            name
            for name, value in (
                ("--calibration", args.calibration),
                ("--calibration-foreground", args.calibration_foreground),
                ("--keep-fp32", args.keep_fp32),
                ("--max-drop", args.max_drop is not None),
            )
            if value
        ]
        if given:
            parser.error(f"{', '.join(given)} go(es) with --int8")
    if args.max_drop is not None and not args.validate:
        parser.error("--max-drop needs --validate DATA (labelled data to measure FP32 and INT8 on)")
    from rsfm.tasks.onnx import export_onnx  # heavy (torch, lightning): not for --help

    try:
        output = export_onnx(
            args.checkpoint,
            args.output,
            opset=args.opset,
            int8=args.int8,
            calibration=args.calibration,
            calibration_size=args.calibration_size,
            calibration_method=args.calibration_method,
            calibration_foreground=args.calibration_foreground,
            seed=args.seed,
            validate=args.validate,
            max_drop=0.01 if args.max_drop is None else args.max_drop,
            mask_values=args.mask_values,
            keep_fp32=args.keep_fp32,
            timing=args.int8 and not args.no_timing,
            progress=print,
        )
    except (ImportError, OSError, ValueError) as error:  # the message names the file or the fix
        message = " ".join(str(error).split())  # one line, whatever the library wrote
        print(f"rsfm export: {message}", file=sys.stderr)
        return 2
    kind = "INT8" if args.int8 else "FP32"
    print(
        f"wrote {output} ({kind}); run it with onnxruntime on raw pixels, its contract is in the "
        "'rsfm_contract' metadata"
    )
    return 0
