"""Writing output rasters block by block under a temporary name, with resume state, and
moving them into place (optionally as Cloud-Optimized GeoTIFF) once complete."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from rsfm.inference.outputs import NODATA
from rsfm.inference.resume import ResumeState

COMMIT_INTERVAL_S = 30.0
"""At most this long (seconds) between flushes of the partial output, i.e. the most work an
unexpected kill can lose. Interruptions that raise (Ctrl-C, errors) flush everything written."""


def partial_path(final: Path) -> Path:
    """Where ``final`` is written until it is complete: ``scene.tif`` -> ``scene.partial.tif``."""
    return final.with_name(f"{final.stem}.partial{final.suffix}")


def state_path(final: Path) -> Path:
    """The resume state of ``final``: ``scene.tif`` -> ``scene.partial.json``."""
    return final.with_name(f"{final.stem}.partial.json")


def cog_path(final: Path) -> Path:
    """Where the Cloud-Optimized copy of ``final`` is made: ``scene.tif`` -> ``scene.partial-cog.tif``."""
    return final.with_name(f"{final.stem}.partial-cog{final.suffix}")


def cog_side_files(converted: Path) -> List[Path]:
    """The files GDAL's COG driver builds the overviews of ``converted`` in, next to it."""
    return [converted.with_name(f"{converted.name}.ovr.tmp"), converted.with_name(f"{converted.name}.msk.ovr.tmp")]


@dataclass(frozen=True)
class OutputSpec:
    """Grid and band metadata of an output raster (uint8 bands, nodata :data:`NODATA`).

    Attributes:
        width, height: size in pixels.
        count: number of bands.
        crs: CRS, or None for rasters without one.
        transform: pixel -> CRS coordinates.
        descriptions, scales: per band.
        block_size: square block side in pixels (multiple of 16), or None for one-row strips.
        tags: dataset metadata.
    """

    width: int
    height: int
    count: int
    crs: Optional[CRS]
    transform: Affine
    descriptions: List[str]
    scales: List[float]
    block_size: Optional[int] = 256
    tags: Dict[str, str] = field(default_factory=dict)

    def profile(self) -> Dict[str, Any]:
        layout: Dict[str, Any] = {"tiled": False, "blockysize": 1}
        if self.block_size is not None:
            layout = {"tiled": True, "blockxsize": self.block_size, "blockysize": self.block_size}
        return {
            "driver": "GTiff",
            "width": self.width,
            "height": self.height,
            "count": self.count,
            "dtype": "uint8",
            "nodata": NODATA,
            "crs": self.crs,
            "transform": self.transform,
            # LZW has no level to lose: GDAL forgets a DEFLATE level when the partial file is
            # reopened after a commit and falls back to level 6, 2-3x slower than LZW here
            "compress": "lzw",
            "bigtiff": "IF_SAFER",
            "interleave": "pixel",
            **layout,
        }


class BlockWriter:
    """Collects finished rectangles of the output and writes every block once, when it is full.

    Writing whole blocks keeps a compressed GeoTIFF compact (no block is rewritten) and the
    buffer small: only blocks that are partly filled are held.

    Args:
        dataset: output opened for writing.
        rows_done: rows above this are already on disk; rectangles there are ignored. A
            multiple of the block height.
    """

    def __init__(self, dataset: rasterio.io.DatasetWriter, rows_done: int = 0) -> None:
        self.dataset = dataset
        self._block_height, self._block_width = dataset.block_shapes[0]
        self._block_cols = -(-dataset.width // self._block_width)
        self._rows_done = rows_done
        self._blocks: Dict[Tuple[int, int], List[Any]] = {}  # (block row, block col) -> [array, missing pixels]
        self._finished_per_block_row: Dict[int, int] = {}

    @property
    def rows_done(self) -> int:
        """Rows from the top whose blocks are all written."""
        return self._rows_done

    @property
    def buffered_blocks(self) -> int:
        return len(self._blocks)

    def write(self, row_off: int, col_off: int, data: np.ndarray) -> None:
        """Place ``data`` (bands, height, width) uint8 at raster pixel (row_off, col_off)."""
        height, width = data.shape[1:]
        if row_off + height <= self._rows_done:
            return
        if row_off < self._rows_done:
            data = data[:, self._rows_done - row_off :]
            height -= self._rows_done - row_off
            row_off = self._rows_done
        block_height, block_width = self._block_height, self._block_width
        for block_row in range(row_off // block_height, (row_off + height - 1) // block_height + 1):
            block_top = block_row * block_height
            top, bottom = max(row_off, block_top), min(row_off + height, block_top + block_height)
            for block_col in range(col_off // block_width, (col_off + width - 1) // block_width + 1):
                block_left = block_col * block_width
                left, right = max(col_off, block_left), min(col_off + width, block_left + block_width)
                entry = self._blocks.get((block_row, block_col))
                if entry is None:
                    entry = self._blocks[(block_row, block_col)] = self._new_block(block_top, block_left)
                entry[0][:, top - block_top : bottom - block_top, left - block_left : right - block_left] = data[
                    :, top - row_off : bottom - row_off, left - col_off : right - col_off
                ]
                entry[1] -= (bottom - top) * (right - left)
                if entry[1] == 0:
                    self._flush_block(block_row, block_col, entry[0])

    def _new_block(self, block_top: int, block_left: int) -> List[Any]:
        height = min(self._block_height, self.dataset.height - block_top)
        width = min(self._block_width, self.dataset.width - block_left)
        return [np.empty((self.dataset.count, height, width), dtype=np.uint8), height * width]

    def _flush_block(self, block_row: int, block_col: int, array: np.ndarray) -> None:
        del self._blocks[(block_row, block_col)]
        top, left = block_row * self._block_height, block_col * self._block_width
        self.dataset.write(array, window=Window(left, top, array.shape[2], array.shape[1]))
        self._finished_per_block_row[block_row] = self._finished_per_block_row.get(block_row, 0) + 1
        while self._finished_per_block_row.get(self._rows_done // self._block_height) == self._block_cols:
            del self._finished_per_block_row[self._rows_done // self._block_height]
            self._rows_done = min(self._rows_done + self._block_height, self.dataset.height)


def _json_roundtrip(settings: Dict[str, Any]) -> Dict[str, Any]:
    return json.loads(json.dumps(settings))


class PartialRaster:
    """An output GeoTIFF under construction at :func:`partial_path`, with its resume state.

    Args:
        final: where the finished raster goes.
        spec: grid and bands of the output.
        settings: what the output depends on (see :class:`ResumeState`).
        resume: continue an earlier partial output made with the same settings, if any.

    Use as a context manager; leaving it (also by an exception) flushes what was written and
    records the progress.
    """

    def __init__(self, final: Path, spec: OutputSpec, settings: Dict[str, Any], resume: bool) -> None:
        self.final = final
        self.height = spec.height
        self.path = partial_path(final)
        self._state_path = state_path(final)
        self._state = ResumeState(_json_roundtrip(settings))
        self._last_commit = time.monotonic()
        rows_done = 0
        previous = ResumeState.load(self._state_path) if resume else None
        dataset = None
        if previous is not None and previous.settings == self._state.settings and self.path.is_file():
            try:
                dataset = rasterio.open(self.path, "r+")
                rows_done = previous.rows_done
            except RasterioIOError:
                dataset = None  # killed before its first flush: start again
        if dataset is None:
            self.path.unlink(missing_ok=True)
            dataset = rasterio.open(self.path, "w", **spec.profile())
            for band, description in enumerate(spec.descriptions, start=1):
                dataset.set_band_description(band, description)
            dataset.scales = tuple(spec.scales)
            dataset.update_tags(**spec.tags)
        self._writer = BlockWriter(dataset, rows_done)
        self._state.rows_done = rows_done
        self.commit()

    @property
    def rows_done(self) -> int:
        return self._writer.rows_done

    @property
    def complete(self) -> bool:
        return self._writer.rows_done >= self.height

    @property
    def buffered_blocks(self) -> int:
        """Blocks held in memory, partly filled."""
        return self._writer.buffered_blocks

    def write(self, row_off: int, col_off: int, data: np.ndarray) -> None:
        """Place finished pixels (bands, height, width) uint8; flush now and then."""
        self._writer.write(row_off, col_off, data)
        if time.monotonic() - self._last_commit > COMMIT_INTERVAL_S and self.rows_done > self._state.rows_done:
            self.commit()

    def commit(self) -> None:
        """Flush everything written to disk, then record the rows that are complete."""
        dataset = self._writer.dataset
        if not dataset.closed:
            dataset.close()
        self._state.rows_done = self._writer.rows_done
        self._state.save(self._state_path)
        self._writer.dataset = rasterio.open(self.path, "r+")
        self._last_commit = time.monotonic()

    def close(self) -> None:
        """Flush and record progress; the partial file stays for ``--resume``."""
        if not self._writer.dataset.closed:
            self._writer.dataset.close()
            self._state.rows_done = self._writer.rows_done
            self._state.save(self._state_path)

    def __enter__(self) -> "PartialRaster":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def finish(self, cog: bool, resampling: str = "nearest") -> Path:
        """Move the complete raster to its final name and drop the resume state.

        Args:
            cog: convert to a Cloud-Optimized GeoTIFF with overviews (made with
                ``resampling``) instead of renaming.

        Raises:
            RuntimeError: the raster is not complete.
        """
        self.close()
        if not self.complete:
            raise RuntimeError(f"{self.path}: only {self.rows_done} of {self.height} rows are written")
        if cog:
            converted = cog_path(self.final)
            rasterio.shutil.copy(
                self.path,
                converted,
                driver="COG",
                compress="DEFLATE",
                overview_resampling=resampling,
                bigtiff="IF_SAFER",
            )
            os.replace(converted, self.final)
            self.path.unlink()
        else:
            os.replace(self.path, self.final)
        self._state_path.unlink(missing_ok=True)
        return self.final
