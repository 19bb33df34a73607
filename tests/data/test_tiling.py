"""The tile grid covers every pixel, and its weights blend seamlessly."""

import numpy as np
import pytest

from rsfm.data.tiling import TileGrid, reflect_pad, taper


@pytest.mark.parametrize("width,height", [(1, 1), (37, 20), (128, 128), (129, 300), (1000, 613)])
def test_grid_covers_every_pixel_and_neighbours_share_the_overlap(width, height):
    grid = TileGrid(width, height, tile_size=128, overlap=32)
    coverage = np.zeros((height, width), dtype=int)
    for row in range(grid.rows):
        for col in range(grid.cols):
            window = grid.window(row, col)
            assert window.width == window.height == 128
            coverage[window.row_off : window.row_off + 128, window.col_off : window.col_off + 128] += 1
    assert coverage.min() >= 1
    assert coverage.max() <= 4
    # the last tile starts inside the raster: no tile is pure padding
    assert (grid.rows - 1) * grid.stride < height and (grid.cols - 1) * grid.stride < width


def test_raster_smaller_than_a_tile_is_one_tile():
    grid = TileGrid(20, 7, tile_size=512, overlap=64)
    assert (grid.rows, grid.cols) == (1, 1)
    assert np.all(grid.weights(0, 0) == 1.0)  # no neighbour, no taper


@pytest.mark.parametrize("overlap", [0, 1, 2, 5, 32, 64])
def test_weights_are_a_partition_of_unity(overlap):
    grid = TileGrid(700, 450, tile_size=128, overlap=overlap)
    total = np.zeros((grid.rows * grid.stride + 128, grid.cols * grid.stride + 128))
    for row in range(grid.rows):
        for col in range(grid.cols):
            top, left = row * grid.stride, col * grid.stride
            total[top : top + 128, left : left + 128] += grid.weights(row, col)
    np.testing.assert_allclose(total[:450, :700], 1.0, atol=1e-6)


def test_taper_ignores_the_outer_quarter_of_the_overlap_and_is_smooth():
    weights = taper(128, 32, start=True, end=True)
    assert np.all(weights[:8] == 0) and np.all(weights[-8:] == 0)
    assert np.all(weights[24:104] == 1)
    assert np.all(np.diff(weights[:32]) >= 0)
    # raised cosine over 16 pixels: no step bigger than sin(pi/32) ~ 0.098 of the full range
    assert np.abs(np.diff(weights)).max() < 0.1


def test_taper_keeps_full_weight_at_raster_edges():
    weights = taper(64, 16, start=False, end=True)
    assert np.all(weights[:48] == 1) and weights[-1] == 0


@pytest.mark.parametrize("tile_size,overlap", [(64, 33), (64, -1), (0, 0)])
def test_grid_rejects_bad_overlap(tile_size, overlap):
    with pytest.raises(ValueError, match="overlap|tile_size"):
        TileGrid(100, 100, tile_size, overlap)


def test_first_row_reaching():
    grid = TileGrid(100, 1000, tile_size=128, overlap=32)  # tile rows start at 0, 96, 192, ...
    assert grid.first_row_reaching(0) == 0
    assert grid.first_row_reaching(127) == 0
    assert grid.first_row_reaching(128) == 1
    assert grid.first_row_reaching(256) == 2  # row 2 covers 192-319
    assert grid.first_row_reaching(10_000) == grid.rows


def test_reflect_pad_mirrors_without_repeating_the_edge():
    array = np.arange(12, dtype=np.uint16).reshape(1, 3, 4)
    padded = reflect_pad(array, 6)
    assert padded.shape == (1, 6, 6) and padded.dtype == np.uint16
    np.testing.assert_array_equal(padded[0, 0], [0, 1, 2, 3, 2, 1])
    np.testing.assert_array_equal(padded[0, :, 0], [0, 4, 8, 4, 0, 4])
    assert reflect_pad(np.ones((1, 1, 1)), 4).shape == (1, 4, 4)
