"""Change-detection data: layouts, the joint augmentation of both dates, samples and splits."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rsfm.data.change import ChangeDetectionDataModule, ChangePairDataset, ChangeTrainTransform, find_change_pairs


def _write_pair(folder: Path, name: str, size=(32, 40), seed=0, mask_scale=255) -> None:
    rng = np.random.default_rng(seed)
    for sub in ("A", "B", "label"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / "A" / f"{name}.png")
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / "B" / f"{name}.png")
    mask = (rng.random(size) > 0.7).astype(np.uint8) * mask_scale
    Image.fromarray(mask).save(folder / "label" / f"{name}.png")


def test_list_files_name_the_pairs_of_each_split(tmp_path):
    for index in range(5):
        _write_pair(tmp_path, f"p{index}", seed=index)
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "train.txt").write_text("p0\np2.png\n\np4\n")
    (tmp_path / "list" / "val.txt").write_text("p1\n")
    train = find_change_pairs(tmp_path, "train")
    assert [pair[0].stem for pair in train] == ["p0", "p2", "p4"]
    assert [pair[1].parent.name for pair in train] == ["B"] * 3
    assert [pair[0].stem for pair in find_change_pairs(tmp_path, "val")] == ["p1"]
    with pytest.raises(FileNotFoundError, match=r"test\.txt: split list not found"):
        find_change_pairs(tmp_path, "test")
    (tmp_path / "list" / "val.txt").write_text("p1\nmissing\n")
    with pytest.raises(ValueError, match=r"1 pair\(s\) have no file in .*A: missing"):
        find_change_pairs(tmp_path, "val")


def test_split_folders_and_flat_folders(tmp_path):
    _write_pair(tmp_path / "levir" / "train", "a")
    _write_pair(tmp_path / "levir" / "train", "b", seed=1)
    assert [pair[2].stem for pair in find_change_pairs(tmp_path / "levir", "train")] == ["a", "b"]
    _write_pair(tmp_path / "flat", "a")
    assert find_change_pairs(tmp_path / "flat", "train") is None  # no splits: the datamodule draws them
    (tmp_path / "flat" / "B" / "a.png").unlink()
    with pytest.raises(FileNotFoundError, match="no change-detection pairs found"):
        find_change_pairs(tmp_path / "empty", "train")


def test_one_transform_moves_both_dates_and_the_mask_together():
    rows, cols = np.mgrid[0:64, 0:64]
    before = np.stack([rows * 3, cols * 3, (rows + cols)], axis=2).astype(np.uint8)
    after = before.copy()
    mask = ((rows // 8 + cols // 8) % 2).astype(np.uint8)
    transform = ChangeTrainTransform(48, scale_range=(0.8, 1.2), jitter=0.0, swap_p=0.0)
    transform.set_random_seed(3)
    outputs = [transform(before, after, mask) for _ in range(6)]
    for out_before, out_after, out_mask in outputs:
        assert out_before.shape == (48, 48, 3) and out_mask.shape == (48, 48)
        np.testing.assert_array_equal(out_before, out_after)
        # the mask went where the pixels went: its checkerboard follows the image's coordinates
        expected = ((out_before[..., 0] // 24 + out_before[..., 1] // 24) % 2).astype(np.uint8)
        assert np.mean(expected == out_mask) > 0.9
    assert len({out[0].tobytes() for out in outputs}) > 1  # the geometry is drawn per call


def test_jitter_is_drawn_per_date_and_swap_exchanges_the_dates():
    rng = np.random.default_rng(0)
    before = rng.integers(40, 200, (32, 32, 3), dtype=np.uint8)
    after = rng.integers(40, 200, (32, 32, 3), dtype=np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    jitter = ChangeTrainTransform(32, jitter=0.4, swap_p=0.0)
    jitter.set_random_seed(1)
    ratios = []
    for _ in range(20):
        same_before, same_after, _ = jitter(before, before, mask)
        ratios.append(same_after.mean() / same_before.mean())
    assert max(abs(ratio - 1) for ratio in ratios) > 0.05  # one image, two dates, different light
    swap = ChangeTrainTransform(32, jitter=0.0, swap_p=1.0)
    out_before, out_after, _ = swap(before, after, mask)
    # the square-symmetry draw moves pixels; the swap shows in the sums
    assert out_before.sum() == after.sum() and out_after.sum() == before.sum()


def test_seeded_transform_repeats_itself():
    rng = np.random.default_rng(0)
    before, after = rng.integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
    mask = (rng.random((40, 40)) > 0.5).astype(np.uint8)
    runs = []
    for _ in range(2):
        transform = ChangeTrainTransform(24, (0.8, 1.2), jitter=0.3, swap_p=0.5)
        transform.set_random_seed(7)
        runs.append([transform(before, after, mask) for _ in range(5)])
    for first, second in zip(*runs):
        for a, b in zip(first, second):
            np.testing.assert_array_equal(a, b)


def test_samples_stack_the_dates_and_check_their_sizes(tmp_path):
    _write_pair(tmp_path, "ok")
    pair = (tmp_path / "A" / "ok.png", tmp_path / "B" / "ok.png", tmp_path / "label" / "ok.png")
    sample = ChangePairDataset([pair], mask_values="0/255")[0]
    assert sample["image"].shape == (6, 32, 40)
    np.testing.assert_array_equal(sample["image"][:3].permute(1, 2, 0).numpy(), np.asarray(Image.open(pair[0])))
    np.testing.assert_array_equal(sample["image"][3:].permute(1, 2, 0).numpy(), np.asarray(Image.open(pair[1])))
    assert set(sample["mask"].unique().tolist()) == {0, 1}
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "B" / "ok.png")
    with pytest.raises(ValueError, match=r"ok\.png \(40x32 px, 3 bands\) and .*ok\.png \(40x30 px"):
        ChangePairDataset([pair])[0]


def test_datamodule_holds_out_pairs_of_every_root_with_its_seed(tmp_path):
    for index in range(10):
        _write_pair(tmp_path / "one", f"a{index}", seed=index)
    for index in range(4):
        _write_pair(tmp_path / "two", f"b{index}", seed=20 + index)
    module = ChangeDetectionDataModule([tmp_path / "one", tmp_path / "two"], val_fraction=0.3, patch_size=16)
    train, val = module.split_pairs("train"), module.split_pairs("val")
    assert len(val) == 3 + 1 and len(train) == 7 + 3
    assert not {p[0] for p in train} & {p[0] for p in val}
    assert val == module.split_pairs("test")
    again = ChangeDetectionDataModule([tmp_path / "one", tmp_path / "two"], val_fraction=0.3, split_seed=0)
    assert again.split_pairs("val") == val
    other = ChangeDetectionDataModule([tmp_path / "one", tmp_path / "two"], val_fraction=0.3, split_seed=1)
    assert other.split_pairs("val") != val
    module.setup("fit")
    assert module.pixel_range == {"dtype": "uint8", "min": 0.0, "max": 255.0}
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].shape == (8, 6, 16, 16) and batch["mask"].shape == (8, 16, 16)


def test_masks_outside_the_convention_are_named_at_setup(tmp_path):
    for index in range(3):
        _write_pair(tmp_path, f"p{index}", seed=index, mask_scale=1)  # 0/1 masks
    module = ChangeDetectionDataModule(tmp_path, val_fraction=0.3, mask_values="0/255")
    with pytest.raises(ValueError, match=r"do not fit mask_values='0/255'.*set mask_values='0/1'"):
        module.setup("fit")
    ChangeDetectionDataModule(tmp_path, val_fraction=0.3, mask_values="0/1").setup("fit")


def test_shared_samples_split_into_unseen_pairs(data_dir):
    roots = [data_dir / "change" / "levir_samples", data_dir / "change" / "dsifn_samples"]
    module = ChangeDetectionDataModule(roots, val_fraction=0.3, patch_size=128)
    train, held_out = module.split_pairs("train"), module.split_pairs("test")
    assert (len(train), len(held_out)) == (15, 6)
    assert {p[0].parent.parent.name for p in held_out} == {"levir_samples", "dsifn_samples"}
    sample = ChangePairDataset(held_out, mask_values="0/255")[0]
    assert sample["image"].shape == (6, 256, 256) and set(sample["mask"].unique().tolist()) <= {0, 1}


def _dihedral(image: np.ndarray) -> list:
    return [np.rot90(flipped, k) for flipped in (image, image[:, ::-1]) for k in range(4)]


def test_synthetic_change_is_a_moved_part_of_one_date_marked_as_change():
    rng = np.random.default_rng(0)
    before = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    transform = ChangeTrainTransform(64, jitter=0.0, swap_p=0.0, paste_p=1.0)
    transform.set_random_seed(0)
    changed_dates = set()
    for _ in range(8):
        out_before, out_after, out_mask = transform(before, before, np.zeros((64, 64), np.uint8))
        differs = (out_before != out_after).any(axis=2)
        np.testing.assert_array_equal(out_mask == 1, differs)  # the moved rectangle, and only it, is change
        rows, cols = np.nonzero(differs)
        assert differs[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
        untouched = [
            any(np.array_equal(out, variant) for variant in _dihedral(before)) for out in (out_before, out_after)
        ]
        assert sum(untouched) == 1  # one date keeps its pixels (moved by the shared geometry only)
        changed_dates.add(untouched.index(False))
    assert changed_dates == {0, 1}  # either date may change
    unlabelled = np.full((64, 64), 255, np.uint8)
    assert (transform(before, before, unlabelled)[2] == 255).all()  # pixels without labels stay so
    with pytest.raises(ValueError, match="paste_p is a probability"):
        ChangeTrainTransform(64, paste_p=1.5)


def test_a_hostile_list_file_reaches_no_file_outside_the_dataset(tmp_path):
    root = tmp_path / "data"
    _write_pair(root, "p0")
    _write_pair(tmp_path / "outside", "secret")  # a pair next to the dataset, not in it
    (root / "list").mkdir()
    (root / "list" / "train.txt").write_text("p0\n../../outside/A/secret.png\n/etc/passwd\n")
    with pytest.raises(ValueError, match=r"2 pair\(s\) have no file in .*A: secret, passwd"):
        find_change_pairs(root, "train")
    (root / "list" / "train.txt").write_text("p0\n")
    pairs = find_change_pairs(root, "train")
    assert all(path.resolve().is_relative_to(root.resolve()) for pair in pairs for path in pair)
