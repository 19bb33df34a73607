"""Reading tiles: one windowed read per batch of neighbouring tiles, the nodata mask from
GDAL's mask bands, reflect padding at the raster's bottom and right edges."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, List, Tuple

import numpy as np
import rasterio
from rasterio._err import CPLE_BaseError  # what rasterio raises for some GDAL errors; not exported elsewhere
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from rsfm.data.tiling import TileGrid, reflect_pad
from rsfm.inference.errors import InferenceIOError, error_reason
from rsfm.inference.inputs import RasterInput

# torch has no kernels for these; their values fit float32 well enough for a model input
_TORCH_UNFRIENDLY = {"uint32", "int64", "uint64", "float64"}


def _model_dtype(dtype: str) -> np.dtype:
    return np.dtype(np.float32 if dtype in _TORCH_UNFRIENDLY else dtype)


@dataclass
class TileBatch:
    """The tiles ``first_tile .. first_tile + batch_size - 1`` of the grid, in row-major order.

    Attributes:
        tiles: (row, col) grid positions of the tiles in ``pixels``.
        pixels: (len(tiles), bands, tile_size, tile_size) raw pixel values.
        valid: (len(tiles), tile_size, tile_size) bool, False at nodata/masked pixels.
        skipped: (row, col) of the batch's tiles whose pixels are all nodata (not in ``pixels``).
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


def first_batch_tile(grid: TileGrid, batch_size: int, first_row: int) -> int:
    """Index of the first tile of the batch holding the first tile of row ``first_row``.

    Batches are fixed groups of the row-major tile sequence, so a resumed run feeds the model
    exactly the batches of an uninterrupted one (results do not depend on where it stopped).
    """
    return (first_row * grid.cols // batch_size) * batch_size


def iter_tile_batches(source: RasterInput, grid: TileGrid, batch_size: int, first_row: int = 0) -> Iterator[TileBatch]:
    """Read the tiles of ``grid`` in batches, from the batch holding tile row ``first_row``.

    A batch takes ``batch_size`` consecutive tiles in row-major order (across row ends);
    its tiles of one row are cut from a single windowed read, so every GDAL block is decoded
    once per tile row rather than once per tile. Tiles that reach past the raster are
    reflect-padded; tiles without any valid pixel are listed in ``skipped`` instead.

    Args:
        source: the checked input raster.
        grid: the tile grid over it.
        batch_size: tiles per batch.
        first_row: tile row to resume from (the batch holding its first tile is the first).

    Raises:
        InferenceIOError: the raster cannot be read (damaged, or gone since it was checked).
    """
    try:
        yield from _read_tile_batches(source, grid, batch_size, first_row)
    except (RasterioIOError, CPLE_BaseError) as error:
        raise InferenceIOError(
            source.path,
            f"cannot read pixels: {error_reason(error)}",
            "the file is truncated, damaged or gone; fetch it again",
        ) from error


def _read_tile_batches(source: RasterInput, grid: TileGrid, batch_size: int, first_row: int) -> Iterator[TileBatch]:
    size, stride, cols = grid.tile_size, grid.stride, grid.cols
    floating = np.dtype(source.dtype).kind == "f"
    with rasterio.open(source.path) as dataset:
        for first in range(first_batch_tile(grid, batch_size, first_row), len(grid), batch_size):
            last = min(first + batch_size, len(grid)) - 1
            pixels = np.empty((last - first + 1, len(source.bands), size, size), dtype=_model_dtype(source.dtype))
            valid_tiles = np.empty((last - first + 1, size, size), dtype=bool)
            tiles, skipped = [], []
            for row in range(first // cols, last // cols + 1):
                first_col = first - row * cols if row == first // cols else 0
                last_col = last - row * cols if row == last // cols else cols - 1
                top, left = row * stride, first_col * stride
                window = Window(
                    left, top, min(last_col * stride + size, grid.width) - left, min(size, grid.height - top)
                )
                data = dataset.read(source.bands, window=window)
                valid = read_valid_mask(dataset, source.bands, window)
                if floating:
                    valid &= np.isfinite(data).all(axis=0)
                for col in range(first_col, last_col + 1):
                    start = col * stride - left
                    tile_valid = valid[:, start : start + size]
                    if not tile_valid.any():
                        skipped.append((row, col))
                        continue
                    pixels[len(tiles)] = reflect_pad(data[:, :, start : start + size], size)
                    valid_tiles[len(tiles)] = reflect_pad(tile_valid, size)
                    tiles.append((row, col))
            yield TileBatch(tiles, pixels[: len(tiles)], valid_tiles[: len(tiles)], skipped)
