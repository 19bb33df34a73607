"""``rsfm export-backbone``: plain backbone weights from a trained task checkpoint.

The output is a plain ``{name: tensor}`` state dict of the timm backbone (classifier
included), which ``rsfm.create_model(name, checkpoint=OUT)``, ``timm.create_model(...,
pretrained_cfg_overlay=dict(file=OUT))`` and every task's ``backbone_checkpoint`` load
directly; a classifier of another class count is dropped on load. Name the output
``.safetensors`` (recommended: a format that holds only tensors, so a file passed on to others
cannot carry code); other names get a torch zip file.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Union

import torch

from rsfm.models.checkpoint import load_checkpoint_file

__all__ = ["backbone_state_dict", "export_backbone", "main"]

_EMA_PREFIX = "model_ema.module."
_MODEL_PREFIX = "model."


def backbone_state_dict(checkpoint: Mapping, use_ema: bool = True) -> Dict[str, torch.Tensor]:
    """The backbone weights inside a task checkpoint (Lightning ``.ckpt`` contents).

    Args:
        checkpoint: the loaded checkpoint; its ``state_dict`` holds the task's ``model.*`` (and,
            with EMA, ``model_ema.module.*``) weights.
        use_ema: take the EMA weights when the checkpoint has them.

    Returns:
        Tensors keyed as in the timm model (``stages.0...``, ``head.weight``).

    Raises:
        ValueError: the checkpoint holds no ``model.*`` weights.
    """
    state_dict = checkpoint.get("state_dict", checkpoint)
    prefix = _EMA_PREFIX if use_ema and any(key.startswith(_EMA_PREFIX) for key in state_dict) else _MODEL_PREFIX
    weights = {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}
    if not weights:
        raise ValueError(
            "no 'model.' weights in the checkpoint; export-backbone reads checkpoints written by "
            "'rsfm fit' with a task whose backbone is its 'model' (SceneClassificationTask)"
        )
    return {key: value.detach().clone().contiguous() for key, value in weights.items()}


def export_backbone(
    checkpoint: Union[str, os.PathLike], output: Union[str, os.PathLike], use_ema: bool = True
) -> Path:
    """Write the backbone of a task checkpoint as a plain state dict.

    Args:
        checkpoint: a ``.ckpt`` written by ``rsfm fit``.
        output: the file to write: ``.safetensors`` (recommended) or ``.pt``; parent folders
            are created. It is written under a temporary name and renamed when complete.
        use_ema: export the EMA weights when the task kept them.

    Returns:
        The output path.

    Raises:
        ValueError: naming the file, when it is not a task checkpoint with backbone weights, or
            when ``output`` is the checkpoint itself.
    """
    checkpoint, output = Path(checkpoint), Path(output)
    if output.resolve() == checkpoint.resolve() or (output.exists() and os.path.samefile(output, checkpoint)):
        raise ValueError(f"{output}: is the input checkpoint; choose another output file")
    contents = load_checkpoint_file(checkpoint)
    try:
        weights = backbone_state_dict(contents, use_ema=use_ema)
    except ValueError as error:
        raise ValueError(f"{checkpoint}: {error}") from error
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    try:
        if output.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(weights, str(partial), metadata={"format": "pt", "source": "rsfm export-backbone"})
        else:
            torch.save(weights, partial)
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return output


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
    try:
        output = export_backbone(args.checkpoint, args.output, use_ema=not args.no_ema)
    except (OSError, ValueError) as error:  # the message names the file
        print(f"rsfm export-backbone: {error}", file=sys.stderr)
        return 2
    print(f"wrote {output}; load it with rsfm.create_model(<backbone>, checkpoint='{output}') or a task's backbone_checkpoint")
    return 0
