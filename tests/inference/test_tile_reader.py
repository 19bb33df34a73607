"""Reading tiles: fixed batches across row ends, reflect padding (scene models) or rectangles of
valid data (segmentation models), nodata tiles skipped."""

import numpy as np
import pytest
from inference_helpers import smooth_image, write_raster

from rsfm.data.tiling import TileGrid
from rsfm.inference.inputs import check_input
from rsfm.inference.reader import first_batch_tile, iter_crop_batches, iter_tile_batches


@pytest.fixture()
def raster(tmp_path):
    image = smooth_image(2, 150, 170, dtype="uint16", scale=4000)
    image[:, 90:, :70] = 0  # the bottom-left tile (rows 96-149, columns 0-63) is all nodata
    return image, write_raster(tmp_path / "scene.tif", image, nodata=0)


def test_batches_cover_every_tile_once_in_order(raster):
    image, path = raster
    source = check_input(path, in_chans=2)
    grid = TileGrid(170, 150, tile_size=64, overlap=16)  # 3 rows x 4 columns of tiles
    batches = list(iter_tile_batches(source, grid, batch_size=5))
    order = [(row, col) for row in range(3) for col in range(4)]  # row-major, across row ends
    for index, batch in enumerate(batches):
        assert sorted(batch.tiles + batch.skipped) == order[5 * index : 5 * index + 5]
    assert [len(batch.tiles) + len(batch.skipped) for batch in batches] == [5, 5, 2]
    assert [tile for batch in batches for tile in batch.skipped] == [(2, 0)]
    for batch in batches:
        assert batch.pixels.dtype == np.uint16 and batch.pixels.shape[1:] == (2, 64, 64)
        for (row, col), pixels, valid in zip(batch.tiles, batch.pixels, batch.valid):
            top, left = row * 48, col * 48
            inside = image[:, top : top + 64, left : left + 64]
            np.testing.assert_array_equal(pixels[:, : inside.shape[1], : inside.shape[2]], inside)
            np.testing.assert_array_equal(valid[: inside.shape[1], : inside.shape[2]], inside.any(axis=0))
    # the last column of tiles reaches past the raster (170 < 3 * 48 + 64): mirrored, edge not repeated
    edge = next(pixels for batch in batches for tile, pixels in zip(batch.tiles, batch.pixels) if tile == (0, 3))
    width_inside = 170 - 3 * 48
    np.testing.assert_array_equal(edge[:, :, width_inside], edge[:, :, width_inside - 2])
    np.testing.assert_array_equal(edge[:, :, width_inside + 5], edge[:, :, width_inside - 7])


def test_resumed_reading_starts_at_the_batch_holding_the_row(raster):
    _, path = raster
    source = check_input(path, in_chans=2)
    grid = TileGrid(170, 150, tile_size=64, overlap=16)
    assert first_batch_tile(grid, batch_size=3, first_row=1) == 3  # tile 4 = (1, 0) is in batch 3-5
    resumed = list(iter_tile_batches(source, grid, batch_size=3, first_row=1))
    full = list(iter_tile_batches(source, grid, batch_size=3))
    assert [batch.tiles for batch in resumed] == [batch.tiles for batch in full[1:]]
    for first, second in zip(resumed, full[1:]):
        np.testing.assert_array_equal(first.pixels, second.pixels)


def test_crops_cover_each_valid_pixel_of_each_window_once(raster):
    image, path = raster
    source = check_input(path, in_chans=2)
    grid = TileGrid(170, 150, tile_size=64, overlap=16)
    batches = list(iter_crop_batches(source, grid, batch_size=5))
    order = [(row, col) for row in range(3) for col in range(4)]
    assert [sorted(batch.tiles + batch.skipped) for batch in batches] == [order[:5], order[5:10], order[10:]]
    assert [tile for batch in batches for tile in batch.skipped] == [(2, 0)]
    valid_image = image.any(axis=0)
    for batch in batches:
        taken = np.zeros((len(batch.tiles), 64, 64), dtype=int)
        for crop in batch.crops:
            height, width = crop.valid.shape
            assert height <= 64 and width <= 64
            assert crop.row_off + height <= 150 and crop.col_off + width <= 170  # never past the raster
            inside = np.s_[crop.row_off : crop.row_off + height, crop.col_off : crop.col_off + width]
            np.testing.assert_array_equal(crop.pixels, image[(slice(None), *inside)])
            np.testing.assert_array_equal(crop.valid, valid_image[inside])
            for use in crop.uses:
                assert crop.valid[use.crop][use.take].all()
                taken[use.tile][use.window] += use.take
        for index, (row, col) in enumerate(batch.tiles):
            window = valid_image[row * 48 : row * 48 + 64, col * 48 : col * 48 + 64]
            np.testing.assert_array_equal(batch.valid[index][: window.shape[0], : window.shape[1]], window)
            assert (
                not batch.valid[index][window.shape[0] :].any() and not batch.valid[index][:, window.shape[1] :].any()
            )
            np.testing.assert_array_equal(taken[index], batch.valid[index])
    # the last column reaches past the raster: its window is moved back onto it, unpadded
    (edge,) = [
        crop for batch in batches for crop in batch.crops if any(batch.tiles[use.tile] == (0, 3) for use in crop.uses)
    ]
    assert (edge.row_off, edge.col_off, edge.valid.shape) == (0, 170 - 64, (64, 64))


def test_resumed_crop_reading_matches(raster):
    _, path = raster
    source = check_input(path, in_chans=2)
    grid = TileGrid(170, 150, tile_size=64, overlap=16)
    resumed = list(iter_crop_batches(source, grid, batch_size=3, first_row=1))
    full = list(iter_crop_batches(source, grid, batch_size=3))[1:]
    assert [batch.tiles for batch in resumed] == [batch.tiles for batch in full]
    for first, second in zip(resumed, full):
        assert [(crop.row_off, crop.col_off) for crop in first.crops] == [
            (crop.row_off, crop.col_off) for crop in second.crops
        ]
        for one, other in zip(first.crops, second.crops):
            np.testing.assert_array_equal(one.pixels, other.pixels)
