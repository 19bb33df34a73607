"""The scripts in examples/ run as a user would run them."""

import subprocess
import sys
from pathlib import Path

import geopandas
import pytest
import rasterio

import rsfm

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "datasets" / "samples" / "spacenet_atlanta"


def _run(args, cwd):
    result = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


def test_finetune_then_classify(data_dir, tmp_path):
    aid = data_dir / "aid_150px"
    output = _run(
        [
            REPO / "examples" / "finetune_scene.py",
            "--data",
            aid,
            "--epochs",
            "1",
            "--limit-batches",
            "2",
            "--output",
            tmp_path / "run",
        ],
        cwd=tmp_path,
    )
    checkpoint = tmp_path / "run" / "scene.ckpt"
    confusion = Path(output.split("confusion matrix: ")[1].split()[0])
    assert checkpoint.is_file() and confusion.is_file() and confusion.with_suffix(".csv").is_file()

    images = [
        aid / "Airport" / next(p.name for p in (aid / "Airport").iterdir()),
        aid / "Beach" / next(p.name for p in (aid / "Beach").iterdir()),
    ]
    printed = _run([REPO / "examples" / "classify_images.py", checkpoint, *images, "--top", "2"], cwd=tmp_path)
    predictions = rsfm.SceneClassifier.load(checkpoint).predict([str(image) for image in images])
    expected = [
        f"{image}: " + ", ".join(f"{name} {probability:.2f}" for name, probability in prediction.top(2))
        for image, prediction in zip(images, predictions)
    ]
    assert printed.strip().splitlines() == expected  # the checkpoint's own top-2 classes, in order


@pytest.fixture(scope="module")
def building_checkpoint(tmp_path_factory):
    import lightning.pytorch as pl

    folder = tmp_path_factory.mktemp("buildings")
    data = rsfm.BuildingGeoDataModule(
        images=str(SAMPLE / "sample_geotiff.tif"),
        labels=str(SAMPLE / "geotiff_labels.geojson"),
        patch_size=128,
        length=8,
        batch_size=4,
    )
    task = rsfm.BuildingSegmentationTask(backbone="vitaev2_tiny_test", in_chans=1, mean=[400.0], std=[150.0])
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        default_root_dir=folder,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=1,
    )
    trainer.fit(task, data)
    trainer.save_checkpoint(folder / "buildings.ckpt")
    return folder / "buildings.ckpt"


def test_map_buildings(building_checkpoint, tmp_path):
    printed = _run(
        [
            REPO / "examples" / "map_buildings.py",
            SAMPLE / "sample_geotiff.tif",
            building_checkpoint,
            "--output",
            tmp_path / "out",
            "--tile-size",
            "256",
        ],
        cwd=tmp_path,
    )
    mask_path = tmp_path / "out" / "sample_geotiff_buildings.tif"
    vector_path = mask_path.with_suffix(".gpkg")
    assert f"{mask_path}: 900 x 900 px, CRS EPSG:32616, nodata 255.0" in printed
    with rasterio.open(SAMPLE / "sample_geotiff.tif") as source, rasterio.open(mask_path) as mask:
        assert mask.crs == source.crs and mask.transform == source.transform
        building_pixels = int((mask.read(1, masked=True) == 1).sum())
    assert f"building pixels: {building_pixels} (" in printed
    polygons = geopandas.read_file(vector_path)
    assert f"{vector_path}: {len(polygons)} polygons, largest {polygons['area'].max():.0f} square CRS units" in printed
