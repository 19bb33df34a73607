"""Building extraction from georeferenced rasters + footprint vectors or mask rasters (torchgeo).

Images are any rasters rasterio reads; labels are building footprints (GeoJSON, GeoPackage,
Shapefile, GeoParquet, FlatGeobuf) rasterised on the fly, or mask rasters. torchgeo indexes
both by bounds and CRS, reprojects labels to the imagery's CRS and resolution, and samples
patches: ``RandomGeoSampler`` for training, ``GridGeoSampler`` for validation and test.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Tuple, Union

import albumentations as A
import geopandas
import numpy as np
import pandas as pd
import rasterio
import rasterio.features
import rasterio.transform
import shapely
import torch
from lightning.pytorch import LightningDataModule
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.windows import Window
from torch.utils.data import DataLoader
from torchgeo.datasets import GeoDataset, IntersectionDataset, RasterDataset, VectorDataset
from torchgeo.datasets.splits import roi_split
from torchgeo.samplers import GridGeoSampler, RandomGeoSampler

from rsfm.data.pixel_range import describe_pixels, merge_pixel_ranges
from rsfm.data.samples import shorten
from rsfm.data.seeding import AugmentationSeeds
from rsfm.data.segmentation import IGNORE_INDEX, building_train_transform, make_sample, mask_value_set, model_band_mean

__all__ = [
    "VECTOR_SUFFIXES",
    "ImageRasters",
    "MaskRasters",
    "BuildingFootprints",
    "BuildingGeoDataModule",
    "building_geo_dataset",
]

VECTOR_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp", ".parquet", ".fgb")

Paths = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]

# pixel_range reads at most this many training image files, each at most this many pixels a side
_PIXEL_RANGE_FILES = 256
_PIXEL_RANGE_SIDE = 1024
# mask rasters are checked in row bands of about this many pixels (bounded memory on big rasters)
_CHECK_BAND_PIXELS = 1 << 24


def _common_nodata(dataset: RasterDataset) -> Optional[float]:
    """The nodata value shared by all files of ``dataset`` (``None`` when untagged)."""
    nodata = {}
    for path in dataset.index.filepath:
        with rasterio.open(path) as src:
            nodata[path] = src.nodata
    if len(set(nodata.values())) > 1:
        raise ValueError(f"rasters have different nodata values, make them equal: {nodata}")
    return next(iter(nodata.values()))


class _Lookup:
    """What finding a patch's files needs from a dataset's index, taken from it once: its
    bounds (torchgeo computes them from the whole index at every access, two to four times per
    patch), footprints, file paths and the rows of each time interval queried."""

    def __init__(self, dataset: GeoDataset) -> None:
        self.index = dataset.index
        self.res = dataset.res
        self.bounds = GeoDataset.bounds.fget(dataset)
        self.footprints = dataset.index.geometry.to_numpy()
        self.filepaths = dataset.index.filepath.to_numpy()
        self._rows_in_time: Dict[Tuple[Any, Any, Any], np.ndarray] = {}

    def rows_in_time(self, t: slice) -> np.ndarray:
        """The rows torchgeo selects for ``t``: interval overlapping, every ``t.step``-th."""
        key = (t.start, t.stop, t.step)
        rows = self._rows_in_time.get(key)
        if rows is None:
            if len(self._rows_in_time) >= 1024:  # samplers query a few intervals; bound it anyway
                self._rows_in_time.clear()
            overlapping = self.index.index.overlaps(pd.Interval(t.start, t.stop))
            rows = self._rows_in_time[key] = np.flatnonzero(overlapping)[:: t.step]
        return rows


class _IndexedFiles:
    """Finds a patch's files as torchgeo's ``__getitem__`` does (time interval overlapping,
    every ``t.step``-th row, footprint intersecting the box), with one vectorised shapely test
    on arrays taken from the index once (:class:`_Lookup`, rebuilt when the index or the
    resolution changes, as when torchgeo's ``roi_split`` assigns a clipped index) instead of
    pandas/geopandas row selections and bounds computed anew: a batch of 8 demo patches (image
    and footprints) loads in 14-17 instead of 28-31 ms."""

    def _lookup(self) -> _Lookup:
        lookup = self.__dict__.get("_index_lookup")
        if lookup is None or lookup.index is not self.index or lookup.res != self.res:
            lookup = self.__dict__["_index_lookup"] = _Lookup(self)
        return lookup

    @property
    def bounds(self) -> Tuple[slice, slice, slice]:
        """torchgeo's bounds of the index, computed once per index and resolution."""
        return self._lookup().bounds

    def _files_at(self, query: Any) -> List[str]:
        """The files ``query`` meets.

        Raises:
            IndexError: no file meets the query (torchgeo's message).
        """
        x, y, t = self._disambiguate_slice(query)
        lookup = self._lookup()
        rows = lookup.rows_in_time(t)
        rows = rows[shapely.intersects(lookup.footprints[rows], shapely.box(x.start, y.start, x.stop, y.stop))]
        if rows.size == 0:
            raise IndexError(f"query: {query} not found in index with bounds: {self.bounds}")
        return lookup.filepaths[rows].tolist()

    def __getstate__(self) -> Dict[str, Any]:
        # loader workers take the index itself and build their own lookup
        return {key: value for key, value in self.__dict__.items() if key != "_index_lookup"}


class _Rasters(_IndexedFiles, RasterDataset):
    """Patches are read as torchgeo reads them (``_merge_files``: warped, merged, resampled);
    only the lookup of the files differs (:class:`_IndexedFiles`)."""

    def __init__(self, paths: Paths, glob: str = "*", crs: Any = None, res: Optional[float] = None) -> None:
        self.filename_glob = glob
        super().__init__(paths, crs=crs, res=res)
        self.nodata = _common_nodata(self)

    def __getitem__(self, query: Any) -> Dict[str, Any]:
        data = self._merge_files(self._files_at(query), query, self.band_indexes).to(self.dtype)
        sample: Dict[str, Any] = {"crs": self.crs, "bounds": query}
        if self.is_image:
            sample["image"] = data
        else:
            sample["mask"] = data.squeeze(0)
        return self.transforms(sample) if self.transforms is not None else sample


class ImageRasters(_Rasters):
    """Image rasters (all bands, raw values as float32) found at ``paths`` matching ``glob``.

    ``nodata`` is the files' nodata value (``None`` when untagged); areas outside the rasters
    read as it too. Raises ``ValueError`` when the files disagree.
    """


class MaskRasters(_Rasters):
    """Label rasters (nearest-neighbour resampling, int64) found at ``paths`` matching ``glob``.

    ``nodata`` is the files' nodata value (``None`` when untagged); raises ``ValueError`` when
    the files disagree.
    """

    is_image = False


class BuildingFootprints(_IndexedFiles, VectorDataset):
    """Building polygons found at ``paths`` matching ``glob``, rasterised as 1 on 0 at ``res``
    (CRS units per pixel).

    The same masks as torchgeo's ``VectorDataset``, read differently: torchgeo reads every
    vector file again for every patch (pandas/pyogrio, 10-20 ms per 128 px patch, half of a small
    model's training time); here each file is read and reprojected once per process, and a
    patch takes the polygons whose bounding boxes meet it from a shapely ``STRtree``.
    Missing and empty geometries are skipped.
    """

    def __init__(self, paths: Paths, glob: str = "*", crs: Any = None, res: Any = 1.0) -> None:
        self.filename_glob = glob
        super().__init__(paths, crs=crs, res=res)
        self._polygons: Dict[str, Tuple[np.ndarray, shapely.STRtree]] = {}

    def __getstate__(self) -> Dict[str, Any]:
        # loader workers read the files themselves instead of receiving the polygons pickled
        return {**super().__getstate__(), "_polygons": {}}

    def _file_polygons(self, filepath: str) -> Tuple[np.ndarray, shapely.STRtree]:
        if filepath not in self._polygons:
            if Path(filepath).suffix.lower() == ".parquet":
                frame = geopandas.read_parquet(filepath)
            else:
                frame = geopandas.read_file(filepath, layer=self.layer)
            if frame.crs is None:  # as torchgeo indexed it: in the dataset's CRS
                frame = frame.set_crs(self.crs)
            geometries = frame.geometry.to_crs(self.crs).to_numpy()
            geometries = geometries[~(shapely.is_missing(geometries) | shapely.is_empty(geometries))]
            self._polygons[filepath] = (geometries, shapely.STRtree(geometries))
        return self._polygons[filepath]

    def __getitem__(self, query: Any) -> Dict[str, Any]:
        files = self._files_at(query)
        x, y, _ = self._disambiguate_slice(query)
        patch = shapely.box(x.start, y.start, x.stop, y.stop)
        shapes: List[Any] = []
        for filepath in files:
            geometries, tree = self._file_polygons(filepath)
            shapes.extend(geometries[np.sort(tree.query(patch))])
        width, height = round((x.stop - x.start) / x.step), round((y.stop - y.start) / y.step)
        if shapes:
            transform = rasterio.transform.from_bounds(x.start, y.start, x.stop, y.stop, width, height)
            masks = rasterio.features.rasterize(
                [(shape, 1) for shape in shapes], out_shape=(height, width), transform=transform, dtype=np.uint8
            )
        else:
            masks = np.zeros((height, width), dtype=np.uint8)
        sample: Dict[str, Any] = {"crs": self.crs, "bounds": query, "mask": torch.from_numpy(masks).to(self.dtype)}
        return self.transforms(sample) if self.transforms is not None else sample


def _is_vector(paths: Paths) -> bool:
    files: List[Path] = []
    for item in map(Path, [paths] if isinstance(paths, (str, os.PathLike)) else paths):
        if item.is_dir():
            files.extend(item.rglob("*"))
        else:
            files.append(item)
    return any(f.suffix.lower() in VECTOR_SUFFIXES for f in files)


def _plain_paths(paths: Optional[Paths]) -> Optional[Union[str, List[str]]]:
    if paths is None or isinstance(paths, (str, os.PathLike)):
        return None if paths is None else str(paths)
    return [str(path) for path in paths]


class _LabelledPatch:
    """Turns a torchgeo sample into the rsfm sample format: binary mask, ignore, augmentation.

    Pixels that are nodata in every image band (holes, or beyond the imagery's edge where
    grid patches overhang), nodata in the mask raster or equal to ``ignore_value`` are ignored.
    """

    def __init__(
        self,
        transform: Optional[A.BasicTransform],
        image_nodata: Optional[float],
        mask_nodata: Optional[float],
        building_value: Optional[int],
        ignore_value: Optional[int] = None,
    ) -> None:
        self.transform = transform
        self.image_nodata = image_nodata
        self.mask_nodata = mask_nodata
        self.building_value = building_value
        self.ignore_value = ignore_value

    def __call__(self, sample: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        labels = sample["mask"].numpy()
        image = sample["image"].numpy()
        building = labels != 0 if self.building_value is None else labels == self.building_value
        mask = building.astype(np.uint8)
        if self.mask_nodata is not None:
            mask[labels == self.mask_nodata] = IGNORE_INDEX
        if self.ignore_value is not None:
            mask[labels == self.ignore_value] = IGNORE_INDEX
        if self.image_nodata is not None:
            mask[(image == self.image_nodata).all(axis=0)] = IGNORE_INDEX
        return make_sample(image.transpose(1, 2, 0), mask, self.transform)


def building_geo_dataset(
    images: Paths,
    labels: Paths,
    image_glob: str = "*.tif",
    label_glob: str = "*",
    crs: Any = None,
    res: Optional[float] = None,
    building_value: Optional[int] = None,
    transform: Optional[A.BasicTransform] = None,
    ignore_value: Optional[int] = None,
) -> IntersectionDataset:
    """Imagery intersected with building labels, in the imagery's CRS and resolution.

    Args:
        images: image raster files or folders.
        labels: footprint vector files/folders (rasterised to 1 = building) or mask rasters.
        image_glob, label_glob: file name patterns used inside folders.
        crs: output CRS (default: the first image's); labels are reprojected to it.
        res: output resolution in CRS units (default: the first image's).
        building_value: mask raster value of buildings; ``None`` means any non-zero value
            (0/1 and 0/255 masks, instance ids). Pixels that are nodata in the mask rasters, or
            in every band of the imagery, become ``IGNORE_INDEX``.
        transform: albumentations transform applied jointly to each patch.
        ignore_value: mask raster value of pixels without labels (e.g. 255 in 0/1 masks whose
            nodata is not tagged), ignored like nodata; ``None``: only nodata is ignored.

    Mask rasters are read once (in row bands, cached per file) to refuse labels that would be
    silently wrong: ``building_value`` found in no raster that holds other non-zero values,
    and, with ``building_value=None``, masks holding both 1 and 255 (0/1 masks whose 255
    marks unlabelled pixels would train 255 as buildings).

    Returns:
        A torchgeo ``IntersectionDataset`` yielding ``{'image', 'mask'}`` samples. Its extent
        is the imagery's intersected with the labels' (for footprints: their bounding box),
        so parts of the imagery beyond the outermost labelled building are not sampled.

    Raises:
        torchgeo ``DatasetNotFoundError``: no readable file at ``images`` or ``labels``.
        RuntimeError: images and labels do not overlap.
        ValueError: the mask rasters' values do not fit ``building_value`` (see above); the
            message names the files and the option to set.
    """
    if crs is not None:
        crs = CRS.from_user_input(crs)
    imagery = ImageRasters(images, image_glob, crs=crs, res=res)
    if _is_vector(labels):
        label_dataset: GeoDataset = BuildingFootprints(labels, label_glob, crs=imagery.crs, res=imagery.res)
        mask_nodata = None
    else:
        label_dataset = MaskRasters(labels, label_glob, crs=imagery.crs, res=imagery.res)
        mask_nodata = label_dataset.nodata
        _check_mask_rasters(sorted(set(label_dataset.index.filepath)), mask_nodata, building_value, ignore_value)
    try:
        return IntersectionDataset(
            imagery,
            label_dataset,
            transforms=_LabelledPatch(transform, imagery.nodata, mask_nodata, building_value, ignore_value),
        )
    except RuntimeError as error:
        raise RuntimeError(f"images {images} and labels {labels} do not overlap ({error})") from error


def _check_mask_rasters(
    files: Sequence[str], nodata: Optional[float], building_value: Optional[int], ignore_value: Optional[int]
) -> None:
    """Refuse mask values that ``building_value`` would turn into wrong labels without a sound."""
    skipped = {value for value in (nodata, ignore_value) if value is not None}
    found = {path: _raster_values(path) - skipped for path in files}
    everything = frozenset().union(*found.values())
    labelled = sorted(everything - {0})
    if building_value is not None:
        if building_value not in everything and labelled:
            raise ValueError(
                f"building_value={building_value} occurs in none of the {len(files)} mask raster(s), which "
                f"hold {_values_text(everything)}: every pixel would be background. Set building_value to the "
                f"value of buildings (e.g. {labelled[0]:g}), or leave it unset so any non-zero value is a building"
            )
        return
    if {1, 255} <= everything and everything <= {0, 1, 255}:
        holding = [path for path, values in found.items() if 255 in values]
        raise ValueError(
            f"the mask rasters hold {_values_text(everything)} and building_value is unset, so 1 and 255 would both be "
            f"buildings; {len(holding)} of {len(files)} hold 255: {shorten(holding)}. If 255 marks pixels "
            "without labels, set ignore_value=255 (or tag 255 as the rasters' nodata); if only 1 is a building, "
            "set building_value=1; if some masks use 255 for buildings, convert them to one convention"
        )


def _values_text(values: FrozenSet[float]) -> str:
    """``0``, ``0 and 1``, ``0, 1 and 255``, ``0, 1, ... 9 and 12 more``."""
    shown = [f"{value:g}" for value in sorted(values)]
    if len(shown) > 10:
        return ", ".join(shown[:10]) + f" and {len(shown) - 10} more"
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


def _raster_values(path: str) -> FrozenSet[float]:
    stat = os.stat(path)
    return _raster_values_cached(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _raster_values_cached(path: str, size: int, mtime_ns: int) -> FrozenSet[float]:
    """The distinct values of band 1 of a raster (size and time in the key: a rewritten file is
    read again), read in row bands so big rasters do not fill memory."""
    values: FrozenSet[float] = frozenset()
    with rasterio.open(path) as src:
        rows = max(1, _CHECK_BAND_PIXELS // src.width)
        for row in range(0, src.height, rows):
            window = Window(0, row, src.width, min(rows, src.height - row))
            values |= mask_value_set(src.read(1, window=window))
    return values


def _describe_raster(path: str) -> Optional[Dict[str, Any]]:
    """``describe_pixels`` of a raster's valid pixels, read at most ``_PIXEL_RANGE_SIDE`` a side."""
    with rasterio.open(path) as src:
        scale = max(1.0, max(src.width, src.height) / _PIXEL_RANGE_SIDE)
        shape = (src.count, max(1, round(src.height / scale)), max(1, round(src.width / scale)))
        pixels = src.read(out_shape=shape, masked=True, resampling=Resampling.nearest)
    valid = pixels.compressed()
    if valid.size == 0:
        return None
    return describe_pixels(valid)


def _east_split(dataset: GeoDataset, val_fraction: float) -> List[GeoDataset]:
    """[west part, eastern ``val_fraction`` of the extent's width] of ``dataset``."""
    xmin, ymin, xmax, ymax = dataset.index.total_bounds
    cut = xmax - val_fraction * (xmax - xmin)
    return roi_split(dataset, [shapely.box(xmin, ymin, cut, ymax), shapely.box(cut, ymin, xmax, ymax)])


class BuildingGeoDataModule(LightningDataModule):
    """Georeferenced imagery + building footprints or mask rasters, sampled in patches.

    Args:
        images, labels: training imagery and labels (files or folders, see
            ``building_geo_dataset``).
        val_images, val_labels: validation area; when not given, the eastern ``val_fraction``
            of the training area's extent is held out for validation instead.
        test_images, test_labels: test area (optional).
        val_fraction: share of the extent's width used for validation when no ``val_images``.
        patch_size: patch side in pixels (at ``res``).
        length: random training patches per epoch (default: about the number of
            non-overlapping patches in the area).
        batch_size, num_workers: data loading.
        scale_range: (min, max) random zoom of training patches.
        image_glob, label_glob, crs, res: see ``building_geo_dataset``.
        building_value, ignore_value: mask raster values of buildings (``None``: any non-zero
            value) and of unlabelled pixels (``None``: only nodata); see
            ``building_geo_dataset``. ``setup`` reads the mask rasters once and refuses values
            that these would turn into wrong labels.
        nodata_p: probability that a training patch gets synthetic nodata (clouds or a straight
            border, ``rsfm.data.segmentation.RandomNodata``) set to the model's band mean and
            left out of the loss, as tiled inference fills nodata; 0 disables it. The mean is
            read from the task when training starts.

    After ``setup("fit")``, ``pixel_range`` describes the raw training pixels.
    """

    def __init__(
        self,
        images: Union[str, List[str]],
        labels: Union[str, List[str]],
        val_images: Optional[Union[str, List[str]]] = None,
        val_labels: Optional[Union[str, List[str]]] = None,
        test_images: Optional[Union[str, List[str]]] = None,
        test_labels: Optional[Union[str, List[str]]] = None,
        val_fraction: float = 0.2,
        patch_size: int = 512,
        length: Optional[int] = None,
        batch_size: int = 8,
        num_workers: int = 0,
        scale_range: Tuple[float, float] = (1.0, 1.0),
        image_glob: str = "*.tif",
        label_glob: str = "*",
        crs: Optional[str] = None,
        res: Optional[float] = None,
        building_value: Optional[int] = None,
        ignore_value: Optional[int] = None,
        nodata_p: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        for key in ("images", "labels", "val_images", "val_labels", "test_images", "test_labels"):
            self.hparams[key] = _plain_paths(self.hparams[key])  # checkpoints load weights-only
        if (val_images is None) != (val_labels is None):
            raise ValueError("give both val_images and val_labels, or neither (then val_fraction is used)")
        if val_images is None and not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if not 0 <= nodata_p <= 1:
            raise ValueError(f"nodata_p is a probability, between 0 and 1; got {nodata_p}")
        self.train_transform = building_train_transform(patch_size, scale_range)  # nodata joins at setup
        self._pixel_range: Optional[Dict[str, Any]] = None

    @property
    def image_size(self) -> int:
        """Side of the training patches in pixels (``patch_size``)."""
        return int(self.hparams.patch_size)

    @property
    def pixel_size(self) -> Optional[float]:
        """Pixel size of the training data in metres, when its CRS is in metres (after setup)."""
        dataset = getattr(self, "train_dataset", None)
        crs = getattr(dataset, "crs", None)
        if dataset is None or crs is None or not crs.is_projected or crs.linear_units not in ("metre", "meter"):
            return None
        res = dataset.res
        return float(res[0] if isinstance(res, (tuple, list)) else res)

    @property
    def pixel_range(self) -> Optional[Dict[str, Any]]:
        """Data type and value range of the raw training pixels, e.g. ``{"dtype": "uint16", "min":
        1.0, "max": 2047.0}`` (see ``rsfm.data.pixel_range.describe_pixels``; nodata excluded).

        A sample, read on first use: at most 256 of the image files of the training area, spread
        evenly, each read whole or, when larger, at most 1024 pixels a side (nearest neighbour,
        so values are real pixels but a lone extreme pixel may be missed). ``None`` before
        ``setup("fit")``.
        """
        dataset = getattr(self, "train_dataset", None)
        if dataset is None:
            return None
        if self._pixel_range is None:
            files = sorted(set(dataset.index["filepath_1"]))
            count = min(len(files), _PIXEL_RANGE_FILES)
            chosen = np.unique(np.linspace(0, len(files) - 1, count).round().astype(int)).tolist()
            self._pixel_range = merge_pixel_ranges(_describe_raster(files[index]) for index in chosen)
        return self._pixel_range

    def _dataset(self, images: Any, labels: Any, transform: Optional[A.BasicTransform]) -> IntersectionDataset:
        hp = self.hparams
        return building_geo_dataset(
            images, labels, hp.image_glob, hp.label_glob, hp.crs, hp.res, hp.building_value, transform, hp.ignore_value
        )

    def setup(self, stage: str) -> None:
        hp = self.hparams
        if stage == "fit":
            self._pixel_range = None
            if hp.nodata_p > 0:
                self.train_transform = building_train_transform(
                    hp.patch_size, hp.scale_range, hp.nodata_p, model_band_mean(self)
                )
        if stage in ("fit", "validate"):
            if hp.val_images is None:
                train_area = self._dataset(hp.images, hp.labels, self.train_transform)
                self.train_dataset = _east_split(train_area, hp.val_fraction)[0]
                # torchgeo's roi_split deep-copies the dataset, augmentation included: point the copy
                # back at the pipeline the loaders seed, or training would not follow the seed
                self.train_dataset.transforms.transform = self.train_transform
                self.val_dataset = _east_split(self._dataset(hp.images, hp.labels, None), hp.val_fraction)[1]
            else:
                self.train_dataset = self._dataset(hp.images, hp.labels, self.train_transform)
                self.val_dataset = self._dataset(hp.val_images, hp.val_labels, None)
        if stage == "test":
            if hp.test_images is None or hp.test_labels is None:
                raise ValueError("testing needs test_images and test_labels in the data config")
            self.test_dataset = self._dataset(hp.test_images, hp.test_labels, None)

    def _loader(self, dataset: GeoDataset, sampler: Any, train: bool) -> DataLoader:
        workers = self.hparams.num_workers
        if len(sampler) == 0:
            raise ValueError(
                f"no {self.hparams.patch_size}px patch fits in the {'training' if train else 'evaluation'} "
                f"area {dataset.index.total_bounds.tolist()}; lower patch_size or enlarge the area"
            )
        seeds = AugmentationSeeds(self.train_transform).seed_from_torch() if train else None
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            sampler=sampler,
            drop_last=train,
            num_workers=workers,
            persistent_workers=workers > 0,
            worker_init_fn=seeds,
        )

    def train_dataloader(self) -> DataLoader:
        sampler = RandomGeoSampler(self.train_dataset, self.hparams.patch_size, self.hparams.length)
        return self._loader(self.train_dataset, sampler, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, GridGeoSampler(self.val_dataset, self.hparams.patch_size), train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, GridGeoSampler(self.test_dataset, self.hparams.patch_size), train=False)
