"""Sample format and joint image/mask augmentation (albumentations) of building datasets.

A sample is ``{'image': float32 (C, H, W) raw pixel values, 'mask': int64 (H, W)}`` with mask
values 0 = background, 1 = building and ``IGNORE_INDEX`` = not labelled (padding, nodata).
Normalisation is not done here: the task carries mean/std in its checkpoint.
"""

from __future__ import annotations

from typing import Any, Dict, FrozenSet, Optional, Sequence, Tuple

import albumentations as A
import numpy as np
import torch
from scipy import ndimage

__all__ = [
    "IGNORE_INDEX",
    "RandomNodata",
    "building_train_transform",
    "make_sample",
    "mask_value_set",
    "model_band_mean",
]

#: Mask value excluded from losses and metrics (padding, nodata, outside the labelled area).
IGNORE_INDEX = 255


class RandomNodata(A.DualTransform):
    """Nodata as tiled inference shows it to a model: pixels set to ``fill``, their labels to
    ``IGNORE_INDEX``.

    ``rsfm.predict_raster`` and the predictors set nodata pixels to the band mean of the
    model's normalisation (0 once normalised); a model that never saw such pixels predicts
    worse next to them. The nodata drawn here covers a random 5% to ``max_fraction`` of the
    patch, as either clouds (blobs of smoothed noise) or a straight border at a random angle
    (scene and swath edges), half of the time each.

    Args:
        fill: per-band value in raw pixel units (rounded for integer images).
        max_fraction: largest share of the patch that becomes nodata.
        p: probability that a patch gets nodata.

    Raises:
        ValueError: ``max_fraction`` not in (0.05, 1].
    """

    def __init__(self, fill: Sequence[float], max_fraction: float = 0.6, p: float = 0.5) -> None:
        super().__init__(p=p)
        if not 0.05 < max_fraction <= 1:
            raise ValueError(f"max_fraction must be in (0.05, 1], got {max_fraction}")
        self.fill = tuple(float(value) for value in fill)
        self.max_fraction = max_fraction

    def get_params_dependent_on_data(self, params: Dict[str, Any], data: Dict[str, Any]) -> Dict[str, Any]:
        height, width = params["shape"][:2]
        rng = self.random_generator
        fraction = rng.uniform(0.05, self.max_fraction)
        if rng.random() < 0.5:
            field = ndimage.gaussian_filter(rng.standard_normal((height, width)), rng.uniform(4, 16))
        else:
            angle = rng.uniform(0, 2 * np.pi)
            rows, cols = np.mgrid[0:height, 0:width]
            field = rows * np.sin(angle) + cols * np.cos(angle)
        return {"nodata": field > np.quantile(field, 1 - fraction)}

    def apply(self, img: np.ndarray, nodata: np.ndarray, **params: Any) -> np.ndarray:
        fill = np.asarray(self.fill, dtype=np.float64)
        if len(fill) != img.shape[-1]:
            raise ValueError(f"RandomNodata has a fill for {len(fill)} bands, the image has {img.shape[-1]}")
        if np.issubdtype(img.dtype, np.integer):
            limits = np.iinfo(img.dtype)
            fill = np.clip(np.round(fill), limits.min, limits.max)
        out = img.copy()
        out[nodata] = fill.astype(img.dtype)
        return out

    def apply_to_mask(self, mask: np.ndarray, nodata: np.ndarray, **params: Any) -> np.ndarray:
        out = mask.copy()
        out[nodata] = IGNORE_INDEX
        return out

    def get_transform_init_args_names(self) -> Tuple[str, ...]:
        return ("fill", "max_fraction")


def model_band_mean(datamodule: Any) -> Tuple[float, ...]:
    """The band means of the model that ``datamodule`` feeds: what tiled inference puts in nodata
    pixels, read from the task's input contract through the datamodule's trainer.

    Raises:
        ValueError: the datamodule is not attached to a trainer with an rsfm task.
    """
    trainer = getattr(datamodule, "trainer", None)
    contract = getattr(getattr(trainer, "lightning_module", None), "contract", None)
    if contract is None:
        raise ValueError(
            "nodata_p > 0 fills nodata with the model's band mean: train through a Lightning Trainer "
            "with an rsfm task (rsfm fit), or set nodata_p=0"
        )
    return tuple(contract.mean)


def building_train_transform(
    patch_size: int,
    scale_range: Sequence[float] = (1.0, 1.0),
    nodata_p: float = 0.0,
    nodata_fill: Optional[Sequence[float]] = None,
) -> A.Compose:
    """Training augmentation applied jointly to image and mask.

    Random rescaling (bilinear for the image, nearest for the mask), a random ``patch_size``
    crop (padding with 0 / ``IGNORE_INDEX`` when the image is smaller), a random element of
    the dihedral group (flips and 90 degree rotations; aerial views have no "up") and, with
    ``nodata_p``, synthetic nodata (:class:`RandomNodata`). Works on raw values of any dtype
    and band count.

    Args:
        patch_size: side of the square training patch, in pixels.
        scale_range: (min, max) zoom factor; ``(1, 1)`` disables rescaling.
        nodata_p: probability that a patch gets synthetic nodata (0 disables it).
        nodata_fill: per-band value of the nodata pixels in raw units: the model's band mean,
            as tiled inference fills nodata (needed when ``nodata_p > 0``).

    Raises:
        ValueError: non-positive ``patch_size``, an invalid ``scale_range``, ``nodata_p`` outside
            [0, 1], or ``nodata_p > 0`` without ``nodata_fill``.
    """
    if patch_size <= 0:
        raise ValueError(f"patch_size must be a positive number of pixels, got {patch_size}")
    low, high = (float(s) for s in scale_range)
    if not 0 < low <= high:
        raise ValueError(f"scale_range must be (min, max) with 0 < min <= max, got {tuple(scale_range)}")
    if not 0 <= nodata_p <= 1:
        raise ValueError(f"nodata_p is a probability, between 0 and 1; got {nodata_p}")
    steps = []
    if (low, high) != (1.0, 1.0):
        # albumentations expresses the zoom as an offset from 1
        steps.append(A.RandomScale(scale_limit=(low - 1.0, high - 1.0), p=1.0))
    steps.append(A.RandomCrop(patch_size, patch_size, pad_if_needed=True, fill=0, fill_mask=IGNORE_INDEX))
    steps.append(A.SquareSymmetry(p=1.0))
    if nodata_p > 0:
        if nodata_fill is None:
            raise ValueError("nodata_p > 0 needs nodata_fill, the model's band mean in raw pixel units")
        steps.append(RandomNodata(nodata_fill, p=nodata_p))
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
