"""ChangeDetectionTask and ChangeModel: the Siamese encoder and per-level fusion, normalisation
per date, the contract, overlays, checkpoints rebuilt by load_task and the predictors, with a
real Lightning Trainer on pairs written as files."""

from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image

from rsfm.data.change import ChangeDetectionDataModule
from rsfm.inference.predictor import load_predictor
from rsfm.models import ChangeModel, create_model
from rsfm.tasks import load_task
from rsfm.tasks.change import ChangeDetectionTask
from rsfm.tasks.contract import InputContract
from rsfm.tasks.losses import MulticlassSegmentationLoss

pytestmark = pytest.mark.usefixtures("single_thread")

TILE = 32


def _task(**kwargs) -> ChangeDetectionTask:
    args = dict(backbone="vitaev2_tiny_test", decoder_channels=8, lr=3e-3, num_overlays=2)
    return ChangeDetectionTask(**dict(args, **kwargs))


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    """Flat A/B/label folder of 12 pairs: the after date has a bright new roof where the mask says."""
    root = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(0)
    for sub in ("A", "B", "label"):
        (root / sub).mkdir()
    for index in range(12):
        before = rng.integers(0, 90, size=(TILE, TILE, 3), dtype=np.uint8)
        after = np.clip(before.astype(int) + rng.integers(-10, 10, size=before.shape), 0, 255).astype(np.uint8)
        mask = np.zeros((TILE, TILE), np.uint8)
        top, left = rng.integers(0, TILE - 12, size=2)
        mask[top : top + 10, left : left + 8] = 255
        after[mask == 255] = 220
        Image.fromarray(before).save(root / "A" / f"p{index}.png")
        Image.fromarray(after).save(root / "B" / f"p{index}.png")
        Image.fromarray(mask).save(root / "label" / f"p{index}.png")
    return root


def _datamodule(root: Path) -> ChangeDetectionDataModule:
    return ChangeDetectionDataModule(root, val_fraction=0.3, patch_size=TILE, batch_size=2, val_batch_size=4)


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


def test_one_backbone_sees_each_date_and_every_level_is_fused() -> None:
    torch.manual_seed(0)
    model = ChangeModel("vitaev2_tiny_test", decoder_channels=8).eval()
    before, after = torch.randn(2, 3, 45, 37), torch.randn(2, 3, 45, 37)
    with torch.no_grad():
        fused = model.pyramids(before, after)
        alone = [model.backbone(before), model.backbone(after)]
        assert len(fused) == len(model.fusions) == len(alone[0]) == 4
        for level, (fuse, a, b) in enumerate(zip(model.fusions, *alone)):
            torch.testing.assert_close(fused[level], fuse(a, b), atol=1e-5, rtol=1e-5)
        logits = model(before, after)
        assert logits.shape == (2, 1, 45, 37)
        # the concatenation keeps the order of the dates: construction is not demolition
        assert not torch.allclose(model(after, before), logits, atol=1e-4)
    assert sum(isinstance(module, type(model.backbone)) for module in model.modules()) == 1  # shared weights
    with pytest.raises(ValueError, match="resample both dates onto one grid"):
        model(before, after[..., :36])
    with pytest.raises(ValueError, match=r"before image as a \(B, 3, H, W\)"):
        model(before[:, :2], after)


def test_backbone_weights_come_from_an_exported_backbone_file(tmp_path) -> None:
    from safetensors.torch import save_file

    source = create_model("vitaev2_tiny_test", num_classes=0)
    path = tmp_path / "backbone.safetensors"
    save_file(source.state_dict(), str(path))
    model = ChangeModel("vitaev2_tiny_test", backbone_checkpoint=path, decoder_channels=8)
    loaded = {key.removeprefix("model."): value for key, value in model.backbone.state_dict().items()}
    matched = [key for key in source.state_dict() if key in loaded]
    assert len(matched) > 50
    for key in matched:
        torch.testing.assert_close(loaded[key], source.state_dict()[key])


def test_each_date_is_normalised_with_its_own_statistics() -> None:
    task = _task(mean=[100.0, 110.0, 120.0], std=[50.0] * 3, before_mean=[10.0, 20.0, 30.0], before_std=[5.0] * 3)
    raw = torch.cat([torch.full((1, 3, 4, 4), 20.0), torch.full((1, 3, 4, 4), 150.0)], dim=1)
    normalised = task.normalize(raw)
    torch.testing.assert_close(normalised[0, :, 0, 0], torch.tensor([2.0, 0.0, -2.0, 1.0, 0.8, 0.6]))
    contract = task.contract
    assert contract.task == "change" and contract.dates == 2 and contract.in_chans == 3
    assert contract.mean == (10.0, 20.0, 30.0, 100.0, 110.0, 120.0) and contract.input_channels == 6
    assert InputContract.from_dict(contract.to_dict()) == contract
    with pytest.raises(ValueError, match="before_mean needs one value per band of the before date"):
        _task(before_mean=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"a \(B, 6, H, W\) tensor \(the before date's 3 bands"):
        task(torch.zeros(1, 3, 8, 8))


def test_fit_writes_overlays_and_a_checkpoint_that_rebuilds_the_task(pairs, tmp_path) -> None:
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    task = _task()
    trainer = _trainer(tmp_path, max_epochs=2, callbacks=[checkpoint])
    trainer.fit(task, datamodule=_datamodule(pairs))
    overlay = Image.open(tmp_path / "overlays" / "epoch001.png")
    assert overlay.size == (3 * TILE, 2 * TILE)  # two samples: before | after | errors
    assert task.contract.image_size == TILE and task.contract.mask_values == "0/255"

    rebuilt = load_task(tmp_path / "ckpt" / "last.ckpt")
    assert type(rebuilt) is ChangeDetectionTask and rebuilt.contract == task.contract
    raw = torch.rand(2, 6, 45, 37) * 255
    task.eval()
    with torch.no_grad():
        expected = task.forward_raw(raw)
        assert expected.shape == (2, 1, 45, 37)
        torch.testing.assert_close(rebuilt.forward_raw(raw), expected, atol=1e-5, rtol=1e-5)

    predictor = load_predictor(tmp_path / "ckpt" / "last.ckpt")
    assert predictor.kind == "change" and predictor.contract.input_channels == 6
    np.testing.assert_allclose(predictor(raw.numpy()), expected.sigmoid().numpy(), atol=1e-5)
    # nodata pixels of a pair become each date's band mean, as in tiled inference
    valid = np.ones((2, 45, 37), bool)
    valid[:, :10] = False
    filled = raw.clone()
    filled[:, :, :10] = torch.tensor(task.contract.mean).view(1, 6, 1, 1)
    np.testing.assert_allclose(
        predictor(raw.numpy(), valid), rebuilt.forward_raw(filled).sigmoid().detach().numpy(), atol=1e-5
    )


def test_training_finds_the_new_roofs(pairs, tmp_path) -> None:
    seed_everything(0)
    task = _task(num_overlays=0)
    datamodule = _datamodule(pairs)
    before = _trainer(tmp_path).validate(task, datamodule=datamodule, verbose=False)[0]
    _trainer(tmp_path, max_epochs=15, limit_val_batches=0).fit(task, datamodule=datamodule)
    after = _trainer(tmp_path).validate(task, datamodule=datamodule, verbose=False)[0]
    assert after["val/loss"] < 0.8 * before["val/loss"]
    assert after["val/f1"] > max(0.5, before["val/f1"])


def test_building_extractor_refuses_a_change_model(pairs, tmp_path) -> None:
    from rsfm import BuildingExtractor

    with pytest.raises(ValueError, match="ChangeDetectionTask"):
        BuildingExtractor(_task())


@pytest.fixture(scope="module")
def semantic_pairs(tmp_path_factory) -> Path:
    """12 pairs with class-index masks: 1 = a new bright roof, 2 = a roof that was demolished."""
    root = tmp_path_factory.mktemp("semantic")
    rng = np.random.default_rng(1)
    for sub in ("A", "B", "label"):
        (root / sub).mkdir()
    for index in range(12):
        before = rng.integers(0, 90, size=(TILE, TILE, 3), dtype=np.uint8)
        after = before.copy()
        mask = np.zeros((TILE, TILE), np.uint8)
        built = (slice(2, 12), slice(2, 10 + index % 4))
        gone = (slice(18, 28), slice(16, 26))
        after[built], mask[built] = 220, 1
        before[gone], mask[gone] = 220, 2
        mask[30:] = 255  # not labelled
        Image.fromarray(before).save(root / "A" / f"p{index}.png")
        Image.fromarray(after).save(root / "B" / f"p{index}.png")
        Image.fromarray(mask).save(root / "label" / f"p{index}.png")
    return root


def test_semantic_change_learns_kinds_of_change_and_maps_them(semantic_pairs, tmp_path) -> None:
    import rasterio
    from affine import Affine

    from rsfm import ChangeDetector, predict_change

    seed_everything(0)
    classes = ["no change", "new building", "demolished"]
    task = _task(class_names=classes, num_overlays=2)
    assert task.semantic and task.num_outputs == 3 and task.contract.num_outputs == 3
    data = ChangeDetectionDataModule(
        semantic_pairs, val_fraction=0.3, patch_size=TILE, batch_size=2, val_batch_size=4, mask_values="classes"
    )
    before = _trainer(tmp_path).validate(task, datamodule=data, verbose=False)[0]
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    _trainer(tmp_path, max_epochs=15, callbacks=[checkpoint]).fit(task, datamodule=data)
    after = _trainer(tmp_path).validate(task, datamodule=data, verbose=False)[0]
    assert after["val/loss"] < 0.7 * before["val/loss"]
    assert after["val/iou"] > max(0.5, before["val/iou"])  # macro over the three classes
    overlay = Image.open(tmp_path / "overlays" / "epoch014.png")
    assert overlay.size == (4 * TILE, 2 * TILE)  # before | after | predicted | reference

    # a whole scene: one class band through predict_change, as the model predicts it
    path = tmp_path / "ckpt" / "last.ckpt"
    rebuilt = load_task(path)
    assert rebuilt.semantic and rebuilt.contract == task.contract
    images = [np.asarray(Image.open(semantic_pairs / date / "p0.png")) for date in ("A", "B")]
    profile = dict(driver="GTiff", width=TILE, height=TILE, count=3, dtype="uint8", crs="EPSG:32650")
    profile["transform"] = Affine(0.5, 0, 500000, 0, -0.5, 2700000)
    for name, image in zip(("before.tif", "after.tif"), images):
        with rasterio.open(tmp_path / name, "w", **profile) as raster:
            raster.write(image.transpose(2, 0, 1))
    predict_change(tmp_path / "before.tif", tmp_path / "after.tif", path, tmp_path / "map.tif", progress=False)
    with rasterio.open(tmp_path / "map.tif") as raster:
        mapped = raster.read(1)
    pair = torch.from_numpy(np.concatenate(images, axis=2).transpose(2, 0, 1)[None].astype(np.float32))
    with torch.no_grad():
        expected = rebuilt.forward_raw(pair).argmax(dim=1)[0].numpy()
    assert np.mean(mapped == expected) > 0.99 and set(np.unique(mapped)) <= {0, 1, 2}
    with pytest.raises(ValueError, match="semantic change model .* rsfm.predict_change"):
        ChangeDetector.load(path)


def test_masks_and_classes_must_agree(semantic_pairs, pairs, tmp_path) -> None:
    classes = ["no change", "new building", "demolished"]
    binary_data = ChangeDetectionDataModule(pairs, val_fraction=0.3, patch_size=TILE, batch_size=2)
    with pytest.raises(ValueError, match="set mask_values='classes'"):
        _trainer(tmp_path, fast_dev_run=True).fit(_task(class_names=classes), datamodule=binary_data)
    two_classes = ChangeDetectionDataModule(semantic_pairs, val_fraction=0.3, patch_size=TILE, mask_values="classes")
    with pytest.raises(ValueError, match="set a binary mask_values"):
        _trainer(tmp_path, fast_dev_run=True).fit(_task(), datamodule=two_classes)
    with pytest.raises(ValueError, match=r"mask values \[2\] are no class index of the 2 classes"):
        MulticlassSegmentationLoss({"ce": 1.0}, 2)(torch.zeros(1, 2, 2, 2), torch.tensor([[[0, 2], [1, 255]]]))


def test_multiclass_loss_leaves_out_unlabelled_pixels() -> None:
    logits = torch.randn(2, 3, 5, 4)
    target = torch.randint(0, 3, (2, 5, 4))
    target[0, :2] = 255
    loss = MulticlassSegmentationLoss({"ce": 1.0}, 3)
    total, terms = loss(logits, target)
    torch.testing.assert_close(total, torch.nn.functional.cross_entropy(logits, target, ignore_index=255))
    assert set(terms) == {"ce"}
