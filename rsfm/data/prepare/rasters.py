"""Georeferenced rasters: same-grid checks, cutting into patches, burning footprints into masks."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, List, Tuple

import numpy as np
import rasterio
from rasterio.features import rasterize
from rasterio.windows import Window

from rsfm.data.tiling import TileGrid

__all__ = ["check_same_grid", "patch_windows", "rasterize_footprints", "write_patches"]

# keys of a source profile that do not carry over to a deflate-compressed patch
_LAYOUT_KEYS = ("blockxsize", "blockysize", "tiled", "compress", "photometric", "jpeg_quality", "predictor")


def check_same_grid(image: Path, mask: Path) -> None:
    """Raise ``ValueError`` naming both files unless they share size, CRS and transform."""
    with rasterio.open(image) as image_src, rasterio.open(mask) as mask_src:
        checks = {
            "size": ((image_src.width, image_src.height), (mask_src.width, mask_src.height)),
            "CRS": (image_src.crs, mask_src.crs),
            "transform": (image_src.transform, mask_src.transform),
        }
    for name, (image_value, mask_value) in checks.items():
        if image_value != mask_value:
            raise ValueError(
                f"{image} and its mask {mask} differ in {name} ({image_value} vs {mask_value}); "
                "they must cover the same pixels"
            )


def patch_windows(width: int, height: int, patch_size: int) -> Iterator[Tuple[int, int, Window]]:
    """``(row, col, window)`` of ``patch_size`` windows covering a ``width`` x ``height`` raster.

    The grid is tiled inference's ``rsfm.data.tiling.TileGrid`` without overlap; the last row
    and column are shifted back inside the raster (overlapping their neighbours) instead of
    padded, so each patch is real data. A raster smaller than ``patch_size`` gives one window of its size.
    """
    grid = TileGrid(width, height, patch_size, 0)
    for row in range(grid.rows):
        for col in range(grid.cols):
            window = grid.window(row, col)
            yield (
                row,
                col,
                Window(
                    min(window.col_off, max(0, width - patch_size)),
                    min(window.row_off, max(0, height - patch_size)),
                    min(patch_size, width),
                    min(patch_size, height),
                ),
            )


def write_patches(raster: Path, folder: Path, patch_size: int) -> List[Path]:
    """Cut ``raster`` into GeoTIFF patches named ``<stem>_r<row>_c<col>.tif``.

    Each patch keeps the source's CRS, nodata, dtype, bands and colour interpretation; its
    transform is the source's window transform, so it lies exactly where its pixels were.
    Patches are deflate-compressed (tiled when ``patch_size`` is a multiple of 16).

    Args:
        raster: a file rasterio reads.
        folder: where the patches go (created).
        patch_size: patch side in pixels.

    Returns:
        The written patch paths.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with rasterio.open(raster) as src:
        profile = {key: value for key, value in src.profile.items() if key not in _LAYOUT_KEYS}
        profile.update(driver="GTiff", compress="deflate")
        if patch_size % 16 == 0:
            profile.update(tiled=True, blockxsize=min(patch_size, 256), blockysize=min(patch_size, 256))
        for row, col, window in patch_windows(src.width, src.height, patch_size):
            path = folder / f"{raster.stem}_r{row:02d}_c{col:02d}.tif"
            profile.update(width=window.width, height=window.height, transform=src.window_transform(window))
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(src.read(window=window))
                dst.colorinterp = src.colorinterp
            written.append(path)
    return written


def rasterize_footprints(labels: Path, image: Path, target: Path) -> int:
    """Burn the polygons of a vector file into a 0/1 uint8 mask GeoTIFF on ``image``'s grid.

    Footprints are reprojected to the image's CRS (GeoJSON without a CRS is read as
    EPSG:4326, as RFC 7946 says); Z coordinates are dropped.

    Args:
        labels: GeoJSON (or any file geopandas reads) of building polygons; may be empty.
        image: the raster whose size, CRS and transform the mask takes.
        target: mask path to write.

    Returns:
        The number of footprints burned.
    """
    import geopandas
    import shapely

    frame = geopandas.read_file(labels)
    if frame.crs is None:
        frame = frame.set_crs("EPSG:4326")
    with rasterio.open(image) as src:
        crs, transform, shape = src.crs, src.transform, (src.height, src.width)
    shapes = [
        shapely.force_2d(geometry)
        for geometry in frame.to_crs(crs).geometry
        if geometry is not None and not geometry.is_empty
    ]
    mask = np.zeros(shape, dtype=np.uint8)
    if shapes:
        mask = rasterize(shapes, out_shape=shape, transform=transform, fill=0, default_value=1, dtype="uint8")
    target.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        target,
        "w",
        driver="GTiff",
        width=shape[1],
        height=shape[0],
        count=1,
        dtype="uint8",
        crs=crs,
        transform=transform,
        compress="deflate",
    ) as dst:
        dst.write(mask, 1)
    return len(shapes)
