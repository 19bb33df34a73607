"""Whole scenes give the results of their tiles: real Xiamen val tiles placed on their z18 grid
with nodata between them are predicted by ``predict_raster`` exactly as ``BuildingExtractor``
predicts each tile alone, whatever the model (a ViTAEv2 with global attention here)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from lightning.pytorch import Trainer
from PIL import Image
from rasterio.windows import Window
from torch.utils.data import DataLoader

import rsfm
from rsfm.inference import NODATA, PROBABILITY_SCALE
from rsfm.tasks import BuildingSegmentationTask

REPO = Path(__file__).resolve().parents[2]
TILE = 256
HALF_WORLD = 20037508.342789244  # EPSG:3857 metres from the origin to the edge of the map
# (column, row) slots of a 4 x 3 tile mosaic: A, B and C are isolated (C touches B only at a
# corner, A and C touch the raster's edges); D and E are neighbours, and as a pair isolated
ISOLATED = {"A": (0, 0), "B": (2, 0), "C": (3, 1)}
PAIR = {"D": (0, 2), "E": (1, 2)}


@pytest.fixture(scope="module")
def val_tiles(data_dir):
    """Five real val tiles, (256, 256, 3) uint8, (0, 0, 0) raised to (1, 1, 1) so that nodata 0
    marks only the holes of the mosaic."""
    folder = data_dir / "xiamen_buildings" / "val"
    with open(folder / "tiles.csv", newline="") as listing:
        entries = list(csv.DictReader(listing))[:5]
    tiles = {}
    for name, entry in zip("ABCDE", entries):
        image = np.asarray(Image.open(folder / entry["image"]).convert("RGB"))
        tiles[name] = np.where((image == 0).all(axis=2, keepdims=True), np.uint8(1), image)
    return tiles


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory, val_tiles):
    """The tiles in a 1024 x 768 GeoTIFF on the z18 XYZ grid (EPSG:3857), nodata 0 elsewhere."""
    x0, y0 = 217060, 112670  # the tile in slot (0, 0)
    size = 2 * HALF_WORLD / 2**18  # metres per tile at zoom 18
    path = tmp_path_factory.mktemp("scene") / "mosaic.tif"
    profile = dict(
        driver="GTiff",
        width=4 * TILE,
        height=3 * TILE,
        count=3,
        dtype="uint8",
        crs="EPSG:3857",
        transform=Affine(size / TILE, 0, -HALF_WORLD + x0 * size, 0, -size / TILE, HALF_WORLD - y0 * size),
        nodata=0,
        tiled=True,
        blockxsize=TILE,
        blockysize=TILE,
        compress="deflate",
    )
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(np.zeros((3, 3 * TILE, 4 * TILE), dtype=np.uint8))
        for name, (col, row) in {**ISOLATED, **PAIR}.items():
            dataset.write(val_tiles[name].transpose(2, 0, 1), window=Window(col * TILE, row * TILE, TILE, TILE))
    with rasterio.open(path) as dataset:
        assert dataset.transform.a == pytest.approx(0.5971642834779395)  # z18 pixels
    return path


@pytest.fixture(scope="module")
def vitae_checkpoint(tmp_path_factory, val_tiles):
    """A tiny ViTAEv2 + UperNet building model with fixed random weights (one real training
    step), trained on 256 px images: the default tile size is 256. Its head is scaled so that
    its probabilities on a val tile spread over 0-1 (a random head gives about 0.46 everywhere)."""
    torch.manual_seed(0)
    task = BuildingSegmentationTask(
        backbone="vitaev2_tiny_test",
        decoder_channels=16,
        image_size=TILE,
        pixel_range={"dtype": "uint8", "min": 0.0, "max": 255.0},
        num_overlays=0,
    )
    generator = torch.Generator().manual_seed(0)
    samples = [
        {
            "image": torch.rand(3, 64, 64, generator=generator) * 255,
            "mask": (torch.rand(64, 64, generator=generator) > 0.5).long(),
        }
        for _ in range(2)
    ]
    trainer = Trainer(
        fast_dev_run=1, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    loader = DataLoader(
        samples,
        batch_size=2,
        collate_fn=lambda items: {key: torch.stack([item[key] for item in items]) for key in items[0]},
    )
    trainer.fit(task, loader)
    with torch.no_grad():
        tile = torch.from_numpy(val_tiles["A"].transpose(2, 0, 1)[None].astype(np.float32))
        logits = task.eval().forward_raw(tile)
        head = task.model.head
        head.weight.mul_(3 / logits.std())
        head.bias.sub_((logits.median() - head.bias) * 3 / logits.std() + head.bias)
    path = tmp_path_factory.mktemp("ckpt") / "vitae_buildings.ckpt"
    trainer.save_checkpoint(path)
    return path


def _tile(probability, slots):
    cols = [col for col, _ in slots]
    rows = [row for _, row in slots]
    return probability[min(rows) * TILE : (max(rows) + 1) * TILE, min(cols) * TILE : (max(cols) + 1) * TILE]


@pytest.mark.parametrize("tile_size", [None, 512], ids=["default-256", "512"])
def test_isolated_tiles_are_predicted_as_alone(tmp_path, mosaic, val_tiles, vitae_checkpoint, single_thread, tile_size):
    (result,) = rsfm.predict_raster(
        mosaic, vitae_checkpoint, tmp_path / "probability.tif", tile_size=tile_size, output_type="probabilities"
    )
    with rasterio.open(result.raster) as dataset:
        assert dataset.tags()["rsfm_tile_size"] == str(tile_size or TILE)
        probability = dataset.read(dataset.count)
    extractor = rsfm.BuildingExtractor.load(vitae_checkpoint)
    holes = np.ones(probability.shape, dtype=bool)
    for name, slot in ISOLATED.items():
        alone = extractor.predict(val_tiles[name])[0].probability
        tiled = _tile(probability, [slot]) / PROBABILITY_SCALE
        np.testing.assert_allclose(tiled, alone, atol=0.6 / PROBABILITY_SCALE, err_msg=f"tile {name}")
        assert 0.05 < (alone > 0.5).mean() < 0.95  # the model does not predict one class everywhere
        _tile(holes, [slot])[:] = False
    pair = _tile(probability, PAIR.values()) / PROBABILITY_SCALE
    if tile_size == 512:  # the pair fits in a tile: predicted as the 512 x 256 image alone
        alone = extractor.predict(np.concatenate([val_tiles["D"], val_tiles["E"]], axis=1))[0].probability
        np.testing.assert_allclose(pair, alone, atol=0.6 / PROBABILITY_SCALE)
    assert pair.max() <= 1
    _tile(holes, PAIR.values())[:] = False
    assert np.all(probability[holes] == NODATA)


def test_the_model_sees_fill(val_tiles, vitae_checkpoint, single_thread):
    """The test above can fail: this model predicts a tile differently when the tile is framed
    by mean-filled nodata, which is what predict_raster fed it before it cropped to valid data."""
    model = rsfm.BuildingExtractor.load(vitae_checkpoint).predictor
    tile = val_tiles["B"].transpose(2, 0, 1)[None].astype(np.float32)
    framed = np.zeros((1, 3, 512, 512), dtype=np.float32)
    framed[:, :, 128:384, 128:384] = tile
    in_fill = model(framed, framed.any(axis=1))[0, 0, 128:384, 128:384]
    assert np.abs(model(tile)[0, 0] - in_fill).max() > 0.05


@pytest.mark.slow
def test_whole_scene_iou_matches_tile_iou_on_the_val_mosaic(tmp_path, data_dir):
    """The buildings quickstart, trained briefly, on all 74 val tiles on their map grid:
    predict_raster's IoU is at least 0.95 of the per-tile IoU at the default tile size and 512."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    command = [
        sys.executable,
        str(REPO / "benchmarks" / "whole_scene_vs_tiles.py"),
        "--output-dir",
        str(tmp_path),
        "--data-dir",
        str(data_dir / "xiamen_buildings"),
        "--epochs",
        "3",
    ]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    report = json.loads(finished.stdout.strip().splitlines()[-1])
    assert report["per_tile"]["iou"] > 0.1  # the model learned something
    sizes = [result["tile_size"] for result in report["predict_raster"]]
    assert sizes == [128, 512]  # the quickstart's patch size, then 512
    for result in report["predict_raster"]:
        assert result["ratio_to_per_tile"] >= 0.95, result
