"""``rsfm.BuildingExtractor``: building masks for images in memory with a trained checkpoint.

    extractor = rsfm.BuildingExtractor.load("buildings.ckpt")
    prediction = extractor.predict(image)[0]   # image: (H, W, bands) numpy, raw pixel values
    prediction.mask, prediction.probability

Whole GeoTIFF scenes go through :meth:`BuildingExtractor.predict_raster` (``rsfm.predict_raster``),
which tiles, blends and keeps georeferencing at bounded memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Sequence, Union

import numpy as np
import torch

from rsfm._images import ImageInput
from rsfm.inference.predictor import Predictor, PredictorView
from rsfm.tasks.base import BaseTask, load_task
from rsfm.tasks.contract import SEGMENTATION

__all__ = ["BuildingExtractor", "BuildingPrediction"]


@dataclass(frozen=True)
class BuildingPrediction:
    """The buildings found in one image.

    Attributes:
        mask: ``(H, W)`` uint8, 1 = building, 0 = background.
        probability: ``(H, W)`` float32 building probability (0-1).
    """

    mask: np.ndarray
    probability: np.ndarray


class BuildingExtractor(PredictorView):
    """Building extraction with a trained checkpoint: a view of :class:`rsfm.inference.Predictor`.

    Images keep their size (the model takes any size); they are read with the checkpoint's
    bands and normalised with its statistics, as ``rsfm predict-raster`` does for each tile.

    Args:
        task: a trained building segmentation task (e.g. from ``rsfm.load_checkpoint``).
        checkpoint: the file the task came from (needed by :meth:`predict_raster`).
        threshold: probability above which a pixel is a building.
        strict: raise ``PixelRangeMismatch`` instead of warning when an image's data type or
            value range differs from the training data's (see ``rsfm.data.pixel_range``).
    """

    def __init__(
        self,
        task: BaseTask,
        checkpoint: Union[str, os.PathLike, None] = None,
        threshold: float = 0.5,
        strict: bool = False,
    ) -> None:
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
        if task.task_kind != SEGMENTATION or task.num_outputs != 1:
            raise ValueError(f"BuildingExtractor needs a binary segmentation task, got a {type(task).__name__}")
        self.predictor = Predictor(task, strict=strict)
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.threshold = threshold

    @classmethod
    def load(
        cls,
        checkpoint: Union[str, os.PathLike],
        device: Union[str, torch.device] = "cpu",
        threshold: float = 0.5,
        strict: bool = False,
    ) -> "BuildingExtractor":
        """Load a ``.ckpt`` written by ``rsfm fit`` with a building segmentation task.

        Raises:
            ValueError: naming the file, when it is not a building segmentation checkpoint.
        """
        task = load_task(checkpoint, map_location=device)
        if task.task_kind != SEGMENTATION or task.num_outputs != 1:
            raise ValueError(f"{checkpoint}: holds a {type(task).__name__}, not a building segmentation task")
        extractor = cls(task, checkpoint=checkpoint, threshold=threshold, strict=strict)
        extractor.predictor.fuse()  # the task is ours alone
        return extractor

    def predict(self, images: Union[ImageInput, Sequence[ImageInput]]) -> List[BuildingPrediction]:
        """Building masks for one image or a list of them, one forward pass per image.

        Args:
            images: file paths (the bands the model was trained on are read), numpy arrays
                ``(H, W, bands)`` or ``(H, W)``, or tensors ``(bands, H, W)``; raw pixel values
                in the units of the training data. For scenes larger than a few thousand pixels
                use :meth:`predict_raster`.

        Returns:
            One ``BuildingPrediction`` per image, in input order, at the image's size.

        Raises:
            ValueError: an image has the wrong number of bands or dimensions (naming it).
            rsfm.data.pixel_range.PixelRangeMismatch: ``strict`` and an image's pixels differ
                from the training data's (otherwise a ``PixelRangeWarning``).
        """
        predictions = []
        for array, _ in self.predictor.read_images(images):
            probability = self.predictor(array.transpose(2, 0, 1)[None])[0, 0]
            predictions.append(BuildingPrediction((probability > self.threshold).astype(np.uint8), probability))
        return predictions

    def predict_raster(self, inputs: Any, output: Union[str, os.PathLike], **kwargs: Any) -> List[Any]:
        """Map whole GeoTIFF scenes: ``rsfm.predict_raster`` with this extractor's checkpoint."""
        if self.checkpoint is None:
            raise ValueError(
                "predict_raster needs the checkpoint file: create the extractor with BuildingExtractor.load"
            )
        from rsfm.inference import predict_raster

        kwargs.setdefault("strict", self.strict)
        return predict_raster(inputs, checkpoint=self.checkpoint, output=output, **kwargs)
