"""predict_raster with the project's own tasks: a BuildingSegmentationTask trained one step on
the SpaceNet chip through the torchgeo datamodule, and a SceneClassificationTask, both saved
by a real Trainer and rebuilt through load_task."""

import geopandas
import numpy as np
import pytest
import rasterio
from affine import Affine
from lightning.pytorch import Trainer
from PIL import Image

from rsfm import predict_raster
from rsfm.data import SceneDataModule
from rsfm.data.geo import BuildingGeoDataModule
from rsfm.inference import NODATA
from rsfm.tasks import SceneClassificationTask
from rsfm.tasks.segmentation import BuildingSegmentationTask


def _trainer(tmp_path):
    return Trainer(
        fast_dev_run=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )


@pytest.mark.slow
def test_building_task_on_spacenet(tmp_path, data_dir):
    folder = data_dir / "geotiff" / "spacenet_atlanta"
    image, labels = folder / "sample_geotiff.tif", folder / "geotiff_labels.geojson"
    task = BuildingSegmentationTask(
        backbone="vitaev2_tiny_test",
        in_chans=1,
        mean=[450.0],
        std=[280.0],
        class_names=["background", "building"],
        decoder_channels=8,
        num_overlays=0,
    )
    datamodule = BuildingGeoDataModule(str(image), str(labels), patch_size=128, batch_size=2, length=2)
    trainer = _trainer(tmp_path)
    trainer.fit(task, datamodule)
    checkpoint = tmp_path / "buildings.ckpt"
    trainer.save_checkpoint(checkpoint)

    output, vector = tmp_path / "mask.tif", tmp_path / "buildings.gpkg"
    results = predict_raster(
        image, checkpoint, output, vector=vector, tile_size=256, overlap=32, output_type="probabilities", progress=False
    )
    with rasterio.open(image) as source, rasterio.open(output) as predicted:
        assert predicted.crs == source.crs and predicted.transform == source.transform
        assert predicted.shape == source.shape and predicted.count == 1
        assert predicted.descriptions == ("probability of building",)
        probability = predicted.read(1)
    assert probability.max() <= 254  # no nodata in this chip, every value a probability
    assert probability.std() > 0  # a real model output, not a constant
    frame = geopandas.read_file(vector)
    assert len(frame) == results[0].polygons
    assert frame.crs.to_epsg() == 32616


def test_scene_task_class_map(tmp_path, data_dir):
    scenes = tmp_path / "scenes"
    rng = np.random.default_rng(0)
    for name, colour in {"sea": (20, 40, 90), "land": (120, 110, 80)}.items():
        (scenes / name).mkdir(parents=True)
        for index in range(6):
            pixels = np.clip(np.array(colour) + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(scenes / name / f"{index}.png")
    datamodule = SceneDataModule(
        root=str(scenes), split=[0.5, 0.25, 0.25], image_size=32, batch_size=3, num_workers=0, rand_ops=1
    )
    task = SceneClassificationTask(backbone="vitaev2_tiny_test", ema_decay=None)
    trainer = _trainer(tmp_path)
    trainer.fit(task, datamodule)
    checkpoint = tmp_path / "scene.ckpt"
    trainer.save_checkpoint(checkpoint)

    source = data_dir / "geotiff" / "RGB.byte.tif"
    output = tmp_path / "scenes.tif"
    predict_raster(source, checkpoint, output, tile_size=64, overlap=0, progress=False)
    with rasterio.open(source) as raster, rasterio.open(output) as classes:
        assert (classes.width, classes.height) == (13, 12)  # ceil(791 / 64), ceil(718 / 64)
        assert classes.transform == raster.transform @ Affine.scale(64)
        assert classes.crs == raster.crs
        values = classes.read(1)
        tags = classes.tags()
    assert values[0, 0] == NODATA  # the top-left corner of the rotated scene is nodata
    assert set(np.unique(values)) <= {0, 1, NODATA} and (values != NODATA).mean() > 0.5
    assert tags["rsfm_task"] == "classification" and tags["rsfm_class_names"] == "land,sea"
