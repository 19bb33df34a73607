"""Per-band normalisation statistics in raw pixel units."""

from __future__ import annotations

import math
from typing import Iterable, List, Tuple

import numpy as np

__all__ = ["band_statistics"]


def band_statistics(images: Iterable[np.ndarray]) -> Tuple[List[float], List[float]]:
    """Mean and standard deviation of each band over all pixels of all images.

    Args:
        images: ``(H, W, bands)`` arrays in raw units (e.g. 0-255 or 0-65535); sizes may differ,
            band counts may not.

    Returns:
        ``(mean, std)``, one float per band, in the images' units. A constant band gets std 1 so
        that normalising by it stays finite.

    Raises:
        ValueError: no image was given, or band counts differ.
    """
    count, shift, total, total_sq = 0, None, None, None
    for image in images:
        pixels = image.reshape(-1, image.shape[-1]).astype(np.float64)
        if shift is None:
            # sums around the first image's mean keep float64 exact for uint16 data
            shift = pixels.mean(axis=0)
            total = np.zeros_like(shift)
            total_sq = np.zeros_like(shift)
        elif pixels.shape[1] != shift.shape[0]:
            raise ValueError(
                f"images have {shift.shape[0]} and {pixels.shape[1]} bands; statistics need one band count"
            )
        centred = pixels - shift
        total += centred.sum(axis=0)
        total_sq += (centred * centred).sum(axis=0)
        count += pixels.shape[0]
    if shift is None:
        raise ValueError("band_statistics needs at least one image")
    mean = total / count
    variance = np.maximum(total_sq / count - mean * mean, 0.0)
    std = [math.sqrt(value) if value > 0 else 1.0 for value in variance]
    return [float(value) for value in mean + shift], std
