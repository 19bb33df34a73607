"""``rsfm export-backbone``: the command line over :func:`rsfm.export_backbone`."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    """``rsfm export-backbone CKPT OUT.safetensors [--no-ema]``."""
    parser = argparse.ArgumentParser(
        prog="rsfm export-backbone",
        description="Write the backbone weights of a trained task checkpoint as a plain state dict that "
        "rsfm.create_model(name, checkpoint=OUT) and a task's backbone_checkpoint load.",
    )
    parser.add_argument("checkpoint", help="task checkpoint (.ckpt) written by 'rsfm fit'")
    parser.add_argument("output", help="file to write, e.g. backbone.safetensors (recommended) or backbone.pt")
    parser.add_argument("--no-ema", action="store_true", help="export the raw weights even when EMA weights exist")
    args = parser.parse_args(argv)
    from rsfm.tasks.export import export_backbone  # heavy (torch, lightning): not for --help

    try:
        output = export_backbone(args.checkpoint, args.output, use_ema=not args.no_ema)
    except (OSError, ValueError) as error:  # the message names the file
        print(f"rsfm export-backbone: {error}", file=sys.stderr)
        return 2
    print(
        f"wrote {output}; load it with rsfm.create_model(<backbone>, checkpoint='{output}') or a task's backbone_checkpoint"
    )
    return 0
