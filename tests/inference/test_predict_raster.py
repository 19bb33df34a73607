"""predict_raster end to end on GeoTIFFs written here and on the shared real rasters."""

import numpy as np
import pytest
import rasterio
from affine import Affine
from inference_helpers import smooth_image, write_raster

from rsfm import predict_raster
from rsfm.data.tiling import TileGrid
from rsfm.inference import NODATA
from rsfm.inference.outputs import scale_probability
from rsfm.inference.predictor import Predictor

FAST = dict(progress=False)


def whole_image_probabilities(checkpoint, image, valid):
    """Reference: the model run once on the bounding box of the valid pixels (nodata inside it
    filled with the band mean), as ``BuildingExtractor`` runs an image. Tiles reach neither past
    the raster's edges (no padding) nor past a straight nodata border: where they would, they
    are moved onto the valid pixels (``rsfm.inference.crops``), so a model whose receptive-field
    radius is at most ``overlap // 4`` gives the same values tiled."""
    model = Predictor.load(checkpoint)
    rows, cols = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
    box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    reference = np.zeros((model.num_outputs, *valid.shape), dtype=np.float32)
    reference[(slice(None), *box)] = model(image[(None, slice(None), *box)], valid[None][(slice(None), *box)])[0]
    return reference


@pytest.mark.parametrize("size", [(300, 417), (40, 30)], ids=["several-tiles", "smaller-than-a-tile"])
def test_tiled_equals_whole_image(tmp_path, conv_checkpoint, size):
    """Receptive field 5x5 (radius 2) <= overlap // 4 = 8: tiling changes nothing."""
    image = smooth_image(3, *size)
    source = write_raster(tmp_path / "scene.tif", image)
    output = tmp_path / "probability.tif"
    predict_raster(
        source, conv_checkpoint, output, tile_size=128, overlap=32, batch_size=3, output_type="probabilities", **FAST
    )
    with rasterio.open(output) as dataset:
        assert (dataset.height, dataset.width) == size
        tiled = dataset.read(1)
    reference = scale_probability(whole_image_probabilities(conv_checkpoint, image, np.ones(size, bool))[0])
    difference = np.abs(tiled.astype(int) - reference.astype(int))
    assert difference.max() <= 1  # float rounding may move a value across a quantisation step
    assert (difference == 0).mean() > 0.999


def test_output_keeps_grid_crs_and_tiling(tmp_path, conv_checkpoint):
    transform = Affine(0.3, 0, 500000.0, 0, -0.3, 4100000.0)
    source = write_raster(tmp_path / "scene.tif", smooth_image(3, 200, 260), crs="EPSG:32633", transform=transform)
    output = tmp_path / "classes.tif"
    predict_raster(source, conv_checkpoint, output, tile_size=64, overlap=16, **FAST)
    with rasterio.open(output) as dataset:
        assert dataset.crs.to_epsg() == 32633
        assert dataset.transform == transform
        assert (dataset.width, dataset.height, dataset.count) == (260, 200, 2)
        assert dataset.dtypes == ("uint8", "uint8") and dataset.nodata == NODATA
        assert dataset.profile["tiled"] and dataset.compression.name.lower() == "lzw"
        assert dataset.descriptions == ("class", "probability of class")
        classes, probability = dataset.read()
        assert set(np.unique(classes)) <= {0, 1}
        assert probability.min() >= 127  # the chosen class is the more likely one
    assert not (tmp_path / "classes.partial.tif").exists()
    assert not (tmp_path / "classes.partial.json").exists()


def test_cog_output_has_overviews(tmp_path, conv_checkpoint):
    source = write_raster(tmp_path / "scene.tif", smooth_image(3, 700, 650))
    output = tmp_path / "cog.tif"
    predict_raster(source, conv_checkpoint, output, tile_size=256, overlap=32, cog=True, **FAST)
    with rasterio.open(output) as dataset:
        assert dataset.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert dataset.overviews(1)
        assert dataset.descriptions == ("class", "probability of class")
        assert dataset.crs.to_epsg() == 32616


@pytest.mark.parametrize(
    "dtype,nodata,scale",
    [("uint16", 0, 16000), ("int16", -9999, 16000), ("float32", np.nan, 16000), ("float32", -1.0, 16000)],
)
def test_dtypes_and_nodata(tmp_path, conv1_checkpoint, dtype, nodata, scale):
    image = smooth_image(1, 150, 170, dtype="float64", scale=scale) + 1
    image[:, :20, :] = nodata  # a nodata border
    image[:, 60:70, 80:90] = nodata  # and a hole
    image = image.astype(dtype)
    source = write_raster(tmp_path / "scene.tif", image, nodata=nodata)
    output = tmp_path / "out.tif"
    predict_raster(source, conv1_checkpoint, output, tile_size=64, overlap=16, output_type="probabilities", **FAST)
    with rasterio.open(output) as dataset:
        predicted = dataset.read(1)
    invalid = np.isnan(image[0]) if np.isnan(nodata) else image[0] == nodata
    assert np.all(predicted[invalid] == NODATA)
    assert np.all(predicted[~invalid] != NODATA)
    # nodata pixels do not leak: the border is cut off and the hole counts as the band mean,
    # exactly as in a run on the whole valid area
    reference = whole_image_probabilities(conv1_checkpoint, np.nan_to_num(image.astype(np.float32)), ~invalid)
    difference = np.abs(predicted.astype(int) - scale_probability(reference[0]).astype(int))[~invalid]
    assert difference.max() <= 1


def test_band_selection_reorders_bands(tmp_path, conv_checkpoint):
    image = smooth_image(4, 120, 140, seed=3)
    four = write_raster(tmp_path / "four.tif", image)
    three = write_raster(tmp_path / "three.tif", image[[3, 1, 0]])
    predict_raster(four, conv_checkpoint, tmp_path / "a.tif", bands=[4, 2, 1], tile_size=64, overlap=16, **FAST)
    predict_raster(three, conv_checkpoint, tmp_path / "b.tif", tile_size=64, overlap=16, **FAST)
    with rasterio.open(tmp_path / "a.tif") as first, rasterio.open(tmp_path / "b.tif") as second:
        np.testing.assert_array_equal(first.read(), second.read())
        assert first.tags()["rsfm_bands"] == "4,2,1"


def test_raster_without_crs_warns_and_keeps_its_grid(tmp_path, conv_checkpoint):
    transform = Affine(2.0, 0, 100.0, 0, -2.0, 500.0)
    source = write_raster(tmp_path / "plain.tif", smooth_image(3, 90, 100), crs=None, transform=transform)
    output = tmp_path / "out.tif"
    with pytest.warns(UserWarning, match=r"plain\.tif: raster has no CRS"):
        predict_raster(source, conv_checkpoint, output, tile_size=64, overlap=16, **FAST)
    with rasterio.open(output) as dataset:
        assert dataset.crs is None and (dataset.width, dataset.height) == (100, 90)
        assert dataset.transform == transform


def test_several_inputs_list_glob_and_directory(tmp_path, conv_checkpoint):
    folder = tmp_path / "scenes"
    folder.mkdir()
    for index in range(3):
        write_raster(folder / f"scene_{index}.tif", smooth_image(3, 70 + 10 * index, 80, seed=index))
    (folder / "notes.txt").write_text("not a raster")
    by_directory = predict_raster(folder, conv_checkpoint, tmp_path / "a", tile_size=64, overlap=16, **FAST)
    by_glob = predict_raster(
        str(folder / "scene_*.tif"), conv_checkpoint, tmp_path / "b", tile_size=64, overlap=16, **FAST
    )
    by_list = predict_raster(
        [folder / "scene_2.tif", folder / "scene_0.tif"],
        conv_checkpoint,
        tmp_path / "c",
        tile_size=64,
        overlap=16,
        **FAST,
    )
    assert [result.raster.name for result in by_directory] == ["scene_0.tif", "scene_1.tif", "scene_2.tif"]
    assert len(by_glob) == 3 and [result.raster.name for result in by_list] == ["scene_2.tif", "scene_0.tif"]
    for index in range(3):
        with (
            rasterio.open(tmp_path / "a" / f"scene_{index}.tif") as first,
            rasterio.open(tmp_path / "b" / f"scene_{index}.tif") as second,
        ):
            assert first.height == 70 + 10 * index
            np.testing.assert_array_equal(first.read(), second.read())


def test_scene_classification_writes_a_class_map_on_the_tile_grid(tmp_path, scene_checkpoint):
    """Dark left half, bright right half, nodata top-left tile: one pixel per tile, centred."""
    image = np.full((3, 200, 300), 20, dtype=np.uint8)
    image[:, :, 150:] = 230
    image[:, :70, :70] = 0
    transform = Affine(2.0, 0, 1000.0, 0, -2.0, 5000.0)
    source = write_raster(tmp_path / "scene.tif", image, nodata=0, transform=transform)
    output = tmp_path / "scenes.tif"
    predict_raster(source, scene_checkpoint, output, tile_size=64, overlap=0, **FAST)
    with rasterio.open(output) as dataset:
        grid = TileGrid(300, 200, 64, 0)
        assert (dataset.height, dataset.width) == (grid.rows, grid.cols) == (4, 5)
        assert dataset.transform == transform @ Affine.scale(64)
        classes = dataset.read(1)
    assert classes[0, 0] == NODATA  # tile entirely nodata: skipped
    assert np.all(classes[:, :2][classes[:, :2] != NODATA] == 0)  # dark
    assert np.all(classes[:, 3:] == 2)  # bright


def test_scene_class_map_is_centred_on_overlapping_tiles(tmp_path, scene_checkpoint):
    source = write_raster(tmp_path / "scene.tif", smooth_image(3, 200, 300))
    output = tmp_path / "scenes.tif"
    predict_raster(source, scene_checkpoint, output, tile_size=64, overlap=16, **FAST)
    with rasterio.open(source) as src, rasterio.open(output) as dataset:
        # pixel (0, 0) of the class map is centred where tile (0, 0) is centred: 32 px in
        centre = dataset.transform @ (0.5, 0.5)
        assert centre == pytest.approx(src.transform @ (32, 32))
        assert dataset.res == pytest.approx((src.res[0] * 48, src.res[1] * 48))


def test_alpha_band_masks_pixels(tmp_path, conv_checkpoint):
    image = smooth_image(3, 100, 120)
    alpha = np.full((1, 100, 120), 255, dtype=np.uint8)
    alpha[0, 30:60, 40:100] = 0
    source = write_raster(tmp_path / "rgba.tif", np.concatenate([image, alpha]), photometric=None)
    output = tmp_path / "out.tif"
    predict_raster(source, conv_checkpoint, output, tile_size=64, overlap=16, **FAST)
    with rasterio.open(output) as dataset:
        nodata = dataset.read(1) == NODATA
    np.testing.assert_array_equal(nodata, alpha[0] == 0)


# --- the shared real rasters -------------------------------------------------------------


def _assert_same_grid_and_mask(source_path, output_path, bands=None):
    with rasterio.open(source_path) as source, rasterio.open(output_path) as output:
        assert output.crs == source.crs
        assert output.transform.almost_equals(source.transform)
        assert (output.width, output.height) == (source.width, source.height)
        indexes = bands or list(range(1, source.count + 1))
        valid_in = source.read_masks(indexes).any(axis=0)
        valid_out = output.read(1) != NODATA
        np.testing.assert_array_equal(valid_out, valid_in)
        return valid_in


def test_rgb_byte_nodata_borders(tmp_path, data_dir, conv_checkpoint):
    source = data_dir / "geotiff" / "RGB.byte.tif"
    output = tmp_path / "rgb.tif"
    predict_raster(source, conv_checkpoint, output, tile_size=256, overlap=64, **FAST)
    valid = _assert_same_grid_and_mask(source, output)
    assert 0.3 < valid.mean() < 0.9  # the rotated scene really has nodata borders


def test_landsat_uint16_with_nodata(tmp_path, data_dir):
    from inference_helpers import ConvSegmentationTask, save_with_trainer

    task = ConvSegmentationTask(mean=(9000.0, 8500.0, 8000.0), std=(2000.0, 2000.0, 2000.0))
    checkpoint = save_with_trainer(task, tmp_path / "landsat.ckpt")
    source = data_dir / "geotiff" / "landsat8_LC81070352015122LGN00_B432_uint16.tif"
    output = tmp_path / "landsat.tif"
    predict_raster(source, checkpoint, output, tile_size=512, overlap=64, **FAST)
    valid = _assert_same_grid_and_mask(source, output)
    assert 0.5 < valid.mean() < 0.8  # 32% fill


def test_single_band_without_nodata_southern_utm(tmp_path, data_dir, conv1_checkpoint):
    source = data_dir / "geotiff" / "LC08_L1TP_224077_20200518_20200518_01_RT_B2_60m.TIF"
    output = tmp_path / "b2.tif"
    predict_raster(source, conv1_checkpoint, output, tile_size=512, overlap=64, **FAST)
    valid = _assert_same_grid_and_mask(source, output)
    assert valid.all()
    with rasterio.open(output) as dataset:
        assert dataset.bounds.top == -2766615.0  # negative northings survive


def test_rgba_alpha_band_is_a_mask_not_an_input(tmp_path, data_dir, conv_checkpoint):
    source = data_dir / "geotiff" / "shanghai_building_height" / "google_5_0.tif"
    output = tmp_path / "shanghai.tif"
    results = predict_raster(source, conv_checkpoint, output, tile_size=256, overlap=32, **FAST)
    assert results[0].raster == output
    _assert_same_grid_and_mask(source, output, bands=[1, 2, 3])
    with rasterio.open(output) as dataset:
        assert dataset.tags()["rsfm_bands"] == "1,2,3"


@pytest.mark.slow
def test_xiamen_mosaic_internal_mask_and_sparse_blocks(tmp_path, data_dir, conv_checkpoint):
    """7424 x 7936 JPEG mosaic whose holes are an internal mask: holes stay nodata, whole
    empty tiles are skipped, and 408 valid pixels that decode to 0 stay valid."""
    source = data_dir / "xiamen_buildings" / "mosaic_trainval_rgb.tif"
    output = tmp_path / "xiamen.tif"
    done = []
    predict_raster(
        source,
        conv_checkpoint,
        output,
        tile_size=512,
        overlap=64,
        batch_size=8,
        progress_callback=lambda path, tiles, total: done.append((tiles, total)),
        **FAST,
    )
    valid = _assert_same_grid_and_mask(source, output)
    assert abs(valid.mean() - 0.705) < 0.005
    assert done[-1][0] == done[-1][1]


def test_nodata_values_do_not_leak_into_predictions(tmp_path, conv1_checkpoint):
    """The same scene with two different nodata codes gives the same predictions."""
    image = smooth_image(1, 130, 150, dtype="float64", scale=16000) + 1
    hole = np.zeros(image.shape[1:], dtype=bool)
    hole[:, :25] = True
    hole[50:80, 60:100] = True
    outputs = []
    for nodata in (-9999, -32768):
        coded = np.where(hole, nodata, image).astype("int16")
        source = write_raster(tmp_path / f"scene{nodata}.tif", coded, nodata=nodata)
        output = tmp_path / f"out{nodata}.tif"
        predict_raster(source, conv1_checkpoint, output, tile_size=64, overlap=16, output_type="probabilities", **FAST)
        with rasterio.open(output) as dataset:
            outputs.append(dataset.read(1))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert np.all(outputs[0][hole] == NODATA) and np.all(outputs[0][~hole] != NODATA)
