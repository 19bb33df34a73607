"""Albumentations pipelines for scene classification.

The pipelines work on float32 ``(H, W, bands)`` images scaled to [0, 1] (``SceneDataset``
divides by the dtype's maximum and multiplies back afterwards), so they suit uint8 RGB and
uint16 multispectral imagery alike. Every op here takes any number of bands; ops that only
work on RGB or quantise to 8 bits (hue/saturation, equalise, posterise) are left out.
Mixup/cutmix and random erasing act on whole batches and live in the task.
"""

from __future__ import annotations

from typing import Tuple

import albumentations as A
import cv2

__all__ = ["scene_eval_transform", "scene_train_transform"]


def _rand_ops() -> list:
    """RandAugment-style candidates (magnitudes close to RandAugment m9)."""
    return [
        A.Affine(rotate=(-30, 30), p=1.0),
        A.Affine(shear={"x": (-15, 15), "y": (0, 0)}, p=1.0),
        A.Affine(shear={"x": (0, 0), "y": (-15, 15)}, p=1.0),
        A.Affine(translate_percent=(-0.1, 0.1), p=1.0),
        A.RandomGamma(gamma_limit=(70, 130), p=1.0),
        A.Sharpen(alpha=(0.2, 0.5), p=1.0),
        A.GaussianBlur(sigma_limit=(0.1, 1.5), p=1.0),
    ]


def scene_train_transform(
    image_size: int,
    scale: Tuple[float, float] = (0.08, 1.0),
    ratio: Tuple[float, float] = (3 / 4, 4 / 3),
    flips: bool = True,
    color_jitter: float = 0.4,
    rand_ops: int = 2,
) -> A.Compose:
    """Training augmentation: random resized crop, flips, colour jitter and random ops.

    Args:
        image_size: output side in pixels (square).
        scale: range of the crop's area as a fraction of the image (timm default 0.08-1).
        ratio: range of the crop's aspect ratio.
        flips: horizontal and vertical flips and 90-degree rotations (nadir imagery has no
            canonical orientation).
        color_jitter: brightness and contrast change, as a fraction of the image's mean and
            contrast (independent of the dtype); 0 turns it off.
        rand_ops: number of ops drawn per image from rotation, shear, translation, gamma,
            sharpening and blur (RandAugment-style); 0 turns them off.

    Returns:
        An ``albumentations.Compose`` called as ``transform(image=image)["image"]``.
    """
    # bilinear, not bicubic: no overshoot below 0, which RandomGamma would turn into NaN
    ops = [A.RandomResizedCrop(size=(image_size, image_size), scale=scale, ratio=ratio, interpolation=cv2.INTER_LINEAR)]
    if flips:
        ops += [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.RandomRotate90(p=0.5)]
    if color_jitter > 0:
        ops.append(
            A.RandomBrightnessContrast(
                brightness_limit=color_jitter, contrast_limit=color_jitter, brightness_by_max=False, p=0.8
            )
        )
    if rand_ops > 0:
        ops.append(A.SomeOf(_rand_ops(), n=rand_ops, p=1.0))
    return A.Compose(ops)


def scene_eval_transform(image_size: int) -> A.Compose:
    """Evaluation and inference: resize the whole scene to ``image_size`` x ``image_size`` pixels."""
    return A.Compose([A.Resize(image_size, image_size, interpolation=cv2.INTER_CUBIC)])
