"""``rsfm.create_model``: timm's factory plus loading from a local checkpoint file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

import timm
from torch import nn

import rsfm.models.vitaev2  # noqa: F401  (registers the ViTAEv2 family in timm)


def create_model(
    name: str,
    checkpoint: Optional[Union[str, os.PathLike]] = None,
    pretrained: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Create a timm model (ViTAEv2 or any other), optionally initialised from a file.

    Args:
        name: a timm model name, e.g. ``'vitaev2_s'`` or ``'resnet50'``.
        checkpoint: local weights: an official RSP checkpoint, a file written by
            ``rsfm export-backbone`` or any timm-compatible state dict. The classifier is kept
            when it matches ``num_classes`` and dropped otherwise; stems adapt to ``in_chans``.
        pretrained: load the default local weights (see ``rsfm.models.vitaev2.weights_dir``).
        **kwargs: passed to ``timm.create_model`` (``num_classes``, ``in_chans``,
            ``drop_path_rate``, ``features_only``, ``out_indices``, ...).

    Raises:
        FileNotFoundError: the checkpoint (or default weights) file does not exist.
    """
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise FileNotFoundError(f"{checkpoint}: checkpoint file not found")
        overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {}, file=str(checkpoint))
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    return timm.create_model(name, pretrained=pretrained, **kwargs)
