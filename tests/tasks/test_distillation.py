"""Knowledge distillation: the loss on known values, and real Lightning fits of a scene and a
building student from teacher checkpoints the tests write, whose own checkpoints are plain
student tasks."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, Trainer
from PIL import Image

from rsfm.data import SceneDataModule
from rsfm.data.buildings import BuildingTileDataModule
from rsfm.models import create_model
from rsfm.tasks.base import load_task
from rsfm.tasks.classification import SceneClassificationTask
from rsfm.tasks.contract import InputContract
from rsfm.tasks.distillation import (
    ADAPTERS_KEY,
    check_teacher_contract,
    feature_distillation_loss,
    logit_distillation_loss,
)
from rsfm.tasks.segmentation import BuildingSegmentationTask

pytestmark = pytest.mark.usefixtures("single_thread")

CLASSES = ["beach", "forest", "harbour"]
COLOURS = {"beach": (220, 200, 150), "forest": (30, 90, 40), "harbour": (90, 90, 110)}
TILE = 32


# the loss on known values ----------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 5), (2, 1, 6, 7), (2, 3, 6, 7)])
def test_logit_loss_vanishes_with_its_gradient_when_student_equals_teacher(shape):
    teacher = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 3
    student = teacher.clone().requires_grad_(True)
    loss = logit_distillation_loss(student, teacher, temperature=2.0)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert student.grad.abs().max() < 1e-6
    other = torch.randn(shape, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    loss = logit_distillation_loss(other, teacher, temperature=2.0)
    loss.backward()
    assert loss.item() > 1e-3 and other.grad.abs().max() > 1e-4


def test_temperature_scaling_matches_a_hand_computed_value():
    # teacher logits (2 ln 3, 0) at T = 2 give probabilities (3/4, 1/4); the student's (0, 0) give
    # (1/2, 1/2): KL = 3/4 ln(3/2) + 1/4 ln(1/2), times T**2 = 4
    expected = 4 * (0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    teacher = torch.tensor([[2 * math.log(3), 0.0]])
    loss = logit_distillation_loss(torch.zeros(1, 2), teacher, temperature=2.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # a binary model's logit z is the pair (z, 0): sigmoid(ln 3) = 3/4, the same KL per pixel
    binary = logit_distillation_loss(torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 2 * math.log(3)), 2.0)
    assert binary.item() == pytest.approx(expected, rel=1e-6)
    # at T = 1 the same logits give the plain KL of the unscaled softmaxes
    plain = torch.softmax(teacher, dim=1)[0]
    expected_t1 = float((plain * (plain / 0.5).log()).sum())
    assert logit_distillation_loss(torch.zeros(1, 2), teacher, 1.0).item() == pytest.approx(expected_t1, rel=1e-6)


def test_ignored_pixels_do_not_count():
    teacher = torch.zeros(1, 1, 2, 2)
    student = torch.zeros(1, 1, 2, 2)
    student[0, 0, 1, 1] = 30.0  # far off, but ignored
    valid = torch.tensor([[[True, True], [True, False]]])
    assert logit_distillation_loss(student, teacher, 2.0, valid).item() == pytest.approx(0.0, abs=1e-7)
    assert logit_distillation_loss(student, teacher, 2.0).item() > 1.0
    nothing = logit_distillation_loss(
        student.requires_grad_(True), teacher, 2.0, torch.zeros(1, 2, 2, dtype=torch.bool)
    )
    assert nothing.item() == 0.0 and nothing.requires_grad


def test_feature_loss_ignores_scale_and_resizes_to_the_teacher():
    teacher = [torch.randn(2, 8, 4, 4), torch.randn(2, 16, 2, 2)]
    scaled = [map_ * 5.0 + 3.0 for map_ in teacher]
    assert feature_distillation_loss(scaled, teacher).item() == pytest.approx(0.0, abs=1e-5)
    # a map one pixel larger (floor vs ceil rounding) is resized, not refused
    assert feature_distillation_loss([torch.randn(2, 8, 5, 5)], teacher[:1]).item() > 0.1


def test_contract_mismatches_are_named():
    student = InputContract("classification", 3, (0.0,) * 3, (1.0,) * 3, ("a", "b"), 2, bands=(1, 2, 3))
    other_norm = InputContract("classification", 3, (9.0,) * 3, (2.0,) * 3, ("a", "b"), 2)
    check_teacher_contract(other_norm, student)  # normalisation may differ; bands unknown on one side
    swapped = InputContract("classification", 3, (0.0,) * 3, (1.0,) * 3, ("b", "a"), 2, bands=(3, 2, 1))
    with pytest.raises(ValueError, match=r"class_names: teacher \['b', 'a'\], student \['a', 'b'\].*bands"):
        check_teacher_contract(swapped, student, source="t.ckpt")


def test_distillation_arguments_are_checked():
    with pytest.raises(ValueError, match="distill_alpha=1.5"):
        SceneClassificationTask(backbone="vitaev2_tiny_test", distill_alpha=1.5)
    with pytest.raises(ValueError, match="distill_temperature=0"):
        BuildingSegmentationTask(backbone="vitaev2_tiny_test", decoder_channels=8, distill_temperature=0)


# scene classification with a real Trainer --------------------------------------------------


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """3 classes x 6 PNG scenes of 28 x 24 pixels, each class its own colour plus noise."""
    root = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir()
        for index in range(6):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, size=(28, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.png")
    return root


def _scene_data(root: Path, **kwargs) -> SceneDataModule:
    options = dict(root=str(root), split=[0.5, 0.25, 0.25], image_size=32, batch_size=4, num_workers=0, rand_ops=1)
    return SceneDataModule(**dict(options, **kwargs))


def _trainer(work: Path, **kwargs) -> Trainer:
    options = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        default_root_dir=work,
    )
    return Trainer(**dict(options, **kwargs))


class _LoggedTerms(Callback):
    """The training-loss terms logged at every step (logged_metrics keeps only the last)."""

    def __init__(self) -> None:
        self.names = set()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.names |= {name for name in trainer.logged_metrics if name.startswith("train/loss")}


def _fit_and_save(task, datamodule, path: Path, **trainer_kwargs) -> Path:
    """One epoch of at most two steps, then the checkpoint as Lightning writes it."""
    options = dict(max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    trainer = _trainer(path.parent, **dict(options, **trainer_kwargs))
    trainer.fit(task, datamodule)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def scene_teacher(scenes, tmp_path_factory) -> Path:
    """A scene teacher (vitaev2_tiny_test) with its own normalisation, trained for two steps."""
    task = SceneClassificationTask(backbone="vitaev2_tiny_test", lr_batch_size=None, mean=[100.0] * 3, std=[50.0] * 3)
    return _fit_and_save(task, _scene_data(scenes), tmp_path_factory.mktemp("teacher") / "scene_teacher.ckpt")


def _scene_student(teacher: Path, **kwargs) -> SceneClassificationTask:
    args = dict(
        backbone="vitaev2_tiny_test",
        lr_batch_size=None,
        teacher_checkpoint=str(teacher),
        distill_alpha=0.7,
        distill_temperature=3.0,
        distill_feature_weight=1.0,
        model_kwargs={"embed_dims": [8, 16, 24, 32]},  # other widths than the teacher's: real adapters
    )
    return SceneClassificationTask(**dict(args, **kwargs))


def test_scene_student_distils_and_saves_a_plain_task(scenes, scene_teacher, tmp_path):
    student = _scene_student(scene_teacher, ema_decay=0.5)
    terms = _LoggedTerms()
    checkpoint = _fit_and_save(student, _scene_data(scenes), tmp_path / "student.ckpt", callbacks=[terms])
    assert {"train/loss", "train/loss_label", "train/loss_kd", "train/loss_feature"} <= terms.names
    teacher = student._teacher
    assert teacher is not None and not teacher.training
    assert not any(parameter.requires_grad for parameter in teacher.parameters())
    # four common strides: an adapter per stride, trained with the student (its own param group)
    assert [adapter.out_channels for adapter in student.distill_adapters] == [8, 16, 32, 64]
    optimised = {id(p) for group in student.trainer.optimizers[0].param_groups for p in group["params"]}
    assert all(id(p) in optimised for p in student.distill_adapters.parameters())

    saved = torch.load(checkpoint, weights_only=False)
    assert not [key for key in saved["state_dict"] if "teacher" in key or "distill" in key]
    assert set(saved[ADAPTERS_KEY]) == {f"distill_adapters.{i}.{p}" for i in range(4) for p in ("weight", "bias")}
    loaded = load_task(checkpoint)
    assert type(loaded) is SceneClassificationTask and not loaded.distilling
    assert loaded.hparams.teacher_checkpoint is None
    assert not hasattr(loaded, "distill_adapters")
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), student.eval()(images))


def test_the_teacher_sees_the_students_batch_in_raw_pixels(scenes, scene_teacher, tmp_path):
    """The student normalises with the data's statistics, the teacher with its own (100, 50)."""
    seen = {}

    class Spy(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            teacher = pl_module._teacher
            forward_raw = teacher.forward_raw
            seen["batch"] = batch["image"].float()

            def record(images):
                seen["teacher_input"] = images
                return forward_raw(images)

            teacher.forward_raw = record

    student = _scene_student(scene_teacher, mixup_alpha=0.0, cutmix_alpha=0.0, random_erase=0.0)
    _trainer(tmp_path, fast_dev_run=True, callbacks=[Spy()]).fit(student, _scene_data(scenes))
    assert student.hparams.mean != [100.0] * 3
    torch.testing.assert_close(seen["teacher_input"], seen["batch"], atol=1e-3, rtol=0)


def test_a_distilled_run_resumes_with_its_adapters(scenes, scene_teacher, tmp_path):
    first = _fit_and_save(_scene_student(scene_teacher), _scene_data(scenes), tmp_path / "first.ckpt")
    adapters = torch.load(first, weights_only=False)[ADAPTERS_KEY]
    resumed = _scene_student(scene_teacher)
    restored = {}

    class Peek(Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            restored.update(
                {f"distill_adapters.{k}": v.clone() for k, v in pl_module.distill_adapters.state_dict().items()}
            )

    trainer = _trainer(tmp_path, max_epochs=2, limit_train_batches=2, limit_val_batches=1, callbacks=[Peek()])
    trainer.fit(resumed, _scene_data(scenes), ckpt_path=first)
    assert trainer.current_epoch == 2
    for key, value in adapters.items():
        torch.testing.assert_close(restored[key], value)


def test_a_teacher_with_other_classes_is_refused(scenes, tmp_path):
    teacher = SceneClassificationTask(backbone="vitaev2_tiny_test", lr_batch_size=None)
    path = _fit_and_save(teacher, _scene_data(scenes, class_names=["forest", "beach", "harbour"]), tmp_path / "t.ckpt")
    with pytest.raises(ValueError, match=r"teacher's input contract differs.*class_names: teacher \['forest'"):
        _trainer(tmp_path, fast_dev_run=True).fit(_scene_student(path), _scene_data(scenes))


def test_a_file_that_is_not_a_task_checkpoint_is_refused_by_the_safe_loader(scenes, tmp_path):
    weights = tmp_path / "backbone.pth"
    torch.save(create_model("vitaev2_tiny_test", num_classes=3).state_dict(), weights)
    with pytest.raises(ValueError, match=r"teacher_checkpoint: .*backbone.pth: not an rsfm task checkpoint"):
        _trainer(tmp_path, fast_dev_run=True).fit(_scene_student(weights), _scene_data(scenes))


# building segmentation with a real Trainer -------------------------------------------------


@pytest.fixture(scope="module")
def tiles(tmp_path_factory) -> Path:
    """train/val tile folders of 3 tiles each: bright roofs on dark ground, a few pixels 255 (nodata)."""
    root = tmp_path_factory.mktemp("tiles")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for index in range(3):
            mask = np.zeros((TILE, TILE), np.uint8)
            top, left = rng.integers(0, TILE - 12, size=2)
            mask[top : top + 12, left : left + 8] = 1
            image = rng.integers(0, 80, size=(TILE, TILE, 3), dtype=np.uint8)
            image[mask == 1] += 150
            Image.fromarray(image).save(root / split / "images" / f"t{index}.png")
            Image.fromarray(mask).save(root / split / "masks" / f"t{index}.png")
    return root


def _tile_data(root: Path) -> BuildingTileDataModule:
    return BuildingTileDataModule(root, patch_size=TILE, batch_size=2, val_batch_size=3, mask_values="0/1")


def _segmenter(**kwargs) -> BuildingSegmentationTask:
    return BuildingSegmentationTask(
        **dict(dict(backbone="vitaev2_tiny_test", decoder_channels=8, num_overlays=0), **kwargs)
    )


def test_building_student_distils_and_saves_a_plain_task(tiles, tmp_path):
    teacher_path = _fit_and_save(_segmenter(decoder_channels=16), _tile_data(tiles), tmp_path / "teacher.ckpt")
    student = _segmenter(
        teacher_checkpoint=str(teacher_path),
        distill_feature_weight=0.5,
        backbone_kwargs={"embed_dims": [8, 16, 24, 32]},
    )
    terms = _LoggedTerms()
    path = _fit_and_save(student, _tile_data(tiles), tmp_path / "student.ckpt", callbacks=[terms])
    assert {"train/loss", "train/loss_label", "train/loss_kd", "train/loss_feature", "train/loss_bce"} <= terms.names
    assert [adapter.in_channels for adapter in student.distill_adapters] == [8, 16, 24, 32]
    saved = torch.load(path, weights_only=False)
    assert not [key for key in saved["state_dict"] if "teacher" in key or "distill" in key]
    loaded = load_task(path)
    assert type(loaded) is BuildingSegmentationTask and not loaded.distilling
    assert loaded.contract == student.contract


def test_a_scene_teacher_for_a_building_student_is_refused(tiles, scene_teacher, tmp_path):
    student = _segmenter(teacher_checkpoint=str(scene_teacher))
    with pytest.raises(ValueError, match="holds a rsfm.tasks.classification:SceneClassificationTask task"):
        _trainer(tmp_path, fast_dev_run=True).fit(student, _tile_data(tiles))
