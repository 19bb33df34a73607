"""The tile grid laid over a raster and the smooth weights that blend overlapping tiles.

It lives with the data because two layers cut rasters on it: dataset preparation (training
patches, ``rsfm.data.prepare``) and tiled inference (``rsfm.inference``, which blends the
overlapping tiles with these weights).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator, List, Tuple

import numpy as np
from rasterio.windows import Window


def _tile_count(length: int, tile_size: int, stride: int) -> int:
    if length <= tile_size:
        return 1
    return math.ceil((length - tile_size) / stride) + 1


@dataclass(frozen=True)
class TileGrid:
    """Square tiles of ``tile_size`` pixels laid every ``tile_size - overlap`` pixels.

    The first tile starts at pixel (0, 0); tiles of the last row and column may reach past the
    raster (tiled inference then moves a segmentation model's view back onto the raster, see
    ``rsfm.inference.crops``, and reflect-pads a scene model's tile). Every pixel is covered,
    and two neighbouring tiles share exactly ``overlap`` pixels.

    Args:
        width: raster width in pixels.
        height: raster height in pixels.
        tile_size: tile side in pixels.
        overlap: pixels shared by neighbouring tiles, at most ``tile_size // 2``.

    Raises:
        ValueError: a size is not positive or the overlap is out of range.
    """

    width: int
    height: int
    tile_size: int
    overlap: int

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"raster size must be positive, got {self.width}x{self.height} pixels")
        if self.tile_size < 1:
            raise ValueError(f"tile_size must be positive, got {self.tile_size}")
        if not 0 <= self.overlap <= self.tile_size // 2:
            raise ValueError(
                f"overlap must be between 0 and tile_size/2 = {self.tile_size // 2} pixels, got {self.overlap}"
            )

    @property
    def stride(self) -> int:
        """Pixels between the origins of neighbouring tiles."""
        return self.tile_size - self.overlap

    @property
    def rows(self) -> int:
        return _tile_count(self.height, self.tile_size, self.stride)

    @property
    def cols(self) -> int:
        return _tile_count(self.width, self.tile_size, self.stride)

    def __len__(self) -> int:
        return self.rows * self.cols

    def window(self, row: int, col: int) -> Window:
        """The full (unclipped) window of a tile, in raster pixels."""
        return Window(col * self.stride, row * self.stride, self.tile_size, self.tile_size)

    def first_row_reaching(self, pixel_row: int) -> int:
        """Index of the first tile row that covers raster row ``pixel_row`` or any row below it."""
        if pixel_row < self.tile_size:
            return 0
        return min(self.rows, (pixel_row - self.tile_size) // self.stride + 1)

    def weights(self, row: int, col: int) -> np.ndarray:
        """Blending weights (tile_size, tile_size) float32 of one tile, tapered only on the sides
        it shares with a neighbour, so raster edges keep full weight."""
        return _weights_2d(
            self.tile_size,
            self.overlap,
            (row > 0, row < self.rows - 1, col > 0, col < self.cols - 1),
        )

    def segments(self, axis: int) -> "AxisSegments":
        """The pieces into which tile borders cut rows (axis 0) or columns (axis 1)."""
        if axis == 0:
            return AxisSegments.build(self.height, self.rows, self.tile_size, self.stride)
        return AxisSegments.build(self.width, self.cols, self.tile_size, self.stride)


@dataclass(frozen=True)
class AxisSegments:
    """Along one axis, the intervals between consecutive tile borders: every pixel of an
    interval is covered by the same tiles. ``edges`` are pixel offsets, from 0 to the length."""

    edges: Tuple[int, ...]
    tile_size: int
    stride: int

    @classmethod
    def build(cls, length: int, count: int, tile_size: int, stride: int) -> "AxisSegments":
        cuts = {0, length}
        for index in range(count):
            cuts.add(min(index * stride, length))
            cuts.add(min(index * stride + tile_size, length))
        return cls(tuple(sorted(cuts)), tile_size, stride)

    def __len__(self) -> int:
        return len(self.edges) - 1

    def of_tile(self, index: int) -> range:
        """Indices of the segments covered by tile ``index`` along this axis."""
        start = index * self.stride
        stop = min(start + self.tile_size, self.edges[-1])
        return range(bisect_right(self.edges, start) - 1, bisect_right(self.edges, stop - 1))

    def bounds(self, segment: int) -> Tuple[int, int]:
        return self.edges[segment], self.edges[segment + 1]

    def coverage(self, first_tile: int, count: int) -> List[int]:
        """How many of the tiles ``first_tile .. count-1`` cover each segment."""
        covered = [0] * len(self)
        for index in range(first_tile, count):
            for segment in self.of_tile(index):
                covered[segment] += 1
        return covered

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        return (self.bounds(segment) for segment in range(len(self)))


def taper(tile_size: int, overlap: int, start: bool, end: bool) -> np.ndarray:
    """1-D blending weights of a tile along one axis.

    On a side shared with a neighbour (``start``/``end``), the weight is 0 over the outer
    quarter of the overlap, rises as a raised cosine over the middle half and is 1 beyond.
    The two tiles' weights sum to exactly 1 everywhere in their overlap, so blending is
    seamless, and predictions within ``overlap // 4`` pixels of a tile border (where the
    model sees padding instead of real neighbours) get no weight at all.
    """
    weights = np.ones(tile_size, dtype=np.float64)
    if overlap > 0:
        margin = overlap // 4
        ramp_length = overlap - 2 * margin
        ramp = np.sin(0.5 * np.pi * (np.arange(ramp_length) + 0.5) / ramp_length) ** 2
        rising = np.concatenate([np.zeros(margin), ramp, np.ones(margin)])
        if start:
            weights[:overlap] = rising
        if end:
            weights[tile_size - overlap :] = rising[::-1]
    return weights


@lru_cache(maxsize=32)
def _weights_2d(tile_size: int, overlap: int, sides: Tuple[bool, bool, bool, bool]) -> np.ndarray:
    top, bottom, left, right = sides
    weights = np.outer(taper(tile_size, overlap, top, bottom), taper(tile_size, overlap, left, right))
    weights = weights.astype(np.float32)
    weights.flags.writeable = False
    return weights


def reflect_pad(array: np.ndarray, tile_size: int) -> np.ndarray:
    """Pad the last two axes of ``array`` at the bottom/right to ``tile_size`` by reflection.

    Reflection repeats when the tile is more than twice the data (rasters smaller than a tile);
    a single row or column is repeated instead, since it has nothing to reflect.
    """
    height, width = array.shape[-2:]
    pad_rows, pad_cols = tile_size - height, tile_size - width
    if pad_rows == 0 and pad_cols == 0:
        return array
    widths = [(0, 0)] * (array.ndim - 2) + [(0, pad_rows), (0, pad_cols)]
    mode = "reflect" if min(height, width) > 1 else "edge"
    return np.pad(array, widths, mode=mode)
