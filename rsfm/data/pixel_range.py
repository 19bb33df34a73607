"""What raw pixels a model was trained on (data type and value range), and a check that new
input looks the same.

A model trained on uint8 imagery (0-255) that is handed uint16 reflectance (0-10000) or
float32 in [0, 1] runs without error and returns nonsense. The training datamodule describes its
pixels with :func:`describe_pixels`; the task stores that description in its checkpoint; every
predictor compares its input with :func:`check_pixels`, which warns, or raises
:class:`PixelRangeMismatch` when ``strict``.
"""

from __future__ import annotations

import warnings
from typing import Any, Dict, Iterable, Mapping, Optional

import numpy as np

__all__ = ["PixelRangeMismatch", "PixelRangeWarning", "check_pixels", "describe_pixels", "merge_pixel_ranges"]

# Values further than this share of the training span outside the training range are foreign.
_OUTSIDE = 0.5
# An input whose values span less than this share of the training span is on another scale
# (e.g. reflectance in [0, 1] into a 0-255 model).
_TOO_NARROW = 0.02


class PixelRangeWarning(UserWarning):
    """Input pixels differ in data type or value range from the model's training data."""


class PixelRangeMismatch(ValueError):
    """Raised instead of :class:`PixelRangeWarning` when the caller asked to be strict."""


def describe_pixels(array: np.ndarray) -> Dict[str, Any]:
    """``{"dtype": name, "min": float, "max": float}`` of an array of raw pixels (NaN ignored)."""
    array = np.asarray(array)
    if array.size == 0:
        raise ValueError("cannot describe the pixels of an empty array")
    finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
    if finite.size == 0:
        raise ValueError("cannot describe pixels that are all NaN or infinite")
    return {"dtype": array.dtype.name, "min": float(finite.min()), "max": float(finite.max())}


def merge_pixel_ranges(ranges: Iterable[Optional[Mapping[str, Any]]]) -> Optional[Dict[str, Any]]:
    """One description covering several (e.g. one per training image); ``None`` entries are
    skipped. The dtype is that of the first description when all agree, else numpy's common
    type (e.g. uint8 + uint16 -> uint16)."""
    merged: Optional[Dict[str, Any]] = None
    for described in ranges:
        if described is None:
            continue
        if merged is None:
            merged = dict(described)
            continue
        if described["dtype"] != merged["dtype"]:
            merged["dtype"] = np.result_type(np.dtype(merged["dtype"]), np.dtype(described["dtype"])).name
        merged["min"] = min(merged["min"], described["min"])
        merged["max"] = max(merged["max"], described["max"])
    return merged


def pixel_range_problem(observed: Mapping[str, Any], trained: Mapping[str, Any]) -> Optional[str]:
    """Why ``observed`` pixels do not look like the ``trained`` ones, or ``None`` when they do."""
    if np.dtype(observed["dtype"]) != np.dtype(trained["dtype"]):
        same_kind_inside = (
            np.dtype(observed["dtype"]).kind in "ui"
            and np.dtype(trained["dtype"]).kind in "ui"
            and trained["min"] <= observed["min"]
            and observed["max"] <= trained["max"]
        )
        if not same_kind_inside:  # uint8 values stored as int16 are the same pixels
            return f"data type {observed['dtype']} (the model was trained on {trained['dtype']})"
    span = max(float(trained["max"]) - float(trained["min"]), 1e-12)
    low, high = trained["min"] - _OUTSIDE * span, trained["max"] + _OUTSIDE * span
    if observed["min"] < low or observed["max"] > high:
        return f"values {_fmt(observed['min'])}-{_fmt(observed['max'])} far outside the training range"
    if observed["max"] - observed["min"] < _TOO_NARROW * span and observed["max"] < trained["min"] + _TOO_NARROW * span:
        return f"values {_fmt(observed['min'])}-{_fmt(observed['max'])}, a much smaller scale than the training range"
    return None


def check_pixels(
    observed: Mapping[str, Any],
    trained: Optional[Mapping[str, Any]],
    source: str,
    strict: bool = False,
    stacklevel: int = 2,
) -> None:
    """Warn (or raise when ``strict``) when input pixels do not match the training pixels.

    Args:
        observed: :func:`describe_pixels` of the input (or of a sample of it).
        trained: the description stored with the model; ``None`` (a checkpoint written before
            rsfm recorded it) skips the check.
        source: the input's name for the message (a file path, ``image 3``).
        strict: raise instead of warning.

    Raises:
        PixelRangeMismatch: ``strict`` and the pixels differ.

    Warns:
        PixelRangeWarning: the pixels differ.
    """
    if trained is None:
        return
    problem = pixel_range_problem(observed, trained)
    if problem is None:
        return
    message = (
        f"{source}: {problem}; the model was trained on {trained['dtype']} pixels in "
        f"{_fmt(trained['min'])}-{_fmt(trained['max'])}. Predictions are probably wrong: rescale the "
        "input to the training units (or use a model trained on data like it)"
    )
    if strict:
        raise PixelRangeMismatch(message)
    warnings.warn(message, PixelRangeWarning, stacklevel=stacklevel + 1)


def _fmt(value: float) -> str:
    return f"{value:g}"
