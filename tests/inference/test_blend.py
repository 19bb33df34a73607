"""Blending accumulator: every pixel released once, seamless, and memory bounded by one tile row."""

import numpy as np
import pytest
from scipy import ndimage

from rsfm.data.tiling import TileGrid
from rsfm.inference.blending import BlendAccumulator


def _run(grid, predict, channels=1):
    """Blend per-tile predictions ``predict(row, col)``; return the image and the peak live cells."""
    accumulator = BlendAccumulator(grid, channels)
    image = np.full((channels, grid.height, grid.width), np.nan, dtype=np.float32)
    released = np.zeros((grid.height, grid.width), dtype=int)
    peak = 0
    for row in range(grid.rows):
        for col in range(grid.cols):
            for region in accumulator.add(row, col, predict(row, col), np.ones((grid.tile_size,) * 2, bool)):
                height, width = region.valid.shape
                window = np.s_[region.row_off : region.row_off + height, region.col_off : region.col_off + width]
                image[(slice(None), *window)] = region.values
                released[window] += 1
            peak = max(peak, accumulator.live_cells)
    assert np.all(released == 1), "every pixel is released exactly once"
    assert accumulator.live_cells == 0
    return image, peak


def test_tiled_filter_equals_whole_image_filter():
    """A 5x5 filter (radius 2 <= overlap // 4) applied per tile, blended, equals the filter
    applied to the whole (reflect-padded) image."""
    rng = np.random.default_rng(0)
    grid = TileGrid(301, 190, tile_size=64, overlap=16)
    extent = ((grid.rows - 1) * grid.stride + 64, (grid.cols - 1) * grid.stride + 64)
    canvas = np.pad(rng.random((190, 301)).astype(np.float32), ((0, extent[0] - 190), (0, extent[1] - 301)), "reflect")
    whole = ndimage.uniform_filter(canvas, 5, mode="constant")

    def predict(row, col):
        top, left = row * grid.stride, col * grid.stride
        return ndimage.uniform_filter(canvas[top : top + 64, left : left + 64], 5, mode="constant")[None]

    image, _ = _run(grid, predict)
    np.testing.assert_allclose(image[0], whole[:190, :301], atol=1e-6)


def test_blending_has_no_seams():
    """Tiles that disagree (each predicts its own constant) give a smooth ramp, not a step:
    no neighbouring pixels differ by more than a tenth of the disagreement (equal averaging
    would jump by half of it at every overlap border)."""
    grid = TileGrid(400, 300, tile_size=96, overlap=32)
    values = np.random.default_rng(1).random((grid.rows, grid.cols)).astype(np.float32)
    image, _ = _run(grid, lambda row, col: np.full((1, 96, 96), values[row, col], np.float32))
    biggest_disagreement = values.max() - values.min()
    steps = max(np.abs(np.diff(image[0], axis=0)).max(), np.abs(np.diff(image[0], axis=1)).max())
    assert steps < 0.1 * biggest_disagreement
    assert np.allclose(image[0, :40, :40], values[0, 0])  # a tile's own region keeps its value


@pytest.mark.parametrize("height", [500, 2000])
def test_live_cells_do_not_grow_with_raster_height(height):
    grid = TileGrid(300, height, tile_size=64, overlap=16)
    _, peak = _run(grid, lambda row, col: np.zeros((1, 64, 64), np.float32))
    # one row of tiles (3 cells high) plus the overlap strip below it
    assert peak <= 4 * (2 * grid.cols + 1)


def test_skipped_tiles_release_nodata():
    grid = TileGrid(150, 100, tile_size=64, overlap=16)
    accumulator = BlendAccumulator(grid, 1)
    skipped = np.zeros((100, 150), dtype=bool)
    for row in range(grid.rows):
        for col in range(grid.cols):
            empty = (row, col) == (0, 0)
            prediction = None if empty else np.ones((1, 64, 64), np.float32)
            for region in accumulator.add(row, col, prediction, np.ones((64, 64), bool)):
                height, width = region.valid.shape
                if region.values is None:
                    assert not region.valid.any()
                    skipped[region.row_off : region.row_off + height, region.col_off : region.col_off + width] = True
    # every pixel covered by the skipped tile (and only those) is nodata
    expected = np.zeros((100, 150), dtype=bool)
    expected[:64, :64] = True
    np.testing.assert_array_equal(skipped, expected)


def test_add_rejects_wrong_shapes_and_rows():
    grid = TileGrid(100, 100, tile_size=64, overlap=16)
    accumulator = BlendAccumulator(grid, 2, first_row=1)
    with pytest.raises(ValueError, match="outside"):
        accumulator.add(0, 0, None, None)
    with pytest.raises(ValueError, match="expected"):
        accumulator.add(1, 0, np.zeros((1, 64, 64), np.float32), np.ones((64, 64), bool))
