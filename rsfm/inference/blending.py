"""Weighted blending of overlapping tile predictions, releasing each region of the raster as
soon as every tile that covers it has been added (so memory does not grow with raster size)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from rsfm.data.tiling import TileGrid


@dataclass
class FinishedRegion:
    """A rectangle of the raster whose prediction is final.

    Attributes:
        row_off: first raster row (pixels).
        col_off: first raster column (pixels).
        values: blended per-channel values (channels, height, width) float32, or ``None``
            when the region lies in a tile that was skipped because it held no valid pixel.
        valid: (height, width) bool, False where the input was nodata/masked.
    """

    row_off: int
    col_off: int
    values: Optional[np.ndarray]
    valid: np.ndarray


class _Cell:
    __slots__ = ("total", "weight", "valid", "skipped", "remaining")

    def __init__(self, remaining: int) -> None:
        self.total: Optional[np.ndarray] = None
        self.weight: Optional[np.ndarray] = None
        self.valid: Optional[np.ndarray] = None
        self.skipped = False
        self.remaining = remaining


class BlendAccumulator:
    """Sums tile predictions weighted by :meth:`TileGrid.weights` and divides by the summed
    weights.

    The raster is cut along every tile border into cells; all pixels of a cell are covered by
    the same tiles. A cell lives only between the first and the last of its tiles, so with
    tiles added row by row the live cells are at most one row of tiles plus the overlap strip
    below it.

    Args:
        grid: the tile grid.
        channels: values per pixel (classes, or 1 for a binary model).
        first_row: tiles of rows before this are not going to be added (resuming a run);
            cells covered only by them are never released.
    """

    def __init__(self, grid: TileGrid, channels: int, first_row: int = 0) -> None:
        self._grid = grid
        self._channels = channels
        self._first_row = first_row
        self._row_segments = grid.segments(0)
        self._col_segments = grid.segments(1)
        self._row_coverage = self._row_segments.coverage(first_row, grid.rows)
        self._col_coverage = self._col_segments.coverage(0, grid.cols)
        self._cells: Dict[Tuple[int, int], _Cell] = {}

    @property
    def live_cells(self) -> int:
        """Cells holding partial sums (for memory checks)."""
        return len(self._cells)

    def add(
        self, row: int, col: int, prediction: Optional[np.ndarray], valid: Optional[np.ndarray]
    ) -> List[FinishedRegion]:
        """Add one tile and return the regions it completes.

        Args:
            row: tile row in the grid.
            col: tile column in the grid.
            prediction: (channels, tile_size, tile_size) float32, or ``None`` for a tile
                skipped because all its pixels are nodata.
            valid: (tile_size, tile_size) bool validity of the tile's pixels (ignored when
                ``prediction`` is None).

        Raises:
            ValueError: the tile is outside the grid or before ``first_row``.
        """
        grid = self._grid
        if not (self._first_row <= row < grid.rows and 0 <= col < grid.cols):
            raise ValueError(
                f"tile ({row}, {col}) is outside the rows {self._first_row}-{grid.rows - 1} "
                f"and columns 0-{grid.cols - 1} being blended"
            )
        if prediction is not None and prediction.shape != (self._channels, grid.tile_size, grid.tile_size):
            raise ValueError(
                f"tile prediction has shape {prediction.shape}, expected "
                f"{(self._channels, grid.tile_size, grid.tile_size)}"
            )
        tile_top, tile_left = row * grid.stride, col * grid.stride
        weights = grid.weights(row, col)
        finished = []
        for row_segment in self._row_segments.of_tile(row):
            top, bottom = self._row_segments.bounds(row_segment)
            rows = slice(top - tile_top, bottom - tile_top)
            for col_segment in self._col_segments.of_tile(col):
                left, right = self._col_segments.bounds(col_segment)
                cols = slice(left - tile_left, right - tile_left)
                key = (row_segment, col_segment)
                cell = self._cells.get(key)
                if cell is None:
                    remaining = self._row_coverage[row_segment] * self._col_coverage[col_segment]
                    cell = self._cells[key] = _Cell(remaining)
                if prediction is None:
                    cell.skipped = True
                    cell.total = cell.weight = None
                elif not cell.skipped:
                    cell_weights = weights[rows, cols]
                    weighted = prediction[:, rows, cols] * cell_weights
                    if cell.total is None:
                        cell.total, cell.weight, cell.valid = weighted, cell_weights.copy(), valid[rows, cols].copy()
                    else:
                        cell.total += weighted
                        cell.weight += cell_weights
                cell.remaining -= 1
                if cell.remaining == 0:
                    del self._cells[key]
                    finished.append(self._release(cell, top, left, bottom - top, right - left))
        return finished

    @staticmethod
    def _release(cell: _Cell, top: int, left: int, height: int, width: int) -> FinishedRegion:
        if cell.skipped:
            return FinishedRegion(top, left, None, np.zeros((height, width), dtype=bool))
        # Overlapping tapers sum to 1, so weights are 0 only next to tiles that are not added
        # (rows before ``first_row`` when resuming); those pixels are already written.
        weighted = cell.weight > 0
        values = np.divide(cell.total, cell.weight, out=np.zeros_like(cell.total), where=weighted)
        return FinishedRegion(top, left, values, cell.valid & weighted)
