"""Predictors: a trained model and its input contract, as a function from raw pixels to
probabilities. :class:`Predictor` runs a task checkpoint (``.ckpt``) with PyTorch,
:class:`~rsfm.inference.onnx_predictor.OnnxPredictor` a model exported with ``rsfm export``
(``.onnx``) with onnxruntime; both prepare pixels with the same code (:class:`BasePredictor`).
``SceneClassifier``, ``BuildingExtractor`` and ``predict_raster`` are views of a predictor, so a
model prepares pixels the same way for arrays, image files and tiled rasters, in either runtime.

Importing this module does not import torch: an install without PyTorch runs ONNX models
through it, and torch is imported when a checkpoint is loaded.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ContextManager, List, Optional, Sequence, Tuple, Union

import numpy as np

from rsfm._images import ImageInput, as_image_array, as_image_list
from rsfm.data.pixel_range import check_pixels, describe_pixels
from rsfm.inference.errors import is_missing_torch, needs_torch
from rsfm.tasks.contract import CLASSIFICATION, SEGMENTATION, InputContract

if TYPE_CHECKING:
    import torch

    from rsfm.inference.onnx_predictor import OnnxPredictor
    from rsfm.tasks.base import BaseTask

__all__ = ["CLASSIFICATION", "SEGMENTATION", "BasePredictor", "Predictor", "PredictorView", "load_predictor"]

ONNX_SUFFIX = ".onnx"
_FALLBACK_TILE_SIZE = 512
_OPENCV_CHANNELS = 4


def _resize_scene(image: np.ndarray, size: int) -> np.ndarray:
    """``(H, W, bands)`` float32 -> ``(size, size, bands)``, bicubic: what the evaluation transform
    of training (``rsfm.data.transforms.scene_eval_transform``, albumentations' ``Resize``) does,
    to the bit. Written with OpenCV directly because albumentations imports torch; OpenCV's result
    depends on how many bands go through one call, so the bands are grouped as albumentations
    groups them (all at once up to 4, else groups of 4, a trailing pair one band at a time)."""
    import cv2

    if image.shape[:2] == (size, size):
        return image
    bands = image.shape[2]
    groups = [(0, bands)]
    if bands > _OPENCV_CHANNELS:
        groups = []
        for start in range(0, bands, _OPENCV_CHANNELS):
            stop = min(start + _OPENCV_CHANNELS, bands)
            groups += [(start, start + 1), (start + 1, stop)] if stop - start == 2 else [(start, stop)]
    parts = [
        cv2.resize(np.ascontiguousarray(image[:, :, start:stop]), (size, size), interpolation=cv2.INTER_CUBIC)
        for start, stop in groups
    ]
    return np.concatenate([part.reshape(size, size, -1) for part in parts], axis=2)


class BasePredictor:
    """What every predictor shares: the contract, the checks of input pixels, and the
    preparation of raw pixels for the model.

    Raw pixels (any numeric dtype, in the training data's units) are prepared as the contract
    says: pixels marked invalid (nodata) are set to the band mean, i.e. 0 after normalisation;
    scene models get each image resized to ``image_size`` (bicubic, the evaluation transform of
    training). The model normalises and runs them; binary models (one logit) go through a
    sigmoid, others through a softmax. Subclasses run the model (:meth:`_probabilities`).

    Args:
        contract: what the model takes and returns.
        image_size: override the contract's input size of a scene model (pixels).
        strict: raise ``PixelRangeMismatch`` instead of warning when input pixels differ from the
            training pixels (see ``rsfm.data.pixel_range``).

    Raises:
        ValueError: a scene model whose contract records no input size, and no ``image_size``.
    """

    def __init__(self, contract: InputContract, image_size: Optional[int] = None, strict: bool = False) -> None:
        self.contract = contract
        self.image_size = image_size or contract.image_size
        if contract.task == CLASSIFICATION and self.image_size is None:
            raise ValueError("the model does not record its input size; pass image_size=... (pixels)")
        self.strict = strict
        self._fill = np.asarray(contract.mean, dtype=np.float32).reshape(-1, 1, 1)

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

    def default_tile_size(self) -> int:
        """Tile side for tiled inference: the training image or patch size (512 when unknown)."""
        return int(self.contract.image_size or _FALLBACK_TILE_SIZE)

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

    def prepare(self, pixels: np.ndarray, valid: Optional[np.ndarray] = None) -> np.ndarray:
        """Raw pixels as the model takes them: float32, contiguous, nodata set to the band
        mean, scene images resized to ``image_size``. Arguments as for :meth:`__call__`."""
        pixels = np.asarray(pixels, dtype=np.float32)
        if valid is not None and not valid.all():
            pixels = np.where(valid[:, None], pixels, self._fill)
        if self.kind == CLASSIFICATION:
            pixels = np.stack(
                [_resize_scene(image.transpose(1, 2, 0), self.image_size).transpose(2, 0, 1) for image in pixels]
            )
        return np.ascontiguousarray(pixels)

    def __call__(self, pixels: np.ndarray, valid: Optional[np.ndarray] = None) -> np.ndarray:
        """Probabilities for a batch of raw images.

        Args:
            pixels: ``(B, in_chans, H, W)`` raw pixel values; for scene models any size (each
                image is resized to ``image_size``).
            valid: ``(B, H, W)`` bool, False at nodata pixels (default: all valid).

        Returns:
            float32 ``(B, K, H, W)`` for segmentation or ``(B, K)`` for classification.
        """
        return self._probabilities(self.prepare(pixels, valid))

    def _probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """The model's probabilities for pixels made by :meth:`prepare`."""
        raise NotImplementedError


class Predictor(BasePredictor):
    """A trained task (PyTorch) with the contract it was trained under.

    The task is put in eval mode. Predictors made by ``load`` own their task and fold its
    convolution-branch BatchNorms into the convolutions once (:meth:`fuse`); a task passed in
    is left as it is, so it can still be trained. Pixels are prepared as :class:`BasePredictor`
    says, then go through the task's normalisation and forward pass.

    Args:
        task: a trained rsfm task (e.g. from ``rsfm.tasks.load_task``).
        image_size: override the contract's input size of a scene model (pixels).
        strict: raise ``PixelRangeMismatch`` instead of warning when input pixels differ from the
            training pixels (see ``rsfm.data.pixel_range``).
    """

    def __init__(self, task: BaseTask, image_size: Optional[int] = None, strict: bool = False) -> None:
        self.task = task.eval()
        super().__init__(task.contract, image_size=image_size, strict=strict)
        self._autocast: Callable[[], ContextManager] = contextlib.nullcontext

    @classmethod
    def load(
        cls,
        checkpoint: Union[str, os.PathLike],
        device: Union[str, torch.device] = "cpu",
        image_size: Optional[int] = None,
        strict: bool = False,
    ) -> "Predictor":
        """Rebuild the task stored in ``checkpoint`` (a ``.ckpt`` written by ``rsfm fit``) on
        ``device`` (``cpu``, ``cuda``, ``cuda:N``, or ``auto``: CUDA when available).

        Raises:
            FileNotFoundError: the file does not exist.
            ImportError: PyTorch is not installed (``pip install 'rsfm[torch]'``).
            ValueError: naming the file, when it is not an rsfm task checkpoint.
        """
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"{checkpoint}: checkpoint not found (pass the .ckpt written by 'rsfm fit')")
        try:
            import torch

            from rsfm.tasks.base import load_task
        except ImportError as error:
            if is_missing_torch(error):
                raise needs_torch(f"{checkpoint}: a task checkpoint (.ckpt)") from error
            raise
        if str(device) == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return cls(load_task(checkpoint, map_location=device), image_size=image_size, strict=strict).fuse()

    def fuse(self) -> "Predictor":
        """Fold the task's BatchNorms into its convolutions (``rsfm.models.fuse_batchnorm``): the
        same outputs with one pass less over the activations; the task cannot be trained after."""
        from rsfm.models import fuse_batchnorm

        fuse_batchnorm(self.task)
        return self

    @property
    def device(self) -> torch.device:
        return self.task.device

    def to(
        self, device: Union[str, torch.device], autocast: Callable[[], ContextManager] = contextlib.nullcontext
    ) -> "Predictor":
        """Move to ``device``; ``autocast()`` wraps every forward (mixed precision)."""
        self.task.to(device)
        self._autocast = autocast
        return self

    def _probabilities(self, pixels: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            batch = torch.from_numpy(pixels).to(self.device, non_blocking=True)
            with self._autocast():
                logits = self.task.forward_raw(batch).float()
            probabilities = torch.sigmoid(logits) if self.contract.binary else torch.softmax(logits, dim=1)
            return probabilities.cpu().numpy()


def is_onnx_model(path: Union[str, os.PathLike]) -> bool:
    """Whether ``path`` names an ONNX model (``.onnx``), run by onnxruntime, rather than a task
    checkpoint run by PyTorch. The name decides; the file only has to be what it says."""
    return Path(path).suffix.lower() == ONNX_SUFFIX


def load_predictor(
    path: Union[str, os.PathLike],
    device: Union[str, torch.device] = "cpu",
    image_size: Optional[int] = None,
    strict: bool = False,
) -> Union[Predictor, OnnxPredictor]:
    """The predictor of a model file: an :class:`~rsfm.inference.onnx_predictor.OnnxPredictor`
    for an ``.onnx`` file written by ``rsfm export`` (onnxruntime, no torch needed), a
    :class:`Predictor` for a task checkpoint (``.ckpt`` from ``rsfm fit``, PyTorch).

    Args:
        path: the model file; its suffix decides the runtime.
        device: ``cpu``, ``cuda`` (``cuda:N``) or ``auto`` (CUDA when available).
        image_size: override the contract's input size of a scene model (pixels).
        strict: raise instead of warning when input pixels differ from the training pixels.

    Raises:
        FileNotFoundError: the file does not exist.
        ImportError: the runtime is not installed (one line naming the extra to install).
        ValueError: naming the file, when it is not what its suffix says (an ``.onnx`` that is
            no ONNX model or has no rsfm metadata, a ``.ckpt`` that is no task checkpoint), or
            ``device`` is unknown or unavailable.
    """
    if is_onnx_model(path):
        from rsfm.inference.onnx_predictor import OnnxPredictor

        return OnnxPredictor.load(path, device=device, image_size=image_size, strict=strict)
    return Predictor.load(path, device=device, image_size=image_size, strict=strict)


def check_threshold(threshold: float) -> None:
    """The probability above which a binary model's pixel counts as positive: strictly between 0 and 1.

    Raises:
        ValueError: saying the range.
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")


class PredictorView:
    """What ``SceneClassifier`` and ``BuildingExtractor`` share: a predictor (:class:`Predictor`
    or ``OnnxPredictor``) and the contract and ``strict`` switch it holds."""

    predictor: BasePredictor

    @property
    def task(self) -> BaseTask:
        """The PyTorch task; an ONNX model has none (``AttributeError`` saying so)."""
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
    def device(self) -> Union[torch.device, str]:
        """Where the model runs: a ``torch.device`` for a checkpoint, ``"cpu"`` or ``"cuda"`` for
        an ONNX model."""
        return self.predictor.device
