"""Scene data: class folders at any depth, sample lists, stratified splits, GeoTIFF bands,
normalisation statistics, augmentation and unreadable files."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image
from rasterio.transform import Affine

from rsfm.data import (
    ImageReadError,
    SceneDataModule,
    read_image,
    read_sample_list,
    scan_class_folders,
    scene_train_transform,
    stratified_split,
)


def _write_png(path: Path, value: int, size: int = 24, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    bands = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    array = np.full((size, size, bands), value, dtype=np.uint8).squeeze()
    Image.fromarray(array, mode=mode).save(path)


def _write_geotiff(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    count, height, width = data.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=data.dtype,
        crs="EPSG:32650",
        transform=Affine(10, 0, 500000, 0, -10, 2800000),
    ) as dataset:
        dataset.write(data)


@pytest.fixture
def millionaid_tree(tmp_path: Path) -> Path:
    """Million-AID-like hierarchy: level-1 / level-2 / level-3 folders (one level-2 leaf)."""
    root = tmp_path / "millionaid"
    for relative in [
        "agriculture_land/arable_land/dry_field/a.jpg",
        "agriculture_land/arable_land/paddy_field/b.jpg",
        "agriculture_land/woodland/forest/c.png",
        "water_area/river/d.jpg",
    ]:
        _write_png(root / relative, 100)
    (root / ".cache").mkdir()
    _write_png(root / ".cache" / "ignored.png", 1)
    (root / "water_area" / "notes.txt").write_text("not an image")
    return root


def test_class_folders_at_any_depth_with_a_chosen_label_level(millionaid_tree):
    leaf = scan_class_folders(millionaid_tree, label_level=-1)
    assert [label for _, label in leaf] == ["dry_field", "paddy_field", "forest", "river"]
    level1 = scan_class_folders(millionaid_tree, label_level=1)
    assert [label for _, label in level1] == ["agriculture_land"] * 3 + ["water_area"]
    level2 = scan_class_folders(millionaid_tree, label_level=2)
    assert [label for _, label in level2] == ["arable_land", "arable_land", "woodland", "river"]
    with pytest.raises(ValueError, match=r"d\.jpg: lies 2 folder level\(s\).*label_level=3"):
        scan_class_folders(millionaid_tree, label_level=3)
    with pytest.raises(FileNotFoundError, match="no image files"):
        scan_class_folders(millionaid_tree / ".cache" / "..", label_level=-1, extensions=(".webp",))


def test_sample_lists_csv_with_header_headerless_and_rsp_txt(tmp_path):
    images = tmp_path / "images"
    for name in ("P1.jpg", "P2.jpg", "P3.jpg"):
        _write_png(images / name, 50)
    (tmp_path / "header.csv").write_text("class,path\ndry_field,images/P1.jpg\nriver,images/P2.jpg\n")
    (tmp_path / "plain.csv").write_text("images/P1.jpg,dry_field\n\n# comment\nimages/P3.jpg,river\n")
    (tmp_path / "train_label.txt").write_text("P1.jpg dry_field 0\nP2.jpg river 1\n")

    assert read_sample_list(tmp_path / "header.csv") == [
        (tmp_path / "images/P1.jpg", "dry_field"),
        (tmp_path / "images/P2.jpg", "river"),
    ]
    assert [label for _, label in read_sample_list(tmp_path / "plain.csv")] == ["dry_field", "river"]
    rsp = read_sample_list(tmp_path / "train_label.txt", root=images)
    assert rsp == [(images / "P1.jpg", "dry_field"), (images / "P2.jpg", "river")]
    missing = r"train_label\.txt: 2 of 2 listed image\(s\) do not exist: .*P1\.jpg"
    with pytest.raises(FileNotFoundError, match=missing):
        read_sample_list(tmp_path / "train_label.txt")  # paths are relative to the images folder
    assert len(read_sample_list(tmp_path / "train_label.txt", check_files=False)) == 2
    (tmp_path / "broken.txt").write_text("P1.jpg dry_field\nP2.jpg\n")
    with pytest.raises(ValueError, match=r"broken\.txt:2: expected"):
        read_sample_list(tmp_path / "broken.txt", root=images)


def test_stratified_split_aid_protocol_is_deterministic(data_dir):
    samples = read_sample_list(data_dir / "aid_150px" / "labels.csv")
    assert len(samples) == 1200
    train, val, test = stratified_split(samples, (0.2, 0.0, 0.8), seed=0)
    assert (len(train), len(val), len(test)) == (240, 0, 960)
    for class_name in {label for _, label in samples}:  # 8 / 32 of each class's 40
        assert sum(label == class_name for _, label in train) == 8
    assert not set(train) & set(test) and set(train) | set(test) == set(samples)

    shuffled = list(reversed(samples))
    assert stratified_split(shuffled, (0.2, 0.0, 0.8), seed=0) == [train, val, test]
    other_seed = stratified_split(samples, (0.2, 0.0, 0.8), seed=1)[0]
    assert other_seed != train and len(other_seed) == 240
    half, _, rest = stratified_split(samples, (0.5, 0.1, 0.4), seed=0)
    assert (len(half), len(rest)) == (600, 480)
    with pytest.raises(ValueError, match="sum to at most 1"):
        stratified_split(samples, (0.8, 0.3, 0.0))


def test_datamodule_class_folders_and_labels_csv_give_the_same_split(data_dir):
    aid = data_dir / "aid_150px"
    by_folder = SceneDataModule(root=str(aid), split=[0.2, 0.1, 0.7], seed=3, image_size=32, num_workers=0)
    by_list = SceneDataModule(sample_list=str(aid / "labels.csv"), split=[0.2, 0.1, 0.7], seed=3, image_size=32)
    assert by_folder.class_names == by_list.class_names and len(by_folder.class_names) == 30
    for split in ("train", "val", "test"):
        assert by_folder.split_samples(split) == by_list.split_samples(split)
    assert [len(by_folder.split_samples(split)) for split in ("train", "val", "test")] == [240, 120, 840]
    by_folder.setup("fit")
    batch = next(iter(by_folder.train_dataloader()))
    assert batch["image"].shape == (64, 3, 32, 32) and batch["image"].dtype.is_floating_point
    assert 0 <= float(batch["image"].min()) and float(batch["image"].max()) <= 255.0 + 1e-3
    assert batch["label"].max() < 30 and batch["num_skipped"] == 0
    pixels = by_folder.pixel_range  # from the mean/std pass over the 240 training images
    assert pixels["dtype"] == "uint8" and 0 <= pixels["min"] < 30 and 225 < pixels["max"] <= 255


def test_multiband_uint16_geotiffs_with_computed_statistics_and_band_choice(tmp_path):
    rng = np.random.default_rng(0)
    images = {}
    for class_name, level in (("cropland", 1000), ("urban", 9000)):
        for index in range(4):
            data = (rng.integers(0, 3000, size=(5, 20, 24)) + level + 100 * np.arange(5)[:, None, None]).astype(
                np.uint16
            )
            path = tmp_path / "scenes" / class_name / f"{index}.tif"
            _write_geotiff(path, data)
            images[path] = data

    datamodule = SceneDataModule(
        root=str(tmp_path / "scenes"), split=[1.0, 0.0, 0.0], image_size=16, batch_size=4, num_workers=0
    )
    assert datamodule.in_chans == 5 and datamodule.class_names == ["cropland", "urban"]
    pixels = np.concatenate([data.reshape(5, -1) for data in images.values()], axis=1).astype(np.float64)
    np.testing.assert_allclose(datamodule.mean, pixels.mean(axis=1), rtol=1e-9)
    np.testing.assert_allclose(datamodule.std, pixels.std(axis=1), rtol=1e-9)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].shape == (4, 5, 16, 16)
    assert float(batch["image"].max()) > 255  # raw uint16 units, not rescaled to 8 bits

    chosen = SceneDataModule(
        root=str(tmp_path / "scenes"),
        split=[0.5, 0.0, 0.5],
        bands=[3, 1],
        image_size=24,
        mean=[0.0, 0.0],
        std=[1.0, 1.0],
        num_workers=0,
    )
    chosen.setup("test")
    item = chosen.datasets["test"][0]
    source = images[Path(item["path"])]
    assert chosen.in_chans == 2 and item["image"].shape == (2, 24, 24)
    resized_back = read_image(item["path"], bands=[3, 1])
    np.testing.assert_array_equal(resized_back.transpose(2, 0, 1), source[[2, 0]])
    # only the 20 -> 24 row resize changes values; band order follows bands=[3, 1]
    assert float(item["image"][0].mean()) == pytest.approx(float(source[2].mean()), rel=0.01)
    assert float(item["image"][1].mean()) == pytest.approx(float(source[0].mean()), rel=0.01)


def test_train_augmentation_keeps_bands_range_and_is_finite():
    transform = scene_train_transform(32, color_jitter=0.4, rand_ops=3)
    rng = np.random.default_rng(1)
    for bands in (1, 3, 7):
        for _ in range(40):
            image = rng.random((48, 40, bands), dtype=np.float32)
            out = transform(image=image)["image"]
            assert out.shape == (32, 32, bands) and out.dtype == np.float32
            assert np.isfinite(out).all() and out.min() >= 0.0


def test_greyscale_image_among_rgb_is_repeated_and_wrong_band_count_names_the_file(tmp_path):
    root = tmp_path / "scenes"
    _write_png(root / "beach" / "rgb.png", 200)
    _write_png(root / "beach" / "grey.png", 90, mode="L")
    _write_png(root / "forest" / "rgb.png", 30)
    _write_png(root / "forest" / "alpha.png", 30, mode="RGBA")
    datamodule = SceneDataModule(root=str(root), split=[1.0, 0.0, 0.0], image_size=8, mean=[0.0] * 3, std=[1.0] * 3)
    datamodule.setup("fit")
    dataset = datamodule.datasets["train"]
    paths = [str(path) for path, _ in dataset.samples]
    grey = dataset.read(paths.index(str(root / "beach" / "grey.png")))
    assert grey.shape == (24, 24, 3) and (grey == 90).all()
    with pytest.raises(ImageReadError, match=r"alpha\.png: has 4 band\(s\), the other images have 3 \(choose bands"):
        dataset[paths.index(str(root / "forest" / "alpha.png"))]


def test_unreadable_file_fails_with_its_name_or_is_skipped_and_counted(tmp_path):
    root = tmp_path / "scenes"
    for class_name in ("a", "b"):
        for index in range(3):
            _write_png(root / class_name / f"{index}.png", 10 * index)
    broken = root / "b" / "1.png"
    broken.write_bytes(broken.read_bytes()[:40])  # truncated PNG
    arguments = dict(
        root=str(root), split=[1.0, 0.0, 0.0], image_size=8, batch_size=6, mean=[0.0] * 3, std=[1.0] * 3, num_workers=0
    )

    strict = SceneDataModule(**arguments)
    with pytest.raises(ImageReadError, match=r"b/1\.png: cannot read image .*set skip_bad_files=True"):
        strict.setup("fit")
        next(iter(strict.train_dataloader()))
    strict_dataset = SceneDataModule(**arguments, bands=[1, 2, 3])  # band count known: fails when loading
    strict_dataset.setup("fit")
    with pytest.raises(ImageReadError, match=r"b/1\.png: cannot read image .*set skip_bad_files=True"):
        next(iter(strict_dataset.train_dataloader()))

    lenient = SceneDataModule(**arguments, skip_bad_files=True)
    lenient.setup("fit")
    with pytest.warns(UserWarning, match=r"b/1\.png: cannot read image"):
        batch = next(iter(lenient.train_dataloader()))
    assert len(batch["image"]) == 5 and str(broken) not in batch["path"]
    with pytest.warns(UserWarning, match="1 unreadable image"):
        batch = lenient.on_after_batch_transfer(batch, 0)
    assert lenient.num_skipped == 1 and "num_skipped" not in batch


def _augmented_batches(root: Path, seed: int, num_workers: int) -> list:
    from lightning.pytorch import seed_everything

    seed_everything(seed, verbose=False)
    data = SceneDataModule(root=str(root), split=[0.8, 0.1, 0.1], image_size=16, batch_size=4, num_workers=num_workers)
    data.setup("fit")
    loader = iter(data.train_dataloader())
    return [next(loader)["image"] for _ in range(2)]  # with two workers: one batch from each


@pytest.mark.parametrize("num_workers", [0, 2])
def test_augmentations_follow_the_seed_and_differ_between_workers(tmp_path, num_workers):
    """Every image is the same noise, so batches differ only by their augmentations. Same seed:
    the same batches; another seed: others; two workers: not the same draws in lockstep (each
    worker used to get a copy of one generator, seeded from the OS whatever the seed)."""
    noise = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    for label in ("a", "b"):
        for index in range(10):
            path = tmp_path / "scenes" / label / f"{index}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(noise).save(path)
    first = _augmented_batches(tmp_path / "scenes", 7, num_workers)
    again = _augmented_batches(tmp_path / "scenes", 7, num_workers)
    other = _augmented_batches(tmp_path / "scenes", 8, num_workers)
    for batch, repeated in zip(first, again):
        assert torch.equal(batch, repeated)
    assert not torch.equal(first[0], other[0])
    assert not torch.equal(first[0], first[1])
