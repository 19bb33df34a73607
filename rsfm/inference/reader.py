"""Reading tiles: one windowed read per batch of neighbouring tiles, the nodata mask from
GDAL's mask bands; whole tiles, reflect-padded at the raster's bottom and right edges, for scene
models (:func:`iter_tile_batches`), and the rectangles of valid data a segmentation model runs
on (:func:`iter_crop_batches`, placed by :func:`rsfm.inference.crops.plan_crops`)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Protocol, Tuple

import numpy as np
import rasterio
from rasterio._err import CPLE_BaseError  # what rasterio raises for some GDAL errors; not exported elsewhere
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from rsfm.data.tiling import TileGrid, reflect_pad
from rsfm.inference.crops import plan_crops
from rsfm.inference.errors import InferenceIOError, error_reason

# torch has no kernels for these; their values fit float32 well enough for a model input
_TORCH_UNFRIENDLY = {"uint32", "int64", "uint64", "float64"}


class RasterSource(Protocol):
    """What the tile readers read: a :class:`~rsfm.inference.inputs.RasterInput`, or a
    :class:`~rsfm.inference.pair.RasterPair` (two dates read as one raster)."""

    @property
    def path(self) -> Path: ...  # named in errors

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    @property
    def bands(self) -> Tuple[int, ...]: ...  # 1-based indexes passed to ``read``/``read_masks``

    @property
    def dtype(self) -> str: ...

    def open(self) -> Any:
        """A context manager with rasterio's ``read(indexes, window=, out_dtype=)`` and
        ``read_masks(indexes, window=)``."""


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


@dataclass
class CropUse:
    """Where a crop's prediction goes in one window.

    Attributes:
        tile: index of the window in :attr:`CropBatch.tiles`.
        window: (rows, cols) slices of the window that the crop covers.
        crop: the same pixels as (rows, cols) slices of the crop.
        take: bool, the shape of those slices: the pixels that take this crop's prediction.
    """

    tile: int
    window: Tuple[slice, slice]
    crop: Tuple[slice, slice]
    take: np.ndarray


@dataclass
class Crop:
    """A rectangle of valid data that the model runs on.

    Attributes:
        row_off: first raster row (pixels).
        col_off: first raster column (pixels).
        pixels: (bands, height, width) raw pixel values; height and width at most the tile size.
        valid: (height, width) bool, False at nodata/masked pixels.
        uses: the windows of the batch that take predictions from it.
    """

    row_off: int
    col_off: int
    pixels: np.ndarray
    valid: np.ndarray
    uses: List[CropUse] = field(default_factory=list)


@dataclass
class CropBatch:
    """The tiles ``first_tile .. first_tile + batch_size - 1`` of the grid for a segmentation
    model: the rectangles the model runs on and where their predictions go.

    Attributes:
        tiles: (row, col) grid positions of the windows holding valid pixels.
        valid: (len(tiles), tile_size, tile_size) bool, False at nodata/masked pixels and past
            the raster's edges.
        crops: what the model runs on, each rectangle once (windows of the batch share them).
        skipped: (row, col) of the batch's tiles whose pixels are all nodata.
    """

    tiles: List[Tuple[int, int]]
    valid: np.ndarray
    crops: List[Crop]
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


@contextlib.contextmanager
def reading_errors(path: Path) -> Iterator[None]:
    """Turn GDAL's read errors into one :class:`InferenceIOError` naming the input ``path``."""
    try:
        yield
    except (RasterioIOError, CPLE_BaseError) as error:
        raise InferenceIOError(
            path,
            f"cannot read pixels: {error_reason(error)}",
            "the file is truncated, damaged or gone; fetch it again",
        ) from error


def iter_tile_batches(source: RasterSource, grid: TileGrid, batch_size: int, first_row: int = 0) -> Iterator[TileBatch]:
    """Read the tiles of ``grid`` in batches, from the batch holding tile row ``first_row``.

    A batch takes ``batch_size`` consecutive tiles in row-major order (across row ends);
    its tiles of one row are cut from a single windowed read, so every GDAL block is decoded
    once per tile row rather than once per tile. Tiles that reach past the raster are
    reflect-padded; tiles without any valid pixel are listed in ``skipped`` instead.

    Args:
        source: the checked input (a raster, or a pair of dates read as one).
        grid: the tile grid over it.
        batch_size: tiles per batch.
        first_row: tile row to resume from (the batch holding its first tile is the first).

    Raises:
        InferenceIOError: the raster cannot be read (damaged, or gone since it was checked).
    """
    with reading_errors(source.path):
        yield from _read_tile_batches(source, grid, batch_size, first_row)


def _read_tile_batches(source: RasterSource, grid: TileGrid, batch_size: int, first_row: int) -> Iterator[TileBatch]:
    size, stride = grid.tile_size, grid.stride
    floating = np.dtype(source.dtype).kind == "f"
    with source.open() as dataset:
        for first in range(first_batch_tile(grid, batch_size, first_row), len(grid), batch_size):
            last = min(first + batch_size, len(grid)) - 1
            pixels = np.empty((last - first + 1, len(source.bands), size, size), dtype=_model_dtype(source.dtype))
            valid_tiles = np.empty((last - first + 1, size, size), dtype=bool)
            tiles, skipped = [], []
            for row, first_col, last_col in _batch_rows(grid, first, last):
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


class _Region:
    """Validity, and pixels unless ``pixels`` is False, of a window of the raster clipped to the
    raster. Validity of float rasters needs the pixels (NaN is nodata), so they are always read."""

    def __init__(
        self, dataset: rasterio.DatasetReader, source: RasterSource, window: Window, pixels: bool = True
    ) -> None:
        self.row_off, self.col_off = int(window.row_off), int(window.col_off)
        floating = np.dtype(source.dtype).kind == "f"
        self.data: Optional[np.ndarray] = None
        if pixels or floating:
            self.data = dataset.read(source.bands, window=window, out_dtype=_model_dtype(source.dtype))
        self.valid = read_valid_mask(dataset, source.bands, window)
        if floating:
            self.valid &= np.isfinite(self.data).all(axis=0)

    def contains(self, bounds: Tuple[int, int, int, int]) -> bool:
        top, bottom, left, right = bounds
        height, width = self.valid.shape
        return (
            self.row_off <= top
            and bottom <= self.row_off + height
            and self.col_off <= left
            and right <= self.col_off + width
        )


def _window(grid: TileGrid, top: int, bottom: int, left: int, right: int) -> Window:
    """The window ``[top, bottom) x [left, right)`` clipped to the raster."""
    top, left = max(top, 0), max(left, 0)
    return Window(left, top, min(right, grid.width) - left, min(bottom, grid.height) - top)


def iter_crop_batches(source: RasterSource, grid: TileGrid, batch_size: int, first_row: int = 0) -> Iterator[CropBatch]:
    """Read the tiles of ``grid`` in batches, as the rectangles of valid data that a segmentation
    model runs on (:func:`rsfm.inference.crops.plan_crops`), from the batch holding tile row
    ``first_row``.

    Batches hold the same tiles as :func:`iter_tile_batches`. A tile whose pixels are all valid
    and inside the raster is one rectangle, itself; the others are planned on the validity mask
    within a tile around them (read once per row of the batch), and their rectangles never reach
    past the raster, so edges are not padded. Windows of a batch that plan the same rectangle
    share it.

    Raises:
        InferenceIOError: the raster cannot be read (damaged, or gone since it was checked).
    """
    with reading_errors(source.path):
        yield from _read_crop_batches(source, grid, batch_size, first_row)


# a rectangle planned for a window: its raster bounds (top, bottom, left, right), the window's
# (rows, cols) slices it covers, and which of those pixels take its prediction
_Plan = Tuple[Tuple[int, int, int, int], Tuple[slice, slice], np.ndarray]


def _read_crop_batches(source: RasterSource, grid: TileGrid, batch_size: int, first_row: int) -> Iterator[CropBatch]:
    size, stride = grid.tile_size, grid.stride
    with source.open() as dataset:
        for first in range(first_batch_tile(grid, batch_size, first_row), len(grid), batch_size):
            last = min(first + batch_size, len(grid)) - 1
            batch = CropBatch([], np.zeros((0, size, size), dtype=bool), [])
            valid_tiles: List[np.ndarray] = []
            crops: Dict[Tuple[int, int, int, int], Crop] = {}  # windows of the batch share rectangles
            for row, first_col, last_col in _batch_rows(grid, first, last):
                regions, plans = _plan_row(dataset, source, grid, row, first_col, last_col)
                strip = regions[0]
                batch.skipped += [(row, col) for col, plan in plans.items() if plan is None]
                for col, plan in plans.items():
                    if plan is None:
                        continue
                    top, left = row * stride, col * stride
                    for bounds, (window_rows, window_cols), take in plan:
                        crop = crops.get(bounds)
                        if crop is None:
                            region = next(region for region in regions if region.contains(bounds))
                            crop = crops[bounds] = _cut(region, bounds)
                        crop_rows = slice(window_rows.start + top - crop.row_off, window_rows.stop + top - crop.row_off)
                        crop_cols = slice(
                            window_cols.start + left - crop.col_off, window_cols.stop + left - crop.col_off
                        )
                        crop.uses.append(
                            CropUse(len(batch.tiles), (window_rows, window_cols), (crop_rows, crop_cols), take)
                        )
                    window_valid = np.zeros((size, size), dtype=bool)
                    inside = strip.valid[:, left - strip.col_off : left - strip.col_off + size]
                    window_valid[: inside.shape[0], : inside.shape[1]] = inside
                    valid_tiles.append(window_valid)
                    batch.tiles.append((row, col))
            if valid_tiles:
                batch.valid = np.stack(valid_tiles)
            batch.crops = list(crops.values())
            yield batch


def _plan_row(
    dataset: rasterio.DatasetReader, source: RasterSource, grid: TileGrid, row: int, first_col: int, last_col: int
) -> Tuple[List[_Region], Dict[int, Optional[List[_Plan]]]]:
    """The rectangles of the windows ``first_col .. last_col`` of tile row ``row`` (``None`` for a
    window without valid pixels), and the regions holding their pixels.

    The windows' strip is read first. Windows that are not all valid data are planned on the
    validity of the strip a tile above, below and beside them (pixels not read, except for float
    rasters), and the pixels of their rectangles outside the strip are read in one more window.
    """
    size, stride = grid.tile_size, grid.stride
    top = row * stride
    strip = _Region(dataset, source, _window(grid, top, top + size, first_col * stride, last_col * stride + size))
    plans: Dict[int, Optional[List[_Plan]]] = {}
    unplanned = []
    for col in range(first_col, last_col + 1):
        start = col * stride - strip.col_off
        tile_valid = strip.valid[:, start : start + size]
        if not tile_valid.any():
            plans[col] = None
        elif tile_valid.shape == (size, size) and tile_valid.all():
            whole = (slice(0, size), slice(0, size))
            plans[col] = [((top, top + size, col * stride, col * stride + size), whole, np.ones((size, size), bool))]
        else:
            unplanned.append(col)
    if not unplanned:
        return [strip], plans
    around = _window(grid, top - size, top + 2 * size, unplanned[0] * stride - size, unplanned[-1] * stride + 2 * size)
    context = _Region(dataset, source, around, pixels=False)
    outside = []
    for col in unplanned:
        plans[col] = _plan_window(context, grid, row, col)
        outside += [bounds for bounds, _, _ in plans[col] if not strip.contains(bounds)]
    if not outside:
        return [strip], plans
    if context.data is not None:
        return [strip, context], plans
    union = _window(
        grid,
        min(bounds[0] for bounds in outside),
        max(bounds[1] for bounds in outside),
        min(bounds[2] for bounds in outside),
        max(bounds[3] for bounds in outside),
    )
    return [strip, _Region(dataset, source, union)], plans


def _batch_rows(grid: TileGrid, first: int, last: int) -> Iterator[Tuple[int, int, int]]:
    """(row, first column, last column) of the tiles ``first .. last`` (row-major indices)."""
    cols = grid.cols
    for row in range(first // cols, last // cols + 1):
        first_col = first - row * cols if row == first // cols else 0
        last_col = last - row * cols if row == last // cols else cols - 1
        yield row, first_col, last_col


def _plan_window(context: _Region, grid: TileGrid, row: int, col: int) -> List[_Plan]:
    """``plan_crops`` for one window on the validity within a tile of it: (raster bounds,
    window slices, take) per rectangle."""
    size = grid.tile_size
    top, left = row * grid.stride, col * grid.stride
    around_top, around_left = max(top - size, 0), max(left - size, 0)
    rows = slice(around_top - context.row_off, min(top + 2 * size, grid.height) - context.row_off)
    cols = slice(around_left - context.col_off, min(left + 2 * size, grid.width) - context.col_off)
    planned = []
    for crop in plan_crops(context.valid[rows, cols], top - around_top, left - around_left, size):
        box_top, box_bottom, box_left, box_right = crop.box
        bounds = (box_top + around_top, box_bottom + around_top, box_left + around_left, box_right + around_left)
        first_row, first_col = max(bounds[0], top) - top, max(bounds[2], left) - left
        window_part = (
            slice(first_row, first_row + crop.take.shape[0]),
            slice(first_col, first_col + crop.take.shape[1]),
        )
        planned.append((bounds, window_part, crop.take))
    return planned


def _cut(region: _Region, bounds: Tuple[int, int, int, int]) -> Crop:
    top, bottom, left, right = bounds
    rows = slice(top - region.row_off, bottom - region.row_off)
    cols = slice(left - region.col_off, right - region.col_off)
    return Crop(top, left, region.data[:, rows, cols].copy(), region.valid[rows, cols].copy())
