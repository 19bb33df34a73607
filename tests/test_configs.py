"""Every config in configs/ runs: a ``fast_dev_run`` through the real ``rsfm`` CLI.

Each config gets command-line overrides that point its data at the shared sample and shrink
its model, so that the job is exercised in seconds on a CPU. Overrides are ``str.format``
templates with the placeholders ``{data_dir}`` (the shared data folder), ``{tmp_path}``,
``{tiny_backbone}`` (a vitaev2_tiny_test backbone file) and ``{scene_teacher}`` /
``{buildings_teacher}`` (task checkpoints for the distillation configs, written only for the
configs that name them). A new config needs an entry in
``CONFIG_OVERRIDES`` (``test_every_config_has_overrides`` fails until it has one).
"""

import logging
import sys
from pathlib import Path

import pytest
import torch
import yaml

from rsfm.cli import main
from rsfm.models import create_model

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

_SCENE_DATA = [
    "--data.init_args.root={data_dir}/aid_150px",
    "--data.init_args.image_size=32",
    "--data.init_args.batch_size=4",
    "--data.init_args.num_workers=0",
]
_CPU = ["--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.precision=32-true"]

_XIAMEN_TILES = ["--data.init_args.root={data_dir}/xiamen_buildings", "--data.init_args.num_workers=0"]
_SPACENET = "{data_dir}/geotiff/spacenet_atlanta"

CONFIG_OVERRIDES = {
    "buildings_quickstart.yaml": [*_XIAMEN_TILES, "--data.init_args.batch_size=2", "--data.init_args.val_batch_size=2"],
    "buildings_vitaev2_s_upernet.yaml": [
        *_XIAMEN_TILES,
        *_CPU,
        "--data.init_args.image_dir=images",
        "--data.init_args.mask_dir=masks",
        "--data.init_args.mask_values=0/1",  # the Xiamen tiles; WHU's are 0/255
        "--data.init_args.patch_size=64",
        "--data.init_args.batch_size=2",
        "--data.init_args.val_batch_size=2",
        "--model.init_args.backbone=vitaev2_tiny_test",
        "--model.init_args.backbone_checkpoint={tiny_backbone}",
        "--model.init_args.decoder_channels=16",
    ],
    "buildings_geotiff_vectors.yaml": [
        f"--data.init_args.images={_SPACENET}/sample_geotiff.tif",
        f"--data.init_args.labels={_SPACENET}/geotiff_labels.geojson",
        "--data.init_args.patch_size=128",
    ],
    "change_quickstart.yaml": [
        "--data.init_args.root=[{data_dir}/change/levir_samples,{data_dir}/change/dsifn_samples]",
        "--data.init_args.num_workers=0",
    ],
    "change_levir_vitaev2_s.yaml": [
        *_CPU,
        "--data.init_args.root={data_dir}/change/levir_samples",  # no split lists: a seeded hold-out
        "--data.init_args.patch_size=64",
        "--data.init_args.batch_size=2",
        "--data.init_args.val_batch_size=2",
        "--data.init_args.num_workers=0",
        "--model.init_args.backbone=vitaev2_tiny_test",
        "--model.init_args.backbone_checkpoint={tiny_backbone}",
        "--model.init_args.decoder_channels=16",
    ],
    "scene_quickstart.yaml": ["--data.init_args.root={data_dir}/aid_150px", "--data.init_args.num_workers=0"],
    "distill_scene_quickstart.yaml": [
        "--data.init_args.root={data_dir}/aid_150px",
        "--data.init_args.num_workers=0",
        "--model.init_args.teacher_checkpoint={scene_teacher}",
    ],
    "distill_buildings_quickstart.yaml": [*_XIAMEN_TILES, "--model.init_args.teacher_checkpoint={buildings_teacher}"],
    "pretrain_millionaid_vitaev2_s.yaml": [
        *_SCENE_DATA,
        *_CPU,
        "--data.init_args.train_list={data_dir}/aid_150px/labels.csv",
        "--data.init_args.val_list={data_dir}/aid_150px/labels.csv",
        "--data.init_args.eval_batch_size=4",
        "--model.init_args.backbone=vitaev2_tiny_test",
    ],
    "finetune_aid_vitaev2_s.yaml": [
        *_SCENE_DATA,
        *_CPU,
        "--model.init_args.backbone=vitaev2_tiny_test",
        "--model.init_args.backbone_checkpoint={tiny_backbone}",
    ],
}


@pytest.fixture
def tiny_backbone(tmp_path: Path) -> Path:
    """Backbone weights in the format ``rsfm export-backbone`` writes (a plain state dict)."""
    from safetensors.torch import save_file

    path = tmp_path / "vitaev2_tiny_test_backbone.safetensors"
    save_file(create_model("vitaev2_tiny_test", num_classes=51).state_dict(), str(path))
    return path


def _write_task_checkpoint(task, path: Path) -> Path:
    """The entries of a checkpoint written by ``rsfm fit`` that ``load_task`` reads."""
    checkpoint = {"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}
    task.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


@pytest.fixture
def scene_teacher(data_dir: Path, tmp_path: Path) -> Path:
    """An untrained vitaev2_tiny_test scene task with the AID sample's classes."""
    from rsfm.data import SceneDataModule
    from rsfm.tasks.classification import SceneClassificationTask

    class_names = SceneDataModule(root=str(data_dir / "aid_150px")).class_names
    task = SceneClassificationTask(
        "vitaev2_tiny_test", class_names=class_names, in_chans=3, mean=[128.0] * 3, std=[64.0] * 3
    )
    return _write_task_checkpoint(task, tmp_path / "scene_teacher.ckpt")


@pytest.fixture
def buildings_teacher(tmp_path: Path) -> Path:
    """An untrained vitaev2_tiny_test building task."""
    from rsfm.tasks.segmentation import BuildingSegmentationTask

    task = BuildingSegmentationTask("vitaev2_tiny_test", decoder_channels=16)
    return _write_task_checkpoint(task, tmp_path / "buildings_teacher.ckpt")


def test_every_config_has_overrides():
    configs = sorted(path.name for path in CONFIGS.glob("*.yaml"))
    assert configs, f"no configs in {CONFIGS}"
    assert configs == sorted(CONFIG_OVERRIDES), "add the new config to CONFIG_OVERRIDES in tests/test_configs.py"


@pytest.mark.parametrize("name", sorted(CONFIG_OVERRIDES))
def test_config_fast_dev_run(name, data_dir, tiny_backbone, tmp_path, monkeypatch, caplog, request):
    monkeypatch.chdir(tmp_path)  # logs and checkpoints named in the config land here
    monkeypatch.setattr(sys, "argv", ["rsfm"])  # LightningCLI must see only the args below
    placeholders = dict(data_dir=data_dir, tmp_path=tmp_path, tiny_backbone=tiny_backbone)
    for teacher in ("scene_teacher", "buildings_teacher"):
        if any("{" + teacher + "}" in override for override in CONFIG_OVERRIDES[name]):
            placeholders[teacher] = request.getfixturevalue(teacher)
    overrides = [override.format(**placeholders) for override in CONFIG_OVERRIDES[name]]
    lightning_logger = logging.getLogger("lightning.pytorch")  # may not propagate to the root logger
    lightning_logger.addHandler(caplog.handler)
    try:
        status = main(["fit", "--config", str(CONFIGS / name), "--trainer.fast_dev_run=true", *overrides])
    finally:
        lightning_logger.removeHandler(caplog.handler)
    assert status == 0
    assert "`Trainer.fit` stopped: `max_steps=1` reached." in caplog.text


class _NeverImproves:
    """A tiny LightningModule whose every monitored metric gets worse each epoch."""

    @staticmethod
    def make():
        from lightning.pytorch.demos.boring_classes import BoringModel

        class Module(BoringModel):
            def validation_step(self, batch, batch_idx):
                for name in ("val/iou", "val/f1", "val/acc", "val/loss"):
                    worse = -self.current_epoch if name != "val/loss" else self.current_epoch
                    self.log(name, float(worse))
                return super().validation_step(batch, batch_idx)

        return Module()


@pytest.mark.parametrize("name", sorted(CONFIG_OVERRIDES))
def test_last_checkpoint_is_the_latest_epoch(name, tmp_path):
    """``--ckpt_path last`` (resuming a killed run, validating "last") must find the last epoch,
    also when the monitored metric stopped improving: Lightning 2.6 updates a monitoring
    callback's ``save_last`` only with a new best, so each config needs a callback that writes
    ``last.ckpt`` every epoch."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint

    config = yaml.safe_load((CONFIGS / name).read_text())
    entries = [c for c in config["trainer"].get("callbacks", []) if c["class_path"].endswith(".ModelCheckpoint")]
    assert entries, f"{name}: no ModelCheckpoint"
    callbacks = [ModelCheckpoint(**dict(entry.get("init_args", {}), dirpath=tmp_path)) for entry in entries]
    trainer = Trainer(
        max_epochs=3,
        limit_train_batches=1,
        limit_val_batches=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    trainer.fit(_NeverImproves.make())
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["epoch"] == 2
