"""datasets/<name>/prepare.py on tiny real archives laid out like each published download.

Each test writes small real images (PIL JPEG/TIFF, rasterio GeoTIFF, GeoJSON) in the
dataset's published layout, packs them like the download, runs the script as ``__main__``
(the ``prepare`` fixture of ``conftest.py``) and reads the result with the real datamodule.
"""

from __future__ import annotations

import importlib
import io
import json
import re
import tarfile
import zipfile
from pathlib import Path
from typing import Dict, Iterable, List

import numpy as np
import pytest
import rasterio
import yaml
from PIL import Image
from rasterio.transform import Affine
from rasterio.windows import Window

from rsfm.data import BuildingTileDataModule, SceneDataModule
from rsfm.data.prepare import (
    MANIFEST_NAME,
    SCENE_DATASETS,
    UnsafeArchiveError,
    extract_archive,
    patch_windows,
)

REPO = Path(__file__).resolve().parents[2]
DATASETS = REPO / "datasets"
SAMPLES = DATASETS / "samples" / "spacenet_atlanta"


def _jpeg(value: int, size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _zip(path: Path, members: Dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _write_geotiff(path: Path, data: np.ndarray, crs: str, transform: Affine) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
        dtype=data.dtype, crs=crs, transform=transform,
    ) as dst:  # fmt: skip
        dst.write(data)


def _datamodule_from_readme(name: str, replacements: Dict[str, Path], index: int = 0, **overrides: object):
    """The datamodule of the README's ``index``-th YAML config snippet, with its data paths
    replaced and ``overrides`` applied to its ``init_args``."""
    text = (DATASETS / name / "README.md").read_text()
    block = [block for block in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL) if "class_path" in block][index]
    for placeholder, path in replacements.items():
        block = block.replace(placeholder, str(path))
    data = yaml.safe_load(block)["data"]
    module_name, _, class_name = data["class_path"].rpartition(".")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)(**{**data["init_args"], **overrides})


def _list_paths(list_file: Path) -> List[str]:
    return [line.split(",")[0] for line in list_file.read_text().splitlines()[1:]]


# scene datasets ----------------------------------------------------------------------------


def _aid_classes() -> List[str]:
    return list(SCENE_DATASETS["aid"].class_names)


def test_aid_zip_to_class_folders_and_2_8_lists(tmp_path, prepare):
    members = {
        f"AID/{name}/{name.lower()}_{index}.jpg": _jpeg(index * 20) for name in _aid_classes() for index in range(1, 6)
    }
    members["AID/Airport/airport_99.jpg"] = _jpeg(1)[:60]  # truncated download
    archive = _zip(tmp_path / "AID.zip", members)
    output = tmp_path / "aid"

    result = prepare("aid", archive, "--output", output)

    assert result.code == 1  # counts differ from the published 10,000 and one file is broken
    assert "Airport 6 (published 360)" in result.out
    assert "airport_99.jpg" in result.out and (output / ".unreadable" / "Airport" / "airport_99.jpg").is_file()
    train, test = output / "split_2-8_seed0_train.csv", output / "split_2-8_seed0_test.csv"
    module = SceneDataModule(train_list=str(train), test_list=str(test), image_size=8, batch_size=2)
    module.setup()
    assert module.class_names == sorted(_aid_classes())
    assert (len(module.datasets["train"]), len(module.datasets["test"])) == (30, 120)
    in_memory = SceneDataModule(root=str(output), split=[0.2, 0.0, 0.8], seed=0)
    listed = [str(output / name) for name in _list_paths(train)]
    assert [str(path) for path, _ in in_memory.split_samples("train")] == listed
    assert len(_list_paths(output / "split_5-5_seed0_train.csv")) == 30 * 2  # round(2.5) == 2 per class
    readme_module = _datamodule_from_readme("aid", {"data/aid": output})
    readme_module.setup()
    assert len(readme_module.datasets["train"]) == 30


def test_verify_reports_modified_missing_and_extra_files(tmp_path, prepare):
    members = {f"AID/{name}/{name.lower()}_1.jpg": _jpeg(50) for name in _aid_classes()}
    output = tmp_path / "aid"
    assert prepare("aid", _zip(tmp_path / "AID.zip", members), "--output", output, "--partial").code == 0
    assert prepare("aid", "--verify", "--output", output).code == 0

    with open(output / "Beach" / "beach_1.jpg", "ab") as handle:
        handle.write(b"\0")
    (output / "Pond" / "pond_1.jpg").unlink()
    (output / "notes.txt").write_text("added later")
    result = prepare("aid", "--verify", "--output", output)

    assert result.code == 1
    assert "Beach/beach_1.jpg" in result.out and "Pond/pond_1.jpg" in result.out and "notes.txt" in result.out
    assert MANIFEST_NAME in result.out


def test_ucm_published_checksum_is_enforced_then_skipped(tmp_path, prepare):
    classes = SCENE_DATASETS["ucm"].class_names
    members = {}
    for name in classes:
        for index in range(5):
            buffer = io.BytesIO()
            Image.fromarray(np.full((8, 8, 3), index * 40, dtype=np.uint8)).save(buffer, "TIFF")
            members[f"UCMerced_LandUse/Images/{name}/{name}{index:02d}.tif"] = buffer.getvalue()
    archive = _zip(tmp_path / "UCMerced_LandUse.zip", members)

    refused = prepare("ucm", archive, "--output", tmp_path / "refused")
    assert refused.code == 2
    assert "5b7ec56793786b6dc8a908e8854ac0e4" in refused.err and "--skip-checksum" in refused.err

    output = tmp_path / "ucm"
    result = prepare("ucm", archive, "--output", output, "--skip-checksum", "--partial")
    assert result.code == 0, result.out
    module = _datamodule_from_readme("ucm", {"data/ucm": output})
    module.setup()
    assert len(module.class_names) == 21 and module.in_chans == 3
    assert (len(module.datasets["train"]), len(module.datasets["test"])) == (21 * 4, 21)


def test_nwpu_rar_is_refused_with_the_extract_command_and_folder_is_linked(tmp_path, prepare):
    rar = tmp_path / "NWPU-RESISC45.rar"
    rar.write_bytes(b"Rar!\x1a\x07\x00")
    refused = prepare("nwpu_resisc45", rar, "--output", tmp_path / "refused")
    assert refused.code == 2 and "unrar x NWPU-RESISC45.rar" in refused.err and "7z x" in refused.err

    classes = SCENE_DATASETS["nwpu_resisc45"].class_names
    extracted = tmp_path / "download" / "NWPU-RESISC45"
    for name in classes:
        (extracted / name).mkdir(parents=True)
        for index in range(1, 11):
            (extracted / name / f"{name}_{index:03d}.jpg").write_bytes(_jpeg(index * 10))
    output = tmp_path / "nwpu"
    result = prepare(
        "nwpu_resisc45", tmp_path / "download", "--output", output, "--link", "--partial", "--seeds", "0", "1"
    )

    assert result.code == 0, result.out
    assert (extracted / "ship" / "ship_001.jpg").is_file()  # the user's folder is left alone
    assert (output / "ship" / "ship_001.jpg").stat().st_ino == (extracted / "ship" / "ship_001.jpg").stat().st_ino
    for seed in (0, 1):
        module = SceneDataModule(
            train_list=str(output / f"split_1-9_seed{seed}_train.csv"),
            test_list=str(output / f"split_1-9_seed{seed}_test.csv"),
        )
        module.setup()
        assert (len(module.datasets["train"]), len(module.datasets["test"])) == (45, 405)
    assert _list_paths(output / "split_2-8_seed0_train.csv") != _list_paths(output / "split_2-8_seed1_train.csv")
    readme_module = _datamodule_from_readme("nwpu_resisc45", {"data/nwpu_resisc45": output})
    readme_module.setup()
    assert (len(readme_module.datasets["train"]), len(readme_module.datasets["test"])) == (90, 360)


# A hierarchy with the published counts: 8 level-1, 28 level-2 and 51 leaf classes; level-2
# classes listed with no children are leaves themselves.
MILLIONAID_TREE = {
    "agriculture_land": {
        "arable_land": ["dry_field", "greenhouse", "paddy_field", "terraced_field"],
        "woodland": ["forest", "orchard"],
        "grassland": ["meadow"],
    },
    "commercial_land": {"commercial_area": []},
    "industrial_land": {
        "factory_area": ["works", "storage_tank", "wastewater_plant"],
        "mining_area": ["mine", "quarry", "oil_field"],
        "power_station": ["solar_power_plant", "wind_turbine", "substation"],
    },
    "public_service_land": {
        "leisure_land": ["swimming_pool"],
        "religious_land": ["church"],
        "special_land": ["cemetery"],
        "sports_land": [
            "basketball_court",
            "tennis_court",
            "baseball_field",
            "ground_track_field",
            "golf_course",
            "stadium",
        ],
    },
    "residential_land": {"apartment": [], "detached_house": [], "mobile_home_park": []},
    "transportation_land": {
        "airport_area": ["apron", "helipad", "runway"],
        "highway_area": ["roundabout", "parking_lot", "intersection", "bridge", "viaduct", "road"],
        "port_area": ["pier"],
        "railway_area": ["train_station", "railway"],
    },
    "unutilized_land": {
        name: [] for name in ("rock_land", "bare_land", "ice_land", "island", "desert", "sparse_shrub_land")
    },
    "water_area": {"beach": [], "lake": [], "river": [], "dam": []},
}


def _millionaid_leaf_folders() -> Iterable[str]:
    for level1, children in MILLIONAID_TREE.items():
        for level2, leaves in children.items():
            yield from ([f"{level1}/{level2}/{leaf}" for leaf in leaves] or [f"{level1}/{level2}"])


def _millionaid_zip(path: Path, leaf_folders: Iterable[str]) -> Path:
    members = {
        f"train/{folder}/P{index}{position:04d}.jpg": _jpeg(position)
        for index, folder in enumerate(leaf_folders)
        for position in range(2)
    }
    return _zip(path, members)


def test_millionaid_tree_with_label_level_lists(tmp_path, prepare):
    archive = _millionaid_zip(tmp_path / "millionaid_train.zip", _millionaid_leaf_folders())
    output = tmp_path / "millionaid"
    result = prepare("millionaid", archive, "--output", output, "--label-level", "1", "--val-fraction", "0.5")

    assert result.code == 0, result.out
    module = SceneDataModule(
        train_list=str(output / "split_level1_seed0_train.csv"), val_list=str(output / "split_level1_seed0_val.csv")
    )
    module.setup()
    assert module.class_names == sorted(MILLIONAID_TREE)
    assert len(module.datasets["train"]) + len(module.datasets["val"]) == 102
    assert len(SceneDataModule(root=str(output), label_level=-1).class_names) == 51
    readme_module = _datamodule_from_readme("millionaid", {"data/millionaid": output})
    with pytest.raises(FileNotFoundError, match="split_level3"):  # the snippet uses the default level 3
        readme_module.setup()


def test_millionaid_hierarchy_is_checked_at_every_level(tmp_path, prepare):
    """Without pier, port_area (its only leaf) is gone too: one leaf and one level-2 class short."""
    folders = [folder for folder in _millionaid_leaf_folders() if not folder.endswith("/pier")]
    archive = _millionaid_zip(tmp_path / "millionaid_train.zip", folders)

    result = prepare("millionaid", archive, "--output", tmp_path / "millionaid", "--label-level", "2")

    assert result.code == 1
    assert "27 level-2 classes, the published hierarchy has 28" in result.out
    assert "1 of the 51 leaf classes are missing: pier" in result.out
    assert (tmp_path / "millionaid" / "split_level2_seed0_val.csv").is_file()


def test_millionaid_val_fraction_outside_0_1_is_refused_before_anything_is_written(tmp_path, prepare):
    archive = _millionaid_zip(tmp_path / "millionaid_train.zip", _millionaid_leaf_folders())
    result = prepare("millionaid", archive, "--output", tmp_path / "millionaid", "--val-fraction", "1.5")
    assert result.code == 2 and "--val-fraction: must be between 0 and 1 (exclusive), got 1.5" in result.err
    assert not (tmp_path / "millionaid").exists()


def test_unsafe_archive_member_stops_the_script_before_writing(tmp_path, prepare):
    archive = _zip(tmp_path / "AID.zip", {"AID/Airport/airport_1.jpg": _jpeg(1), "AID/../../evil.txt": b"x"})
    result = prepare("aid", archive, "--output", tmp_path / "out" / "aid")
    assert result.code == 2 and "'AID/../../evil.txt'" in result.err
    assert not list(tmp_path.rglob("evil.txt")) and not list(tmp_path.rglob("airport_1.jpg"))


def _tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz") as archive:
        archive.addfile(member, io.BytesIO(data) if data else None)
    return path


def _tar_file(name: str) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.size = 1
    return member


def _tar_link(name: str, target: str) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.linkname = tarfile.SYMTYPE, target
    return member


@pytest.mark.parametrize(
    "member, data",
    [
        (_tar_file("../escape.txt"), b"x"),
        (_tar_file("/tmp/absolute.txt"), b"x"),
        (_tar_link("data/passwd", "/etc/passwd"), b""),
        (_tar_link("data/deep/link", "../../../outside"), b""),
    ],
)
def test_unsafe_tar_members_are_rejected(tmp_path, member, data):
    archive = _tar_with(tmp_path / "bad.tar.gz", member, data)
    with pytest.raises(UnsafeArchiveError, match=re.escape(repr(member.name))):
        extract_archive(archive, tmp_path / "extracted")
    assert not (tmp_path / "extracted").exists()  # refused before anything, even the folder, was made


def test_absolute_zip_member_is_rejected(tmp_path):
    archive = _zip(tmp_path / "bad.zip", {"ok.txt": b"x", "/abs.txt": b"x"})
    with pytest.raises(UnsafeArchiveError, match="'/abs.txt'"):
        extract_archive(archive, tmp_path / "extracted")
    assert not (tmp_path / "extracted").exists()


# building datasets ---------------------------------------------------------------------------


def _tiff_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "TIFF")
    return buffer.getvalue()


def test_whu_pairs_are_checked_and_read_by_the_tile_datamodule(tmp_path, prepare):
    root = "3. The cropped image tiles and raster labels"
    members = {}
    for split, count in (("train", 4), ("val", 2), ("test", 2)):
        for index in range(count):
            mask = np.zeros((16, 16), dtype=np.uint8)
            mask[2:8, 3:9] = 255
            members[f"{root}/{split}/image/{index:04d}.tif"] = _tiff_bytes(np.full((16, 16, 3), index, np.uint8))
            members[f"{root}/{split}/label/{index:04d}.tif"] = _tiff_bytes(mask)
    members[f"{root}/train/image/lonely.tif"] = _tiff_bytes(np.zeros((16, 16, 3), np.uint8))
    members[f"{root}/train/label/0003.tif"] = _tiff_bytes(np.full((16, 16), 7, np.uint8))  # not a binary mask
    output = tmp_path / "whu"

    result = prepare("whu_building", _zip(tmp_path / "whu.zip", members), "--output", output, "--partial")

    assert result.code == 1
    assert "lonely.tif" in result.out and "0003.tif" in result.out and "not 0/1 or 0/255" in result.out
    assert (output / ".unreadable" / "train" / "label" / "0003.tif").is_file()
    module = _datamodule_from_readme("whu_building", {"data/whu_buildings": output})
    module.setup("fit")
    module.setup("test")
    assert (len(module.train_dataset), len(module.val_dataset), len(module.test_dataset)) == (3, 2, 2)
    sample = module.val_dataset[0]
    assert set(sample["mask"].unique().tolist()) == {0, 1} and int(sample["mask"].sum()) == 36


INRIA_CRS = {"austin": ("EPSG:26914", 620000.0), "vienna": ("EPSG:31256", 2000.0)}


def _inria_folder(root: Path) -> Path:
    """AerialImageDataset/ with 40x40 px tiles 1 (validation) and 6 (training) per city."""
    dataset = root / "AerialImageDataset"
    for city, (crs, west) in INRIA_CRS.items():
        for number in (1, 6):
            transform = Affine(0.3, 0, west + number * 100, 0, -0.3, 3350000.0)
            image = (np.arange(3 * 40 * 40) % 251).astype(np.uint8).reshape(3, 40, 40)
            mask = np.zeros((1, 40, 40), dtype=np.uint8)
            mask[0, 10:30, 5:15] = 255
            _write_geotiff(dataset / "train" / "images" / f"{city}{number}.tif", image, crs, transform)
            _write_geotiff(dataset / "train" / "gt" / f"{city}{number}.tif", mask, crs, transform)
    test_tile = dataset / "test" / "images" / "bellingham1.tif"
    _write_geotiff(test_tile, np.ones((3, 40, 40), np.uint8), "EPSG:26910", Affine(0.3, 0, 5e5, 0, -0.3, 5e6))
    return root


def test_inria_patches_keep_georeferencing(tmp_path, prepare):
    download = _inria_folder(tmp_path / "download")
    archive = tmp_path / "NEW2-AerialImageDataset.zip"
    _zip(archive, {path.relative_to(download).as_posix(): path.read_bytes() for path in download.rglob("*.tif")})
    output = tmp_path / "inria_patches"

    result = prepare(
        "inria", archive, "--output", output, "--mode", "patches", "--patch-size", "16", "--partial", "--skip-checksum"
    )

    assert result.code == 0, result.out
    assert "EPSG:31256" in result.out
    assert (output / "test" / "images" / "bellingham1.tif").is_file()
    source = download / "AerialImageDataset" / "train" / "images" / "vienna6.tif"
    with rasterio.open(source) as src, rasterio.open(output / "train" / "images" / "vienna6_r02_c01.tif") as patch:
        window = Window(16, 24, 16, 16)  # the last row is shifted back inside the 40 px tile
        assert patch.crs == src.crs and patch.transform == src.window_transform(window)
        assert np.array_equal(patch.read(), src.read(window=window))
    module = _datamodule_from_readme("inria", {"data/inria_patches": output})
    module.setup("fit")
    assert (len(module.train_dataset), len(module.val_dataset)) == (18, 18)  # 2 tiles x 3 x 3 patches each
    assert int(module.val_dataset[0]["mask"].max()) == 1


def test_inria_rasters_feed_the_geo_datamodule(tmp_path, prepare):
    download = _inria_folder(tmp_path / "download")
    output = tmp_path / "inria_austin"

    result = prepare("inria", download, "--output", output, "--mode", "rasters", "--areas", "austin")

    assert result.code == 0, result.out
    assert sorted(path.name for path in (output / "val" / "images").iterdir()) == ["austin1.tif"]
    module = _datamodule_from_readme("inria", {"data/inria_austin": output}, index=1, patch_size=20, length=2)
    module.setup("fit")
    batch = next(iter(module.val_dataloader()))
    assert batch["mask"].shape[-2:] == (20, 20) and set(batch["mask"].unique().tolist()) <= {0, 1}
    assert int(batch["mask"].sum()) > 0


def _footprint(west: float, north: float) -> dict:
    ring = [[west, north], [west + 3e-5, north], [west + 3e-5, north - 3e-5], [west, north - 3e-5], [west, north]]
    return {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}


def _spacenet2_tarball(path: Path, chips: int = 6) -> Path:
    """SN2 layout: AOI_2_Vegas_Train/{RGB-PanSharpen,PAN}/ and geojson/buildings/; the last chip has no building."""
    folder = path.parent / "sn2"
    for index in range(1, chips + 1):
        west, north = -115.3 + index * 1e-3, 36.2
        transform = Affine(3e-6, 0, west, 0, -3e-6, north)
        chip = f"AOI_2_Vegas_img{index}"
        for product, bands in (("RGB-PanSharpen", 3), ("PAN", 1)):
            data = np.full((bands, 32, 32), 300 + index, dtype=np.uint16)
            image = folder / "AOI_2_Vegas_Train" / product / f"{product}_{chip}.tif"
            _write_geotiff(image, data, "EPSG:4326", transform)
        # two buildings in opposite corners: torchgeo samples only inside the footprints' extent
        corners = [_footprint(west + 3e-6, north - 3e-6), _footprint(west + 6e-5, north - 6e-5)]
        features = corners if index < chips else []
        labels = folder / "AOI_2_Vegas_Train" / "geojson" / "buildings" / f"buildings_{chip}.geojson"
        labels.parent.mkdir(parents=True, exist_ok=True)
        labels.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    with tarfile.open(path, "w:gz") as archive:
        archive.add(folder / "AOI_2_Vegas_Train", arcname="AOI_2_Vegas_Train")
    return path


def test_spacenet2_vectors_feed_the_geo_datamodule(tmp_path, prepare):
    tarball = _spacenet2_tarball(tmp_path / "SN2_buildings_train_AOI_2_Vegas.tar.gz")
    ambiguous = prepare("spacenet", tarball, "--output", tmp_path / "ambiguous", "--skip-checksum")
    assert ambiguous.code == 2 and "PAN" in ambiguous.err and "RGB-PanSharpen" in ambiguous.err

    output = tmp_path / "spacenet_vegas"
    options = ["--product", "RGB-PanSharpen", "--skip-checksum", "--val-fraction", "0.34"]
    result = prepare("spacenet", tarball, "--output", output, *options)

    assert result.code == 0, result.out
    assert "1 chip(s) have no buildings" in result.out
    names = sorted(path.stem for split in ("train", "val") for path in (output / split / "images").iterdir())
    assert names == [f"AOI_2_Vegas_img{index}" for index in range(1, 7)]
    for split in ("train", "val"):
        images = {path.stem for path in (output / split / "images").iterdir()}
        assert images == {path.stem for path in (output / split / "labels").iterdir()}
    module = _datamodule_from_readme(
        "spacenet", {"data/spacenet_vegas": output}, patch_size=16, length=4, batch_size=2, num_workers=0
    )
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].shape[1] == 3 and float(batch["image"].max()) > 300
    assert int(batch["mask"].sum()) > 0


def test_spacenet4_collects_need_one_per_location_for_vectors_or_masks(tmp_path, prepare):
    """The real SpaceNet Atlanta sample chip, as two collects of the same location."""
    download = tmp_path / "download"
    for collect in ("Atlanta_nadir7_catid_1030010003D22F00", "Atlanta_nadir8_catid_10300100023BC100"):
        target = download / collect / "Pan-Sharpen" / f"Pan-Sharpen_{collect}_733601_3724689.tif"
        target.parent.mkdir(parents=True)
        target.write_bytes((SAMPLES / "sample_geotiff.tif").read_bytes())
    labels = download / "geojson" / "spacenet-buildings" / "spacenet-buildings_733601_3724689.geojson"
    labels.parent.mkdir(parents=True)
    labels.write_bytes((SAMPLES / "geotiff_labels.geojson").read_bytes())

    refused = prepare("spacenet", download, "--output", tmp_path / "refused")
    assert refused.code == 2 and "--collect" in refused.err

    chosen = prepare(
        "spacenet", download, "--output", tmp_path / "nadir7", "--collect", "nadir7", "--val-fraction", "0"
    )
    assert chosen.code == 0, chosen.out
    assert [path.name for path in (tmp_path / "nadir7" / "train" / "labels").iterdir()] == [
        "Atlanta_nadir7_catid_1030010003D22F00_733601_3724689.geojson"
    ]

    output = tmp_path / "tiles"
    assert prepare("spacenet", download, "--output", output, "--labels", "masks", "--val-fraction", "0").code == 0
    module = BuildingTileDataModule(root=output, val_split="train", patch_size=256)
    module.setup("validate")
    assert len(module.val_dataset) == 2
    import geopandas

    footprints = geopandas.read_file(labels)
    mask_path = next((output / "train" / "masks").iterdir())
    with rasterio.open(mask_path) as mask:
        for point in footprints.geometry.representative_point():
            row, col = mask.index(point.x, point.y)
            assert mask.read(1)[row, col] == 1
        building_share = float(mask.read(1).mean())
    chip_area = 450.0 * 450.0  # 900 px at 0.5 m
    footprint_area = footprints.clip((733601, 3724689, 734051, 3725139)).area.sum()
    assert building_share == pytest.approx(footprint_area / chip_area, rel=0.05)


def test_patch_windows_cover_the_raster_inside_its_bounds():
    windows = list(patch_windows(40, 33, 16))
    assert len(windows) == 9
    assert all(
        0 <= window.col_off <= 24 and 0 <= window.row_off <= 17 and window.width == window.height == 16
        for _, _, window in windows
    )
    covered = np.zeros((33, 40), dtype=bool)
    for _, _, window in windows:
        covered[window.row_off : window.row_off + 16, window.col_off : window.col_off + 16] = True
    assert covered.all()
    assert [(window.width, window.height) for _, _, window in patch_windows(10, 12, 16)] == [(10, 12)]


def test_every_dataset_has_a_script_and_readme_indexed_at_the_top():
    index = (DATASETS / "README.md").read_text()
    names = ["aid", "ucm", "nwpu_resisc45", "millionaid", "whu_building", "inria", "spacenet"]
    for name in names:
        assert (DATASETS / name / "prepare.py").is_file() and f"]({name}/README.md)" in index
    assert "](samples/README.md)" in index
    assert not list(DATASETS.rglob("__init__.py"))  # datasets/ is not an importable package


@pytest.mark.parametrize("name", ["inria", *sorted(SCENE_DATASETS)])
def test_help_shows_an_example(prepare, name):
    result = prepare(name, "--help")
    assert result.code == 0
    assert f"usage: datasets/{name}/prepare.py" in result.out
    assert "example:" in result.out and f"python datasets/{name}/prepare.py" in result.out


@pytest.mark.parametrize("name", sorted(SCENE_DATASETS))
def test_scene_help_describes_its_own_dataset(prepare, name):
    spec = SCENE_DATASETS[name]
    result = prepare(name, "--help")
    assert result.code == 0
    assert spec.description.splitlines()[0] in result.out and spec.example in result.out
    assert ("--label-level {1,2,3}" in result.out) == (name == "millionaid")


def _calls_scene_entry_point(script: Path) -> List[str]:
    return re.findall(r"scene_dataset_main\(\"(\w+)\"\)", script.read_text())


def test_every_scene_dataset_has_a_script_and_every_scene_script_a_description():
    scripts = {path.parent.name: path for path in DATASETS.glob("*/prepare.py")}
    scene_scripts = {name for name, path in scripts.items() if _calls_scene_entry_point(path)}
    assert scene_scripts == set(SCENE_DATASETS) == {"aid", "ucm", "nwpu_resisc45", "millionaid"}
    for name in scene_scripts:
        assert _calls_scene_entry_point(scripts[name]) == [name]  # its own entry, not another's
    for name, path in scripts.items():  # the other scripts do not build scene datasets by hand
        assert "prepare_scene_dataset" not in path.read_text() and "SceneDatasetSpec" not in path.read_text(), name


def test_scene_descriptions_hold_the_published_figures():
    """Counts from the papers, written here independently of the table."""
    aid, ucm, nwpu, millionaid = (SCENE_DATASETS[name] for name in ("aid", "ucm", "nwpu_resisc45", "millionaid"))
    for spec, classes, images in ((aid, 30, 10_000), (ucm, 21, 2_100), (nwpu, 45, 31_500)):
        assert len(spec.class_names) == len(set(spec.class_names)) == classes, spec.name
        assert set(spec.images_per_class) == set(spec.class_names), spec.name
        assert sum(spec.images_per_class.values()) == images, spec.name
    assert [protocol.fractions for protocol in aid.protocols] == [[0.2, 0.0, 0.8], [0.5, 0.0, 0.5]]
    assert [protocol.name for protocol in nwpu.protocols] == ["1-9", "2-8"]
    assert [(level.number, level.class_count) for level in millionaid.label_levels] == [(1, 8), (2, 28), (3, 51)]
    leaves = {folder.rsplit("/", 1)[-1] for folder in _millionaid_leaf_folders()}
    assert set(millionaid.label_levels[-1].class_names) == leaves
    assert millionaid.class_names == tuple(sorted(MILLIONAID_TREE))
    published = [checksum.file_name for spec in SCENE_DATASETS.values() for checksum in spec.published]
    assert published == ["UCMerced_LandUse.zip", "NWPU-RESISC45.zip", "train.zip"]
