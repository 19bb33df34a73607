"""The ``rsfm`` command line: every command lives in this package, one module each.

Commands are resolved lazily so that ``rsfm --help`` answers without importing torch,
Lightning or rasterio. ``fit``/``validate``/``test``/``predict`` are Lightning's own CLI
(``LightningCLI``) over the task and datamodule classes named in a YAML config. The
top-level ``cli.py`` of the repository runs the same :func:`main`.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, Dict, List, Optional, Tuple

LIGHTNING = "rsfm.cli.lightning:main"
"""The target of the Lightning commands; it gets the command name as its first argument."""

# name -> ("module:function", one-line help). Each function takes the remaining argv.
COMMANDS: Dict[str, Tuple[str, str]] = {
    "fit": (LIGHTNING, "train a model from a YAML config (LightningCLI)"),
    "validate": (LIGHTNING, "evaluate a checkpoint on the validation split"),
    "test": (LIGHTNING, "evaluate a checkpoint on the test split"),
    "predict": (LIGHTNING, "run a datamodule's predict split through a model"),
    "models": ("rsfm.cli.models:main", "list the registered ViTAEv2 backbones and their sizes"),
    "export-backbone": ("rsfm.cli.export:main", "write a trained task's backbone weights for create_model/fine-tuning"),
    "export": ("rsfm.cli.export_onnx:main", "write a trained task as a self-describing ONNX model (raw pixels in)"),
    "predict-raster": ("rsfm.cli.predict_raster:main", "tiled inference on whole GeoTIFF scenes (rasters + polygons)"),
    "predict-change": (
        "rsfm.cli.predict_change:main",
        "change between two GeoTIFF scenes of one place (rasters + polygons)",
    ),
    "demo": ("rsfm.cli.demo:main", "train on the sample embedded in the repository and map it (make demo)"),
}

USAGE = """usage: rsfm <command> [options]

rsfm: remote-sensing foundation models (ViTAEv2 backbones, scene classification,
building extraction, change detection, tiled GeoTIFF inference).

commands:
{commands}

Run 'rsfm <command> --help' for the options of one command.
Lightning commands take a config: rsfm fit --config configs/scene_quickstart.yaml
"""


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return USAGE.format(commands="\n".join(lines))


def _resolve(target: str) -> Callable[[List[str]], Optional[int]]:
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``rsfm <command> [options]``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"rsfm: unknown command '{command}'\n", file=sys.stderr)
        print(_usage(), file=sys.stderr)
        return 2
    target, _ = COMMANDS[command]
    if target == LIGHTNING:
        rest = [command, *rest]
    try:
        result = _resolve(target)(rest)
    except ImportError as error:
        from rsfm.inference.errors import is_missing_torch, needs_torch

        if not is_missing_torch(error):
            raise
        # an install without PyTorch (rsfm[runtime]) runs ONNX models only
        print(f"rsfm: error: {needs_torch(f'rsfm {command}')}", file=sys.stderr)
        return 2
    return int(result or 0)
