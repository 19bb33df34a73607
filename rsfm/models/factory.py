"""``rsfm.create_model``: timm's factory plus loading from a local weights file, and
:func:`load_backbone`, which reads the variant and classifier from the file."""

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


def load_backbone(
    path: Union[str, os.PathLike],
    map_location: str = "cpu",
    model_name: Optional[str] = None,
    **kwargs: Any,
) -> nn.Module:
    """A backbone from a weights file, with the variant and classifier read from the file.

    Reads official RSP/mmseg files, ``rsfm export-backbone`` output and other state dicts: the
    matching ViTAEv2 variant (from the tensor shapes unless ``model_name`` is given), with the
    file's classifier when it has one. Task checkpoints (``.ckpt`` from ``rsfm fit``) are
    rebuilt whole by ``rsfm.load_checkpoint`` instead.

    Args:
        path: the weights file.
        map_location: device for the returned model.
        model_name: a timm model name, for files of architectures other than ViTAEv2.
        **kwargs: passed to :func:`create_model` (``num_classes``, ``in_chans``, ``features_only``, ...).

    Raises:
        FileNotFoundError / ValueError: naming the file, when it is missing or unreadable, or
            when its weights fit no registered variant (pass ``model_name`` for other timm models).
    """
    from rsfm.models.checkpoint import load_checkpoint_file
    from rsfm.models.vitaev2 import convert_state_dict, infer_variant

    checkpoint = load_checkpoint_file(path, map_location=map_location)
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path}: holds a {type(checkpoint).__name__}, not a state dict or checkpoint")
    if model_name is None:
        try:
            model_name = infer_variant(checkpoint)
        except ValueError as error:
            raise ValueError(f"{path}: {error}; pass model_name=... for other architectures") from error
        head = convert_state_dict(checkpoint).get("head.weight")
        kwargs.setdefault("num_classes", 0 if head is None else head.shape[0])
    return create_model(model_name, checkpoint=path, **kwargs).to(map_location)
