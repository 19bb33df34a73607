"""``Predictor``: one trained task and its input contract, as a function from raw pixels to
probabilities. ``SceneClassifier``, ``BuildingExtractor`` and ``predict_raster`` are views of it,
so a checkpoint prepares pixels the same way for arrays, image files and tiled rasters."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable, ContextManager, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from rsfm._images import ImageInput, as_image_array, as_image_list
from rsfm.data.pixel_range import check_pixels, describe_pixels
from rsfm.models import fuse_batchnorm
from rsfm.tasks.base import BaseTask, load_task
from rsfm.tasks.contract import CLASSIFICATION, SEGMENTATION, InputContract

__all__ = ["CLASSIFICATION", "SEGMENTATION", "Predictor", "PredictorView"]

_FALLBACK_TILE_SIZE = 512


class Predictor:
    """A trained task with the contract it was trained under.

    The task is put in eval mode. Predictors made by ``load`` own their task and fold its
    convolution-branch BatchNorms into the convolutions once (:meth:`fuse`); a task passed in
    is left as it is, so it can still be trained. Raw pixels (any numeric dtype, in the training data's units) are prepared as the
    contract says: scene models get each image resized to ``image_size`` (bicubic, the evaluation
    transform of training); pixels marked invalid (nodata) are set to the band mean, i.e. 0
    after normalisation; then the task's normalisation and forward pass; binary models (one
    logit) go through a sigmoid, others through a softmax.

    Args:
        task: a trained rsfm task (e.g. from ``rsfm.tasks.load_task``).
        image_size: override the contract's input size of a scene model (pixels).
        strict: raise ``PixelRangeMismatch`` instead of warning when input pixels differ from the
            training pixels (see ``rsfm.data.pixel_range``).
    """

    def __init__(self, task: BaseTask, image_size: Optional[int] = None, strict: bool = False) -> None:
        self.task = task.eval()
        self.contract: InputContract = task.contract
        self.image_size = image_size or self.contract.image_size
        if self.contract.task == CLASSIFICATION and self.image_size is None:
            raise ValueError("the task does not record its input size; pass image_size=... (pixels)")
        self.strict = strict
        self._autocast: Callable[[], ContextManager] = contextlib.nullcontext
        self._resize = None
        if self.contract.task == CLASSIFICATION:
            from rsfm.data.transforms import scene_eval_transform

            self._resize = scene_eval_transform(self.image_size)
        self._fill = np.asarray(self.contract.mean, dtype=np.float32).reshape(-1, 1, 1)

    @classmethod
    def load(
        cls,
        checkpoint: Union[str, os.PathLike],
        device: Union[str, torch.device] = "cpu",
        image_size: Optional[int] = None,
        strict: bool = False,
    ) -> "Predictor":
        """Rebuild the task stored in ``checkpoint`` (a ``.ckpt`` written by ``rsfm fit``).

        Raises:
            FileNotFoundError: the file does not exist.
            ValueError: naming the file, when it is not an rsfm task checkpoint.
        """
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"{checkpoint}: checkpoint not found (pass the .ckpt written by 'rsfm fit')")
        return cls(load_task(checkpoint, map_location=device), image_size=image_size, strict=strict).fuse()

    def fuse(self) -> "Predictor":
        """Fold the task's BatchNorms into its convolutions (``rsfm.models.fuse_batchnorm``): the
        same outputs with one pass less over the activations; the task cannot be trained after."""
        fuse_batchnorm(self.task)
        return self

    # what the contract says -------------------------------------------------------------

    @property
    def kind(self) -> str:
        """``"classification"`` or ``"segmentation"``."""
        return self.contract.task

    @property
    def in_chans(self) -> int:
        return self.contract.in_chans

    @property
    def num_outputs(self) -> int:
        return self.contract.num_outputs

    @property
    def class_names(self) -> List[str]:
        return list(self.contract.class_names)

    @property
    def device(self) -> torch.device:
        return self.task.device

    def default_tile_size(self) -> int:
        """Tile side for tiled inference: the training image or patch size (512 when unknown)."""
        return int(self.contract.image_size or _FALLBACK_TILE_SIZE)

    def to(
        self, device: Union[str, torch.device], autocast: Callable[[], ContextManager] = contextlib.nullcontext
    ) -> "Predictor":
        """Move to ``device``; ``autocast()`` wraps every forward (mixed precision)."""
        self.task.to(device)
        self._autocast = autocast
        return self

    # inputs -----------------------------------------------------------------------------

    def read_images(self, images: Union[ImageInput, Sequence[ImageInput]]) -> List[Tuple[np.ndarray, str]]:
        """``(H, W, in_chans)`` raw arrays and names for file paths, arrays or tensors (the
        contract's bands are read from files), each checked against the training pixels.

        Raises:
            ValueError: an image has the wrong number of bands or dimensions (naming it).
            rsfm.data.pixel_range.PixelRangeMismatch: ``strict`` and an image's pixels differ
                from the training data's (otherwise a ``PixelRangeWarning``).
        """
        arrays = []
        for position, image in enumerate(as_image_list(images)):
            array, name = as_image_array(image, position, self.in_chans, self.contract.bands)
            self.check_pixels(describe_pixels(array), name, stacklevel=3)
            arrays.append((array, name))
        return arrays

    def check_pixels(self, observed: dict, source: str, stacklevel: int = 2) -> None:
        """Warn (or raise when ``strict``) when pixels described by ``observed`` do not look like
        the training pixels."""
        check_pixels(observed, self.contract.pixel_range, source, self.strict, stacklevel=stacklevel + 1)

    # forward ----------------------------------------------------------------------------

    @torch.inference_mode()
    def __call__(self, pixels: np.ndarray, valid: Optional[np.ndarray] = None) -> np.ndarray:
        """Probabilities for a batch of raw images.

        Args:
            pixels: ``(B, in_chans, H, W)`` raw pixel values; for scene models any size (each
                image is resized to ``image_size``).
            valid: ``(B, H, W)`` bool, False at nodata pixels (default: all valid).

        Returns:
            float32 ``(B, K, H, W)`` for segmentation or ``(B, K)`` for classification.
        """
        pixels = np.asarray(pixels, dtype=np.float32)
        if valid is not None and not valid.all():
            pixels = np.where(valid[:, None], pixels, self._fill)
        if self._resize is not None:
            pixels = np.stack(
                [self._resize(image=image.transpose(1, 2, 0))["image"].transpose(2, 0, 1) for image in pixels]
            )
        batch = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device, non_blocking=True)
        with self._autocast():
            logits = self.task.forward_raw(batch).float()
        probabilities = torch.sigmoid(logits) if self.contract.binary else torch.softmax(logits, dim=1)
        return probabilities.cpu().numpy()


class PredictorView:
    """What ``SceneClassifier`` and ``BuildingExtractor`` share: a :class:`Predictor` and the
    task, contract and ``strict`` switch it holds."""

    predictor: Predictor

    @property
    def task(self) -> BaseTask:
        return self.predictor.task

    @property
    def strict(self) -> bool:
        """Raise instead of warning when input pixels differ from the training pixels."""
        return self.predictor.strict

    @strict.setter
    def strict(self, value: bool) -> None:
        self.predictor.strict = value

    @property
    def class_names(self) -> List[str]:
        """Class names in the model's output order."""
        return self.predictor.class_names

    @property
    def device(self) -> torch.device:
        return self.predictor.device
