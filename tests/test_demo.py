"""``make demo`` stays runnable: one training epoch, then every output is written."""

import geopandas
import pytest
import rasterio
from PIL import Image

from rsfm.cli.demo import IMAGE, main


@pytest.mark.slow
def test_demo_writes_mask_polygons_and_overview(tmp_path):
    assert main(["--output", str(tmp_path), "--epochs", "1"]) == 0
    with rasterio.open(tmp_path / "buildings_mask.tif") as mask, rasterio.open(IMAGE) as image:
        assert mask.crs == image.crs and mask.transform == image.transform and mask.shape == image.shape
    assert geopandas.read_file(tmp_path / "buildings.gpkg").crs == image.crs
    with Image.open(tmp_path / "overview.png") as overview:
        assert overview.size == (880, 924)  # the figure: 8 x 8.4 inches at 110 dpi
    # a second run loads the checkpoint instead of training again
    modified = (tmp_path / "building_model.ckpt").stat().st_mtime_ns
    assert main(["--output", str(tmp_path)]) == 0
    assert (tmp_path / "building_model.ckpt").stat().st_mtime_ns == modified
