"""Sample format and joint image/mask augmentation (albumentations) of building datasets.

A sample is ``{'image': float32 (C, H, W) raw pixel values, 'mask': int64 (H, W)}`` with mask
values 0 = background, 1 = building and ``IGNORE_INDEX`` = not labelled (padding, nodata).
Normalisation is not done here: the task carries mean/std in its checkpoint.
"""

from __future__ import annotations

from typing import Dict, FrozenSet, Optional, Sequence

import albumentations as A
import numpy as np
import torch

__all__ = ["IGNORE_INDEX", "building_train_transform", "make_sample", "mask_value_set"]

#: Mask value excluded from losses and metrics (padding, nodata, outside the labelled area).
IGNORE_INDEX = 255


def building_train_transform(patch_size: int, scale_range: Sequence[float] = (1.0, 1.0)) -> A.Compose:
    """Training augmentation applied jointly to image and mask.

    Random rescaling (bilinear for the image, nearest for the mask), a random ``patch_size``
    crop (padding with 0 / ``IGNORE_INDEX`` when the image is smaller) and a random element of
    the dihedral group (flips and 90 degree rotations; aerial views have no "up"). Works on
    raw values of any dtype and band count.

    Args:
        patch_size: side of the square training patch, in pixels.
        scale_range: (min, max) zoom factor; ``(1, 1)`` disables rescaling.

    Raises:
        ValueError: non-positive ``patch_size`` or an invalid ``scale_range``.
    """
    if patch_size <= 0:
        raise ValueError(f"patch_size must be a positive number of pixels, got {patch_size}")
    low, high = (float(s) for s in scale_range)
    if not 0 < low <= high:
        raise ValueError(f"scale_range must be (min, max) with 0 < min <= max, got {tuple(scale_range)}")
    steps = []
    if (low, high) != (1.0, 1.0):
        # albumentations expresses the zoom as an offset from 1
        steps.append(A.RandomScale(scale_limit=(low - 1.0, high - 1.0), p=1.0))
    steps.append(A.RandomCrop(patch_size, patch_size, pad_if_needed=True, fill=0, fill_mask=IGNORE_INDEX))
    steps.append(A.SquareSymmetry(p=1.0))
    return A.Compose(steps)


def make_sample(
    image: np.ndarray, mask: np.ndarray, transform: Optional[A.BasicTransform] = None
) -> Dict[str, torch.Tensor]:
    """(H, W, C) image and (H, W) uint8 mask -> a sample dict of tensors, after ``transform``.

    Args:
        image: raw pixel values, any numeric dtype, channels last.
        mask: 0 = background, 1 = building, ``IGNORE_INDEX`` = not labelled.
        transform: an albumentations transform applied to image and mask together.
    """
    if transform is not None:
        out = transform(image=image, mask=mask)
        image, mask = out["image"], out["mask"]
    image_tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
    return {"image": image_tensor, "mask": torch.from_numpy(mask.astype(np.int64))}


def mask_value_set(array: np.ndarray) -> FrozenSet[float]:
    """The distinct values of a label array (a mask tile or a block of a mask raster)."""
    if array.dtype == np.uint8:  # counting is many times faster than sorting
        return frozenset(np.flatnonzero(np.bincount(array.ravel(), minlength=256)).tolist())
    return frozenset(np.unique(array).tolist())
