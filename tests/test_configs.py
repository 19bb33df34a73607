"""Every config in configs/ runs: a ``fast_dev_run`` through the real ``rsfm`` CLI.

Each config gets command-line overrides that point its data at the shared sample and shrink
its model, so that the job is exercised in seconds on a CPU. Overrides are ``str.format``
templates with the placeholders ``{data_dir}`` (the shared data folder), ``{tmp_path}`` and
``{tiny_backbone}`` (a vitaev2_tiny_test backbone file). A new config needs an entry in
``CONFIG_OVERRIDES`` (``test_every_config_has_overrides`` fails until it has one).
"""

import logging
import sys
from pathlib import Path

import pytest

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
    "buildings_quickstart.yaml": _XIAMEN_TILES,
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
    "scene_quickstart.yaml": ["--data.init_args.root={data_dir}/aid_150px", "--data.init_args.num_workers=0"],
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


def test_every_config_has_overrides():
    configs = sorted(path.name for path in CONFIGS.glob("*.yaml"))
    assert configs, f"no configs in {CONFIGS}"
    assert configs == sorted(CONFIG_OVERRIDES), "add the new config to CONFIG_OVERRIDES in tests/test_configs.py"


@pytest.mark.parametrize("name", sorted(CONFIG_OVERRIDES))
def test_config_fast_dev_run(name, data_dir, tiny_backbone, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)  # logs and checkpoints named in the config land here
    monkeypatch.setattr(sys, "argv", ["rsfm"])  # LightningCLI must see only the args below
    placeholders = dict(data_dir=data_dir, tmp_path=tmp_path, tiny_backbone=tiny_backbone)
    overrides = [override.format(**placeholders) for override in CONFIG_OVERRIDES[name]]
    lightning_logger = logging.getLogger("lightning.pytorch")  # may not propagate to the root logger
    lightning_logger.addHandler(caplog.handler)
    try:
        status = main(["fit", "--config", str(CONFIGS / name), "--trainer.fast_dev_run=true", *overrides])
    finally:
        lightning_logger.removeHandler(caplog.handler)
    assert status == 0
    assert "`Trainer.fit` stopped: `max_steps=1` reached." in caplog.text
