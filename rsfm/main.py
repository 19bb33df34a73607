"""The ``rsfm`` command line.

Subcommands are resolved lazily so that ``rsfm --help`` answers without importing torch,
Lightning or rasterio. ``fit``/``validate``/``test``/``predict`` are Lightning's own CLI
(``LightningCLI``) over the task and datamodule classes named in a YAML config.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, Dict, List, Optional, Tuple

# name -> ("module:function", one-line help). Each function takes the remaining argv.
COMMANDS: Dict[str, Tuple[str, str]] = {
    "fit": ("rsfm.main:lightning_cli", "train a model from a YAML config (LightningCLI)"),
    "validate": ("rsfm.main:lightning_cli", "evaluate a checkpoint on the validation split"),
    "test": ("rsfm.main:lightning_cli", "evaluate a checkpoint on the test split"),
    "predict": ("rsfm.main:lightning_cli", "run a datamodule's predict split through a model"),
    "models": ("rsfm.main:list_models", "list the registered ViTAEv2 backbones and their sizes"),
    "export-backbone": ("rsfm.models.export:main", "write a trained task's backbone weights for create_model/fine-tuning"),
    "predict-raster": ("rsfm.inference.cli:main", "tiled inference on whole GeoTIFF scenes (rasters + polygons)"),
}

USAGE = """usage: rsfm <command> [options]

rsfm: remote-sensing foundation models (ViTAEv2 backbones, scene classification,
building extraction, tiled GeoTIFF inference).

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


def lightning_cli(argv: List[str]) -> None:
    """Lightning's CLI; the task and datamodule classes come from the config's class paths."""
    from rsfm import _compat  # noqa: F401

    from lightning.pytorch.cli import LightningCLI

    LightningCLI(
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=argv,
    )


def list_models(argv: List[str]) -> None:
    """Print the registered ViTAEv2 variants with parameter counts."""
    import argparse

    parser = argparse.ArgumentParser(prog="rsfm models", description=list_models.__doc__)
    parser.parse_args(argv)
    import rsfm.models  # noqa: F401  (shim first, then registers the family)
    import timm

    for name in timm.list_models("vitaev2*"):
        model = timm.create_model(name, num_classes=0)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{name:20s} {params:7.2f}M parameters, widths {model.embed_dims}")


def main(argv: Optional[List[str]] = None) -> int:
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
    if target == "rsfm.main:lightning_cli":
        rest = [command, *rest]
    result = _resolve(target)(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
