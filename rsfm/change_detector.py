"""``rsfm.ChangeDetector``: change between two images of one place with a trained
change-detection checkpoint or its ONNX export.

    detector = rsfm.ChangeDetector.load("change.ckpt")
    prediction = detector.predict(before, after)   # (H, W, bands) numpy or files, same size
    prediction.mask, prediction.probability

Whole GeoTIFF scenes, also of different grids, CRS and resolutions, go through
:meth:`ChangeDetector.predict_raster` (``rsfm.predict_change``), which warps the before date
onto the after date's grid, tiles, blends and keeps georeferencing at bounded memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from rsfm._images import ImageInput
from rsfm.inference.predictor import BasePredictor, Predictor, PredictorView, check_threshold, load_predictor
from rsfm.tasks.contract import CHANGE

if TYPE_CHECKING:
    from rsfm.inference.predict import PredictionResult
    from rsfm.tasks.base import BaseTask

__all__ = ["ChangeDetector", "ChangePrediction"]


@dataclass(frozen=True)
class ChangePrediction:
    """The change found between two images.

    Attributes:
        mask: ``(H, W)`` uint8, 1 = change, 0 = no change.
        probability: ``(H, W)`` float32 change probability (0-1).
    """

    mask: np.ndarray
    probability: np.ndarray


class ChangeDetector(PredictorView):
    """Change detection with a trained checkpoint: a view of a predictor
    (:class:`rsfm.inference.predictor.Predictor`, or ``OnnxPredictor`` for an exported model).

    The two images are read with the checkpoint's bands and normalised with each date's
    statistics, as ``rsfm predict-change`` does for each tile. Loaded from an ``.onnx`` file,
    the detector runs with onnxruntime and needs no torch.

    Args:
        task: a trained change-detection task (e.g. from ``rsfm.load_checkpoint``).
        checkpoint: the file the task came from (needed by :meth:`predict_raster`).
        threshold: probability above which a pixel has changed.
        strict: raise ``PixelRangeMismatch`` instead of warning when an image's data type or
            value range differs from the training data's (see ``rsfm.data.pixel_range``).

    Raises:
        ValueError: the task does not detect change (binary, one logit per pixel).
    """

    def __init__(
        self,
        task: BaseTask,
        checkpoint: Union[str, os.PathLike, None] = None,
        threshold: float = 0.5,
        strict: bool = False,
    ) -> None:
        check_threshold(threshold)
        if task.task_kind != CHANGE or task.num_outputs != 1:
            raise ValueError(
                f"ChangeDetector needs a binary change-detection task, got a {type(task).__name__} with "
                f"{task.num_outputs} output(s); map semantic change with rsfm.predict_change"
            )
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
    ) -> "ChangeDetector":
        """Load a ``.ckpt`` written by ``rsfm fit`` with a change-detection task, or an ``.onnx``
        model exported from one with ``rsfm export`` (run with onnxruntime).

        Args:
            checkpoint: the ``.ckpt`` or ``.onnx`` file; the suffix decides.
            device: ``cpu``, ``cuda`` (``cuda:N``) or ``auto``; a ``torch.device`` for checkpoints.
            threshold, strict: as for the constructor.

        Raises:
            FileNotFoundError: the file does not exist.
            ImportError: the runtime is not installed (``rsfm[torch]`` for a ``.ckpt``,
                ``rsfm[runtime]`` for an ``.onnx``).
            ValueError: naming the file, when it is not a binary change-detection model.
        """
        check_threshold(threshold)
        predictor = load_predictor(checkpoint, device=device, strict=strict)
        if predictor.kind == CHANGE and predictor.num_outputs != 1:
            raise ValueError(
                f"{checkpoint}: holds a semantic change model ({predictor.num_outputs} classes); ChangeDetector is "
                "for binary change: map it with rsfm.predict_change"
            )
        if predictor.kind != CHANGE:
            held = type(predictor.task).__name__ if isinstance(predictor, Predictor) else f"{predictor.kind} model"
            raise ValueError(
                f"{checkpoint}: holds a {held}, not a change-detection task (for one image use "
                "rsfm.BuildingExtractor or rsfm.SceneClassifier)"
            )
        detector = cls.__new__(cls)  # a view of this predictor; __init__ makes one from a task
        detector.predictor, detector.checkpoint, detector.threshold = predictor, Path(checkpoint), threshold
        return detector

    def predict(self, before: ImageInput, after: ImageInput) -> ChangePrediction:
        """Change between two co-registered images of the same size, in one forward pass.

        Args:
            before, after: the earlier and the later image: file paths (the bands the model was
                trained on are read), numpy arrays ``(H, W, bands)`` or ``(H, W)``, or tensors
                ``(bands, H, W)``; raw pixel values in the units of the training data. For
                georeferenced scenes, also of different grids, use :meth:`predict_raster`.

        Returns:
            The change mask and probability at the images' size.

        Raises:
            ValueError: an image has the wrong number of bands or dimensions, or the two sizes
                differ (naming the images).
            rsfm.data.pixel_range.PixelRangeMismatch: ``strict`` and an image's pixels differ
                from the training data's (otherwise a ``PixelRangeWarning``).
        """
        (before_array, before_name), (after_array, after_name) = self.predictor.read_images([before, after])
        if before_array.shape[:2] != after_array.shape[:2]:
            raise ValueError(
                f"{before_name} (before) is {before_array.shape[0]}x{before_array.shape[1]} pixels, {after_name} "
                f"(after) {after_array.shape[0]}x{after_array.shape[1]}: the dates must be co-registered images "
                "of the same size (for georeferenced rasters of different grids use predict_raster)"
            )
        pair = np.concatenate([before_array, after_array], axis=2).transpose(2, 0, 1)[None]
        probability = self.predictor(pair)[0, 0]
        return ChangePrediction((probability > self.threshold).astype(np.uint8), probability)

    def predict_raster(
        self,
        before: Union[str, os.PathLike],
        after: Union[str, os.PathLike],
        output: Union[str, os.PathLike],
        **kwargs: Any,
    ) -> PredictionResult:
        """Map the change between two whole GeoTIFF scenes: ``rsfm.predict_change`` with this
        detector's checkpoint (or ONNX model); ``kwargs`` are its options."""
        if self.checkpoint is None:
            raise ValueError("predict_raster needs the checkpoint file: create the detector with ChangeDetector.load")
        from rsfm.inference import predict_change

        kwargs.setdefault("strict", self.strict)
        return predict_change(before, after, self.checkpoint, output, **kwargs)
