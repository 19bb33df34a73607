"""Georeferenced imagery + footprints/mask rasters through torchgeo: reprojection, nodata,
spatial train/val split and samplers, on tiny GeoTIFF/GeoJSON files written here."""

import copy
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from pyproj import Transformer
from rasterio.transform import from_origin

from rsfm.data.geo import BuildingGeoDataModule, building_geo_dataset
from rsfm.data.segmentation import IGNORE_INDEX

WEST, NORTH, RES = 733600.0, 3725140.0, 1.0  # EPSG:32616 (UTM 16N, Atlanta), 1 m pixels


def _write_geotiff(path, data: np.ndarray, crs: str = "EPSG:32616", nodata=None) -> None:
    count, height, width = data.shape
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=data.dtype.name,
        crs=crs,
        transform=from_origin(WEST, NORTH, RES, RES),
        nodata=nodata,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def _pixel_box_lonlat(row0: int, row1: int, col0: int, col1: int) -> list:
    """Ring of the pixel rectangle [row0, row1) x [col0, col1) in EPSG:4326 lon/lat."""
    to_lonlat = Transformer.from_crs("EPSG:32616", "EPSG:4326", always_xy=True)
    corners = [(col0, row0), (col1, row0), (col1, row1), (col0, row1), (col0, row0)]
    return [list(to_lonlat.transform(WEST + c * RES, NORTH - r * RES)) for c, r in corners]


@pytest.fixture()
def scene(tmp_path):
    image = np.arange(32 * 32, dtype=np.uint16).reshape(1, 32, 32) + 1
    _write_geotiff(tmp_path / "image.tif", image, nodata=0)
    footprints = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {},
                "geometry": {"type": "Polygon", "coordinates": [_pixel_box_lonlat(0, 6, 0, 10)]},
            },
            {
                "type": "Feature",
                "properties": {},
                "geometry": {"type": "Polygon", "coordinates": [_pixel_box_lonlat(20, 32, 26, 32)]},
            },
        ],
    }
    (tmp_path / "buildings.geojson").write_text(json.dumps(footprints))
    expected = np.zeros((32, 32), np.int64)
    # the footprints touch opposite corners: torchgeo's labelled extent (their bounding box
    # intersected with the image) is the whole image
    expected[0:6, 0:10] = 1
    expected[20:32, 26:32] = 1
    return tmp_path, expected


def test_footprints_in_another_crs_are_reprojected_and_rasterised(scene) -> None:
    folder, expected = scene
    dataset = building_geo_dataset(folder / "image.tif", folder / "buildings.geojson")
    assert dataset.crs.to_epsg() == 32616
    sample = dataset[WEST : WEST + 32, NORTH - 32 : NORTH]
    assert sample["image"].shape == (1, 32, 32)
    assert sample["image"][0, 0, 0] == 1 and sample["image"][0, 31, 31] == 32 * 32  # north up
    assert np.array_equal(sample["mask"].numpy(), expected)


def test_pixels_beyond_the_imagery_are_ignored(scene) -> None:
    folder, expected = scene
    dataset = building_geo_dataset(folder / "image.tif", folder / "buildings.geojson")
    sample = dataset[WEST + 24 : WEST + 40, NORTH - 32 : NORTH]  # half of it east of the image
    assert (sample["image"][:, :, 8:] == 0).all()
    assert (sample["mask"][:, 8:] == IGNORE_INDEX).all()
    assert np.array_equal(sample["mask"][:, :8].numpy(), expected[:, 24:])


def test_mask_raster_nodata_becomes_ignore_and_any_building_value_counts(tmp_path) -> None:
    _write_geotiff(tmp_path / "image.tif", np.ones((3, 32, 32), np.uint8))
    labels = np.zeros((1, 32, 32), np.uint8)
    labels[0, 8:16, 8:16] = 1
    labels[0, :, 28:] = 200  # nodata
    _write_geotiff(tmp_path / "mask.tif", labels, nodata=200)
    dataset = building_geo_dataset(tmp_path / "image.tif", tmp_path / "mask.tif")
    mask = dataset[WEST : WEST + 32, NORTH - 32 : NORTH]["mask"].numpy()
    assert (mask[:, 28:] == IGNORE_INDEX).all()
    assert mask[8:16, 8:16].min() == 1 and mask[:, :28].sum() == 64

    inria_style = np.where(labels == 1, 255, 0).astype(np.uint8)  # 0/255, no nodata
    _write_geotiff(tmp_path / "mask.tif", inria_style)
    mask = building_geo_dataset(tmp_path / "image.tif", tmp_path / "mask.tif")[WEST : WEST + 32, NORTH - 32 : NORTH][
        "mask"
    ].numpy()
    assert set(np.unique(mask).tolist()) == {0, 1} and mask.sum() == 64


def test_datamodule_holds_out_the_east_for_validation(scene) -> None:
    folder, _ = scene
    datamodule = BuildingGeoDataModule(
        str(folder / "image.tif"),
        str(folder / "buildings.geojson"),
        val_fraction=0.25,
        patch_size=8,
        length=12,
        batch_size=4,
    )
    datamodule.setup("fit")
    cut = WEST + 24 * RES
    train_loader, val_loader = datamodule.train_dataloader(), datamodule.val_dataloader()
    for x, _, _ in train_loader.sampler:
        assert WEST <= x.start and x.stop <= cut
    val_patches = list(val_loader.sampler)
    assert len(val_patches) == 4  # an 8 px wide strip, 32 px tall
    assert all(x.start >= cut for x, _, _ in val_patches)
    batch = next(iter(train_loader))
    assert batch["image"].shape == (4, 1, 8, 8) and batch["mask"].shape == (4, 8, 8)
    assert set(batch["mask"].unique().tolist()) <= {0, 1, IGNORE_INDEX}
    val_mask = np.concatenate([b["mask"].numpy().ravel() for b in val_loader])
    assert val_mask.size == 4 * 64 and (val_mask == 1).sum() == 12 * 6  # the south-east building


def test_augmentations_of_the_held_out_split_follow_the_seed(scene) -> None:
    """torchgeo's split copies the dataset with its augmentation; the copy must be the one the
    loaders seed (it was not: two runs with one seed drew different zooms, crops and flips)."""
    import torch

    folder, _ = scene

    def batches(seed: int) -> list:
        torch.manual_seed(seed)
        datamodule = BuildingGeoDataModule(
            str(folder / "image.tif"),
            str(folder / "buildings.geojson"),
            val_fraction=0.25,
            patch_size=8,
            length=16,
            batch_size=4,
            scale_range=(0.5, 2.0),
        )
        datamodule.setup("fit")
        return [
            torch.cat([batch["image"].flatten(), batch["mask"].flatten().float()])
            for batch in datamodule.train_dataloader()
        ]

    first, again, other = batches(0), batches(0), batches(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_images_and_labels_that_do_not_overlap(tmp_path, scene) -> None:
    folder, _ = scene
    far = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {},
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[0, 0], [0.001, 0], [0.001, 0.001], [0, 0.001], [0, 0]]],
                },
            }
        ],
    }
    (tmp_path / "far.geojson").write_text(json.dumps(far))
    with pytest.raises(RuntimeError, match="do not overlap"):
        building_geo_dataset(folder / "image.tif", tmp_path / "far.geojson")


def test_spacenet_sample_through_the_datamodule(data_dir) -> None:
    folder = data_dir / "geotiff" / "spacenet_atlanta"
    datamodule = BuildingGeoDataModule(
        str(folder / "sample_geotiff.tif"),
        str(folder / "geotiff_labels.geojson"),
        val_fraction=0.3,
        patch_size=256,
        batch_size=2,
    )
    datamodule.setup("fit")
    masks = np.concatenate([b["mask"].numpy().ravel() for b in datamodule.val_dataloader()])
    images = next(iter(datamodule.train_dataloader()))["image"]
    assert images.shape == (2, 1, 256, 256) and images.max() > 255  # uint16 panchromatic
    assert 0.001 < (masks == 1).mean() < 0.5


@pytest.mark.parametrize("crs", ["EPSG:32616", "EPSG:4326"])
def test_footprints_rasterise_as_torchgeo_does(tmp_path, crs) -> None:
    """BuildingFootprints reads each file once (STRtree) instead of per patch, as torchgeo's
    VectorDataset does; the masks must not change: the in-repo SpaceNet footprints, in their own
    CRS and reprojected to lon/lat, at random windows (with and without buildings) and at a
    resolution that is not the file's."""
    import geopandas
    from torchgeo.datasets import VectorDataset

    from rsfm.data.geo import BuildingFootprints

    source = Path(__file__).resolve().parents[2] / "datasets" / "samples" / "spacenet_atlanta"
    labels = tmp_path / "footprints.gpkg"
    geopandas.read_file(source / "geotiff_labels.geojson").to_crs(crs).to_file(labels)
    with rasterio.open(source / "sample_geotiff.tif") as image:
        bounds, image_crs = image.bounds, image.crs
    ours = BuildingFootprints(labels, crs=image_crs, res=0.5)
    reference = VectorDataset(labels, crs=image_crs, res=(0.5, 0.5))
    rng = np.random.default_rng(0)
    windows = [(bounds.left, bounds.bottom, 450.0)]  # the whole chip
    windows += [(bounds.left + x, bounds.bottom + y, 64.0) for x, y in rng.uniform(0, 380, (20, 2))]
    covered, empty = 0, 0
    for left, bottom, side in windows:
        query = (slice(left, left + side, 0.5), slice(bottom, bottom + side, 0.5))
        mask = ours[query]["mask"]
        assert mask.dtype == torch.int64
        assert torch.equal(mask, reference[query]["mask"])
        covered += int(mask.sum())
        empty += int(mask.sum() == 0)
    assert covered > 1000 and empty > 0  # windows with buildings and without
    coarse = (slice(bounds.left, bounds.right, 1.5), slice(bounds.bottom, bounds.top, 1.5))
    assert torch.equal(ours[coarse]["mask"], reference[coarse]["mask"])


def test_rasters_read_as_torchgeo_does(tmp_path) -> None:
    """ImageRasters and MaskRasters find a patch's files with one shapely test instead of
    torchgeo's pandas row selection; the patches must not change: four tiles, one in lon/lat
    (warped) and apart from the others, read at random windows (across seams, partly or wholly
    outside every tile) and at a coarser resolution, against torchgeo's own ``__getitem__``."""
    from rasterio.transform import from_bounds
    from torchgeo.datasets import GeoDataset, RasterDataset

    from rsfm.data.geo import ImageRasters, MaskRasters

    rng = np.random.default_rng(0)
    to_lonlat = Transformer.from_crs("EPSG:32616", "EPSG:4326", always_xy=True)
    west, south = to_lonlat.transform(WEST + 160, NORTH - 224)
    east, north = to_lonlat.transform(WEST + 224, NORTH - 160)
    grids = [
        ("EPSG:32616", from_origin(WEST + 64 * col, NORTH - 64 * row, RES, RES))
        for row, col in ((0, 0), (0, 1), (1, 0))
    ]
    grids.append(("EPSG:4326", from_bounds(west, south, east, north, 64, 64)))
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    for index, (crs, transform) in enumerate(grids):
        profile = dict(driver="GTiff", width=64, height=64, crs=crs, transform=transform)
        with rasterio.open(
            tmp_path / "images" / f"tile{index}.tif", "w", count=3, dtype="uint16", nodata=0, **profile
        ) as dst:
            dst.write(rng.integers(1, 4000, (3, 64, 64), dtype=np.uint16))
        with rasterio.open(tmp_path / "masks" / f"tile{index}.tif", "w", count=1, dtype="uint8", **profile) as dst:
            dst.write(rng.integers(0, 3, (1, 64, 64), dtype=np.uint8))
    images = ImageRasters(tmp_path / "images", "*.tif", crs="EPSG:32616", res=RES)
    masks = MaskRasters(tmp_path / "masks", "*.tif", crs="EPSG:32616", res=RES)
    queries = [
        (slice(x, x + side, step), slice(y, y + side, step))
        for x, y, side, step in [
            (WEST + 48, NORTH - 80, 32.0, RES),  # four tiles' corner
            (WEST, NORTH - 256, 256.0, 2.0),  # everything, coarser
            (WEST + 130, NORTH - 60, 20.0, RES),  # between the tiles: no file
        ]
    ]
    queries += [
        (slice(x, x + side, RES), slice(y, y + side, RES))
        for (x, y), side in zip(
            rng.uniform((WEST - 16, NORTH - 240), (WEST + 216, NORTH), (40, 2)), rng.choice([8.0, 24.0, 48.0], 40)
        )
    ]
    found = missing = 0
    for query in queries:
        for dataset, key in ((images, "image"), (masks, "mask")):
            try:
                expected = RasterDataset.__getitem__(dataset, query)[key]
            except IndexError:
                missing += 1
                with pytest.raises(IndexError, match="not found in index"):
                    dataset[query]
                continue
            patch = dataset[query][key]
            assert patch.dtype == expected.dtype and torch.equal(patch, expected)
            found += 1
    assert found >= 30 and missing >= 10, (found, missing)

    # the bounds and arrays taken from the index follow a new index (roi_split assigns a clipped
    # one) or resolution, and stay out of what loader workers receive
    for dataset in (images, masks):
        assert dataset.bounds == GeoDataset.bounds.fget(dataset)
    east_tile = slice(WEST + 72, WEST + 96, RES), slice(NORTH - 32, NORTH - 8, RES)
    first_tile = copy.deepcopy(images)
    assert first_tile.bounds == images.bounds and len(first_tile._files_at(east_tile)) == 1
    first_tile.index = first_tile.index[first_tile.index.filepath.str.endswith("tile0.tif")]
    assert first_tile.bounds == GeoDataset.bounds.fget(first_tile) != images.bounds
    assert len(images._files_at(east_tile)) == 1
    with pytest.raises(IndexError):
        first_tile[east_tile]
    images.res = 2.0
    assert images.bounds == GeoDataset.bounds.fget(images) and images.bounds[0].step == 2.0
    shipped = pickle.loads(pickle.dumps(images))
    assert "_index_lookup" in images.__dict__ and "_index_lookup" not in shipped.__dict__
    assert torch.equal(shipped[east_tile]["image"], RasterDataset.__getitem__(images, east_tile)["image"])


def test_footprints_without_geometry_are_skipped(tmp_path, scene) -> None:
    folder, expected = scene
    collection = json.loads((folder / "buildings.geojson").read_text())
    collection["features"].append({"type": "Feature", "properties": {}, "geometry": None})
    (folder / "buildings.geojson").write_text(json.dumps(collection))
    dataset = building_geo_dataset(folder / "image.tif", folder / "buildings.geojson")
    assert np.array_equal(dataset[WEST : WEST + 32, NORTH - 32 : NORTH]["mask"].numpy(), expected)
