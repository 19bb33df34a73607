"""Two dates of one place read as one raster, for change detection: the after date's grid,
where the before date's footprint overlaps it, holds the before date's bands (warped onto the
grid window by window with GDAL's warped VRT) followed by the after date's bands.

The tile readers of :mod:`rsfm.inference.reader` read a :class:`RasterPair` as they read a
single :class:`~rsfm.inference.inputs.RasterInput`, through its :meth:`RasterPair.open`, so
change maps are tiled, blended, resumed and written by the same code as segmentation maps.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import rasterio
import rasterio.warp
import rasterio.windows
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from rsfm.inference.inputs import RasterInput, check_input
from rsfm.inference.reader import reading_errors
from rsfm.inference.resume import file_identity

RESAMPLINGS = ("nearest", "bilinear", "cubic")
"""How the before date may be resampled onto the after date's grid."""

_EDGE_POINTS = 21  # points per footprint edge transformed to another CRS
_PIXEL_TOLERANCE = 1e-6  # grids that differ by less than this (in pixels) are the same


@dataclass(frozen=True)
class RasterPair:
    """Two checked rasters of one place, as one virtual raster on the output grid.

    The output grid is the after raster's, restricted to the window that the before raster's
    footprint overlaps (its bounding box in the after raster's CRS). Band ``i`` of the virtual
    raster is the before date's band ``bands[i]`` for ``i < in_chans`` and the after date's
    after that; a pixel is valid where both dates are (GDAL masks; outside the before
    footprint the before date is nodata).

    Attributes:
        before, after: the two rasters, checked with :func:`rsfm.inference.inputs.check_input`.
        window: the after raster's pixels that make the output grid.
        resampling: how the before date is warped onto the grid (one of :data:`RESAMPLINGS`).
        offset: when the before raster's pixels are the grid's shifted by whole pixels (same
            CRS, size and orientation), the before pixel (column, row) at the grid's (0, 0): it
            is read, not warped. None when it is warped.
    """

    before: RasterInput
    after: RasterInput
    window: Window
    resampling: str
    offset: Optional[Tuple[int, int]] = None

    @property
    def path(self) -> Path:
        """The after raster: what outputs are named and progress is reported by."""
        return self.after.path

    @property
    def files(self) -> Tuple[RasterInput, RasterInput]:
        """The rasters read: before, after."""
        return self.before, self.after

    @property
    def width(self) -> int:
        return int(self.window.width)

    @property
    def height(self) -> int:
        return int(self.window.height)

    @property
    def crs(self) -> Optional[CRS]:
        return self.after.crs

    @property
    def transform(self) -> Affine:
        return rasterio.windows.transform(self.window, self.after.transform)

    @property
    def bands(self) -> Tuple[int, ...]:
        """Band indexes of the virtual raster: the before date's, then the after date's."""
        return tuple(range(1, len(self.before.bands) + len(self.after.bands) + 1))

    @property
    def dtype(self) -> str:
        """A data type that holds both dates' pixels."""
        return np.promote_types(self.before.dtype, self.after.dtype).name

    def resume_settings(self) -> Dict[str, Any]:
        """What the output depends on besides the model and tiling (see ``ResumeState``)."""
        return {
            "before": file_identity(self.before.path),
            "after": file_identity(self.after.path),
            "before_bands": list(self.before.bands),
            "after_bands": list(self.after.bands),
            "window": [int(self.window.col_off), int(self.window.row_off), self.width, self.height],
            "resampling": self.resampling,
        }

    def tags(self) -> Dict[str, str]:
        """Metadata of the output raster naming the inputs."""
        return {
            "rsfm_before": self.before.path.name,
            "rsfm_after": self.after.path.name,
            "rsfm_before_bands": ",".join(map(str, self.before.bands)),
            "rsfm_after_bands": ",".join(map(str, self.after.bands)),
            "rsfm_resampling": self.resampling,
        }

    def open(self) -> "PairReader":
        """Open both rasters for reading (use as a context manager)."""
        return PairReader(self)


class PairReader:
    """A :class:`RasterPair` open for reading, with the part of rasterio's dataset interface
    that the tile readers use: ``read`` and ``read_masks`` of windows of the output grid.

    The before date is warped by a ``WarpedVRT`` on the output grid: GDAL warps only the
    blocks a window touches, so memory depends on the window, not on the rasters. Its mask
    comes from the before raster's nodata value, or else from an alpha band that GDAL fills
    from the raster's mask (internal mask or alpha band) and from the footprint.
    """

    def __init__(self, pair: RasterPair) -> None:
        self.pair = pair
        self._files = contextlib.ExitStack()
        try:
            with reading_errors(pair.after.path):
                self._after = self._files.enter_context(rasterio.open(pair.after.path))
            with reading_errors(pair.before.path):
                before = self._files.enter_context(rasterio.open(pair.before.path))
                self._before = before if pair.offset is not None else self._files.enter_context(_warp(before, pair))
        except BaseException:
            self._files.close()
            raise

    def read(self, indexes: Sequence[int], window: Window, out_dtype: Any = None) -> np.ndarray:
        """Pixels ``(len(indexes), height, width)`` of ``window`` of the output grid, as
        ``out_dtype`` (default: :attr:`RasterPair.dtype`); the before date is 0 outside its raster."""
        dtype = np.dtype(out_dtype or self.pair.dtype)
        with reading_errors(self.pair.before.path):
            before = self._read_before(window, dtype)
        with reading_errors(self.pair.after.path):
            after = self._after.read(self.pair.after.bands, window=self._after_window(window), out_dtype=dtype)
        return np.concatenate([before, after])[[index - 1 for index in indexes]]

    def read_masks(self, indexes: Sequence[int], window: Window) -> np.ndarray:
        """The mask (255 valid, 0 nodata) of ``window``, the same for every band in ``indexes``:
        valid where both dates are."""
        with reading_errors(self.pair.before.path):
            valid = self._before_valid(window)
        with reading_errors(self.pair.after.path):
            valid &= self._after.read_masks(self.pair.after.bands, window=self._after_window(window)).any(axis=0)
        mask = np.where(valid, np.uint8(255), np.uint8(0))
        return np.broadcast_to(mask, (len(indexes), *mask.shape))

    def _after_window(self, window: Window) -> Window:
        return Window(
            window.col_off + self.pair.window.col_off,
            window.row_off + self.pair.window.row_off,
            window.width,
            window.height,
        )

    def _inside_before(self, window: Window) -> Tuple[Optional[Window], Tuple[slice, slice]]:
        """For a grid read from the before raster directly: the part of ``window`` inside the
        before raster, as a before window and as slices of ``window`` (None when outside)."""
        col_offset, row_offset = self.pair.offset
        left, top = int(window.col_off) + col_offset, int(window.row_off) + row_offset
        right, bottom = left + int(window.width), top + int(window.height)
        clipped_left, clipped_top = max(left, 0), max(top, 0)
        clipped_right, clipped_bottom = min(right, self.pair.before.width), min(bottom, self.pair.before.height)
        if clipped_right <= clipped_left or clipped_bottom <= clipped_top:
            return None, (slice(0, 0), slice(0, 0))
        inside = Window(clipped_left, clipped_top, clipped_right - clipped_left, clipped_bottom - clipped_top)
        return inside, (
            slice(clipped_top - top, clipped_bottom - top),
            slice(clipped_left - left, clipped_right - left),
        )

    def _read_before(self, window: Window, dtype: np.dtype) -> np.ndarray:
        bands = self.pair.before.bands
        if self.pair.offset is None:
            return self._before.read(bands, window=window, out_dtype=dtype)
        pixels = np.zeros((len(bands), int(window.height), int(window.width)), dtype=dtype)
        inside, (rows, cols) = self._inside_before(window)
        if inside is not None:
            pixels[:, rows, cols] = self._before.read(bands, window=inside, out_dtype=dtype)
        return pixels

    def _before_valid(self, window: Window) -> np.ndarray:
        bands = self.pair.before.bands
        if self.pair.offset is None:
            return self._before.read_masks(bands, window=window).any(axis=0)
        valid = np.zeros((int(window.height), int(window.width)), dtype=bool)
        inside, (rows, cols) = self._inside_before(window)
        if inside is not None:
            valid[rows, cols] = self._before.read_masks(bands, window=inside).any(axis=0)
        return valid

    def close(self) -> None:
        self._files.close()

    def __enter__(self) -> "PairReader":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _warp(dataset: rasterio.DatasetReader, pair: RasterPair) -> WarpedVRT:
    """The before raster warped onto the output grid. A raster with a nodata value keeps it
    (GDAL masks nodata pixels and the area outside the footprint with it); one without gets an
    alpha band that does the same from its mask, unless it has an alpha band already. An added
    alpha band would ignore a NaN nodata value, so a nodata value always takes precedence."""
    has_alpha = ColorInterp.alpha in dataset.colorinterp
    return WarpedVRT(
        dataset,
        crs=pair.after.crs,
        transform=pair.transform,
        width=pair.width,
        height=pair.height,
        resampling=Resampling[pair.resampling],
        add_alpha=dataset.nodata is None and not has_alpha,
    )


def _output_window(before: RasterInput, after: RasterInput) -> Window:
    """The pixels of ``after`` inside the bounding box of ``before``'s footprint, found with
    ``rasterio.warp.transform_bounds`` (edges densified: they curve in another CRS).

    Raises:
        ValueError: the rasters do not overlap, or only one of them has a CRS.
    """
    if (before.crs is None) != (after.crs is None):
        with_crs, without = (before, after) if before.crs is not None else (after, before)
        raise ValueError(
            f"{without.path}: has no CRS but {with_crs.path} has one, so the two dates cannot be put on one grid "
            "(set its CRS, e.g. gdal_edit.py -a_srs EPSG:...)"
        )
    width, height = before.width, before.height
    xs, ys = before.transform * (np.array([0, width, 0, width]), np.array([0, 0, height, height]))
    bounds = (xs.min(), ys.min(), xs.max(), ys.max())
    if before.crs is not None and before.crs != after.crs:
        bounds = rasterio.warp.transform_bounds(before.crs, after.crs, *bounds, densify_pts=_EDGE_POINTS)
    west, south, east, north = bounds
    cols, rows = ~after.transform * (np.array([west, east, west, east]), np.array([south, south, north, north]))
    left = top = 0
    right = bottom = -1
    if np.isfinite(cols).all() and np.isfinite(rows).all():
        left = max(math.floor(cols.min() + _PIXEL_TOLERANCE), 0)
        top = max(math.floor(rows.min() + _PIXEL_TOLERANCE), 0)
        right = min(math.ceil(cols.max() - _PIXEL_TOLERANCE), after.width)
        bottom = min(math.ceil(rows.max() - _PIXEL_TOLERANCE), after.height)
    if right <= left or bottom <= top:
        raise ValueError(
            f"{before.path}: does not overlap {after.path} (compared in the CRS of {after.path.name}); "
            "pass two rasters of the same place"
        )
    return Window(left, top, right - left, bottom - top)


def _whole_pixel_offset(before: RasterInput, grid: Affine, same_crs: bool) -> Optional[Tuple[int, int]]:
    """The before pixel (column, row) at the grid's pixel (0, 0) when the before raster's
    pixels are the grid's shifted by whole pixels, else None."""
    if not same_crs:
        return None
    relative = ~before.transform * grid  # grid pixel -> before pixel
    if not all(
        abs(value - expected) < _PIXEL_TOLERANCE
        for value, expected in zip((relative.a, relative.b, relative.d, relative.e), (1.0, 0.0, 0.0, 1.0))
    ):
        return None
    col, row = relative.c, relative.f
    if abs(col - round(col)) > _PIXEL_TOLERANCE or abs(row - round(row)) > _PIXEL_TOLERANCE:
        return None
    return int(round(col)), int(round(row))


def check_pair(
    before: Path, after: Path, in_chans: int, bands: Optional[Sequence[int]] = None, resampling: str = "bilinear"
) -> RasterPair:
    """Check both rasters (:func:`rsfm.inference.inputs.check_input`) and find the output grid.

    Args:
        before, after: the rasters of the earlier and the later date.
        in_chans: bands the model takes from each date.
        bands: 1-based band indexes to use from each raster (default: all but alpha).
        resampling: how the before date is warped onto the grid: one of :data:`RESAMPLINGS`.

    Returns:
        The pair, on the after raster's grid where the before raster's footprint overlaps it.

    Raises:
        FileNotFoundError: a raster does not exist.
        ValueError: as :func:`check_input` for either raster, an unknown ``resampling``, rasters
            that do not overlap, or only one of them with a CRS.
    """
    if resampling not in RESAMPLINGS:
        raise ValueError(f"--resampling must be one of {', '.join(RESAMPLINGS)}, got {resampling!r}")
    before_input = check_input(before, in_chans, bands)
    after_input = check_input(after, in_chans, bands)
    window = _output_window(before_input, after_input)
    grid = rasterio.windows.transform(window, after_input.transform)
    offset = _whole_pixel_offset(before_input, grid, before_input.crs == after_input.crs)
    return RasterPair(before_input, after_input, window, resampling, offset)
