"""The output writer: whole blocks written once, memory bounded by a few block rows."""

import numpy as np
import rasterio
from affine import Affine

from rsfm.data.tiling import TileGrid
from rsfm.inference.blending import BlendAccumulator
from rsfm.inference.outputs import OutputEncoding, OutputType
from rsfm.inference.writer import OutputSpec, PartialRaster


def _spec(width, height):
    encoding = OutputEncoding(OutputType.PROBABILITIES, 1, ["building"])
    return OutputSpec(
        width, height, encoding.count, None, Affine.identity(), encoding.descriptions, encoding.scales, block_size=64
    )


def test_blocks_are_written_once_complete_and_memory_stays_bounded(tmp_path):
    """Tall raster blended tile by tile: at most about two rows of blocks are held, the result
    is complete and equals the values written."""
    width, height = 300, 1500
    grid = TileGrid(width, height, tile_size=96, overlap=32)
    accumulator = BlendAccumulator(grid, 1)
    rng = np.random.default_rng(0)
    expected = np.zeros((height, width), dtype=np.uint8)
    peak_blocks = 0
    with PartialRaster(tmp_path / "out.tif", _spec(width, height), {}, resume=False) as partial:
        for row in range(grid.rows):
            for col in range(grid.cols):
                value = np.float32(rng.integers(0, 255) / 254)
                for region in accumulator.add(
                    row, col, np.full((1, 96, 96), value, np.float32), np.ones((96, 96), bool)
                ):
                    encoded = np.rint(region.values * 254).astype(np.uint8)
                    rows, cols = region.valid.shape
                    expected[region.row_off : region.row_off + rows, region.col_off : region.col_off + cols] = encoded[
                        0
                    ]
                    partial.write(region.row_off, region.col_off, encoded)
                    peak_blocks = max(peak_blocks, partial.buffered_blocks)
        assert partial.complete
    partial.finish(cog=False)
    blocks_per_row = -(-width // 64)
    assert peak_blocks <= 3 * blocks_per_row  # independent of the 24 block rows of the raster
    with rasterio.open(tmp_path / "out.tif") as dataset:
        np.testing.assert_array_equal(dataset.read(1), expected)
