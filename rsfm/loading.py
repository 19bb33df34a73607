"""``rsfm.load_checkpoint``: one call for every checkpoint rsfm reads.

It sits above the layers it dispatches to: task checkpoints are rebuilt by the task layer
(``rsfm.tasks.load_task``), backbone weights by the model layer (``rsfm.models.load_backbone``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

if TYPE_CHECKING:
    from torch import nn

__all__ = ["load_checkpoint"]


def load_checkpoint(
    path: Union[str, os.PathLike],
    map_location: str = "cpu",
    model_name: Optional[str] = None,
    **kwargs: Any,
) -> nn.Module:
    """Load any checkpoint rsfm knows, deciding from the file what it holds.

    - an rsfm task checkpoint (``.ckpt`` from ``rsfm fit``): the task, rebuilt from the file
      alone, in eval mode (``kwargs`` override its hyperparameters);
    - backbone weights (official RSP/mmseg files, ``rsfm export-backbone`` output, state dicts):
      the matching ViTAEv2 variant (read from the tensor shapes unless ``model_name`` is given),
      with the file's classifier when it has one (``kwargs`` go to ``create_model``, e.g.
      ``num_classes``, ``in_chans``, ``features_only``).

    ONNX models (``rsfm export``) hold no PyTorch module: they run with ``rsfm.SceneClassifier``,
    ``rsfm.BuildingExtractor`` and ``rsfm.predict_raster``.

    Raises:
        FileNotFoundError / ValueError: naming the file, when it is missing or unreadable, or
            when its weights fit no registered variant (pass ``model_name`` for other timm
            models), or when it is an ONNX model.
        ImportError: PyTorch is not installed (``pip install 'rsfm[torch]'``).
    """
    from rsfm.inference.errors import is_missing_torch, needs_torch
    from rsfm.inference.predictor import is_onnx_model

    if is_onnx_model(path):
        raise ValueError(
            f"{path}: an ONNX model, not a PyTorch checkpoint; run it with rsfm.SceneClassifier.load, "
            "rsfm.BuildingExtractor.load or rsfm.predict_raster"
        )
    try:
        from rsfm.models import load_backbone, load_checkpoint_file
        from rsfm.tasks.base import is_task_checkpoint, load_task
    except ImportError as error:
        if is_missing_torch(error):
            raise needs_torch(f"{Path(path)}: loading a PyTorch checkpoint") from error
        raise

    if is_task_checkpoint(load_checkpoint_file(path, map_location=map_location)):
        return load_task(path, map_location=map_location, **kwargs)
    return load_backbone(path, map_location=map_location, model_name=model_name, **kwargs)
