"""``rsfm models``: the registered ViTAEv2 backbones and their sizes."""

from __future__ import annotations

import argparse
from typing import List


def main(argv: List[str]) -> None:
    """Print the registered ViTAEv2 variants with parameter counts."""
    parser = argparse.ArgumentParser(prog="rsfm models", description=main.__doc__)
    parser.parse_args(argv)
    import rsfm.models  # noqa: F401  (shim first, then registers the family)

    # isort: split
    import timm

    for name in timm.list_models("vitaev2*"):
        model = timm.create_model(name, num_classes=0)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{name:20s} {params:7.2f}M parameters, widths {model.embed_dims}")
