"""Finding and checking input rasters before any work starts (readable to the last block,
bands, data type, a sample of their pixels), with errors that name the file and the fix."""

from __future__ import annotations

import glob
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import rasterio
from affine import Affine
from rasterio._err import CPLE_BaseError  # what rasterio raises for some GDAL errors; not exported elsewhere
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from rsfm.data.pixel_range import describe_pixels, merge_pixel_ranges
from rsfm.inference.errors import error_reason
from rsfm.inference.resume import file_identity

PathLike = Union[str, os.PathLike]

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2")
"""File endings picked up when a directory is given as input."""

CHECK_WINDOW = 256
"""Side, in pixels, of the windows :func:`check_input` reads before any work."""

_GLOB_CHARS = set("*?[")


def expand_inputs(inputs: Union[PathLike, Sequence[PathLike]]) -> List[Path]:
    """Turn files, glob patterns and directories into a list of files, in order, without
    duplicates. Directories contribute their files ending in :data:`RASTER_SUFFIXES`
    (not recursive).

    Raises:
        ValueError: nothing given, or a pattern or directory that matches no raster.
    """
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not items:
        raise ValueError("no input raster given")
    files: List[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES)
            if not found:
                raise ValueError(f"{path}: directory holds no raster ({', '.join(RASTER_SUFFIXES)} files)")
            files.extend(found)
        elif not path.exists() and _GLOB_CHARS & set(str(item)):
            found = sorted(Path(match) for match in glob.glob(str(item)) if Path(match).is_file())
            if not found:
                raise ValueError(f"{item}: pattern matches no file (check the pattern, quote it in the shell)")
            files.extend(found)
        else:
            files.append(path)
    unique: List[Path] = []
    for path in files:
        if path not in unique:
            unique.append(path)
    return unique


@dataclass(frozen=True)
class RasterInput:
    """A checked input raster.

    Attributes:
        path: the file.
        width, height: size in pixels.
        bands: 1-based band indexes fed to the model, in order.
        dtype: numpy dtype name of the bands.
        crs: coordinate reference system, or None.
        transform: pixel -> CRS coordinates affine transform.
        pixels: data type and value range of a sample of valid pixels
            (:func:`rsfm.data.pixel_range.describe_pixels`), or None when the sample has none.
    """

    path: Path
    width: int
    height: int
    bands: Tuple[int, ...]
    dtype: str
    crs: Optional[CRS]
    transform: Affine
    pixels: Optional[Dict[str, Any]] = None

    @property
    def files(self) -> Tuple["RasterInput"]:
        """The rasters read: this one (a :class:`rsfm.inference.pair.RasterPair` has two)."""
        return (self,)

    def open(self) -> rasterio.DatasetReader:
        """The raster opened for reading; the tile readers read every input through this."""
        return rasterio.open(self.path)

    def resume_settings(self) -> Dict[str, Any]:
        """What the output depends on besides the model and tiling (see ``ResumeState``)."""
        return {"input": file_identity(self.path), "bands": list(self.bands)}

    def tags(self) -> Dict[str, str]:
        """Metadata of the output raster naming what was read."""
        return {"rsfm_bands": ",".join(map(str, self.bands))}


def _check_windows(width: int, height: int, block_shape: Tuple[int, int]) -> List[Window]:
    """Where :func:`check_input` reads: the first and the last block (at most
    :data:`CHECK_WINDOW` pixels of each) and a 3x3 grid of windows spread over the raster."""
    size = CHECK_WINDOW
    block_height, block_width = block_shape
    last_top = max((height - 1) // block_height * block_height, height - size)
    last_left = max((width - 1) // block_width * block_width, width - size)
    windows = [
        Window(0, 0, min(block_width, width, size), min(block_height, height, size)),
        Window(last_left, last_top, width - last_left, height - last_top),
    ]
    sample_width, sample_height = min(size, width), min(size, height)
    for row_share in (0.0, 0.5, 1.0):
        for col_share in (0.0, 0.5, 1.0):
            top, left = round((height - sample_height) * row_share), round((width - sample_width) * col_share)
            windows.append(Window(left, top, sample_width, sample_height))
    unique: List[Window] = []
    for window in windows:
        if window not in unique:
            unique.append(window)
    return unique


def _read_sample(dataset: rasterio.DatasetReader, path: Path, bands: Tuple[int, ...]) -> Optional[Dict[str, Any]]:
    """Read :func:`_check_windows` of ``bands``; describe their valid pixels (None when there
    are none). Reading the last block finds a file cut short by a failed copy or download
    before any work, instead of in the middle of the run."""
    described = []
    floating = np.dtype(dataset.dtypes[bands[0] - 1]).kind == "f"
    for window in _check_windows(dataset.width, dataset.height, dataset.block_shapes[bands[0] - 1]):
        try:
            data = dataset.read(bands, window=window)
            valid = dataset.read_masks(bands, window=window).any(axis=0)
        except (RasterioIOError, CPLE_BaseError) as error:
            reason = error_reason(error)
            if "Python code" in reason:  # GDAL_VRT_ENABLE_PYTHON=NO, set by rsfm._compat
                raise ValueError(
                    f"{path}: refused: its pixels are computed by Python code inside the file (a GDAL VRT "
                    "pixel function), and rsfm never runs code from a raster; use a GeoTIFF of the pixels"
                ) from error
            raise ValueError(
                f"{path}: file is truncated or damaged, pixels at row {window.row_off}, column {window.col_off} "
                f"cannot be read ({reason}); the copy or download probably failed, fetch it again"
            ) from error
        if floating:
            valid &= np.isfinite(data).all(axis=0)
        if valid.any():
            described.append(describe_pixels(data[:, valid]))
    return merge_pixel_ranges(described)


def _describe(
    dataset: rasterio.DatasetReader, path: Path, in_chans: int, bands: Optional[Sequence[int]]
) -> RasterInput:
    """The checks of :func:`check_input` on the open ``dataset``."""
    width, height, count = dataset.width, dataset.height, dataset.count
    dtypes, crs, transform = dataset.dtypes, dataset.crs, dataset.transform
    alpha = [index + 1 for index, kind in enumerate(dataset.colorinterp) if kind == ColorInterp.alpha]
    if width < 1 or height < 1 or count < 1:
        raise ValueError(f"{path}: raster has zero size ({width}x{height} pixels, {count} bands); nothing to predict")
    if bands is None:
        chosen = tuple(index for index in range(1, count + 1) if index not in alpha)
    else:
        chosen = tuple(int(index) for index in bands)
        wrong = [index for index in chosen if not 1 <= index <= count]
        if wrong:
            raise ValueError(f"{path}: has bands 1-{count}, band(s) {wrong} do not exist (fix --bands)")
    if len(chosen) != in_chans:
        hint = (
            f"use --bands to pick {in_chans} of bands 1-{count}"
            if count >= in_chans
            else (f"the model needs {in_chans}-band imagery")
        )
        raise ValueError(f"{path}: has {len(chosen)} band(s) to use, model expects {in_chans} ({hint})")
    dtype = np.dtype(dtypes[chosen[0] - 1])
    if any(np.dtype(dtypes[index - 1]) != dtype for index in chosen):
        raise ValueError(f"{path}: bands {list(chosen)} have different data types; pick bands of one type with --bands")
    if dtype.kind not in "uif":
        raise ValueError(f"{path}: data type {dtype} is not supported (use integer or float bands)")
    return RasterInput(path, width, height, chosen, dtype.name, crs, transform, _read_sample(dataset, path, chosen))


def check_input(path: Path, in_chans: int, bands: Optional[Sequence[int]] = None) -> RasterInput:
    """Open ``path`` and check that the model can run on it.

    Reads the first and the last block of the bands used and a few windows spread over the
    raster (:func:`_check_windows`), so that a truncated or damaged file fails here, and
    describes their valid pixels for the check against the model's training pixels.

    Args:
        path: a raster file GDAL can read.
        in_chans: bands the model expects.
        bands: 1-based band indexes to use; by default all bands except an alpha band.

    Returns:
        The raster's description.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unreadable, truncated or damaged, empty, wrong band count, bad band index,
            unsupported dtype.

    Warns:
        UserWarning: the raster has no CRS (outputs then carry pixel coordinates only).
    """
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found (check the path)")
    if not path.is_file():
        raise ValueError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: file is empty (0 bytes); the copy or download probably failed, fetch it again")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        try:
            dataset = rasterio.open(path)
        except RasterioIOError as error:
            raise ValueError(f"{path}: not a raster GDAL can read ({error}); convert it to GeoTIFF") from error
        with dataset:
            description = _describe(dataset, path, in_chans, bands)
    if description.crs is None:
        warnings.warn(
            f"{path}: raster has no CRS; outputs keep its pixel grid but are not georeferenced",
            UserWarning,
            stacklevel=2,
        )
    return description
