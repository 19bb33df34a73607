"""What every rsfm task shares: input normalisation carried in the checkpoint, and rebuilding
a task from its checkpoint file alone."""

from __future__ import annotations

import importlib
import os
from typing import Any, Dict, Optional, Sequence, Union

import torch
from lightning.pytorch import LightningModule

from rsfm.models.checkpoint import load_checkpoint_file

_TASK_KEY = "rsfm_task"


class BaseTask(LightningModule):
    """Base class of rsfm tasks.

    Subclasses call ``self.save_hyperparameters()`` and must accept ``in_chans``, ``mean``,
    ``std`` (per band, in raw pixel units, e.g. 0-255 for uint8 imagery) and ``class_names``,
    so that a checkpoint alone says how to prepare raw pixels for the model. Their
    constructor argument for pretrained backbone weights is called ``backbone_checkpoint``;
    it is not needed again when a trained task is rebuilt from its own checkpoint.
    """

    def _register_normalization(self, mean: Sequence[float], std: Sequence[float], in_chans: int) -> None:
        if len(mean) != in_chans or len(std) != in_chans:
            raise ValueError(
                f"mean ({len(mean)} values) and std ({len(std)} values) must have one value per "
                f"input band (in_chans={in_chans})"
            )
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {list(std)}")
        self.register_buffer("norm_mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("norm_std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Raw pixels (B, in_chans, H, W), any numeric dtype -> normalised float32."""
        return (x.float() - self.norm_mean) / self.norm_std

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint[_TASK_KEY] = f"{type(self).__module__}:{type(self).__qualname__}"


def load_task(
    path: Union[str, os.PathLike], map_location: Union[str, torch.device] = "cpu", **overrides: Any
) -> BaseTask:
    """Rebuild any rsfm task from a Lightning checkpoint written by ``rsfm fit``.

    The task class and its hyperparameters come from the file; ``overrides`` replace
    hyperparameters. The pretrained-backbone file used for training is not read again.
    Returns the task in eval mode. Raises ``ValueError`` naming the file when it is not an
    rsfm task checkpoint.
    """
    checkpoint = load_checkpoint_file(path, map_location=map_location)
    target = checkpoint.get(_TASK_KEY) if isinstance(checkpoint, dict) else None
    if target is None or "state_dict" not in checkpoint:
        raise ValueError(
            f"{path}: not an rsfm task checkpoint (no '{_TASK_KEY}' entry). Pass a .ckpt written "
            "by 'rsfm fit'; backbone weights (RSP .pth files) go to rsfm.create_model(..., checkpoint=...)"
        )
    module_name, class_name = target.split(":")
    task_class = getattr(importlib.import_module(module_name), class_name)
    # LightningCLI adds private entries ('_class_path', '_instantiator') that are no arguments
    hparams = {k: v for k, v in checkpoint.get("hyper_parameters", {}).items() if not k.startswith("_")}
    if "backbone_checkpoint" in hparams:
        hparams["backbone_checkpoint"] = None  # weights come from the state dict below
    hparams.update(overrides)
    task = task_class(**hparams)
    task.load_state_dict(checkpoint["state_dict"])
    return task.eval().to(map_location)
