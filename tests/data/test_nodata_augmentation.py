"""Synthetic nodata in training patches: filled as tiled inference fills it (the model's band
mean), left out of the loss, and the fill read from the task being trained."""

from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from PIL import Image

from rsfm.data.buildings import BuildingTileDataModule
from rsfm.data.segmentation import IGNORE_INDEX, RandomNodata, building_train_transform, model_band_mean
from rsfm.tasks import BuildingSegmentationTask

MEAN = (123.675, 116.28, 103.53)


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_nodata_pixels_are_the_fill_and_ignored(dtype) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3)).astype(dtype)
    mask = rng.integers(0, 2, (64, 64)).astype(np.uint8)
    transform = RandomNodata(MEAN, max_fraction=0.6, p=1.0)
    transform.set_random_seed(0)
    fill = np.round(MEAN) if dtype == "uint8" else np.asarray(MEAN, dtype=np.float32)
    fractions = []
    for _ in range(30):
        out = transform(image=image, mask=mask)
        nodata = out["mask"] == IGNORE_INDEX
        fractions.append(nodata.mean())
        np.testing.assert_array_equal(out["image"][nodata], np.broadcast_to(fill, (int(nodata.sum()), 3)))
        np.testing.assert_array_equal(out["image"][~nodata], image[~nodata])
        np.testing.assert_array_equal(out["mask"][~nodata], mask[~nodata])
    assert 0.05 <= min(fractions) and max(fractions) <= 0.6 + 1 / 64
    assert np.std(fractions) > 0.05  # the share varies from patch to patch


def test_nodata_shapes_are_clouds_or_straight_borders() -> None:
    image, mask = np.zeros((64, 64, 1), np.float32), np.zeros((64, 64), np.uint8)
    transform = RandomNodata((0.0,), p=1.0)
    transform.set_random_seed(1)
    straight = 0
    for _ in range(40):
        nodata = transform(image=image, mask=mask)["mask"] == IGNORE_INDEX
        rows, cols = np.nonzero(nodata)
        # a half-plane: every row's nodata is one run touching the left or right edge
        runs = [np.flatnonzero(nodata[row]) for row in np.unique(rows)]
        if all(run[-1] - run[0] + 1 == len(run) and (run[0] == 0 or run[-1] == 63) for run in runs):
            straight += 1
    assert 5 < straight < 35  # about half and half


def test_nodata_options_are_checked() -> None:
    with pytest.raises(ValueError, match="nodata_fill"):
        building_train_transform(64, nodata_p=0.5)
    with pytest.raises(ValueError, match="probability"):
        building_train_transform(64, nodata_p=1.5, nodata_fill=MEAN)
    with pytest.raises(ValueError, match="fill for 2 bands, the image has 3"):
        RandomNodata((1.0, 2.0), p=1.0)(image=np.zeros((8, 8, 3), np.uint8), mask=np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="Trainer"):
        model_band_mean(BuildingTileDataModule("nowhere", nodata_p=0.5))


def _tiles(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for index in range(2):
            (root / split / "images").mkdir(parents=True, exist_ok=True)
            (root / split / "masks").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                root / split / "images" / f"{index}.png"
            )
            Image.fromarray((rng.random((32, 32)) > 0.5).astype(np.uint8)).save(root / split / "masks" / f"{index}.png")


def test_the_fill_is_the_mean_of_the_task_being_trained(tmp_path) -> None:
    _tiles(tmp_path)
    datamodule = BuildingTileDataModule(tmp_path, patch_size=32, batch_size=2, nodata_p=0.5)
    task = BuildingSegmentationTask(backbone="vitaev2_tiny_test", decoder_channels=8, mean=MEAN, num_overlays=0)
    trainer = Trainer(
        fast_dev_run=1, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    torch.manual_seed(0)
    trainer.fit(task, datamodule=datamodule)
    (nodata,) = [step for step in datamodule.train_dataset.transform.transforms if isinstance(step, RandomNodata)]
    assert nodata.fill == MEAN and nodata.p == 0.5
