"""The scripts in examples/ run as a user would run them."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "datasets" / "samples" / "spacenet_atlanta"


def _run(args, cwd):
    result = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


def test_finetune_then_classify(data_dir, tmp_path):
    aid = data_dir / "aid_150px"
    output = _run(
        [REPO / "examples" / "finetune_scene.py", "--data", aid, "--epochs", "1", "--limit-batches", "2",
         "--output", tmp_path / "run"],
        cwd=tmp_path,
    )
    checkpoint = tmp_path / "run" / "scene.ckpt"
    confusion = Path(output.split("confusion matrix: ")[1].split()[0])
    assert checkpoint.is_file() and confusion.is_file() and confusion.with_suffix(".csv").is_file()

    images = [aid / "Airport" / next(p.name for p in (aid / "Airport").iterdir()), aid / "Beach" / next(p.name for p in (aid / "Beach").iterdir())]
    printed = _run([REPO / "examples" / "classify_images.py", checkpoint, *images, "--top", "2"], cwd=tmp_path)
    lines = printed.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(str(image)) for line, image in zip(lines, images))
    assert all(line.count(",") == 1 for line in lines)  # two classes with probabilities each


@pytest.fixture(scope="module")
def building_checkpoint(tmp_path_factory):
    import lightning.pytorch as pl

    import rsfm  # conftest applied rsfm's torchvision fix already

    folder = tmp_path_factory.mktemp("buildings")
    data = rsfm.BuildingGeoDataModule(
        images=str(SAMPLE / "sample_geotiff.tif"), labels=str(SAMPLE / "geotiff_labels.geojson"),
        patch_size=128, length=8, batch_size=4,
    )
    task = rsfm.BuildingSegmentationTask(backbone="vitaev2_tiny_test", in_chans=1, mean=[400.0], std=[150.0])
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         default_root_dir=folder,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=1)
    trainer.fit(task, data)
    trainer.save_checkpoint(folder / "buildings.ckpt")
    return folder / "buildings.ckpt"


def test_map_buildings(building_checkpoint, tmp_path):
    printed = _run(
        [REPO / "examples" / "map_buildings.py", SAMPLE / "sample_geotiff.tif", building_checkpoint,
         "--output", tmp_path / "out", "--tile-size", "256"],
        cwd=tmp_path,
    )
    assert "900 x 900 px, CRS EPSG:32616, nodata 255.0" in printed
    assert (tmp_path / "out" / "sample_geotiff_buildings.tif").is_file()
    assert (tmp_path / "out" / "sample_geotiff_buildings.gpkg").is_file()
    assert "polygons" in printed
