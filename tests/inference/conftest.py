"""Fixtures for the tiled-inference tests: checkpoints written by a real Trainer."""

from pathlib import Path

import pytest
from inference_helpers import BrightnessTask, ConvSegmentationTask, ScenePoolTask, save_with_trainer


@pytest.fixture(scope="session")
def conv_checkpoint(tmp_path_factory) -> Path:
    """3-band uint8 segmentation model with a 5x5 receptive field."""
    return save_with_trainer(ConvSegmentationTask(), tmp_path_factory.mktemp("ckpt") / "conv.ckpt")


@pytest.fixture(scope="session")
def conv1_checkpoint(tmp_path_factory) -> Path:
    """1-band segmentation model (uint16-scaled normalisation)."""
    task = ConvSegmentationTask(in_chans=1, mean=(8000.0,), std=(3000.0,))
    return save_with_trainer(task, tmp_path_factory.mktemp("ckpt") / "conv1.ckpt")


@pytest.fixture(scope="session")
def brightness_checkpoint(tmp_path_factory) -> Path:
    """1-band 'bright = building' model for polygon tests."""
    return save_with_trainer(BrightnessTask(), tmp_path_factory.mktemp("ckpt") / "bright.ckpt")


@pytest.fixture(scope="session")
def scene_checkpoint(tmp_path_factory) -> Path:
    return save_with_trainer(ScenePoolTask(), tmp_path_factory.mktemp("ckpt") / "scene.ckpt", scene=True)
