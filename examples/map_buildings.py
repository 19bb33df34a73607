"""Map buildings over a GeoTIFF scene with a trained checkpoint and inspect the result.

    python examples/map_buildings.py scene.tif buildings.ckpt --output out/

Writes ``out/<scene>_buildings.tif`` (class + probability bands, same CRS/transform as the
scene) and ``out/<scene>_buildings.gpkg`` (polygons with area and mean probability), then opens
both and prints a summary. ``make demo`` produces a checkpoint to try it with:
``demo_output/building_model.ckpt``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import rsfm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene", help="GeoTIFF to map")
    parser.add_argument("checkpoint", help="building segmentation .ckpt")
    parser.add_argument("--output", default="out", help="folder for the mask and polygons")
    parser.add_argument("--tile-size", type=int, default=512, help="pixels")
    args = parser.parse_args()

    import geopandas
    import numpy as np
    import rasterio

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    stem = Path(args.scene).stem
    result = rsfm.predict_raster(
        args.scene,
        checkpoint=args.checkpoint,
        output=output / f"{stem}_buildings.tif",
        vector=output / f"{stem}_buildings.gpkg",
        tile_size=args.tile_size,
        overlap=args.tile_size // 8,
    )[0]

    with rasterio.open(result.raster) as mask:
        classes = mask.read(1, masked=True)
        pixel_area = abs(mask.transform.a * mask.transform.e)
        print(f"{result.raster}: {mask.width} x {mask.height} px, CRS {mask.crs}, nodata {mask.nodata}")
        print(
            f"building pixels: {int((classes == 1).sum())} ({float(np.mean(classes == 1)):.1%} of valid pixels), "
            f"{float((classes == 1).sum()) * pixel_area:.0f} square CRS units"
        )
    polygons = geopandas.read_file(result.vector)
    print(f"{result.vector}: {len(polygons)} polygons, largest {polygons['area'].max():.0f} square CRS units")


if __name__ == "__main__":
    main()
