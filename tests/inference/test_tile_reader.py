"""Reading tiles: fixed batches across row ends, reflect padding, nodata tiles skipped."""

import numpy as np
import pytest
from inference_helpers import smooth_image, write_raster

from rsfm.data.tiling import TileGrid
from rsfm.inference.inputs import check_input
from rsfm.inference.reader import first_batch_tile, iter_tile_batches


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
