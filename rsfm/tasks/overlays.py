"""Prediction overlays for visual checks during validation: image | errors drawn on the image."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from PIL import Image

__all__ = ["OVERLAY_COLORS", "class_colors", "display_image", "overlay_grid", "save_overlay_grid"]

#: RGB colours blended over the image: correct buildings, false alarms, missed buildings.
OVERLAY_COLORS = {
    "true_positive": (0, 200, 0),
    "false_positive": (230, 0, 0),
    "false_negative": (0, 110, 255),
}
_ALPHA = 0.5


# distinct colours for classes 1, 2, ... (the Tableau 10 palette); class 0 is black
_CLASS_PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207), (127, 127, 127),
]  # fmt: skip


def class_colors(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8 RGB: black for class 0 (background, no change), then a palette of
    distinct colours, repeated after ten classes."""
    colors = [(0, 0, 0)] + [_CLASS_PALETTE[i % len(_CLASS_PALETTE)] for i in range(max(num_classes - 1, 0))]
    return np.array(colors[:num_classes], dtype=np.uint8)


def display_image(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) raw pixels -> (H, W, 3) uint8 for display.

    The first three bands are shown as RGB (a single band as grey), each stretched between
    its 2nd and 98th percentile so that uint16 and reflectance imagery are visible too.
    """
    bands = image[:3] if image.shape[0] >= 3 else image[:1].expand(3, -1, -1)
    array = bands.detach().float().cpu().numpy()
    low = np.percentile(array, 2, axis=(1, 2), keepdims=True)
    high = np.percentile(array, 98, axis=(1, 2), keepdims=True)
    scaled = (array - low) / np.maximum(high - low, 1e-6)
    return (scaled.clip(0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0)


def overlay_grid(
    images: torch.Tensor,
    targets: torch.Tensor,
    predictions: torch.Tensor,
    ignore_index: Optional[int] = 255,
) -> np.ndarray:
    """One row per sample: the image, then true/false positives and misses blended over it.

    Args:
        images: (B, C, H, W) raw pixels.
        targets: (B, H, W) 0/1 labels (``ignore_index`` pixels are left uncoloured).
        predictions: (B, H, W) 0/1 predicted buildings.
        ignore_index: label value of unlabelled pixels.

    Returns:
        (B * H, 2 * W, 3) uint8 RGB array.
    """
    rows = []
    for image, target, prediction in zip(images, targets, predictions):
        shown = display_image(image)
        target = target.cpu().numpy()
        prediction = prediction.cpu().numpy().astype(bool)
        labelled = np.ones_like(prediction) if ignore_index is None else target != ignore_index
        building = (target == 1) & labelled
        errors = shown.astype(np.float32)
        for where, name in (
            (prediction & building, "true_positive"),
            (prediction & ~building & labelled, "false_positive"),
            (~prediction & building, "false_negative"),
        ):
            errors[where] = (1 - _ALPHA) * errors[where] + _ALPHA * np.array(OVERLAY_COLORS[name])
        rows.append(np.concatenate([shown, errors.round().astype(np.uint8)], axis=1))
    return np.concatenate(rows, axis=0)


def save_overlay_grid(grid: np.ndarray, path: Union[str, os.PathLike]) -> Path:
    """Write an ``overlay_grid`` result as PNG, creating the folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return path
