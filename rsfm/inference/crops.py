"""Where the model looks: for each window of the tile grid, the rectangles of valid data that a
segmentation model runs on (:func:`plan_crops`).

Nodata is filled with the band mean before the forward pass, and a model that never saw such
fill during training predicts worse next to it, and everywhere when it attends globally. So
the model is run on the valid data a window holds, not on the window: every 4-connected region
of valid pixels that touches the window gets its own rectangle, and

* a region no longer than the tile along an axis is taken whole along that axis, even where it
  reaches past the window: a tile of imagery surrounded by nodata is predicted exactly as it
  would be alone, by every window that touches it;
* along an axis where the region is longer than the tile, the window is moved (by less than a
  tile) so that it lies on the region: at a nodata border or the raster's edge the model sees a
  full tile of valid pixels ending at the border, as at an image edge, instead of fill or a
  mirror image;
* regions whose rectangles overlap, or lie side by side less than an eighth of a tile apart,
  share one rectangle: a swath gap or a line of nodata through a window leaves the model its
  context (it sees the gap filled) and does not multiply the work. Regions that meet only at a
  corner (tiles of a mosaic) stay apart.

Each valid pixel of a window takes its prediction from the rectangle of its own region, so the
blending weights of the tile grid stay correct: they sum to one over the windows that cover a
pixel. Holes inside a rectangle (clouds, swath gaps) are still filled with the band mean. The
rectangles of a window depend only on the validity mask within a tile of the window, so results
do not depend on batch size or on where a resumed run started.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import FrozenSet, List, Tuple

import numpy as np
from scipy import ndimage

__all__ = ["MAX_CROPS", "PlannedCrop", "plan_crops"]

MAX_CROPS = 16
"""Rectangles per window at most; a window whose valid pixels fall into more separate regions
(speckle, e.g. JPEG noise around a nodata value) is run as one rectangle around all of them."""

# (top, bottom, left, right), half-open, in the coordinates of the mask given to plan_crops
_Box = Tuple[int, int, int, int]


@dataclass(frozen=True)
class PlannedCrop:
    """One rectangle the model runs on for one window.

    Attributes:
        box: ``(top, bottom, left, right)`` of the rectangle (half-open), in the coordinates of
            the mask given to :func:`plan_crops`.
        take: ``(bottom - top, right - left)`` clipped to the window, bool: the window's pixels
            that take their prediction from this rectangle; its origin is
            ``(max(top, window top), max(left, window left))``.
    """

    box: _Box
    take: np.ndarray


def _axis_range(start: int, stop: int, window_start: int, tile_size: int) -> Tuple[int, int]:
    """A region's extent along one axis if it fits in a tile, else the window moved onto it."""
    if stop - start <= tile_size:
        return start, stop
    moved = min(max(window_start, start), stop - tile_size)
    return moved, moved + tile_size


def _fit(box: _Box, window: Tuple[int, int], tile_size: int) -> _Box:
    top, bottom = _axis_range(box[0], box[1], window[0], tile_size)
    left, right = _axis_range(box[2], box[3], window[1], tile_size)
    return top, bottom, left, right


def _shrink(labels: np.ndarray, box: _Box, members: FrozenSet[int]) -> _Box:
    """The bounding box of the members' pixels within ``box``."""
    inside = np.isin(labels[box[0] : box[1], box[2] : box[3]], list(members))
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    return box[0] + rows[0], box[0] + rows[-1] + 1, box[2] + cols[0], box[2] + cols[-1] + 1


def _close(first: _Box, second: _Box, gap: int) -> bool:
    """The boxes overlap, or lie side by side (overlapping along one axis) less than ``gap``
    pixels apart. Boxes that meet only at a corner are not close."""
    rows = min(first[1], second[1]) - max(first[0], second[0])  # overlap, or minus the gap
    cols = min(first[3], second[3]) - max(first[2], second[2])
    return (rows > 0 and cols > -gap) or (cols > 0 and rows > -gap)


def _union(first: _Box, second: _Box) -> _Box:
    return min(first[0], second[0]), max(first[1], second[1]), min(first[2], second[2]), max(first[3], second[3])


def plan_crops(valid: np.ndarray, top: int, left: int, tile_size: int, max_crops: int = MAX_CROPS) -> List[PlannedCrop]:
    """The rectangles a segmentation model runs on for one window (see the module docstring).

    Args:
        valid: (height, width) bool validity of the raster around the window, at least
            ``tile_size`` pixels on every side of it where the raster has them; pixels beyond
            the array count as nodata (the raster's edge).
        top: the window's first row in ``valid`` (pixels).
        left: the window's first column in ``valid`` (pixels).
        tile_size: the window's side (pixels); it may reach past the bottom/right of ``valid``.
        max_crops: more separate regions than this are run as one rectangle.

    Returns:
        Rectangles no larger than ``tile_size`` along either axis, each with the window's pixels
        it predicts; every valid pixel of the window is in exactly one ``take``. Empty when the
        window holds no valid pixel.
    """
    height, width = valid.shape
    bottom, right = min(top + tile_size, height), min(left + tile_size, width)
    window_valid = valid[top:bottom, left:right]
    if bottom - top == tile_size and right - left == tile_size and window_valid.all():
        return [PlannedCrop((top, bottom, left, right), np.ones((tile_size, tile_size), dtype=bool))]
    if valid.all():  # one region, the whole array (a window at the edge of valid imagery)
        box = _fit((0, height, 0, width), (top, left), tile_size)
        return [PlannedCrop(box, np.ones(window_valid.shape, dtype=bool))]
    labels, _ = ndimage.label(valid)
    window_labels = labels[top:bottom, left:right]
    present = np.unique(window_labels)
    present = present[present > 0]
    if len(present) == 0:
        return []
    if len(present) > 4 * max_crops:  # speckle: not worth sorting out region by region
        members = frozenset(present.tolist())
        return [_take(window_labels, _shrink(labels, (top, bottom, left, right), members), members, top, left)]
    boxes = ndimage.find_objects(labels)
    clusters: List[Tuple[FrozenSet[int], _Box]] = []
    for label in present.tolist():
        rows, cols = boxes[label - 1]
        members = frozenset([label])
        box = _fit((rows.start, rows.stop, cols.start, cols.stop), (top, left), tile_size)
        clusters.append((members, _shrink(labels, box, members)))
    merged = True
    while merged and len(clusters) > 1:
        merged = False
        for first in range(len(clusters)):
            for second in range(first + 1, len(clusters)):
                if _close(clusters[first][1], clusters[second][1], tile_size // 8):
                    members = clusters[first][0] | clusters[second][0]
                    box = _fit(_union(clusters[first][1], clusters[second][1]), (top, left), tile_size)
                    clusters[first] = (members, _shrink(labels, box, members))
                    del clusters[second]
                    merged = True
                    break
            if merged:
                break
    if len(clusters) > max_crops:
        members = frozenset(present.tolist())
        clusters = [(members, _shrink(labels, (top, bottom, left, right), members))]
    return [_take(window_labels, box, members, top, left) for members, box in clusters]


def _take(window_labels: np.ndarray, box: _Box, members: FrozenSet[int], top: int, left: int) -> PlannedCrop:
    """The rectangle ``box`` with the window's pixels of ``members`` (labels of the window
    whose first pixel is (``top``, ``left``))."""
    bottom, right = top + window_labels.shape[0], left + window_labels.shape[1]
    part = window_labels[
        max(box[0], top) - top : min(box[1], bottom) - top, max(box[2], left) - left : min(box[3], right) - left
    ]
    return PlannedCrop(box, np.isin(part, list(members)))
