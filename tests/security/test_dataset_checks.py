"""Training data that used to give silently wrong results is refused loudly: mask conventions
are a datamodule option checked on every mask, class folders without images, label typos and
missing listed files are reported together, and datamodules describe their training pixels."""

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

import rsfm.data.buildings as buildings
from rsfm.data import SceneDataModule, read_sample_list
from rsfm.data.buildings import BuildingTileDataModule, read_mask
from rsfm.data.geo import BuildingGeoDataModule, building_geo_dataset
from rsfm.data.io import ImageReadError
from rsfm.data.samples import index_class_folders
from rsfm.data.segmentation import IGNORE_INDEX

WEST, NORTH = 733600.0, 3725140.0  # EPSG:32616, 1 m pixels


def _write_geotiff(path: Path, data: np.ndarray, nodata=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    count, height, width = data.shape
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=data.dtype.name,
        crs="EPSG:32616",
        transform=from_origin(WEST, NORTH, 1.0, 1.0),
        nodata=nodata,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def _building_mask(size: int = 16) -> np.ndarray:
    """0/1 mask with a building at rows 2-5, columns 3-8."""
    mask = np.zeros((size, size), np.uint8)
    mask[2:6, 3:9] = 1
    return mask


def _tile_dataset(root: Path, masks: dict) -> Path:
    """``root/<split>/{images,masks}/<name>.png`` for ``masks = {"train/a": array, ...}``."""
    for key, mask in masks.items():
        split, name = key.split("/")
        for folder in ("images", "masks"):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((*mask.shape, 3), 90, np.uint8)).save(root / split / "images" / f"{name}.png")
        Image.fromarray(mask).save(root / split / "masks" / f"{name}.png")
    return root


def _png(path: Path, value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((12, 12, 3), value, np.uint8)).save(path)


# building masks -----------------------------------------------------------------------------


def test_0_255_masks_in_a_0_1_dataset_are_refused_all_at_once_naming_files_and_option(tmp_path) -> None:
    mask = _building_mask()
    root = _tile_dataset(tmp_path, {
        "train/a": mask, "train/b": mask, "train/bad1": mask * 255,
        "val/c": mask, "val/bad2": mask * 255,
    })  # fmt: skip
    datamodule = BuildingTileDataModule(root, patch_size=16)
    with pytest.raises(ValueError) as error:
        datamodule.setup("fit")
    message = str(error.value)
    assert "2 of 5 mask(s) do not fit mask_values='0/1'" in message
    assert "train/masks/bad1.png (0 and 255)" in message and "val/masks/bad2.png (0 and 255)" in message
    assert "a.png" not in message and "c.png" not in message
    # the masks as a whole hold 0, 1 and 255: both readings of 255 are offered
    assert "mask_values='0/1/255=ignore'" in message and "convert them to one convention" in message


def test_a_0_255_dataset_is_refused_by_default_and_reads_255_as_building_when_set(tmp_path) -> None:
    mask = _building_mask()
    root = _tile_dataset(tmp_path, {"train/a": mask * 255, "train/b": mask * 255, "val/c": mask * 255})
    with pytest.raises(ValueError, match=r"3 of 3 mask\(s\).*The masks hold 0 and 255: set mask_values='0/255'"):
        BuildingTileDataModule(root, patch_size=16).setup("fit")

    datamodule = BuildingTileDataModule(root, patch_size=16, mask_values="0/255")
    datamodule.setup("fit")
    sample = datamodule.val_dataset[0]["mask"]
    assert int(sample[3, 4]) == 1 and int(sample[0, 0]) == 0
    assert sorted(sample.unique().tolist()) == [0, 1] and int(sample.sum()) == int(mask.sum())
    with pytest.raises(ValueError, match="mask_values='0/128' is not one of"):
        BuildingTileDataModule(root, mask_values="0/128")


def test_255_means_not_labelled_when_configured(tmp_path) -> None:
    mask = _building_mask()
    mask[:, 12:] = 255  # a strip without labels
    root = _tile_dataset(tmp_path, {"train/a": mask, "val/b": mask})
    with pytest.raises(ValueError, match="set mask_values='0/1/255=ignore'"):
        BuildingTileDataModule(root, patch_size=16).setup("fit")
    datamodule = BuildingTileDataModule(root, patch_size=16, mask_values="0/1/255=ignore")
    datamodule.setup("fit")
    sample = datamodule.val_dataset[0]["mask"]
    assert int(sample[0, 13]) == IGNORE_INDEX and int(sample[3, 4]) == 1 and int(sample[0, 0]) == 0

    # read_mask checks one file against a convention and names the option
    path = root / "val" / "masks" / "b.png"
    assert read_mask(path, "0/1/255=ignore")[0, 13] == IGNORE_INDEX
    with pytest.raises(ImageReadError, match=r"b\.png: mask holds 0, 1 and 255, which do not fit mask_values='0/1'"):
        read_mask(path, "0/1")


def test_masks_are_read_once_and_again_when_rewritten(tmp_path, monkeypatch) -> None:
    mask = _building_mask()
    root = _tile_dataset(tmp_path, {"train/a": mask, "train/b": mask, "val/c": mask})
    BuildingTileDataModule(root, patch_size=16).setup("fit")
    reads = []
    original = buildings._read_mask_array
    monkeypatch.setattr(buildings, "_read_mask_array", lambda path: reads.append(path) or original(path))
    BuildingTileDataModule(root, patch_size=16).setup("fit")
    assert reads == []  # cached by path, size and modification time

    rewritten = root / "train" / "masks" / "b.png"
    Image.fromarray(mask * 255).save(rewritten)
    stat = rewritten.stat()
    os.utime(rewritten, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(ValueError, match=r"train/masks/b\.png \(0 and 255\)"):
        BuildingTileDataModule(root, patch_size=16).setup("fit")
    assert reads == [rewritten]


def test_geo_mask_rasters_holding_1_and_255_need_ignore_value(tmp_path) -> None:
    _write_geotiff(tmp_path / "image.tif", np.full((1, 32, 32), 300, np.uint16))
    labels = np.zeros((1, 32, 32), np.uint8)
    labels[0, 4:10, 4:10] = 1
    labels[0, :, 24:] = 255  # not labelled, and not tagged as nodata
    _write_geotiff(tmp_path / "mask.tif", labels)
    both = r"1 and 255 would both be buildings; 1 of 1 hold 255: .*mask\.tif.*set ignore_value=255"
    with pytest.raises(ValueError, match=both):
        building_geo_dataset(tmp_path / "image.tif", tmp_path / "mask.tif")
    dataset = building_geo_dataset(tmp_path / "image.tif", tmp_path / "mask.tif", ignore_value=255)
    mask = dataset[WEST : WEST + 32, NORTH - 32 : NORTH]["mask"].numpy()
    assert (mask[:, 24:] == IGNORE_INDEX).all() and mask[5, 5] == 1 and mask[20, 5] == 0

    _write_geotiff(tmp_path / "mask.tif", np.where(labels == 255, 0, labels).astype(np.uint8))
    absent = r"building_value=255 occurs in none of the 1 mask raster\(s\), which hold 0 and 1: every pixel"
    with pytest.raises(ValueError, match=absent):
        building_geo_dataset(tmp_path / "image.tif", tmp_path / "mask.tif", building_value=255)
    with pytest.raises(ValueError, match="building_value=255 occurs in none"):
        BuildingGeoDataModule(
            str(tmp_path / "image.tif"), str(tmp_path / "mask.tif"), patch_size=8, building_value=255
        ).setup("fit")


# scene samples ------------------------------------------------------------------------------


def test_an_empty_class_folder_is_reported(tmp_path) -> None:
    root = tmp_path / "scenes"
    for name in ("Airport", "Beach"):
        for index in range(3):
            _png(root / name / f"{index}.png")
    (root / "Bridge").mkdir()
    (root / "Bridge" / "readme.txt").write_text("images still downloading")
    with pytest.raises(ValueError) as error:
        SceneDataModule(root=str(root), split=[0.7, 0.0, 0.3]).setup("fit")
    message = str(error.value)
    assert "1 class folder(s) under" in message and str(root / "Bridge") in message
    assert "add the images or remove the folders" in message

    # Million-AID-like tree with leaves at two depths: only the empty leaf class is reported
    tree = tmp_path / "millionaid"
    _png(tree / "water_area" / "lake" / "a.png")
    _png(tree / "agriculture_land" / "arable_land" / "dry_field" / "b.png")
    (tree / "agriculture_land" / "arable_land" / "paddy_field").mkdir()
    (tree / "agriculture_land" / "woodland" / "forest").mkdir(parents=True)
    found = index_class_folders(tree, label_level=-1)
    assert [path.relative_to(tree).as_posix() for path in found.empty_folders] == [
        "agriculture_land/arable_land/paddy_field",
        "agriculture_land/woodland",  # the topmost empty folder of its branch
    ]
    assert [label for _, label in found.samples] == ["dry_field", "lake"]


def test_a_label_typo_is_reported_with_the_image_count_of_every_class(tmp_path) -> None:
    lines = ["path,class"]
    for name in ("Airport", "BareLand"):
        for index in range(4):
            _png(tmp_path / "images" / f"{name}_{index}.png")
            lines.append(f"images/{name}_{index}.png,{name}")
    _png(tmp_path / "images" / "typo.png")
    lines.append("images/typo.png,Airprot")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")

    with pytest.raises(ValueError) as error:  # 5:5 split: round(0.5) = 0 images of Airprot train
        SceneDataModule(sample_list=str(tmp_path / "labels.csv"), split=[0.5, 0.0, 0.5]).setup("fit")
    message = str(error.value)
    assert "class 'Airprot' has 1 image(s), 0 after the split into train (split=[0.5, 0.0, 0.5])" in message
    assert "Images per class: Airport 4, Airprot 1, BareLand 4." in message and "label typo" in message

    # given splits: the typo only in the test list, and a named class without images
    (tmp_path / "train.csv").write_text("\n".join(lines[:9]) + "\n")
    (tmp_path / "test.csv").write_text("path,class\nimages/typo.png,Airprot\nimages/Airport_0.png,Airport\n")
    datamodule = SceneDataModule(
        train_list=str(tmp_path / "train.csv"),
        test_list=str(tmp_path / "test.csv"),
        class_names=["Airport", "Airprot", "BareLand", "Beach"],
    )
    with pytest.raises(ValueError) as error:
        _ = datamodule.class_names  # the samples are indexed (and checked) on first use
    message = str(error.value)
    assert "2 class(es) have no training image" in message
    assert "class 'Airprot' has 1 image(s), none in train_list (val 0, test 1)" in message
    assert "class 'Beach' (from class_names) has no image" in message
    assert "Images per class: Airport 5, Airprot 1, BareLand 4, Beach 0." in message


def test_three_missing_listed_files_are_named_in_one_error(tmp_path) -> None:
    for index in range(2):
        _png(tmp_path / f"ok{index}.png")
    names = ["ok0.png", "gone1.png", "ok1.png", "gone2.png", "gone3.png"]
    (tmp_path / "list.txt").write_text("".join(f"{name} river\n" for name in names))
    with pytest.raises(FileNotFoundError) as error:
        read_sample_list(tmp_path / "list.txt")
    assert "3 of 5 listed image(s) do not exist" in str(error.value)
    assert all(str(tmp_path / f"gone{index}.png") in str(error.value) for index in (1, 2, 3))

    with pytest.raises(ValueError) as error:  # with another problem: both in one error
        SceneDataModule(sample_list=str(tmp_path / "list.txt"), class_names=["river", "lake"]).setup("fit")
    message = str(error.value)
    assert message.startswith("scene data: 2 problem(s)")
    assert all(f"gone{index}.png" in message for index in (1, 2, 3)) and "ok0.png" not in message
    assert "class 'lake' (from class_names) has no image" in message


# training pixel range -----------------------------------------------------------------------


def test_scene_pixel_range_is_the_true_range_of_uint16_training_images(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for class_name, low in (("cropland", 120), ("urban", 900)):
        for index in range(4):
            data = rng.integers(low, low + 3000, size=(2, 10, 12)).astype(np.uint16)
            data[0, 0, 0] = low - 100 + index  # the extremes sit in single pixels
            data[1, 9, 11] = 40000 + index if class_name == "urban" else data[1, 9, 11]
            _write_geotiff(tmp_path / "scenes" / class_name / f"{index}.tif", data)
    computed = SceneDataModule(root=str(tmp_path / "scenes"), split=[1.0, 0.0, 0.0])
    assert computed.pixel_range is None  # not indexed yet
    computed.setup("fit")
    assert computed.pixel_range == {"dtype": "uint16", "min": 20.0, "max": 40003.0}

    given = SceneDataModule(root=str(tmp_path / "scenes"), split=[0.5, 0.0, 0.5], mean=[0.0, 0.0], std=[1.0, 1.0])
    given.setup("fit")
    train_paths = [path for path, _ in given.split_samples("train")]
    pixels = np.concatenate([rasterio.open(path).read().ravel() for path in train_paths])
    assert given.pixel_range == {"dtype": "uint16", "min": float(pixels.min()), "max": float(pixels.max())}


def test_tile_and_geo_pixel_ranges(tmp_path) -> None:
    root = tmp_path / "tiles"
    for split, index, peak in (("train", 0, 700), ("train", 1, 4095), ("val", 2, 60000)):
        data = np.full((3, 16, 16), 500, np.uint16)
        data[1, 3, 3] = peak
        data[2, 5, 5] = 7 + index
        _write_geotiff(root / split / "images" / f"t{index}.tif", data)
        _write_geotiff(root / split / "masks" / f"t{index}.tif", _building_mask()[None])
    datamodule = BuildingTileDataModule(root, patch_size=16)
    assert datamodule.pixel_range is None
    datamodule.setup("fit")
    assert datamodule.pixel_range == {"dtype": "uint16", "min": 7.0, "max": 4095.0}  # val tiles not included

    image = np.full((1, 32, 32), 1200, np.uint16)
    image[0, :, :4] = 0  # nodata
    image[0, 10, 10], image[0, 20, 20] = 13, 2047
    _write_geotiff(tmp_path / "geo" / "image.tif", image, nodata=0)
    labels = np.zeros((1, 32, 32), np.uint8)
    labels[0, 8:16, 8:16] = 1
    _write_geotiff(tmp_path / "geo" / "mask.tif", labels)
    geo = BuildingGeoDataModule(
        str(tmp_path / "geo" / "image.tif"),
        str(tmp_path / "geo" / "mask.tif"),
        val_images=str(tmp_path / "geo" / "image.tif"),
        val_labels=str(tmp_path / "geo" / "mask.tif"),
        patch_size=8,
    )
    assert geo.pixel_range is None
    geo.setup("fit")
    assert geo.pixel_range == {"dtype": "uint16", "min": 13.0, "max": 2047.0}  # nodata 0 excluded


def test_a_tiff_that_declares_gigabytes_is_refused_before_reading(tmp_path):
    """A decompression bomb for the readers of whole images (scene images, tiles, calibration
    images): a sparse GeoTIFF of a few kilobytes that decodes to 1.1 GB is refused before any
    allocation, naming the file and the size; one just under the limit reads."""
    from rsfm.data import io

    bomb = tmp_path / "scene.tif"
    profile = dict(driver="GTiff", width=34_000, height=34_000, count=1, dtype="uint8", tiled=True)
    with rasterio.Env(SPARSE_OK=True):
        with rasterio.open(bomb, "w", compress="deflate", sparse_ok=True, **profile):
            pass  # no tile written: the file holds only the header
    assert bomb.stat().st_size < 5_000_000
    with pytest.raises(
        ImageReadError, match=r"scene\.tif: 34000 x 34000 pixels x 1 uint8 band\(s\) would take 1\.1 GiB"
    ):
        io.read_image(bomb)
    small = tmp_path / "small.tif"
    with rasterio.open(small, "w", driver="GTiff", width=64, height=32, count=2, dtype="uint16") as dataset:
        dataset.write(np.ones((2, 32, 64), dtype=np.uint16))
    assert io.read_image(small).shape == (32, 64, 2)
