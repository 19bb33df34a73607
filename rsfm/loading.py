"""``rsfm.load_checkpoint``: one call for every checkpoint rsfm reads.

It sits above the layers it dispatches to: task checkpoints are rebuilt by the task layer
(``rsfm.tasks.load_task``), backbone weights by the model layer (``rsfm.models.load_backbone``).
"""

from __future__ import annotations

import os
from typing import Any, Optional, Union

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

    Raises:
        FileNotFoundError / ValueError: naming the file, when it is missing or unreadable, or
            when its weights fit no registered variant (pass ``model_name`` for other timm models).
    """
    from rsfm.models import load_backbone, load_checkpoint_file
    from rsfm.tasks.base import is_task_checkpoint, load_task

    if is_task_checkpoint(load_checkpoint_file(path, map_location=map_location)):
        return load_task(path, map_location=map_location, **kwargs)
    return load_backbone(path, map_location=map_location, model_name=model_name, **kwargs)
