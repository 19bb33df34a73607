"""Finding and checking input rasters before any work starts, with errors that name the file
and the fix."""

from __future__ import annotations

import glob
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import RasterioIOError

PathLike = Union[str, os.PathLike]

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2")
"""File endings picked up when a directory is given as input."""

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
    """

    path: Path
    width: int
    height: int
    bands: Tuple[int, ...]
    dtype: str
    crs: Optional[CRS]
    transform: Affine


def check_input(path: Path, in_chans: int, bands: Optional[Sequence[int]] = None) -> RasterInput:
    """Open ``path`` and check that the model can run on it.

    Args:
        path: a raster file GDAL can read.
        in_chans: bands the model expects.
        bands: 1-based band indexes to use; by default all bands except an alpha band.

    Returns:
        The raster's description.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unreadable, empty, wrong band count, bad band index, unsupported dtype.

    Warns:
        UserWarning: the raster has no CRS (outputs then carry pixel coordinates only).
    """
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found (check the path)")
    if not path.is_file():
        raise ValueError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: file is empty (0 bytes); the copy or download probably failed, fetch it again")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(path) as dataset:
                width, height, count = dataset.width, dataset.height, dataset.count
                dtypes, crs, transform = dataset.dtypes, dataset.crs, dataset.transform
                alpha = [index + 1 for index, kind in enumerate(dataset.colorinterp) if kind == ColorInterp.alpha]
    except RasterioIOError as error:
        raise ValueError(f"{path}: not a raster GDAL can read ({error}); convert it to GeoTIFF") from error
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
        hint = f"use --bands to pick {in_chans} of bands 1-{count}" if count >= in_chans else (
            f"the model needs {in_chans}-band imagery"
        )
        raise ValueError(f"{path}: has {len(chosen)} band(s) to use, model expects {in_chans} ({hint})")
    dtype = np.dtype(dtypes[chosen[0] - 1])
    if any(np.dtype(dtypes[index - 1]) != dtype for index in chosen):
        raise ValueError(f"{path}: bands {list(chosen)} have different data types; pick bands of one type with --bands")
    if dtype.kind not in "uif":
        raise ValueError(f"{path}: data type {dtype} is not supported (use integer or float bands)")
    if crs is None:
        warnings.warn(
            f"{path}: raster has no CRS; outputs keep its pixel grid but are not georeferenced",
            UserWarning,
            stacklevel=2,
        )
    return RasterInput(path, width, height, chosen, dtype.name, crs, transform)
