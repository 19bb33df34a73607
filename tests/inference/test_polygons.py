"""Polygons: one per building even across tile and chunk borders, in the raster's CRS, with
area and mean-probability attributes."""

import geopandas
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from inference_helpers import write_raster
from shapely.geometry import box

from rsfm import predict_raster
from rsfm.inference import OutputEncoding, OutputType, write_polygons

ORIGIN = Affine(0.5, 0, 733600.0, 0, -0.5, 3725000.0)


def _scene_with_buildings(tmp_path):
    """uint16 pan scene: background 200, three bright 'buildings' of 900; the big one spans
    several 64-pixel tiles, one has a courtyard."""
    image = np.full((1, 300, 330), 200, dtype=np.uint16)
    image[0, 40:190, 30:260] = 900  # 150 x 230 pixels, crosses many tile borders
    image[0, 220:260, 50:70] = 900
    image[0, 210:290, 200:300] = 900
    image[0, 230:270, 230:270] = 200  # courtyard
    return write_raster(tmp_path / "pan.tif", image, transform=ORIGIN)


def _pixel_box(row0, col0, row1, col1):
    left, top = ORIGIN @ (col0, row0)
    right, bottom = ORIGIN @ (col1, row1)
    return box(left, bottom, right, top)


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson"])
def test_buildings_across_tile_borders_are_one_polygon(tmp_path, brightness_checkpoint, suffix):
    source = _scene_with_buildings(tmp_path)
    vector = tmp_path / f"buildings{suffix}"
    results = predict_raster(
        source, brightness_checkpoint, tmp_path / "mask.tif", vector=vector, tile_size=64, overlap=16, progress=False
    )
    assert results[0].polygons == 3
    frame = geopandas.read_file(vector)
    assert frame.crs.to_epsg() == 32616
    assert list(frame.columns) == ["class", "area", "mean_probability", "geometry"]
    assert set(frame["class"]) == {"building"}
    # the model's 3x3 mean fills the courtyard's four inner corner pixels (5 of 9 bright)
    corners = [_pixel_box(row, col, row + 1, col + 1) for row in (230, 269) for col in (230, 269)]
    courtyard = _pixel_box(230, 230, 270, 270).difference(shapely.union_all(corners))
    expected = [
        _pixel_box(40, 30, 190, 260),
        _pixel_box(220, 50, 260, 70),
        _pixel_box(210, 200, 290, 300).difference(courtyard),
    ]
    for shape in expected:
        matches = frame[frame.intersects(shape.representative_point())]
        assert len(matches) == 1
        found = matches.geometry.iloc[0]
        assert found.symmetric_difference(shape).area == pytest.approx(0, abs=1e-6)
        assert matches["area"].iloc[0] == pytest.approx(shape.area)
        assert 0.95 < matches["mean_probability"].iloc[0] <= 1.0
    assert (frame.geom_type == "Polygon").all()
    assert sum(len(polygon.interiors) for polygon in frame.geometry) == 1
    assert not (tmp_path / f"buildings.partial{suffix}").exists()


def test_min_area_and_simplify(tmp_path, brightness_checkpoint):
    source = _scene_with_buildings(tmp_path)
    vector = tmp_path / "big.gpkg"
    predict_raster(
        source,
        brightness_checkpoint,
        tmp_path / "mask.tif",
        vector=vector,
        tile_size=64,
        overlap=16,
        min_area=500.0,
        simplify=1.0,
        progress=False,
    )
    frame = geopandas.read_file(vector)
    assert len(frame) == 2  # the 10 x 20 m building (200 m²) is dropped
    assert (frame["area"] >= 500).all()


def _polygon_set(raster, encoding, chunk_rows):
    vector = raster.with_name(f"chunks{chunk_rows}.gpkg")
    write_polygons(raster, vector, encoding, chunk_rows=chunk_rows)
    frame = geopandas.read_file(vector)
    return frame.sort_values(["area", "mean_probability"]).reset_index(drop=True)


def test_streamed_polygons_equal_whole_raster_polygons_on_spacenet(tmp_path, data_dir, brightness_checkpoint):
    """Bright roofs of the SpaceNet Atlanta chip: polygons read 37 rows at a time (many
    polygons cut by chunk borders and merged again) equal those from one read."""
    source = data_dir / "geotiff" / "spacenet_atlanta" / "sample_geotiff.tif"
    raster = tmp_path / "mask.tif"
    predict_raster(source, brightness_checkpoint, raster, tile_size=256, overlap=64, progress=False)
    encoding = OutputEncoding(OutputType.CLASSES, 1, ["background", "building"])
    whole = _polygon_set(raster, encoding, chunk_rows=100_000)
    streamed = _polygon_set(raster, encoding, chunk_rows=37)
    assert len(whole) > 20
    with rasterio.open(raster) as dataset:
        classes = dataset.read(1)
    cut = sum(
        1
        for geometry in whole.geometry
        if len({int((dataset.transform.f - y) / 0.5) // 37 for y in geometry.exterior.xy[1]}) > 1
    )
    assert cut > 5  # the chunk borders really cut polygons
    assert len(streamed) == len(whole)
    for first, second in zip(whole.geometry, streamed.geometry):
        assert first.symmetric_difference(second).area == pytest.approx(0, abs=1e-6)
    np.testing.assert_allclose(whole["mean_probability"], streamed["mean_probability"], atol=1e-4)
    # polygons cover exactly the building pixels
    assert whole["area"].sum() == pytest.approx((classes == 1).sum() * 0.25)
    assert shapely.union_all(whole.geometry.values).area == pytest.approx(whole["area"].sum())


def test_chunk_borders_leave_no_seams_at_any_pixel_size(tmp_path):
    """A pixel size that binary floating point cannot hold (30.0379 m, like RGB.byte.tif's 300.04)
    put the bottom edge of one chunk's pieces and the top edge of the next a rounding error
    (~5e-10 m) apart, and their union became a two-part MultiPolygon that the GeoPackage layer
    (Polygon) took with a GDAL warning. Shapes are now traced in pixel coordinates and moved to
    the CRS once: one Polygon per region, the same as reading the raster whole."""
    classes = np.zeros((60, 50), dtype=np.uint8)
    classes[3:40, 5:20] = 1  # crosses the chunk borders at rows 7, 14, ... (7-row chunks)
    classes[10:58, 30:45] = 1
    classes[20:30, 33:42] = 0  # a courtyard across a border
    classes[45:52, 8:14] = 2
    probability = np.where(classes > 0, 40000, 0).astype(np.uint16)
    transform = Affine(30.0379, 0, 101985.0, 0, -30.0379, 2826915.0)
    raster = write_raster(tmp_path / "classes.tif", np.stack([classes, probability]), transform=transform)
    encoding = OutputEncoding(OutputType.CLASSES, 3, ["background", "roof", "shed"])
    whole = _polygon_set(raster, encoding, chunk_rows=100_000)
    streamed = _polygon_set(raster, encoding, chunk_rows=7)
    assert list(streamed.geom_type) == ["Polygon"] * 3 == list(whole.geom_type)
    assert [len(polygon.interiors) for polygon in streamed.geometry] == [0, 0, 1]
    for first, second in zip(whole.geometry, streamed.geometry):
        assert first.equals(second) and shapely.hausdorff_distance(first, second) == 0
    pixel_area = 30.0379**2
    assert streamed["area"].tolist() == pytest.approx([42 * pixel_area, 37 * 15 * pixel_area, 630 * pixel_area])
