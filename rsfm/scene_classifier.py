"""``rsfm.SceneClassifier``: classify scene images with a trained checkpoint or its ONNX export.

classifier = rsfm.SceneClassifier.load("runs/scene_quickstart/.../last.ckpt")  # or "scene.onnx"
for prediction in classifier.predict(["a.jpg", "b.tif"]):
    print(prediction.label, prediction.probability)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from rsfm._images import ImageInput
from rsfm.inference.predictor import BasePredictor, Predictor, PredictorView, load_predictor
from rsfm.tasks.contract import CLASSIFICATION

if TYPE_CHECKING:
    from rsfm.tasks.base import BaseTask

__all__ = ["ImageInput", "SceneClassifier", "ScenePrediction"]


@dataclass(frozen=True)
class ScenePrediction:
    """The classification of one image.

    Attributes:
        label: the most probable class name.
        probability: its probability (0-1).
        probabilities: every class name with its probability, in the model's class order.
    """

    label: str
    probability: float
    probabilities: Dict[str, float]

    def top(self, k: int = 5) -> List[Tuple[str, float]]:
        """The ``k`` most probable ``(class name, probability)`` pairs, most probable first."""
        return sorted(self.probabilities.items(), key=lambda item: item[1], reverse=True)[:k]


class SceneClassifier(PredictorView):
    """Scene classification with a trained checkpoint: a view of a predictor
    (:class:`rsfm.inference.predictor.Predictor`, or ``OnnxPredictor`` for an exported model).

    Images are read and resized exactly as for evaluation during training (the checkpoint's
    bands and ``image_size``, bicubic resize of the whole scene) and normalised with the
    statistics stored in the checkpoint; ``rsfm predict-raster`` prepares tiles the same way.
    Loaded from an ``.onnx`` file, the classifier runs with onnxruntime and needs no torch; it
    then has no :attr:`task` (``AttributeError``) and its :attr:`device` is ``"cpu"`` or ``"cuda"``.

    Args:
        task: a trained classification task (e.g. from ``rsfm.tasks.load_task``).
        image_size: model input side in pixels; default: the size the task was trained with.
        batch_size: images per forward pass.
        strict: raise ``PixelRangeMismatch`` instead of warning when an image's data type or
            value range differs from the training data's (see ``rsfm.data.pixel_range``).
    """

    def __init__(
        self,
        task: BaseTask,
        image_size: Optional[int] = None,
        batch_size: int = 32,
        strict: bool = False,
    ) -> None:
        if task.task_kind != CLASSIFICATION:
            raise ValueError(f"SceneClassifier needs a classification task, got a {type(task).__name__}")
        self.predictor: BasePredictor = Predictor(task, image_size=image_size, strict=strict)
        self.batch_size = batch_size

    @classmethod
    def load(
        cls,
        checkpoint: Union[str, os.PathLike],
        device: Any = "cpu",
        image_size: Optional[int] = None,
        batch_size: int = 32,
        strict: bool = False,
    ) -> "SceneClassifier":
        """Load a ``.ckpt`` written by ``rsfm fit`` with a scene classification task, or an
        ``.onnx`` model exported from one with ``rsfm export`` (run with onnxruntime).

        Args:
            checkpoint: the ``.ckpt`` or ``.onnx`` file; the suffix decides.
            device: ``cpu``, ``cuda`` (``cuda:N``) or ``auto``; a ``torch.device`` for checkpoints.
            image_size, batch_size, strict: as for the constructor.

        Raises:
            FileNotFoundError: the file does not exist.
            ImportError: the runtime is not installed (``rsfm[torch]`` for a ``.ckpt``,
                ``rsfm[runtime]`` for an ``.onnx``).
            ValueError: naming the file, when it is not a scene classification model.
        """
        predictor = load_predictor(checkpoint, device=device, image_size=image_size, strict=strict)
        if predictor.kind != CLASSIFICATION:
            held = type(predictor.task).__name__ if isinstance(predictor, Predictor) else f"{predictor.kind} model"
            raise ValueError(f"{checkpoint}: holds a {held}, not a scene classification task")
        classifier = cls.__new__(cls)  # a view of this predictor; __init__ makes one from a task
        classifier.predictor, classifier.batch_size = predictor, batch_size
        return classifier

    @property
    def image_size(self) -> int:
        return int(self.predictor.image_size)

    def predict(self, images: Union[ImageInput, Sequence[ImageInput]]) -> List[ScenePrediction]:
        """Classify images.

        Args:
            images: one image or a list of them, each a file path (JPEG/PNG/TIFF, the bands the
                model was trained on are read), a numpy array ``(H, W, bands)`` or ``(H, W)``, or a
                tensor ``(bands, H, W)``; a 4-D numpy ``(N, H, W, bands)`` or tensor
                ``(N, bands, H, W)`` is a batch. Pixel values are raw, in the units of the
                training files (e.g. 0-255); any size is resized to the model's input.

        Returns:
            One ``ScenePrediction`` per image, in input order.

        Raises:
            ValueError: an image has the wrong number of bands or dimensions (naming it).
            rsfm.data.ImageReadError: a file cannot be read.
            rsfm.data.pixel_range.PixelRangeMismatch: ``strict`` and an image's pixels differ
                from the training data's (otherwise a ``PixelRangeWarning``).
        """
        arrays = [array.transpose(2, 0, 1) for array, _ in self.predictor.read_images(images)]
        predictions: List[ScenePrediction] = []
        start = 0
        while start < len(arrays):  # batches of consecutive images of one size
            stop = start + 1
            while stop < min(len(arrays), start + self.batch_size) and arrays[stop].shape == arrays[start].shape:
                stop += 1
            probabilities = self.predictor(np.stack(arrays[start:stop]))
            predictions.extend(self._to_prediction(row) for row in probabilities)
            start = stop
        return predictions

    def _to_prediction(self, row: np.ndarray) -> ScenePrediction:
        best = int(row.argmax())
        return ScenePrediction(
            label=self.class_names[best],
            probability=float(row[best]),
            probabilities={name: float(value) for name, value in zip(self.class_names, row)},
        )
