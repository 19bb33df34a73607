"""Reading tiles: one windowed read per batch of neighbouring tiles, the nodata mask from
GDAL's mask bands, reflect padding at the raster's bottom and right edges."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, List, Tuple

import numpy as np
import rasterio
from rasterio.windows import Window

from rsfm.inference.inputs import RasterInput
from rsfm.inference.tiling import TileGrid, reflect_pad

GDAL_CACHE_BYTES = 32 * 2**20
"""GDAL block cache while predicting. GDAL's default (5% of RAM) would let the cache, and so
the process, grow with the raster; tiles are read in row order, so a small cache is enough."""

# torch has no kernels for these; their values fit float32 well enough for a model input
_TORCH_UNFRIENDLY = {"uint32", "int64", "uint64", "float64"}


@dataclass
class TileBatch:
    """Up to ``batch_size`` neighbouring tiles of one tile row.

    Attributes:
        tiles: (row, col) grid positions of the tiles in ``pixels``.
        pixels: (len(tiles), bands, tile_size, tile_size) raw pixel values.
        valid: (len(tiles), tile_size, tile_size) bool, False at nodata/masked pixels.
        skipped: (row, col) of tiles of this stretch whose pixels are all nodata.
    """

    tiles: List[Tuple[int, int]]
    pixels: np.ndarray
    valid: np.ndarray
    skipped: List[Tuple[int, int]] = field(default_factory=list)


def read_valid_mask(dataset: rasterio.DatasetReader, bands: Tuple[int, ...], window: Window) -> np.ndarray:
    """Pixels that hold data in ``window``: valid in at least one of ``bands`` according to
    GDAL's mask bands (nodata value, internal mask or alpha band, as GDAL's own dataset mask
    does)."""
    return dataset.read_masks(bands, window=window).any(axis=0)


def iter_tile_batches(
    source: RasterInput, grid: TileGrid, batch_size: int, first_row: int = 0
) -> Iterator[TileBatch]:
    """Read the tiles of ``grid`` row by row, from tile row ``first_row``.

    Each batch is one read of the window spanning up to ``batch_size`` neighbouring tiles of a
    row, so every GDAL block is decoded once per tile row instead of once per tile. Tiles that
    reach past the raster are reflect-padded; tiles without any valid pixel are listed in
    ``skipped`` instead of being returned.

    Args:
        source: the checked input raster.
        grid: the tile grid over it.
        batch_size: tiles per batch (at most).
        first_row: first tile row to read (resuming).
    """
    size, stride = grid.tile_size, grid.stride
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), rasterio.open(source.path) as dataset:
        floating = np.dtype(source.dtype).kind == "f"
        for row in range(first_row, grid.rows):
            top = row * stride
            height = min(size, grid.height - top)
            for first_col in range(0, grid.cols, batch_size):
                cols = range(first_col, min(first_col + batch_size, grid.cols))
                left = first_col * stride
                width = min(cols[-1] * stride + size, grid.width) - left
                window = Window(left, top, width, height)
                data = dataset.read(source.bands, window=window)
                valid = read_valid_mask(dataset, source.bands, window)
                if floating:
                    valid &= np.isfinite(data).all(axis=0)
                if data.dtype.name in _TORCH_UNFRIENDLY:
                    data = data.astype(np.float32)
                tiles, pixels, masks, skipped = [], [], [], []
                for col in cols:
                    start = col * stride - left
                    tile_valid = valid[:, start : start + size]
                    if not tile_valid.any():
                        skipped.append((row, col))
                        continue
                    tiles.append((row, col))
                    pixels.append(reflect_pad(data[:, :, start : start + size], size))
                    masks.append(reflect_pad(tile_valid, size))
                if tiles:
                    yield TileBatch(tiles, np.stack(pixels), np.stack(masks), skipped)
                else:
                    empty = np.empty((0, len(source.bands), size, size), dtype=data.dtype)
                    yield TileBatch([], empty, np.empty((0, size, size), dtype=bool), skipped)
