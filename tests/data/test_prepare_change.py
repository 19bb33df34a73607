"""datasets/{levir_cd,whu_cd,cdd}/prepare.py on tiny real downloads laid out like the published ones.

Each test writes small real images (PNG, JPEG, GeoTIFF) in the dataset's layout, runs the
script as ``__main__`` (the ``prepare`` fixture of ``conftest.py``) and reads the prepared
``{A,B,label}/NAME.png`` + ``list/{train,val,test}.txt`` back.
"""

from __future__ import annotations

import importlib
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import rasterio
import yaml
from PIL import Image
from rasterio.transform import Affine

from rsfm.data.prepare import MANIFEST_NAME
from rsfm.data.prepare.change_pairs import binary_change_label, patch_origins

DATASETS = Path(__file__).resolve().parents[2] / "datasets"


def _image(seed: int, size: int) -> np.ndarray:
    """A smooth RGB image (compresses fast) that differs per seed."""
    rows, cols = np.mgrid[0:size, 0:size]
    bands = [(rows + cols * (seed + 1) + 40 * band) % 256 for band in range(3)]
    return np.stack(bands, axis=-1).astype(np.uint8)


def _label(size: int, high: int = 255) -> np.ndarray:
    """A changed rectangle whose edges cross JPEG's 8 px blocks (so JPEG blurs them)."""
    label = np.zeros((size, size), dtype=np.uint8)
    label[13:45, 5:37] = high
    return label


def _encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


def _zip(path: Path, members: Dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def _lists(output: Path) -> Dict[str, List[str]]:
    return {split: (output / "list" / f"{split}.txt").read_text().split() for split in ("train", "val", "test")}


def _assert_layout(output: Path, lists: Dict[str, List[str]]) -> None:
    """Every listed name has A, B and label PNGs of one size, label single-band 0/255; nothing else."""
    names = [name for split in lists.values() for name in split]
    assert len(names) == len(set(names))  # unique across splits
    assert all(lists[split] == sorted(lists[split]) for split in lists)
    for folder in ("A", "B", "label"):
        assert sorted(path.stem for path in (output / folder).iterdir()) == sorted(names)
    for name in names:
        before, after, label = (_read(output / folder / f"{name}.png") for folder in ("A", "B", "label"))
        assert before.shape == after.shape == (*label.shape, 3) and before.dtype == np.uint8
        assert label.ndim == 2 and set(np.unique(label).tolist()) <= {0, 255}


# LEVIR-CD ------------------------------------------------------------------------------------


def _levir_zip(folder: Path, split: str, count: int, size: int) -> Path:
    """torchgeo's layout of the LEVIR-CD zips: A/, B/, label/ at the top, files named <split>_<n>.png."""
    members = {}
    for index in range(1, count + 1):
        name = f"{split}_{index}.png"
        members[f"A/{name}"] = _encode(_image(index, size))
        members[f"B/{name}"] = _encode(_image(index + 50, size))
        members[f"label/{name}"] = _encode(_label(size))
    return _zip(folder / f"{split}.zip", members)


def test_levir_zips_are_cut_into_256_px_patches_with_lists(tmp_path, prepare):
    zips = [_levir_zip(tmp_path, split, count, 512) for split, count in (("train", 2), ("val", 1), ("test", 1))]
    output = tmp_path / "levir_cd_256"

    refused = prepare("levir_cd", *zips, "--output", tmp_path / "refused")
    assert refused.code == 2 and "a638e71f480628652dea78d8544307e4" in refused.err and "--skip-checksum" in refused.err

    result = prepare("levir_cd", *zips, "--output", output, "--skip-checksum")

    assert result.code == 1  # 2/1/1 pairs, not the published 445/64/128
    assert "train: 2 pairs, the published dataset has 445" in result.out
    assert "train: 8 patches of 256 px, the published protocol has 7120" in result.out
    lists = _lists(output)
    assert {split: len(names) for split, names in lists.items()} == {"train": 8, "val": 4, "test": 4}
    assert lists["val"] == [f"val_1_r{row:05d}_c{col:05d}" for row in (0, 256) for col in (0, 256)]
    _assert_layout(output, lists)
    patch = _read(output / "B" / "train_2_r00256_c00000.png")
    assert np.array_equal(patch, _image(52, 512)[256:, :256])
    assert np.array_equal(_read(output / "label" / "train_2_r00000_c00000.png"), _label(512)[:256, :256])
    assert not (output / ".extract").exists() and (output / MANIFEST_NAME).is_file()

    # the datamodule of this layout, built as the README configures it
    text = (DATASETS / "levir_cd" / "README.md").read_text()
    snippet = yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.DOTALL).group(1))["data"]
    module_name, _, class_name = snippet["class_path"].rpartition(".")
    init_args = {**snippet["init_args"], "root": str(output), "batch_size": 2, "num_workers": 0}
    datamodule = getattr(importlib.import_module(module_name), class_name)(**init_args)
    datamodule.setup("fit")
    assert (len(datamodule.train_dataset), len(datamodule.val_dataset)) == (8, 4)
    batch = next(iter(datamodule.val_dataloader()))
    assert batch["image"].shape == (2, 6, 256, 256) and set(batch["mask"].unique().tolist()) == {0, 1}


def test_levir_folder_whole_images_quarantines_bad_pairs(tmp_path, prepare):
    """Split folders of an extracted download, names without a split prefix, --patch-size 0."""
    download = tmp_path / "LEVIR-CD"
    for split, count in (("train", 3), ("val", 1), ("test", 1)):
        for index in range(1, count + 1):
            for folder, array in (("A", _image(index, 64)), ("B", _image(index + 9, 64)), ("label", _label(64, 1))):
                (download / split / folder).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(download / split / folder / f"{index}.png")
    Image.fromarray(_image(0, 48)).save(download / "train" / "B" / "2.png")  # after image of another size
    (download / "train" / "label" / "3.png").unlink()  # no label
    output = tmp_path / "levir_cd"

    result = prepare("levir_cd", download, "--output", output, "--patch-size", "0", "--partial")

    assert result.code == 1
    assert "train/B/2.png 48x48" in result.out and "differ in size" in result.out
    assert "train: 1 name(s) lack a file in one of A/, B/ and label/" in result.out
    for quarantined in ("train/A/2.png", "train/B/2.png", "train/label/2.png", "train/A/3.png", "train/B/3.png"):
        assert (output / ".unreadable" / quarantined).is_file(), quarantined
    assert (download / "train" / "A" / "2.png").is_file()  # the user's folder is copied, never changed
    lists = _lists(output)
    assert lists == {"train": ["train_1"], "val": ["val_1"], "test": ["test_1"]}  # prefixed: names repeat
    _assert_layout(output, lists)
    assert np.array_equal(_read(output / "label" / "val_1.png"), _label(64))  # 0/1 written as 0/255
    assert np.array_equal(_read(output / "A" / "test_1.png"), _image(1, 64))


# WHU-CD --------------------------------------------------------------------------------------

WHU_TRANSFORM = Affine(0.3, 0, 1570000.0, 0, -0.3, 5180000.0)


def _whu_folder(root: Path, width: int = 300, height: int = 200) -> Path:
    """The whole-scene release: before, after and a 0/1 change label, georeferenced (NZTM)."""
    data = root / "Building change detection dataset" / "1. The two-period image data"
    rows, cols = np.mgrid[0:height, 0:width]
    before = np.stack([rows % 256, cols % 256, (rows + cols) % 256]).astype(np.uint8)
    label = ((rows // 40 + cols // 40) % 2).astype(np.uint8)[None]
    for relative, array in (
        ("before/before.tif", before),
        ("after/after.tif", 255 - before),
        ("before/before_label.tif", label),  # a building mask, not read
        ("change label/change_label.tif", label),
    ):
        path = data / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(
            path, "w", driver="GTiff", width=width, height=height, count=array.shape[0], dtype="uint8",
            crs="EPSG:2193", transform=WHU_TRANSFORM,
        ) as dst:  # fmt: skip
            dst.write(array)
    return root


def test_whu_cd_scene_is_cut_into_georeferenced_patches_and_split_by_seed(tmp_path, prepare):
    download = _whu_folder(tmp_path / "download")
    options = ["--patch-size", "64", "--partial", "--val-fraction", "0.2", "--test-fraction", "0.1"]

    result = prepare("whu_cd", download, "--output", tmp_path / "seed0", *options)

    assert result.code == 0, result.out
    assert "300x200 px, the published dataset 32507x15354" in result.out and "EPSG:2193" in result.out
    output = tmp_path / "seed0"
    lists = _lists(output)
    assert {split: len(names) for split, names in lists.items()} == {"train": 14, "val": 4, "test": 2}  # 4 x 5
    _assert_layout(output, lists)
    grid = json.loads((output / "source_grid.json").read_text())
    assert grid["crs"] == "EPSG:2193" and Affine(*grid["transform"]) == WHU_TRANSFORM
    assert (grid["width"], grid["height"], grid["edges"]) == (300, 200, "pad")
    source = download / "Building change detection dataset" / "1. The two-period image data"
    with rasterio.open(source / "after" / "after.tif") as src:
        after = src.read().transpose(1, 2, 0)
    assert np.array_equal(_read(output / "B" / "r00064_c00128.png"), after[64:128, 128:192])
    edge = _read(output / "B" / "r00192_c00256.png")  # 8 x 44 px of data, zero-padded
    assert np.array_equal(edge[:8, :44], after[192:, 256:]) and not edge[8:].any() and not edge[:, 44:].any()
    with rasterio.open(source / "change label" / "change_label.tif") as src:
        label = src.read(1)
    assert np.array_equal(_read(output / "label" / "r00128_c00064.png"), label[128:192, 64:128] * 255)

    again = prepare("whu_cd", download, "--output", tmp_path / "again", *options)
    other = prepare("whu_cd", download, "--output", tmp_path / "seed1", *options, "--seed", "1")
    assert again.code == other.code == 0
    assert _lists(tmp_path / "again") == lists and _lists(tmp_path / "seed1") != lists
    dropped = prepare(
        "whu_cd", download, "--output", tmp_path / "drop", "--patch-size", "64", "--edges", "drop", "--partial"
    )
    assert dropped.code == 0 and sum(len(names) for names in _lists(tmp_path / "drop").values()) == 3 * 4


def test_whu_cd_rasters_of_different_sizes_cannot_be_prepared(tmp_path, prepare):
    download = _whu_folder(tmp_path / "download")
    label = download / "Building change detection dataset" / "1. The two-period image data" / "change label"
    with rasterio.open(
        label / "change_label.tif", "w", driver="GTiff", width=100, height=200, count=1, dtype="uint8",
        crs="EPSG:2193", transform=WHU_TRANSFORM,
    ) as dst:  # fmt: skip
        dst.write(np.zeros((1, 200, 100), np.uint8))

    result = prepare("whu_cd", download, "--output", tmp_path / "whu_cd", "--partial")

    assert result.code == 2 and "label 100x200" in result.err and "before 300x200" in result.err


# CDD -----------------------------------------------------------------------------------------


def test_cdd_jpeg_labels_are_thresholded_into_png(tmp_path, prepare):
    root = tmp_path / "download" / "ChangeDetectionDataset"
    for part in ("Real/subset", "Model/with_shift"):  # the synthetic part must not be read
        for split, count in (("train", 2), ("val", 1), ("test", 1)):
            for index in range(count):
                name = f"{index:05d}.jpg"
                for folder, array in (("A", _image(index, 64)), ("B", _image(index + 3, 64)), ("OUT", _label(64))):
                    (root / part / split / folder).mkdir(parents=True, exist_ok=True)
                    (root / part / split / folder / name).write_bytes(_encode(array, "JPEG"))
    (root / "Real" / "subset" / "val" / "OUT" / "00000.jpg").write_bytes(
        _encode(np.stack([_label(64)] * 3, -1), "JPEG")
    )
    with Image.open(root / "Real" / "subset" / "train" / "OUT" / "00000.jpg") as jpeg:
        noisy = set(np.unique(np.asarray(jpeg)).tolist())
    assert noisy - {0, 255}  # the test is only meaningful with JPEG noise in the labels
    output = tmp_path / "cdd"

    result = prepare("cdd", tmp_path / "download", "--output", output, "--partial")

    assert result.code == 0, result.out
    assert "pixels >= 128 were taken as change" in result.out and "lossless 0/255 PNG" in result.out
    lists = _lists(output)
    assert lists == {"train": ["train_00000", "train_00001"], "val": ["val_00000"], "test": ["test_00000"]}
    _assert_layout(output, lists)
    for name in ("train_00000", "val_00000"):  # single-band and RGB JPEG labels
        assert np.array_equal(_read(output / "label" / f"{name}.png"), _label(64))
    with Image.open(root / "Real" / "subset" / "test" / "B" / "00000.jpg") as jpeg:
        assert np.array_equal(_read(output / "B" / "test_00000.png"), np.asarray(jpeg))  # decoded pixels, as PNG

    assert prepare("cdd", "--verify", "--output", output).code == 0
    with open(output / "label" / "val_00000.png", "ab") as handle:
        handle.write(b"\0")
    changed = prepare("cdd", "--verify", "--output", output)
    assert changed.code == 1 and "label/val_00000.png" in changed.out


def test_cdd_rar_is_refused_with_the_extract_command(tmp_path, prepare):
    rar = tmp_path / "ChangeDetectionDataset.rar"
    rar.write_bytes(b"Rar!\x1a\x07\x00")
    result = prepare("cdd", rar, "--output", tmp_path / "cdd")
    assert result.code == 2 and "unrar x ChangeDetectionDataset.rar" in result.err


# shared pieces and the index ------------------------------------------------------------------


def test_labels_must_be_binary_unless_thresholded():
    assert np.array_equal(binary_change_label(_label(64, 1), "x")[0], _label(64))
    grey_as_rgb = np.stack([_label(64)] * 3, axis=-1)
    assert np.array_equal(binary_change_label(grey_as_rgb, "x")[0], _label(64))
    with pytest.raises(ValueError, match="x: label has 3 different bands"):
        binary_change_label(_image(0, 64), "x")
    with pytest.raises(ValueError, match=r"x: label values \[0, 7\] are not 0/255 or 0/1"):
        binary_change_label(np.array([[0, 7]], np.uint8), "x")
    mask, noisy = binary_change_label(np.array([[3, 127, 128, 250]], np.uint8), "x", threshold=128)
    assert mask.tolist() == [[0, 0, 255, 255]] and noisy == 4
    assert patch_origins(200, 300, 64, "drop") == [(row, col) for row in (0, 64, 128) for col in (0, 64, 128, 192)]
    assert len(patch_origins(200, 300, 64, "pad")) == 4 * 5


@pytest.mark.parametrize("name", ["levir_cd", "whu_cd", "cdd"])
def test_change_scripts_have_help_with_an_example_and_an_indexed_readme(prepare, name):
    result = prepare(name, "--help")
    assert result.code == 0
    assert f"usage: datasets/{name}/prepare.py" in result.out
    assert "example:" in result.out and f"python datasets/{name}/prepare.py" in result.out
    index = (DATASETS / "README.md").read_text()
    assert f"]({name}/README.md)" in index and (DATASETS / name / "README.md").is_file()
