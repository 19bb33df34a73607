"""BuildingSegmentationTask: losses, schedule, metric values on known inputs, overlays,
checkpoints rebuilt by load_task and resumed training, with a real Lightning Trainer."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from PIL import Image

from rsfm.cli import main
from rsfm.data.buildings import BuildingTileDataModule
from rsfm.tasks import load_task
from rsfm.tasks.losses import BinarySegmentationLoss
from rsfm.tasks.overlays import OVERLAY_COLORS, overlay_grid
from rsfm.tasks.segmentation import BuildingSegmentationTask

pytestmark = pytest.mark.usefixtures("single_thread")

TILE = 32
QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "buildings_quickstart.yaml"


def _task(**kwargs) -> BuildingSegmentationTask:
    args = dict(backbone="vitaev2_tiny_test", decoder_channels=8, lr=1e-3, num_overlays=2)
    return BuildingSegmentationTask(**dict(args, **kwargs))


@pytest.fixture(scope="module")
def tiles(tmp_path_factory) -> tuple:
    """train/val tile folders (4 tiles each) and the exact building fraction of val."""
    root = tmp_path_factory.mktemp("tiles")
    rng = np.random.default_rng(0)
    buildings = total = 0
    for split in ("train", "val"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for index in range(4):
            mask = np.zeros((TILE, TILE), np.uint8)
            top, left = rng.integers(0, TILE - 12, size=2)
            mask[top : top + 12, left : left + 6 + index] = 1
            image = rng.integers(0, 80, size=(TILE, TILE, 3), dtype=np.uint8)
            image[mask == 1] += 150  # bright roofs
            Image.fromarray(image).save(root / split / "images" / f"t{index}.png")
            Image.fromarray(mask * 255).save(root / split / "masks" / f"t{index}.png")
            if split == "val":
                buildings, total = buildings + int(mask.sum()), total + mask.size
    return root, buildings / total


def _datamodule(root: Path) -> BuildingTileDataModule:
    return BuildingTileDataModule(root, patch_size=TILE, batch_size=2, val_batch_size=4, mask_values="0/255")


def _trainer(tmp_path: Path, **kwargs) -> Trainer:
    args = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
    )
    return Trainer(**dict(args, **kwargs))


def test_loss_terms_on_known_values() -> None:
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[0, 1], [255, 1]]])
    loss, terms = BinarySegmentationLoss({"bce": 1.0}, ignore_index=255)(logits, target)
    assert loss.item() == pytest.approx(math.log(2))
    perfect = torch.tensor([[[[-20.0, 20.0], [0.0, 20.0]]]])
    loss, terms = BinarySegmentationLoss({"bce": 0.5, "dice": 2.0, "lovasz": 1.0, "focal": 1.0})(perfect, target)
    assert set(terms) == {"bce", "dice", "lovasz", "focal"}
    assert loss.item() == pytest.approx(0.0, abs=1e-5)  # the ignored 0 logit does not count
    all_ignored, _ = BinarySegmentationLoss({"bce": 1.0, "dice": 1.0})(
        logits.requires_grad_(), torch.full((1, 2, 2), 255)
    )
    assert all_ignored.item() == 0.0 and all_ignored.requires_grad
    with pytest.raises(ValueError, match="unknown loss term"):
        BinarySegmentationLoss({"jaccard": 1.0})


def test_loss_without_ignored_pixels_counts_every_pixel() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, generator=generator).contiguous(memory_format=torch.channels_last)
    target = torch.randint(0, 2, (2, 8, 8), generator=generator)
    for ignore_index in (255, None):
        loss, terms = BinarySegmentationLoss({"bce": 1.0, "dice": 1.0}, ignore_index=ignore_index)(logits, target)
        probabilities, labels = logits.sigmoid().flatten(), target.flatten().float()
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits.flatten(), labels)
        dice = 1 - 2 * (probabilities * labels).sum() / (probabilities.sum() + labels.sum())
        assert terms["bce"].item() == pytest.approx(bce.item(), rel=1e-6)
        assert terms["dice"].item() == pytest.approx(dice.item(), rel=1e-6)
        assert loss.item() == pytest.approx(bce.item() + dice.item(), rel=1e-6)


class _StubTrainer:
    """What ``configure_optimizers`` reads of a trainer: the run length in optimizer steps."""

    def __init__(self, estimated_stepping_batches: float) -> None:
        self.estimated_stepping_batches = estimated_stepping_batches


def _rates(task: BuildingSegmentationTask, total_steps: int, steps) -> list:
    """Learning rate (decoder group, in units of ``lr``) used at each optimizer step."""
    task._trainer = _StubTrainer(total_steps)
    config = task.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    decoder = max(optimizer.param_groups, key=lambda group: group["lr_scale"])
    rates = []
    for step in steps:
        scheduler.step_update(num_updates=step)
        rates.append(decoder["lr"] / task.hparams.lr)
    return rates


def test_optimizer_updates_channels_last_weights_by_their_own_gradients() -> None:
    # torch 2.13's fused AdamW mixes up elements when a weight and its gradient differ in memory
    # format (channels-last weights, contiguous gradients: 0.6 off after 3 steps); the task's AdamW
    # must update every parameter as AdamW does on plain contiguous copies, stage-wise groups included
    task = _task(layer_decay=0.5, weight_decay=0.05)
    task.model.to(memory_format=torch.channels_last)
    task._trainer = _StubTrainer(10)
    optimizer = task.configure_optimizers()["optimizer"]
    assert not optimizer.defaults.get("fused") and len({g["weight_decay"] for g in optimizer.param_groups}) == 2
    weights = [p for g in optimizer.param_groups for p in g["params"] if p.dim() == 4 and p[0, 0].numel() > 1]
    assert weights and all(not p.is_contiguous() for p in weights)  # channels-last 3x3 convolutions
    reference_params = [[p.detach().contiguous().requires_grad_() for p in g["params"]] for g in optimizer.param_groups]
    initial = [[p.detach().clone() for p in params] for params in reference_params]
    reference = torch.optim.AdamW(
        [dict(group, params=params) for group, params in zip(optimizer.param_groups, reference_params)]
    )
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        for group, params in zip(optimizer.param_groups, reference_params):
            for parameter, twin in zip(group["params"], params):
                parameter.grad = torch.randn(parameter.shape, generator=generator)  # contiguous
                twin.grad = parameter.grad.clone()
        optimizer.step()
        reference.step()
    for group, params, before in zip(optimizer.param_groups, reference_params, initial):
        for parameter, twin, start in zip(group["params"], params, before):
            assert not torch.equal(parameter.detach(), start)
            torch.testing.assert_close(parameter.detach(), twin.detach(), rtol=1e-6, atol=1e-7)


def test_learning_rate_schedule() -> None:
    # 100 steps, 10 of warm-up: lr/10 at the first step, lr at step 10, half way through the decay at 55
    poly = _rates(_task(warmup_steps=10), 100, [0, 5, 10, 55, 100])
    assert poly == pytest.approx([0.1, 0.55, 1.0, 0.5, 0.0])
    squared = _rates(_task(warmup_steps=10, poly_power=2.0), 100, [55])
    assert squared == pytest.approx([0.25])
    cosine = _rates(_task(warmup_steps=10, schedule="cosine", min_lr_ratio=0.1), 100, [0, 10, 55, 100])
    assert cosine == pytest.approx([0.1, 1.0, 0.55, 0.1])
    no_warmup = _rates(_task(schedule="cosine", min_lr_ratio=0.1), 100, [0, 50, 100])
    assert no_warmup == pytest.approx([1.0, 0.55, 0.1])
    assert _rates(_task(warmup_steps=500), 4, [0, 3]) == pytest.approx([0.25, 0.8125])  # warm-up cut to the run
    with pytest.raises(ValueError, match="layer_decay"):
        _rates(_task(layer_decay=0.0), 100, [0])
    with pytest.raises(ValueError, match="training length is unknown"):
        _rates(_task(), math.inf, [0])


def test_binary_only_and_schedule_checked() -> None:
    with pytest.raises(ValueError, match="binary"):
        _task(class_names=["background", "building", "road"])
    with pytest.raises(ValueError, match="schedule"):
        _task(schedule="step")


def test_overlay_colours_on_known_pixels() -> None:
    image = torch.full((1, 3, 2, 2), 100.0)
    image[0, :, 0, 0] = 0.0  # gives the stretch a range: 0 -> black, 100 -> white
    target = torch.tensor([[[1, 1], [0, 255]]])
    prediction = torch.tensor([[[0, 1], [1, 1]]])
    grid = overlay_grid(image, target, prediction, ignore_index=255)
    assert grid.shape == (2, 4, 3)
    assert grid[1, 1].tolist() == [255, 255, 255]  # left panel: the image
    errors = grid[:, 2:]
    blend = lambda base, colour: [round(0.5 * base + 0.5 * c) for c in colour]  # noqa: E731
    assert errors[0, 0].tolist() == blend(0, OVERLAY_COLORS["false_negative"])
    assert errors[0, 1].tolist() == blend(255, OVERLAY_COLORS["true_positive"])
    assert errors[1, 0].tolist() == blend(255, OVERLAY_COLORS["false_positive"])
    assert errors[1, 1].tolist() == [255, 255, 255]  # ignored pixel: not coloured


def test_metrics_match_a_known_prediction(tiles, tmp_path) -> None:
    root, building_fraction = tiles
    task = _task()
    with torch.no_grad():  # a model that calls every pixel a building
        task.model.head.weight.zero_()
        task.model.head.bias.fill_(10.0)
    metrics = _trainer(tmp_path).validate(task, datamodule=_datamodule(root), verbose=False)[0]
    assert metrics["val/recall"] == pytest.approx(1.0)
    assert metrics["val/precision"] == pytest.approx(building_fraction, rel=1e-4)
    assert metrics["val/iou"] == pytest.approx(building_fraction, rel=1e-4)
    expected_f1 = 2 * building_fraction / (1 + building_fraction)
    assert metrics["val/f1"] == pytest.approx(expected_f1, rel=1e-4)
    assert metrics["val/loss"] > 1.0  # confident and mostly wrong


class _RecordLearningRates(Callback):
    def __init__(self) -> None:
        self.per_step = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.per_step.append([group["lr"] for group in trainer.optimizers[0].param_groups])


def test_fit_writes_overlays_and_a_checkpoint_that_rebuilds_the_model(tiles, tmp_path) -> None:
    root, _ = tiles
    task = _task(layer_decay=0.8, warmup_steps=1)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    record = _RecordLearningRates()
    trainer = _trainer(tmp_path, max_epochs=2, callbacks=[checkpoint, record])
    trainer.fit(task, datamodule=_datamodule(root))
    assert trainer.global_step == 4

    overlay = Image.open(tmp_path / "overlays" / "epoch001.png")
    assert overlay.size == (2 * TILE, 2 * TILE)  # two samples: image | errors

    groups = trainer.optimizers[0].param_groups
    scales = sorted({group["lr_scale"] for group in groups})  # 4 backbone stages + decoder/head
    assert scales == pytest.approx([0.8**4, 0.8**3, 0.8**2, 0.8, 1.0])
    decoder = [group["lr_scale"] for group in groups].index(1.0)
    earliest = [group["lr_scale"] for group in groups].index(min(scales))
    # stepped every optimizer step: one step of warm-up (to lr), then poly decay over the other 3
    assert [rates[decoder] for rates in record.per_step] == pytest.approx([1e-3, 1e-3, 2e-3 / 3, 1e-3 / 3])
    assert [rates[earliest] / rates[decoder] for rates in record.per_step] == pytest.approx([0.8**4] * 4)
    assert all(group["weight_decay"] == (0.01 if group["params"][0].ndim > 1 else 0.0) for group in groups)
    assert all(len({p.ndim > 1 for p in group["params"]}) == 1 for group in groups)

    rebuilt = load_task(tmp_path / "ckpt" / "last.ckpt")
    assert type(rebuilt) is BuildingSegmentationTask and rebuilt.hparams.layer_decay == 0.8
    raw = torch.rand(2, 3, 45, 37) * 255  # any size, raw pixels
    task.eval()
    with torch.no_grad():
        expected = task(task.normalize(raw))
        assert expected.shape == (2, 1, 45, 37)
        assert torch.allclose(rebuilt(rebuilt.normalize(raw)), expected, atol=1e-6)

    resumed = _task(layer_decay=0.8, warmup_steps=1)
    trainer = _trainer(tmp_path, max_epochs=3)
    trainer.fit(resumed, datamodule=_datamodule(root), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert trainer.global_step == 6
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)["lr_schedulers"][0]
    assert trainer.lr_scheduler_configs[0].scheduler.t_initial == saved["t_initial"] == 3  # the saved schedule


def test_training_lowers_the_loss(tiles, tmp_path) -> None:
    root, _ = tiles
    seed_everything(0)
    task = _task(lr=3e-3, num_overlays=0)
    datamodule = _datamodule(root)
    before = _trainer(tmp_path).validate(task, datamodule=datamodule, verbose=False)[0]["val/loss"]
    _trainer(tmp_path, max_epochs=12, limit_val_batches=0).fit(task, datamodule=datamodule)
    after = _trainer(tmp_path).validate(task, datamodule=datamodule, verbose=False)[0]["val/loss"]
    assert after < 0.9 * before


def test_bf16_mixed_precision_step(tiles, tmp_path) -> None:
    root, _ = tiles
    task = _task()
    trainer = _trainer(tmp_path, precision="bf16-mixed", fast_dev_run=1)
    trainer.fit(task, datamodule=_datamodule(root))
    loss = trainer.callback_metrics["train/loss"]
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert not (tmp_path / "overlays").exists()  # fast_dev_run writes no logs


def test_ddp_metrics_cover_every_rank(tiles, tmp_path) -> None:
    root, building_fraction = tiles
    task = _task(num_overlays=1)
    with torch.no_grad():  # every pixel a building: IoU is the building fraction of all val tiles
        task.model.head.weight.zero_()
        task.model.head.bias.fill_(10.0)
    trainer = _trainer(tmp_path, strategy="ddp_fork", devices=2)
    metrics = trainer.validate(
        task, datamodule=BuildingTileDataModule(root, patch_size=TILE, val_batch_size=1, mask_values="0/255")
    )[0]
    assert trainer.world_size == 2  # each rank saw two of the four tiles
    assert (tmp_path / "overlays" / "epoch000.png").is_file()  # written once, by rank 0
    assert metrics["val/iou"] == pytest.approx(building_fraction, rel=1e-4)


def test_checkpoint_written_by_the_cli_rebuilds_the_task(tiles, tmp_path, monkeypatch) -> None:
    root, _ = tiles
    monkeypatch.chdir(tmp_path)  # the config's log and checkpoint folders land here
    monkeypatch.setattr(sys, "argv", ["rsfm"])
    args = [
        "fit",
        "--config",
        str(QUICKSTART),
        f"--data.init_args.root={root}",
        "--data.init_args.patch_size=32",
        "--data.init_args.num_workers=0",
        "--data.init_args.mask_values=0/255",
        "--data.init_args.batch_size=2",
        "--trainer.max_epochs=1",
        "--trainer.limit_val_batches=1",
        "--trainer.enable_progress_bar=false",
    ]
    assert main(args) == 0
    logs = tmp_path / "lightning_logs" / "buildings_quickstart"
    assert (logs / "version_0" / "overlays" / "epoch000.png").is_file()
    task = load_task(logs / "checkpoints" / "last.ckpt")
    assert type(task) is BuildingSegmentationTask and task.hparams.decoder_channels == 32
    training_pixels = [np.asarray(Image.open(path)) for path in sorted((root / "train" / "images").glob("*.png"))]
    assert task.pixel_range == {  # recorded from the datamodule when training started
        "dtype": "uint8",
        "min": float(min(p.min() for p in training_pixels)),
        "max": float(max(p.max() for p in training_pixels)),
    }
    with torch.no_grad():
        assert task(task.normalize(torch.zeros(1, 3, 40, 24))).shape == (1, 1, 40, 24)
