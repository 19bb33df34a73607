"""Reading image files as ``(H, W, bands)`` arrays: PIL for JPEG/PNG/WebP/BMP, rasterio for TIFF."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "MAX_IMAGE_BYTES", "RASTER_EXTENSIONS", "ImageReadError", "read_image"]

RASTER_EXTENSIONS = (".tif", ".tiff")
# A (Geo)TIFF read whole may declare any size in a file of a few kilobytes (empty tiles cost
# nothing): refuse more decoded bytes than this, as PIL refuses images over 2 x MAX_IMAGE_PIXELS.
# Whole scenes go through rsfm predict-raster, which reads windows.
MAX_IMAGE_BYTES = 1 << 30
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", *RASTER_EXTENSIONS)

# PIL modes that only make sense once expanded to plain bands
_PIL_CONVERSIONS = {"1": "L", "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}


class ImageReadError(ValueError):
    """An image file could not be read; the message names the file and the reason."""


def read_image(path: Union[str, os.PathLike], bands: Optional[Sequence[int]] = None) -> np.ndarray:
    """Read an image file with its stored pixel values.

    Args:
        path: a JPEG/PNG/WebP/BMP file (read with PIL) or a (Geo)TIFF with any number of bands
            (read with rasterio).
        bands: 1-based band numbers to keep, in this order (rasterio's convention), e.g.
            ``[4, 3, 2]``; ``None`` keeps all bands.

    Returns:
        A ``(height, width, bands)`` array in the file's dtype (uint8, uint16, float32, ...).

    Raises:
        ImageReadError: the file is missing, unreadable or truncated, has fewer bands than
            ``bands`` asks for, or is larger than ``MAX_IMAGE_BYTES`` decoded (a TIFF) or than
            PIL's decompression-bomb limit. The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: image file not found")
    try:
        if path.suffix.lower() in RASTER_EXTENSIONS:
            image = _read_raster(path, bands)
        else:
            image = _read_pil(path, bands)
    except ImageReadError:
        raise
    except Exception as error:  # PIL and GDAL raise many types; the caller needs the file name
        raise ImageReadError(f"{path}: cannot read image ({type(error).__name__}: {error})") from error
    return image


def _check_bands(path: Path, count: int, bands: Optional[Sequence[int]]) -> None:
    if bands is not None and (min(bands) < 1 or max(bands) > count):
        raise ImageReadError(
            f"{path}: has {count} band(s), bands={list(bands)} asks for others (band numbers start at 1)"
        )


def _read_raster(path: Path, bands: Optional[Sequence[int]]) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as dataset:
        _check_bands(path, dataset.count, bands)
        count = len(bands) if bands is not None else dataset.count
        size = dataset.width * dataset.height * count * np.dtype(dataset.dtypes[0]).itemsize
        if size > MAX_IMAGE_BYTES:
            raise ImageReadError(
                f"{path}: {dataset.width} x {dataset.height} pixels x {count} {dataset.dtypes[0]} band(s) would "
                f"take {size / 2**30:.1f} GiB, more than an image read whole may ({MAX_IMAGE_BYTES / 2**30:.0f} GiB, "
                "rsfm.data.io.MAX_IMAGE_BYTES); run whole scenes through rsfm predict-raster, or cut them into tiles"
            )
        data = dataset.read(indexes=list(bands) if bands is not None else None)
    return np.ascontiguousarray(data.transpose(1, 2, 0))


def _read_pil(path: Path, bands: Optional[Sequence[int]]) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        if image.mode == "P":
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        elif image.mode in _PIL_CONVERSIONS:
            image = image.convert(_PIL_CONVERSIONS[image.mode])
        array = np.asarray(image)  # decodes the whole file, so truncation shows up here
    if array.ndim == 2:
        array = array[:, :, None]
    _check_bands(path, array.shape[2], bands)
    if bands is not None:
        array = array[:, :, [band - 1 for band in bands]]
    return np.ascontiguousarray(array)
