"""``rsfm export``: the command line over :func:`rsfm.export_onnx`."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    """``rsfm export CKPT --output model.onnx``."""
    parser = argparse.ArgumentParser(
        prog="rsfm export",
        description="Write a trained task checkpoint as an ONNX model that takes raw pixels (B, bands, H, W) "
        "float32 of any batch and size, and carries the input contract (bands, range, classes) in its metadata.",
    )
    parser.add_argument("checkpoint", help="task checkpoint (.ckpt) written by 'rsfm fit'")
    parser.add_argument("--output", "-o", required=True, help="ONNX file to write, e.g. model.onnx")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset version (default: 18)")
    args = parser.parse_args(argv)
    from rsfm.tasks.onnx import export_onnx  # heavy (torch, lightning): not for --help

    try:
        output = export_onnx(args.checkpoint, args.output, opset=args.opset)
    except (ImportError, OSError, ValueError) as error:  # the message names the file or the fix
        print(f"rsfm export: {error}", file=sys.stderr)
        return 2
    print(f"wrote {output}; run it with onnxruntime on raw pixels, its contract is in the 'rsfm_contract' metadata")
    return 0
