"""``rsfm.BuildingExtractor``: building masks for images in memory with a trained checkpoint
or its ONNX export.

    extractor = rsfm.BuildingExtractor.load("buildings.ckpt")  # or "buildings.onnx"
    prediction = extractor.predict(image)[0]   # image: (H, W, bands) numpy, raw pixel values
    prediction.mask, prediction.probability

Whole GeoTIFF scenes go through :meth:`BuildingExtractor.predict_raster` (``rsfm.predict_raster``),
which tiles, blends and keeps georeferencing at bounded memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Sequence, Union

import numpy as np

from rsfm._images import ImageInput
from rsfm.inference.predictor import BasePredictor, Predictor, PredictorView, check_threshold, load_predictor
from rsfm.tasks.contract import SEGMENTATION

if TYPE_CHECKING:
    from rsfm.tasks.base import BaseTask

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
    """Building extraction with a trained checkpoint: a view of a predictor
    (:class:`rsfm.inference.predictor.Predictor`, or ``OnnxPredictor`` for an exported model).

    Images keep their size (the model takes any size); they are read with the checkpoint's
    bands and normalised with its statistics, as ``rsfm predict-raster`` does for each tile.
    Loaded from an ``.onnx`` file, the extractor runs with onnxruntime and needs no torch; it
    then has no :attr:`task` (``AttributeError``) and its :attr:`device` is ``"cpu"`` or ``"cuda"``.

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
        check_threshold(threshold)
        if task.task_kind != SEGMENTATION or task.num_outputs != 1:
            raise ValueError(f"BuildingExtractor needs a binary segmentation task, got a {type(task).__name__}")
        self.predictor: BasePredictor = Predictor(task, strict=strict)
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.threshold = threshold

    @classmethod
    def load(
        cls,
        checkpoint: Union[str, os.PathLike],
        device: Any = "cpu",
        threshold: float = 0.5,
        strict: bool = False,
    ) -> "BuildingExtractor":
        """Load a ``.ckpt`` written by ``rsfm fit`` with a building segmentation task, or an
        ``.onnx`` model exported from one with ``rsfm export`` (run with onnxruntime).

        Args:
            checkpoint: the ``.ckpt`` or ``.onnx`` file; the suffix decides.
            device: ``cpu``, ``cuda`` (``cuda:N``) or ``auto``; a ``torch.device`` for checkpoints.
            threshold, strict: as for the constructor.

        Raises:
            FileNotFoundError: the file does not exist.
            ImportError: the runtime is not installed (``rsfm[torch]`` for a ``.ckpt``,
                ``rsfm[runtime]`` for an ``.onnx``).
            ValueError: naming the file, when it is not a building segmentation model.
        """
        check_threshold(threshold)
        predictor = load_predictor(checkpoint, device=device, strict=strict)
        if predictor.kind != SEGMENTATION or predictor.num_outputs != 1:
            held = type(predictor.task).__name__ if isinstance(predictor, Predictor) else f"{predictor.kind} model"
            raise ValueError(f"{checkpoint}: holds a {held}, not a building segmentation task")
        extractor = cls.__new__(cls)  # a view of this predictor; __init__ makes one from a task
        extractor.predictor, extractor.checkpoint, extractor.threshold = predictor, Path(checkpoint), threshold
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
        """Map whole GeoTIFF scenes: ``rsfm.predict_raster`` with this extractor's checkpoint (or
        ONNX model)."""
        if self.checkpoint is None:
            raise ValueError(
                "predict_raster needs the checkpoint file: create the extractor with BuildingExtractor.load"
            )
        from rsfm.inference import predict_raster

        kwargs.setdefault("strict", self.strict)
        return predict_raster(inputs, checkpoint=self.checkpoint, output=output, **kwargs)
