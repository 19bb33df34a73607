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

from rsfm._images import ImageInput, as_image_array, as_image_list
from rsfm.data.pixel_range import check_pixels, describe_pixels
from rsfm.tasks.base import load_task
from rsfm.tasks.segmentation import BuildingSegmentationTask

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


class BuildingExtractor:
    """Inference wrapper around a trained ``BuildingSegmentationTask``.

    Images keep their size (the model takes any size); they are normalised with the statistics
    stored in the checkpoint.

    Args:
        task: a trained task (e.g. from ``rsfm.load_checkpoint``).
        checkpoint: the file the task came from (needed by :meth:`predict_raster`).
        threshold: probability above which a pixel is a building.
        strict: raise ``PixelRangeMismatch`` instead of warning when an image's data type or
            value range differs from the training data's (see ``rsfm.data.pixel_range``).
    """

    def __init__(
        self,
        task: BuildingSegmentationTask,
        checkpoint: Union[str, os.PathLike, None] = None,
        threshold: float = 0.5,
        strict: bool = False,
    ) -> None:
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
        self.task = task.eval()
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.threshold = threshold
        self.strict = strict

    @classmethod
    def load(
        cls,
        checkpoint: Union[str, os.PathLike],
        device: Union[str, torch.device] = "cpu",
        threshold: float = 0.5,
        strict: bool = False,
    ) -> "BuildingExtractor":
        """Load a ``.ckpt`` written by ``rsfm fit`` with a ``BuildingSegmentationTask``.

        Raises:
            ValueError: naming the file, when it is not a building segmentation checkpoint.
        """
        task = load_task(checkpoint, map_location=device)
        if not isinstance(task, BuildingSegmentationTask):
            raise ValueError(f"{checkpoint}: holds a {type(task).__name__}, not a BuildingSegmentationTask")
        return cls(task, checkpoint=checkpoint, threshold=threshold, strict=strict)

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
        hparams = self.task.hparams
        predictions = []
        for position, image in enumerate(as_image_list(images)):
            array, name = as_image_array(image, position, hparams.in_chans, hparams.get("bands"))
            check_pixels(describe_pixels(array), self.task.pixel_range, name, self.strict)
            batch = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32))[None]
            with torch.inference_mode():
                logits = self.task(self.task.normalize(batch.to(self.task.device)))
            probability = torch.sigmoid(logits[0, 0]).float().cpu().numpy()
            predictions.append(BuildingPrediction((probability > self.threshold).astype(np.uint8), probability))
        return predictions

    def predict_raster(self, inputs: Any, output: Union[str, os.PathLike], **kwargs: Any) -> List[Any]:
        """Map whole GeoTIFF scenes: ``rsfm.predict_raster`` with this extractor's checkpoint."""
        if self.checkpoint is None:
            raise ValueError("predict_raster needs the checkpoint file: create the extractor with BuildingExtractor.load")
        from rsfm.inference import predict_raster

        kwargs.setdefault("strict", self.strict)
        return predict_raster(inputs, checkpoint=self.checkpoint, output=output, **kwargs)
