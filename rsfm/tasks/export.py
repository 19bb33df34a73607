"""Plain backbone weights from a trained task checkpoint (``rsfm export-backbone``).

The output is a plain ``{name: tensor}`` state dict of the task's timm backbone (classifier
included), which ``rsfm.create_model(name, checkpoint=OUT)``, ``timm.create_model(...,
pretrained_cfg_overlay=dict(file=OUT))`` and every task's ``backbone_checkpoint`` load
directly; a classifier of another class count is dropped on load. Which module of the task is
its backbone is the task's own answer (:meth:`rsfm.tasks.BaseTask.backbone_module`), so the
checkpoint is rebuilt through :func:`rsfm.tasks.load_task` (task classes from the registry,
hyperparameters checked). Name the output ``.safetensors`` (recommended: a format that holds
only tensors, so a file passed on to others cannot carry code); other names get a torch zip
file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Union

import torch

from rsfm.tasks.base import BaseTask, load_task

__all__ = ["backbone_state_dict", "export_backbone"]


def backbone_state_dict(task: BaseTask, use_ema: bool = True) -> Dict[str, torch.Tensor]:
    """The backbone weights of a task, keyed as in the timm model (``stages.0...``, ``head.weight``).

    Args:
        task: a task, e.g. from :func:`rsfm.tasks.load_task`.
        use_ema: take the EMA weights when the task kept them.

    Raises:
        ValueError: the task keeps no stand-alone backbone.
    """
    weights = task.backbone_module(use_ema=use_ema).state_dict()
    return {key: value.detach().cpu().clone().contiguous() for key, value in weights.items()}


def export_backbone(checkpoint: Union[str, os.PathLike], output: Union[str, os.PathLike], use_ema: bool = True) -> Path:
    """Write the backbone of a task checkpoint as a plain state dict.

    Args:
        checkpoint: a ``.ckpt`` written by ``rsfm fit``.
        output: the file to write: ``.safetensors`` (recommended) or ``.pt``; parent folders
            are created. It is written under a temporary name and renamed when complete.
        use_ema: export the EMA weights when the task kept them.

    Returns:
        The output path.

    Raises:
        FileNotFoundError: the checkpoint does not exist.
        ValueError: naming the file, when it is not an rsfm task checkpoint, its task keeps no
            stand-alone backbone, or ``output`` is the checkpoint itself.
    """
    checkpoint, output = Path(checkpoint), Path(output)
    if output.resolve() == checkpoint.resolve() or (output.exists() and os.path.samefile(output, checkpoint)):
        raise ValueError(f"{output}: is the input checkpoint; choose another output file")
    task = load_task(checkpoint)  # its errors name the file
    try:
        weights = backbone_state_dict(task, use_ema=use_ema)
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
