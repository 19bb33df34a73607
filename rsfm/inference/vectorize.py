"""Polygons from a finished class raster, streamed by row chunks: connected pixels of one
class become one polygon (4-connectivity, as ``rasterio.features.shapes``), also when they
run across chunk borders."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import rasterio
import rasterio.features
from affine import Affine
from rasterio.windows import Window
from scipy import ndimage
from shapely.affinity import affine_transform
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from rsfm.inference.outputs import PROBABILITY_SCALE, OutputEncoding, OutputType

VECTOR_DRIVERS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON"}
"""Vector formats by file ending."""

_FOUR_CONNECTED = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]])


def vector_driver(path: Path) -> str:
    """The OGR driver for ``path``.

    Raises:
        ValueError: the ending is not one of :data:`VECTOR_DRIVERS`.
    """
    driver = VECTOR_DRIVERS.get(path.suffix.lower())
    if driver is None:
        raise ValueError(f"{path}: unknown vector format; end the name with .gpkg (GeoPackage) or .geojson")
    return driver


def partial_vector_path(vector: Path) -> Path:
    """Where :func:`write_polygons` writes ``vector`` until it is complete:
    ``buildings.gpkg`` -> ``buildings.partial.gpkg``."""
    return vector.with_name(f"{vector.stem}.partial{vector.suffix}")


def vector_side_files(vector: Path) -> List[Path]:
    """Files SQLite may write next to a GeoPackage while it is written (journal, write-ahead log)."""
    if vector_driver(vector) != "GPKG":
        return []
    return [vector.with_name(f"{vector.name}{ending}") for ending in ("-journal", "-wal", "-shm")]


@dataclass
class _Group:
    """Pixels of one class connected so far, possibly spread over several chunks."""

    class_index: int
    pieces: List[BaseGeometry] = field(default_factory=list)
    probability_sum: float = 0.0
    pixels: int = 0

    def absorb(self, other: "_Group") -> None:
        self.pieces.extend(other.pieces)
        self.probability_sum += other.probability_sum
        self.pixels += other.pixels


class _Groups:
    """Union-find over component ids; the data lives at each set's root."""

    def __init__(self) -> None:
        self._parent: Dict[int, int] = {}
        self.data: Dict[int, _Group] = {}

    def add(self, ident: int, group: _Group) -> None:
        self._parent[ident] = ident
        self.data[ident] = group

    def root(self, ident: int) -> int:
        path = []
        while self._parent[ident] != ident:
            path.append(ident)
            ident = self._parent[ident]
        for member in path:
            self._parent[member] = ident
        return ident

    def union(self, first: int, second: int) -> None:
        first, second = self.root(first), self.root(second)
        if first != second:
            self._parent[second] = first
            self.data[first].absorb(self.data.pop(second))

    def pop(self, root: int) -> _Group:
        """Remove a finished set."""
        return self.data.pop(root)

    def keep_only(self, idents: List[int]) -> None:
        """Forget every id except ``idents`` and the roots, so memory stays bounded by one row."""
        parent = {ident: self.root(ident) for ident in idents}
        parent.update((root, root) for root in self.data)
        self._parent = parent


def _read_classes(
    dataset: rasterio.DatasetReader, window: Window, encoding: OutputEncoding
) -> Tuple[np.ndarray, np.ndarray]:
    """Class index (0 = background or nodata) and scaled probability of that class."""
    bands = dataset.read(window=window)
    valid = dataset.read_masks(1, window=window) > 0
    if encoding.output_type is OutputType.CLASSES:
        classes, probability = bands[0], bands[1]
    elif encoding.binary:
        probability = bands[0]
        classes = (probability >= PROBABILITY_SCALE / 2).astype(np.uint8)
    else:
        classes, probability = bands.argmax(axis=0).astype(np.uint8), bands.max(axis=0)
    return np.where(valid, classes, 0), probability


def iter_polygons(
    raster: Path, encoding: OutputEncoding, chunk_rows: int = 256
) -> Iterator[Tuple[BaseGeometry, int, float]]:
    """Polygons of every non-background class of a finished output raster.

    Reads ``chunk_rows`` rows at a time; memory grows with the raster width, not its height.

    Args:
        raster: an output written by :func:`rsfm.predict_raster` (bands as ``encoding``).
        encoding: how the raster's bands were written.
        chunk_rows: rows per read.

    Yields:
        (polygon in the raster's CRS, class index, mean probability 0-1) per connected region.
    """
    groups = _Groups()
    first_id = 0  # global id of a component = first_id of its chunk + its id in the chunk
    previous_bottom: Optional[np.ndarray] = None  # component ids along the last row read
    with rasterio.open(raster) as dataset:
        grid = dataset.transform  # pixel (column, row) -> CRS, as shapely's affine_transform takes it:
        to_crs = [grid.a, grid.b, grid.d, grid.e, grid.c, grid.f]
        for top in range(0, dataset.height, chunk_rows):
            window = Window(0, top, dataset.width, min(chunk_rows, dataset.height - top))
            classes, probability = _read_classes(dataset, window, encoding)
            local = np.zeros(classes.shape, dtype=np.int32)  # component ids within this chunk
            class_of = [0]
            for class_index in np.unique(classes[classes > 0]):
                class_labels, count = ndimage.label(classes == class_index, structure=_FOUR_CONNECTED)
                members = class_labels > 0
                local[members] = class_labels[members] + (len(class_of) - 1)
                class_of.extend([int(class_index)] * count)
            if len(class_of) > 1:
                pixel_counts = np.bincount(local.ravel(), minlength=len(class_of))
                probability_sums = np.bincount(local.ravel(), weights=probability.ravel(), minlength=len(class_of))
                # pixel coordinates of the whole raster (exact integers): the pieces of a region
                # that a chunk border cuts share that border exactly and merge into one polygon
                for geometry, value in rasterio.features.shapes(
                    local, mask=local > 0, connectivity=4, transform=Affine.translation(0, top)
                ):
                    ident = int(value)
                    groups.add(
                        first_id + ident,
                        _Group(
                            class_of[ident], [shape(geometry)], float(probability_sums[ident]), int(pixel_counts[ident])
                        ),
                    )
            top_ids = np.where(local[0] > 0, local[0].astype(np.int64) + first_id, 0)
            bottom_ids = np.where(local[-1] > 0, local[-1].astype(np.int64) + first_id, 0)
            first_id += len(class_of) - 1
            if previous_bottom is not None:
                touching = (previous_bottom > 0) & (top_ids > 0)
                for above, below in set(zip(previous_bottom[touching].tolist(), top_ids[touching].tolist())):
                    if groups.data[groups.root(above)].class_index == groups.data[groups.root(below)].class_index:
                        groups.union(above, below)
            last_chunk = top + chunk_rows >= dataset.height
            still_open = set() if last_chunk else {groups.root(ident) for ident in np.unique(bottom_ids) if ident > 0}
            for root in [root for root in groups.data if root not in still_open]:
                group = groups.pop(root)
                polygon = group.pieces[0] if len(group.pieces) == 1 else unary_union(group.pieces)
                polygon = affine_transform(polygon, to_crs)
                yield polygon, group.class_index, group.probability_sum / group.pixels / PROBABILITY_SCALE
            groups.keep_only([ident for ident in np.unique(bottom_ids).tolist() if ident > 0])
            previous_bottom = bottom_ids


def write_polygons(
    raster: Path,
    vector: Path,
    encoding: OutputEncoding,
    simplify: float = 0.0,
    min_area: float = 0.0,
    chunk_rows: int = 256,
) -> int:
    """Vectorise a finished output raster into a GeoPackage or GeoJSON file.

    Each polygon has the attributes ``class`` (name), ``area`` and ``mean_probability``. The
    file is written under a temporary name and renamed when complete.

    Args:
        raster: the output raster.
        vector: destination (.gpkg or .geojson), in the raster's CRS.
        encoding: how the raster's bands were written.
        simplify: Douglas-Peucker tolerance in CRS units (metres for UTM); 0 only removes
            redundant vertices.
        min_area: drop polygons smaller than this, in square CRS units (m² for UTM).
        chunk_rows: rows read at a time.

    Returns:
        The number of polygons written.

    Raises:
        ValueError: unknown vector format.
    """
    import geopandas  # heavy (pandas); only needed here

    driver = vector_driver(vector)
    labels = encoding.labels
    geometries, names, areas, probabilities = [], [], [], []
    for polygon, class_index, mean_probability in iter_polygons(raster, encoding, chunk_rows):
        polygon = polygon.simplify(simplify, preserve_topology=True)
        if polygon.is_empty or polygon.area < min_area:
            continue
        geometries.append(polygon)
        names.append(labels[class_index] if class_index < len(labels) else str(class_index))
        areas.append(polygon.area)
        probabilities.append(round(mean_probability, 4))
    with rasterio.open(raster) as dataset:
        crs = dataset.crs
    frame = geopandas.GeoDataFrame(
        {"class": names, "area": areas, "mean_probability": probabilities}, geometry=geometries, crs=crs
    )
    temporary = partial_vector_path(vector)
    temporary.unlink(missing_ok=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*crs.*", category=UserWarning)
        frame.to_file(temporary, driver=driver, engine="pyogrio", geometry_type="Polygon")
    os.replace(temporary, vector)
    return len(frame)
