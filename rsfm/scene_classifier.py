"""``rsfm.SceneClassifier``: classify scene images with a trained checkpoint.

    classifier = rsfm.SceneClassifier.load("runs/scene_quickstart/.../last.ckpt")
    for prediction in classifier.predict(["a.jpg", "b.tif"]):
        print(prediction.label, prediction.probability)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from rsfm._images import ImageInput, as_image_array, as_image_list
from rsfm.data.pixel_range import check_pixels, describe_pixels
from rsfm.data.transforms import scene_eval_transform
from rsfm.tasks.base import load_task
from rsfm.tasks.classification import SceneClassificationTask

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


class SceneClassifier:
    """Inference wrapper around a trained ``SceneClassificationTask``.

    Images are read and resized exactly as for evaluation during training (same bands, same
    ``image_size``, bicubic resize of the whole scene) and normalised with the statistics stored
    in the checkpoint.

    Args:
        task: a trained task (e.g. from ``rsfm.tasks.load_task``).
        image_size: model input side in pixels; default: the size the task was trained with.
        batch_size: images per forward pass.
        strict: raise ``PixelRangeMismatch`` instead of warning when an image's data type or
            value range differs from the training data's (see ``rsfm.data.pixel_range``).
    """

    def __init__(
        self,
        task: SceneClassificationTask,
        image_size: Optional[int] = None,
        batch_size: int = 32,
        strict: bool = False,
    ) -> None:
        self.task = task.eval()
        self.strict = strict
        self.image_size = image_size or task.hparams.image_size
        if self.image_size is None:
            raise ValueError("the task does not record its input size; pass image_size=... (pixels)")
        self.batch_size = batch_size
        self._transform = scene_eval_transform(self.image_size)

    @classmethod
    def load(
        cls,
        checkpoint: Union[str, os.PathLike],
        device: Union[str, torch.device] = "cpu",
        image_size: Optional[int] = None,
        batch_size: int = 32,
        strict: bool = False,
    ) -> "SceneClassifier":
        """Load a ``.ckpt`` written by ``rsfm fit`` with a ``SceneClassificationTask``.

        Raises:
            ValueError: naming the file, when it is not a scene classification checkpoint.
        """
        task = load_task(checkpoint, map_location=device)
        if not isinstance(task, SceneClassificationTask):
            raise ValueError(f"{checkpoint}: holds a {type(task).__name__}, not a SceneClassificationTask")
        return cls(task, image_size=image_size, batch_size=batch_size, strict=strict)

    @property
    def class_names(self) -> List[str]:
        """Class names in the model's output order."""
        return self.task.class_names

    @property
    def device(self) -> torch.device:
        return self.task.device

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
        arrays = []
        for position, image in enumerate(as_image_list(images)):
            array, name = as_image_array(image, position, self.task.hparams.in_chans, self.task.hparams.bands)
            check_pixels(describe_pixels(array), self.task.pixel_range, name, self.strict)
            arrays.append(array)
        predictions: List[ScenePrediction] = []
        for start in range(0, len(arrays), self.batch_size):
            batch = torch.stack([self._prepare(array) for array in arrays[start : start + self.batch_size]])
            with torch.inference_mode():
                probabilities = self.task(batch.to(self.device)).softmax(dim=1).float().cpu().numpy()
            predictions.extend(self._to_prediction(row) for row in probabilities)
        return predictions

    def _prepare(self, array: np.ndarray) -> torch.Tensor:
        resized = self._transform(image=array.astype(np.float32))["image"]
        return torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1)))

    def _to_prediction(self, row: np.ndarray) -> ScenePrediction:
        best = int(row.argmax())
        return ScenePrediction(
            label=self.class_names[best],
            probability=float(row[best]),
            probabilities={name: float(value) for name, value in zip(self.class_names, row)},
        )
