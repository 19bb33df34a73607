"""An rsfm task checkpoint as a function from raw tiles to class probabilities."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, ContextManager, List

import numpy as np
import torch

from rsfm.tasks.base import BaseTask, load_task

_PROBE_SIZE = 64

SEGMENTATION = "segmentation"
CLASSIFICATION = "classification"


def load_tile_model(checkpoint: Path) -> "TileModel":
    """Rebuild the task stored in ``checkpoint`` (on the CPU) and find out what it predicts.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: not an rsfm task checkpoint.
    """
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: checkpoint not found (pass the .ckpt written by 'rsfm fit')")
    return TileModel(load_task(checkpoint, map_location="cpu"))


class TileModel:
    """Runs a task on batches of raw tiles and returns probabilities.

    Raw pixels are normalised with the mean/std stored in the checkpoint; nodata pixels are set
    to the band mean (0 after normalisation) so that they do not pull predictions. Binary
    models (one logit) go through a sigmoid, others through a softmax.

    Args:
        task: a task in eval mode whose ``forward`` returns segmentation logits
            (B, K, H, W) at input size or scene logits (B, K).
    """

    def __init__(self, task: BaseTask) -> None:
        self.task = task.eval()
        self.device = torch.device("cpu")
        self._autocast: Callable[[], ContextManager] = contextlib.nullcontext
        self.kind = ""
        self.num_outputs = 0

    @property
    def in_chans(self) -> int:
        return int(self.task.hparams["in_chans"])

    @property
    def class_names(self) -> List[str]:
        return list(self.task.hparams.get("class_names") or [])

    def to(self, device: torch.device, autocast: Callable[[], ContextManager] = contextlib.nullcontext) -> "TileModel":
        """Move to ``device``; ``autocast()`` wraps every forward (mixed precision)."""
        self.task.to(device)
        self.device = device
        self._autocast = autocast
        return self

    def probe(self, tile_size: int) -> None:
        """Run one small blank image (64 pixels, or ``tile_size`` if smaller) to learn whether
        the task segments or classifies, and how many logits it returns.

        Raises:
            ValueError: the output is neither (B, K, H, W) at input size nor (B, K).
        """
        size = min(tile_size, _PROBE_SIZE)
        blank = np.zeros((1, self.in_chans, size, size), dtype=np.float32)
        logits = self._forward(blank, np.ones((1, size, size), dtype=bool))
        if logits.ndim == 4 and logits.shape[-2:] == (size, size):
            self.kind = SEGMENTATION
        elif logits.ndim == 2:
            self.kind = CLASSIFICATION
        else:
            raise ValueError(
                f"{type(self.task).__name__} returned logits of shape {tuple(logits.shape)} for a "
                f"{size}x{size} image; expected (B, K, {size}, {size}) for segmentation "
                "or (B, K) for scene classification"
            )
        self.num_outputs = int(logits.shape[1])

    @torch.inference_mode()
    def _forward(self, pixels: np.ndarray, valid: np.ndarray) -> torch.Tensor:
        batch = torch.from_numpy(pixels).to(self.device, non_blocking=True)
        valid_mask = torch.from_numpy(valid).to(self.device, non_blocking=True)
        inputs = self.task.normalize(batch).masked_fill_(~valid_mask[:, None], 0.0)
        with self._autocast():
            return self.task(inputs).float()

    @torch.inference_mode()
    def __call__(self, pixels: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Probabilities for a batch.

        Args:
            pixels: (B, in_chans, H, W) raw pixel values.
            valid: (B, H, W) bool, False at nodata pixels.

        Returns:
            float32 (B, K, H, W) for segmentation or (B, K) for classification.
        """
        logits = self._forward(pixels, valid)
        probabilities = torch.sigmoid(logits) if self.num_outputs == 1 else torch.softmax(logits, dim=1)
        return probabilities.cpu().numpy()
