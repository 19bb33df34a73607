"""One predictor behind every entry point: the same checkpoint and the same image give the
same class and probabilities through the Python API and through ``predict-raster`` (one tile),
for a scene and for a building checkpoint."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
from inference_helpers import smooth_image, write_raster

import rsfm
from rsfm.inference.outputs import PROBABILITY_SCALE
from rsfm.inference.predictor import Predictor

RELEASE = Path(__file__).resolve().parents[1] / "fixtures" / "release_0_1"


def test_scene_classifier_and_predict_raster_agree(tmp_path):
    checkpoint = RELEASE / "scene_release_0_1.ckpt"  # image_size 48
    image = smooth_image(3, 48, 48, seed=3)  # (bands, H, W) uint8
    source = write_raster(tmp_path / "scene.tif", image)
    api = rsfm.SceneClassifier.load(checkpoint).predict(image.transpose(1, 2, 0))[0]

    (result,) = rsfm.predict_raster(
        source, checkpoint, tmp_path / "classes.tif", output_type="probabilities", progress=False
    )  # tile size from the checkpoint: 48, one tile
    with rasterio.open(result.raster) as dataset:
        assert (dataset.width, dataset.height) == (1, 1) and dataset.tags()["rsfm_tile_size"] == "48"
        tiled = dataset.read()[:, 0, 0] / PROBABILITY_SCALE
    expected = np.array([api.probabilities[name] for name in ("field", "forest", "town")])
    np.testing.assert_allclose(tiled, expected, atol=0.6 / PROBABILITY_SCALE)  # uint8 rounding
    assert ("field", "forest", "town")[int(tiled.argmax())] == api.label


def test_building_extractor_and_predict_raster_agree(tmp_path):
    checkpoint = RELEASE / "buildings_release_0_1.ckpt"
    image = smooth_image(3, 64, 64, seed=4)
    source = write_raster(tmp_path / "scene.tif", image)
    api = rsfm.BuildingExtractor.load(checkpoint).predict(image.transpose(1, 2, 0))[0]

    (result,) = rsfm.predict_raster(
        source, checkpoint, tmp_path / "buildings.tif", tile_size=64, output_type="probabilities", progress=False
    )
    with rasterio.open(result.raster) as dataset:
        tiled = dataset.read(dataset.count) / PROBABILITY_SCALE  # the building band
    np.testing.assert_allclose(tiled, api.probability, atol=0.6 / PROBABILITY_SCALE)


def test_the_contract_sets_tile_size_and_bands():
    predictor = Predictor.load(RELEASE / "scene_release_0_1.ckpt")
    assert (predictor.kind, predictor.default_tile_size(), predictor.class_names) == (
        "classification",
        48,
        ["field", "forest", "town"],
    )
    assert Predictor.load(RELEASE / "buildings_release_0_1.ckpt").default_tile_size() == 512  # none recorded
    with pytest.raises(ValueError, match="not a building segmentation task"):
        rsfm.BuildingExtractor.load(RELEASE / "scene_release_0_1.ckpt")
    with pytest.raises(ValueError, match="not a scene classification task"):
        rsfm.SceneClassifier.load(RELEASE / "buildings_release_0_1.ckpt")
