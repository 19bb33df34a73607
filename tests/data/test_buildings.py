"""Building tile folders: pairing by name, mask conventions, clear errors, joint augmentation."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image

from rsfm.data.buildings import BuildingTileDataModule, BuildingTileDataset, read_mask
from rsfm.data.io import ImageReadError
from rsfm.data.segmentation import IGNORE_INDEX, building_train_transform, make_sample


def _write_pair(folder: Path, name: str, mask: np.ndarray, image_ext: str = ".png", mask_value: int = 1) -> np.ndarray:
    """RGB tile whose red band encodes the mask (200 on buildings), plus the mask PNG."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    image = np.zeros((*mask.shape, 3), dtype=np.uint8)
    image[..., 0] = mask * 200
    image[..., 1] = np.arange(mask.size, dtype=np.uint8).reshape(mask.shape)
    Image.fromarray(image).save(folder / "images" / f"{name}{image_ext}")
    Image.fromarray((mask * mask_value).astype(np.uint8)).save(folder / "masks" / f"{name}.png")
    return image


def _square_mask(size: int = 32) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[4:12, 6:20] = 1
    return mask


@pytest.mark.parametrize("mask_values, stored", [("0/1", 1), ("0/255", 255)])
def test_pairs_by_name_and_reads_the_chosen_mask_convention(tmp_path, mask_values, stored) -> None:
    mask = _square_mask()
    _write_pair(tmp_path, "a", mask, ".png", mask_value=stored)
    _write_pair(tmp_path, "b", mask, ".webp", mask_value=stored)
    dataset = BuildingTileDataset(tmp_path / "images", tmp_path / "masks", mask_values=mask_values)
    assert [image.name for image, _ in dataset.pairs] == ["a.png", "b.webp"]
    for sample in dataset:
        assert sample["image"].shape == (3, 32, 32) and sample["image"].dtype == torch.float32
        assert sample["mask"].dtype == torch.int64
        assert torch.equal(sample["mask"], torch.from_numpy(mask).long())
    assert dataset[0]["image"][0, 5, 7] == 200  # raw values, no scaling
    other = "0/255" if mask_values == "0/1" else "0/1"
    with pytest.raises(ImageReadError, match=f"a\\.png: mask holds 0 and {stored}.*set mask_values='{mask_values}'"):
        BuildingTileDataset(tmp_path / "images", tmp_path / "masks", mask_values=other)[0]


def test_without_a_convention_each_file_may_be_0_1_or_0_255(tmp_path) -> None:
    """``mask_values=None`` is for checking single files (the preparation scripts)."""
    mask = _square_mask()
    _write_pair(tmp_path, "a", mask, mask_value=1)
    _write_pair(tmp_path, "b", mask, mask_value=255)
    dataset = BuildingTileDataset(tmp_path / "images", tmp_path / "masks")
    assert all(torch.equal(sample["mask"], torch.from_numpy(mask).long()) for sample in dataset)


def test_palette_mask_is_read_as_indices(tmp_path) -> None:
    palette = Image.fromarray(_square_mask()).convert("P")
    palette.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    palette.save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png").sum() == _square_mask().sum()


def test_unpaired_files_are_named(tmp_path) -> None:
    _write_pair(tmp_path, "a", _square_mask())
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "images" / "lonely.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "masks" / "orphan.png")
    with pytest.raises(ValueError) as error:
        BuildingTileDataset(tmp_path / "images", tmp_path / "masks")
    assert "lonely" in str(error.value) and "orphan" in str(error.value)


def test_size_mismatch_names_both_files(tmp_path) -> None:
    _write_pair(tmp_path, "a", _square_mask())
    Image.fromarray(np.zeros((30, 32), np.uint8)).save(tmp_path / "masks" / "a.png")
    dataset = BuildingTileDataset(tmp_path / "images", tmp_path / "masks")
    with pytest.raises(ValueError, match=r"a\.png is 32x32 px but its mask .*a\.png is 32x30 px"):
        dataset[0]


def test_non_binary_mask_is_refused_with_its_name(tmp_path) -> None:
    Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8)).save(tmp_path / "three.png")
    with pytest.raises(ImageReadError, match=r"three\.png: mask values \[0, 1, 2\]"):
        read_mask(tmp_path / "three.png")


def test_multiband_uint16_tiff_with_band_selection(tmp_path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    data = np.stack([np.full((16, 24), 1000 * (band + 1), np.uint16) for band in range(4)])
    transform = rasterio.transform.from_origin(500000, 4000000, 0.5, 0.5)
    profile = dict(driver="GTiff", width=24, height=16, count=4, dtype="uint16", crs="EPSG:32616", transform=transform)
    with rasterio.open(tmp_path / "images" / "t.tif", "w", **profile) as dst:
        dst.write(data)
    with rasterio.open(tmp_path / "masks" / "t.tif", "w", **dict(profile, count=1, dtype="uint8")) as dst:
        dst.write(np.full((1, 16, 24), 255, np.uint8))
    dataset = BuildingTileDataset(tmp_path / "images", tmp_path / "masks", bands=[4, 1], mask_values="0/255")
    sample = dataset[0]
    assert sample["image"][:, 0, 0].tolist() == [4000.0, 1000.0]
    assert sample["mask"].unique().tolist() == [1]


@pytest.mark.parametrize("scale_range", [(1.0, 1.0), (0.8, 1.2)])
def test_train_transform_moves_image_and_mask_together(scale_range) -> None:
    mask = _square_mask(40)
    image = np.zeros((40, 40, 2), dtype=np.uint16)
    image[..., 0] = mask.astype(np.uint16) * 3000
    transform = building_train_transform(48, scale_range=scale_range)
    transform.set_random_seed(0)
    for _ in range(8):
        sample = make_sample(image, mask, transform)
        assert sample["image"].shape == (2, 48, 48) and sample["mask"].shape == (48, 48)
        labelled = sample["mask"] != IGNORE_INDEX
        # a 40 px tile zoomed <= 1.2x cannot fill a 48 px patch: the rest is ignored padding
        assert (~labelled).any()
        # the building band says where buildings are: it must agree with the mask (up to
        # bilinear edge pixels when rescaled)
        disagree = (sample["image"][0][labelled] > 1500) != (sample["mask"][labelled] == 1)
        allowed = 0 if scale_range == (1.0, 1.0) else 0.3 * int((sample["mask"] == 1).sum())
        assert int(disagree.sum()) <= allowed
        assert 0 < int((sample["mask"] == 1).sum()) < labelled.sum()


def test_train_transform_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="patch_size"):
        building_train_transform(0)
    with pytest.raises(ValueError, match="scale_range"):
        building_train_transform(64, scale_range=(1.5, 1.0))


def test_datamodule_on_the_shared_xiamen_tiles(data_dir) -> None:
    datamodule = BuildingTileDataModule(data_dir / "xiamen_buildings", patch_size=128, batch_size=4)
    datamodule.setup("fit")  # reads and checks all 634 masks: 0/1, the default mask_values
    assert len(datamodule.train_dataset) == 560 and len(datamodule.val_dataset) == 74
    pixels = datamodule.pixel_range
    assert pixels["dtype"] == "uint8" and 0 <= pixels["min"] < 30 and 225 < pixels["max"] <= 255
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].shape == (4, 3, 128, 128) and batch["mask"].shape == (4, 128, 128)
    assert set(batch["mask"].unique().tolist()) <= {0, 1}
    val = next(iter(datamodule.val_dataloader()))
    assert val["image"].shape == (4, 3, 256, 256)
    assert 0.05 < val["mask"].float().mean() < 0.5  # README: mean building fraction 0.184
    with pytest.raises(FileNotFoundError, match="test"):
        datamodule.setup("test")


def test_augmentations_follow_the_seed_and_differ_between_workers(tmp_path) -> None:
    """All tiles alike, so batches differ only by augmentation: the same seed gives the same
    batches; the two workers do not draw the same crops and flips in lockstep."""
    from lightning.pytorch import seed_everything

    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for split, count in (("train", 8), ("val", 2)):
        for index in range(count):
            _write_pair(tmp_path / split, f"t{index}", _square_mask())
            Image.fromarray(image).save(tmp_path / split / "images" / f"t{index}.png")

    def batches(seed: int) -> list:
        seed_everything(seed, verbose=False)
        data = BuildingTileDataModule(tmp_path, patch_size=16, batch_size=2, num_workers=2)
        data.setup("fit")
        loader = iter(data.train_dataloader())
        return [next(loader) for _ in range(2)]  # one batch from each worker

    first, again = batches(5), batches(5)
    for batch, repeated in zip(first, again):
        assert torch.equal(batch["image"], repeated["image"]) and torch.equal(batch["mask"], repeated["mask"])
    assert not torch.equal(first[0]["image"], first[1]["image"])
