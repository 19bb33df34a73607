"""SceneClassificationTask with a real Trainer on tiny PNG scenes: checkpoints that rebuild the
task alone, the RSP optimiser recipe, EMA, test reports, resume, export-backbone and the
SceneClassifier inference API."""

import csv
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from PIL import Image

import rsfm
from rsfm.cli import main
from rsfm.data import SceneDataModule
from rsfm.models import create_model
from rsfm.tasks import SceneClassificationTask, load_task
from rsfm.tasks.writers import ScenePredictionWriter

CLASSES = ["beach", "forest", "harbour", "meadow"]
COLOURS = {"beach": (220, 200, 150), "forest": (30, 90, 40), "harbour": (90, 90, 110), "meadow": (120, 180, 60)}


def _trainer(root: Path, **kwargs) -> Trainer:
    options = dict(
        accelerator="cpu",
        devices=1,
        logger=CSVLogger(root / "logs", name="scene"),
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    options.update(kwargs)
    return Trainer(**options)


def _datamodule(root: Path, **kwargs) -> SceneDataModule:
    options = dict(root=str(root), split=[0.5, 0.25, 0.25], image_size=32, batch_size=5, num_workers=0, rand_ops=1)
    options.update(kwargs)
    return SceneDataModule(**options)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """4 classes x 8 PNG scenes of 28 x 24 pixels, each class its own colour plus noise."""
    root = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir()
        for index in range(8):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, size=(28, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.png")
    return root


@pytest.fixture(scope="module")
def trained(scenes, tmp_path_factory) -> SimpleNamespace:
    """Two epochs with EMA and odd batches of 5 (16 training images: 3 steps per epoch)."""
    work = tmp_path_factory.mktemp("trained")
    datamodule = _datamodule(scenes)
    task = SceneClassificationTask(
        backbone="vitaev2_tiny_test", lr=2e-3, lr_batch_size=None, warmup_epochs=0.5, ema_decay=0.5, drop_path_rate=0.1
    )
    checkpoints = ModelCheckpoint(dirpath=work / "checkpoints", save_last=True)
    trainer = _trainer(work, max_epochs=2, callbacks=[checkpoints])
    trainer.fit(task, datamodule)
    return SimpleNamespace(
        task=task.eval(),
        datamodule=datamodule,
        trainer=trainer,
        work=work,
        checkpoint=work / "checkpoints" / "last.ckpt",
    )


def _raw_batch(count: int = 3, size: int = 32) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(5)) * 255


# training and checkpoints ------------------------------------------------------------------


def test_fit_takes_data_fields_from_the_datamodule_and_the_checkpoint_alone_rebuilds_it(trained):
    assert trained.trainer.global_step == 6  # 16 images, batches of 5 with drop_last: 3 steps x 2 epochs
    assert np.isfinite(float(trained.trainer.callback_metrics["train/loss"]))  # odd batches: no mixup pairs
    checkpoint = torch.load(trained.checkpoint, weights_only=False)
    saved = checkpoint["hyper_parameters"]
    assert saved["class_names"] == CLASSES == trained.datamodule.class_names
    assert saved["in_chans"] == 3 and saved["image_size"] == 32
    assert saved["pixel_range"] == trained.datamodule.pixel_range and saved["pixel_range"]["dtype"] == "uint8"
    np.testing.assert_allclose(saved["mean"], trained.datamodule.mean)
    assert 30 < saved["mean"][1] < 200 and saved["std"][0] > 10

    rebuilt = load_task(trained.checkpoint)
    assert isinstance(rebuilt, SceneClassificationTask) and not rebuilt.training
    torch.testing.assert_close(rebuilt(_raw_batch()), trained.task(_raw_batch()))


def test_ema_weights_are_what_evaluation_uses(trained):
    task = trained.task
    ema_weight = task.model_ema.module.head.weight
    assert not torch.equal(ema_weight, task.model.head.weight)
    inputs = _raw_batch()
    with torch.no_grad():
        torch.testing.assert_close(task(inputs), task.model_ema.module(task.normalize(inputs)))
        assert not torch.allclose(task(inputs), task.model(task.normalize(inputs)))


class _RecordLearningRates(Callback):
    def __init__(self) -> None:
        self.per_step = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.per_step.append([group["lr"] for group in trainer.optimizers[0].param_groups])


def test_rsp_recipe_lr_scaling_warmup_cosine_and_layer_decay(scenes, tmp_path):
    task = SceneClassificationTask(
        backbone="vitaev2_tiny_test",
        lr=5e-4,
        lr_batch_size=512,
        warmup_lr=5e-7,
        min_lr=5e-6,
        warmup_epochs=1,
        layer_decay=0.5,
    )
    record = _RecordLearningRates()
    trainer = _trainer(
        tmp_path, max_epochs=2, accumulate_grad_batches=2, callbacks=[record], enable_checkpointing=False
    )
    trainer.fit(task, _datamodule(scenes, batch_size=4))  # 16 images -> 4 batches -> 2 optimizer steps per epoch
    scale = 4 * 2 / 512  # batch x accumulation / reference batch
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.base_values == pytest.approx([5e-4 * scale] * len(scheduler.base_values))
    groups = trainer.optimizers[0].param_groups
    scales = sorted({group["lr_scale"] for group in groups})
    assert scales[-1] == 1.0 and scales[0] == pytest.approx(0.5 ** (len(scales) - 1)) and len(scales) >= 4
    head = max(range(len(groups)), key=lambda index: groups[index]["lr_scale"])
    head_rates = [rates[head] for rates in record.per_step]
    # Swin/RSP schedule, per optimizer step t of 4: linear warm-up over 2 steps (1 epoch) from
    # warmup_lr, cosine from the peak to min_lr over the whole run
    peak, low, start = 5e-4 * scale, 5e-6 * scale, 5e-7 * scale
    expected = [start, start + (peak - start) / 2] + [
        low + 0.5 * (peak - low) * (1 + np.cos(np.pi * t / 4)) for t in (2, 3)
    ]
    assert head_rates == pytest.approx([expected[batch // 2] for batch in range(8)])
    first_group = [rates[0] for rates in record.per_step]
    assert first_group == pytest.approx([rate * groups[0]["lr_scale"] for rate in head_rates])
    assert groups[0]["lr_scale"] < 1.0  # earlier layers get smaller rates
    assert np.isfinite(float(trainer.callback_metrics["train/loss"]))  # even batches: mixup + cutmix


def test_test_run_writes_a_confusion_matrix_that_matches_the_accuracy(trained, tmp_path):
    trainer = _trainer(tmp_path)
    (metrics,) = trainer.test(trained.task, trained.datamodule)
    log_dir = Path(trainer.log_dir)
    with open(log_dir / "confusion_matrix.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][1:] == CLASSES and [row[0] for row in rows[1:]] == CLASSES
    counts = np.array([[int(value) for value in row[1:]] for row in rows[1:]])
    assert counts.sum() == len(trained.datamodule.split_samples("test")) == 8
    assert (counts.sum(axis=1) == 2).all()
    assert metrics["test/acc"] == pytest.approx(np.trace(counts) / counts.sum())
    per_class = [metrics[f"test/acc_{name}"] for name in CLASSES]
    assert per_class == pytest.approx(list(np.diag(counts) / 2))
    assert (log_dir / "confusion_matrix.png").stat().st_size > 5000


def test_resume_from_last_continues_epochs_steps_and_schedule(trained, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(trained.checkpoint.parent, checkpoints)
    saved = torch.load(checkpoints / "last.ckpt", weights_only=False)
    task = SceneClassificationTask(**{k: v for k, v in saved["hyper_parameters"].items() if k != "_instantiator"})
    resumed = _trainer(tmp_path, max_epochs=3, callbacks=[ModelCheckpoint(dirpath=checkpoints, save_last=True)])
    resumed.fit(task, _datamodule(trained.datamodule.hparams.root), ckpt_path="last")
    assert resumed.global_step == 9 and resumed.current_epoch == 3
    scheduler_state = resumed.lr_scheduler_configs[0].scheduler.state_dict()
    assert scheduler_state["base_values"] == saved["lr_schedulers"][0]["base_values"]


def test_testing_a_checkpoint_keeps_its_normalisation_and_checks_its_classes(trained, scenes, tmp_path):
    other_statistics = _datamodule(scenes, mean=[10.0, 20.0, 30.0], std=[2.0, 3.0, 4.0])
    task = SceneClassificationTask(backbone="vitaev2_tiny_test", ema_decay=0.5)
    _trainer(tmp_path).test(task, other_statistics, ckpt_path=str(trained.checkpoint))
    assert task.hparams.mean == trained.task.hparams.mean and task.hparams.std == trained.task.hparams.std
    torch.testing.assert_close(task.eval()(_raw_batch()), trained.task(_raw_batch()))

    renamed = _datamodule(scenes, class_names=["forest", "beach", "harbour", "meadow"])  # another order
    with pytest.raises(ValueError, match=r"trained on classes .* set the data's class_names to the checkpoint's"):
        _trainer(tmp_path).test(
            SceneClassificationTask(backbone="vitaev2_tiny_test"), renamed, ckpt_path=str(trained.checkpoint)
        )


def test_class_names_of_model_and_data_must_agree(scenes, tmp_path):
    task = SceneClassificationTask(backbone="vitaev2_tiny_test", class_names=["forest", "beach", "harbour", "meadow"])
    with pytest.raises(ValueError, match=r"the model's class_names .* differ from the data's"):
        _trainer(tmp_path, fast_dev_run=True).fit(task, _datamodule(scenes))


def test_task_without_data_fields_says_what_is_missing(scenes, tmp_path):
    datamodule = _datamodule(scenes, mean=[0.0] * 3, std=[1.0] * 3)
    datamodule.setup("fit")
    task = SceneClassificationTask(backbone="vitaev2_tiny_test")
    with pytest.raises(ValueError, match=r"needs \['class_names', 'in_chans', 'mean', 'std'\]"):
        _trainer(tmp_path, fast_dev_run=True).fit(task, train_dataloaders=datamodule.train_dataloader())
    with pytest.raises(RuntimeError, match="not built yet"):
        task(_raw_batch())


# export-backbone -----------------------------------------------------------------------------


def test_export_backbone_loads_in_create_model_and_as_backbone_checkpoint(trained, tmp_path):
    from safetensors.torch import load_file

    exported, raw = tmp_path / "backbone.safetensors", tmp_path / "backbone_raw.pt"
    assert main(["export-backbone", str(trained.checkpoint), str(exported)]) == 0
    assert main(["export-backbone", str(trained.checkpoint), str(raw), "--no-ema"]) == 0
    weights = load_file(exported)  # a safetensors file: tensors only
    assert all(not key.startswith(("model.", "model_ema.")) for key in weights) and "head.weight" in weights
    assert torch.load(raw, weights_only=True).keys() == weights.keys()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["backbone.safetensors", "backbone_raw.pt"]

    task, inputs = trained.task, trained.task.normalize(_raw_batch())
    with torch.no_grad():
        ema_model = create_model("vitaev2_tiny_test", checkpoint=exported, num_classes=4).eval()
        torch.testing.assert_close(ema_model(inputs), task.model_ema.module(inputs))
        raw_model = create_model("vitaev2_tiny_test", checkpoint=raw, num_classes=4).eval()
        torch.testing.assert_close(raw_model(inputs), task.model.eval()(inputs))

    # fine-tuning on 7 classes: backbone copied, classifier re-initialised
    finetune = SceneClassificationTask(
        backbone="vitaev2_tiny_test",
        backbone_checkpoint=str(exported),
        class_names=[str(i) for i in range(7)],
        in_chans=3,
        mean=[0.0] * 3,
        std=[1.0] * 3,
    )
    backbone = {k: v for k, v in finetune.model.state_dict().items() if not k.startswith("head.")}
    assert all(torch.equal(value, weights[key]) for key, value in backbone.items())
    assert finetune.model.head.weight.shape == (7, 64)
    features = create_model("vitaev2_tiny_test", checkpoint=exported, features_only=True)
    assert torch.equal(
        features.state_dict()["model.stages.0.reduction.pyramid.convs.0.weight"],
        weights["stages.0.reduction.pyramid.convs.0.weight"],
    )


def test_export_backbone_names_a_file_that_is_not_a_task_checkpoint(tmp_path, capsys):
    plain = tmp_path / "plain.pt"
    torch.save({"stages.0.weight": torch.zeros(1)}, plain)
    with pytest.raises(ValueError, match=r"plain\.pt: not an rsfm task checkpoint"):
        rsfm.export_backbone(plain, tmp_path / "out.pt")
    assert main(["export-backbone", str(tmp_path / "missing.ckpt"), str(tmp_path / "out.pt")]) == 2
    assert "missing.ckpt: checkpoint file not found" in capsys.readouterr().err
    assert not (tmp_path / "out.pt").exists()
    before = plain.read_bytes()
    assert main(["export-backbone", str(plain), str(plain)]) == 2  # never overwrites its input
    assert "is the input checkpoint" in capsys.readouterr().err and plain.read_bytes() == before


def test_export_backbone_refuses_a_task_without_a_standalone_backbone(tmp_path):
    """Where the backbone sits is the task's answer; the building task has none of timm's form."""
    from rsfm.tasks import BuildingSegmentationTask

    task = BuildingSegmentationTask(backbone="vitaev2_tiny_test", in_chans=3, mean=[0.0] * 3, std=[1.0] * 3)
    path = tmp_path / "buildings.ckpt"
    torch.save(
        {
            "rsfm_task": "rsfm.tasks.segmentation:BuildingSegmentationTask",
            "state_dict": task.state_dict(),
            "hyper_parameters": dict(task.hparams),
        },
        path,
    )
    with pytest.raises(ValueError, match=r"buildings\.ckpt: BuildingSegmentationTask keeps no stand-alone backbone"):
        rsfm.export_backbone(path, tmp_path / "out.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["buildings.ckpt"]


# SceneClassifier and rsfm predict -------------------------------------------------------------


def test_scene_classifier_gives_the_same_answer_for_paths_arrays_and_tensors(trained):
    classifier = rsfm.SceneClassifier.load(trained.checkpoint)
    assert classifier.class_names == CLASSES and classifier.image_size == 32
    paths = [path for path, _ in trained.datamodule.split_samples("test")][:3]
    arrays = [np.asarray(Image.open(path)) for path in paths]
    by_path = classifier.predict([str(path) for path in paths])
    by_array = classifier.predict(arrays)
    by_tensor = classifier.predict([torch.from_numpy(array.copy()).permute(2, 0, 1) for array in arrays])
    by_batch = classifier.predict(np.stack(arrays))
    for predictions in (by_array, by_tensor, by_batch):
        for expected, got in zip(by_path, predictions):
            assert got.label == expected.label
            assert list(got.probabilities.values()) == pytest.approx(list(expected.probabilities.values()), abs=1e-5)
    for prediction in by_path:
        assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert prediction.top(1) == [(prediction.label, prediction.probability)]

    # identical to the datamodule's evaluation pipeline
    trained.datamodule.setup("test")
    item = trained.datamodule.datasets["test"][0]
    with torch.no_grad():
        expected = trained.task(item["image"][None]).softmax(dim=1)[0]
    assert list(by_path[0].probabilities.values()) == pytest.approx(expected.tolist(), abs=1e-5)


def test_scene_classifier_names_an_image_with_the_wrong_band_count(trained):
    classifier = rsfm.SceneClassifier(trained.task)
    with pytest.raises(ValueError, match=r"image 1: has 5 band\(s\), the model takes 3"):
        classifier.predict([np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20, 5), np.uint8)])


def test_predict_writer_writes_one_row_per_image(trained, tmp_path):
    trainer = _trainer(tmp_path, callbacks=[ScenePredictionWriter(output_dir=str(tmp_path / "out"), top_k=2)])
    trainer.predict(trained.task, trained.datamodule, return_predictions=False)
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["predictions.csv"]  # renamed when done
    with open(tmp_path / "out" / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["path"] for row in rows] == [str(path) for path, _ in trained.datamodule.split_samples("test")]
    classifier = rsfm.SceneClassifier(trained.task)
    first = classifier.predict(rows[0]["path"])[0]
    assert rows[0]["predicted"] == first.label and float(rows[0]["probability"]) == pytest.approx(
        first.probability, abs=1e-4
    )
    assert {row["true"] for row in rows} == set(CLASSES) and all(row["top_k"].count(";") == 1 for row in rows)


def test_predict_writer_never_overwrites_its_inputs(trained, scenes, tmp_path):
    """A sample list named like the writer's CSV, in its output folder, is left as it was."""
    listing = tmp_path / "out" / "predictions.csv"
    listing.parent.mkdir()
    listing.write_text("".join(f"{path},{label}\n" for path, label in rsfm.data.scan_class_folders(scenes)))
    before = listing.read_bytes()
    datamodule = SceneDataModule(sample_list=str(listing), split=[0.5, 0.25, 0.25], image_size=32, batch_size=5)
    trainer = _trainer(tmp_path, callbacks=[ScenePredictionWriter(output_dir=str(listing.parent))])
    with pytest.raises(ValueError, match=r"predictions.csv: would overwrite the input .*predictions.csv"):
        trainer.predict(trained.task, datamodule, return_predictions=False)
    assert listing.read_bytes() == before and sorted(p.name for p in listing.parent.iterdir()) == ["predictions.csv"]


def test_official_rsp_checkpoint_loads_through_backbone_checkpoint(reference_dir):
    """The official-format tiny reference (RSP key names, 5 classes) reproduces its logits."""
    expected = torch.load(reference_dir / "vitaev2_tiny_expected.pt", weights_only=True)
    images = torch.load(reference_dir / "vitaev2_tiny_input.pt", weights_only=True)
    identity = dict(in_chans=3, mean=[0.0] * 3, std=[1.0] * 3, drop_path_rate=0.0)
    official = str(reference_dir / "vitaev2_tiny_official.pt")
    same_classes = SceneClassificationTask(
        backbone="vitaev2_tiny_test", backbone_checkpoint=official, class_names=list("abcde"), **identity
    ).eval()
    other_classes = SceneClassificationTask(
        backbone="vitaev2_tiny_test", backbone_checkpoint=official, class_names=list("xyz"), **identity
    ).eval()
    with torch.no_grad():
        torch.testing.assert_close(same_classes(images), expected["logits"], atol=1e-5, rtol=1e-5)
        pooled = other_classes.model.forward_head(other_classes.model.forward_features(images), pre_logits=True)
    torch.testing.assert_close(pooled, expected["pooled"], atol=1e-5, rtol=1e-5)
