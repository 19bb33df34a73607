"""Turning what users pass to the predictors (paths, numpy arrays, tensors) into arrays.

Tensors are accepted without importing torch: an object can only be a ``torch.Tensor`` when
torch is already imported, so an install without PyTorch (ONNX models) never loads it here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from rsfm.data.io import read_image

if TYPE_CHECKING:
    import torch

ImageInput = Union[str, os.PathLike, np.ndarray, "torch.Tensor"]


def _is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def as_image_list(images: Union[ImageInput, Sequence[ImageInput]]) -> List[Any]:
    """One image or a sequence of them; a 4-D array or tensor is a batch."""
    if (isinstance(images, np.ndarray) or _is_tensor(images)) and images.ndim == 4:
        return list(images)
    if isinstance(images, (str, os.PathLike, np.ndarray)) or _is_tensor(images):
        return [images]
    return list(images)


def as_image_array(
    image: ImageInput, position: int, in_chans: int, bands: Optional[Sequence[int]] = None
) -> Tuple[np.ndarray, str]:
    """An ``(H, W, in_chans)`` array of raw pixel values, and a name for error messages.

    Args:
        image: a file path (the 1-based ``bands`` are read, all when ``None``), a numpy array
            ``(H, W, bands)`` or ``(H, W)``, or a tensor ``(bands, H, W)``.
        position: index of the image in the caller's list (for messages).
        in_chans: bands the model takes; a single band is repeated when it takes 3.

    Raises:
        ValueError: wrong number of dimensions or bands (naming the image).
        rsfm.data.ImageReadError: a file cannot be read.
    """
    if isinstance(image, (str, os.PathLike)):
        array, name = read_image(image, bands), str(Path(image))
    elif _is_tensor(image):
        if image.ndim != 3:
            raise ValueError(f"image {position}: a tensor must be (bands, H, W), got shape {tuple(image.shape)}")
        array, name = image.detach().cpu().numpy().transpose(1, 2, 0), f"image {position}"
    else:
        array, name = np.asarray(image), f"image {position}"
        array = array[:, :, None] if array.ndim == 2 else array
        if array.ndim != 3:
            raise ValueError(f"{name}: a numpy image must be (H, W, bands) or (H, W), got shape {array.shape}")
    if array.shape[2] == 1 and in_chans == 3:
        array = np.repeat(array, 3, axis=2)
    if array.shape[2] != in_chans:
        raise ValueError(
            f"{name}: has {array.shape[2]} band(s), the model takes {in_chans} "
            f"(trained on bands {list(bands) if bands else 'all'}; numpy arrays are (H, W, bands), "
            "rasterio's (bands, H, W) converts with rasterio.plot.reshape_as_image)"
        )
    return array, name
