"""Legitimate task checkpoints, written by a real Lightning Trainer, for the hostile-file tests
to compare against."""

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader

from rsfm.tasks import BuildingSegmentationTask, SceneClassificationTask

UINT8_RANGE = {"dtype": "uint8", "min": 0.0, "max": 255.0}


def _fit_and_save(task, batches, path: Path) -> Path:
    trainer = Trainer(
        fast_dev_run=1, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(
        task,
        DataLoader(
            batches,
            batch_size=2,
            collate_fn=lambda items: {key: torch.stack([item[key] for item in items]) for key in items[0]},
        ),
    )
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="session")
def building_checkpoint(tmp_path_factory) -> Path:
    """A 3-band uint8 ViTAEv2 building model (tiny test variant)."""
    task = BuildingSegmentationTask(
        backbone="vitaev2_tiny_test",
        decoder_channels=16,
        mean=[100.0] * 3,
        std=[50.0] * 3,
        pixel_range=UINT8_RANGE,
        num_overlays=0,
    )
    generator = torch.Generator().manual_seed(0)
    batches = [
        {
            "image": torch.rand(3, 32, 32, generator=generator) * 255,
            "mask": (torch.rand(32, 32, generator=generator) > 0.5).long(),
        }
        for _ in range(2)
    ]
    return _fit_and_save(task, batches, tmp_path_factory.mktemp("ckpt") / "buildings.ckpt")


@pytest.fixture(scope="session")
def scene_task_checkpoint(tmp_path_factory) -> Path:
    """A 3-band uint8 ViTAEv2 scene classifier (tiny test variant) for 32-pixel images."""
    task = SceneClassificationTask(
        backbone="vitaev2_tiny_test",
        class_names=["field", "town"],
        in_chans=3,
        mean=[100.0] * 3,
        std=[50.0] * 3,
        image_size=32,
        pixel_range=UINT8_RANGE,
        mixup_alpha=0.0,
        cutmix_alpha=0.0,
        random_erase=0.0,
        lr_batch_size=None,
    )
    generator = torch.Generator().manual_seed(0)
    batches = [
        {"image": torch.rand(3, 32, 32, generator=generator) * 255, "label": torch.tensor(index % 2)}
        for index in range(2)
    ]
    return _fit_and_save(task, batches, tmp_path_factory.mktemp("ckpt") / "scenes.ckpt")
