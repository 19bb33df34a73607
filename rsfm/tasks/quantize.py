"""INT8 ONNX models calibrated on the user's own data, behind an accuracy gate (``rsfm export --int8``).

:func:`quantize_onnx` turns an FP32 model written by :func:`rsfm.tasks.onnx.export_onnx` into an
INT8 one with ONNX Runtime's static quantization: QDQ format (QuantizeLinear/DequantizeLinear
pairs around the quantized operators, which ONNX Runtime fuses into integer kernels), the matrix
products (Conv, MatMul, Gemm) only, weights int8 per output channel, activations uint8 with
ranges measured on calibration tiles drawn from the user's images or GeoTIFFs. Uint8 activations
with int8 weights (U8S8) are what ONNX Runtime's x86 integer kernels are built around (VNNI's
``vpdpbusd`` multiplies uint8 by int8); int8 activations measured the same accuracy on this
project's models (measurements in ``docs/howto/deploy.md``).

:func:`evaluate_onnx` measures a model on labelled data: top-1 accuracy of a scene classifier on
class folders or a sample list, IoU (and F1) of the building class of a segmenter on image/mask
tile folders. With ``validate``, :func:`quantize_onnx` measures the FP32 and the INT8 model on
the same data and refuses to write the INT8 model when it loses more than ``max_drop``. Both
figures, the data and the calibration settings are written into the file's metadata (key
``rsfm_quantization``).

Calibration data (``calibration``: files or folders, any mix):

* pictures (JPEG, PNG, WebP, BMP, TIFF without georeferencing): a scene classifier gets each
  whole image resized to its input size, as its predictor does; a segmenter gets tiles of its
  tile size (the contract's ``image_size``, 512 when unknown) cut from images larger than that,
  smaller images whole;
* georeferenced TIFFs (a CRS): tiles of the model's input or tile size on a grid over the
  raster; nodata pixels (GDAL's mask: nodata value, internal mask or alpha band; NaN) are set to
  the band mean, as tiled inference fills them, and tiles without any data are skipped;
* a folder: every image below it, in sorted order; files with other extensions are skipped, and
  in a building tile folder (one that holds ``images`` and ``masks``) only ``images`` is read.
  Links that lead outside the folder are refused (:class:`ValueError` naming the link), links
  to folders inside it are not followed. An image that cannot be read stops the run with an
  error naming it.

Tiles are drawn round-robin over the files in an order shuffled with ``seed`` (each visit takes
one tile of a raster's grid at random), so that every file contributes about equally; the same
data and seed give the same tiles on every machine.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import random
import shutil
import statistics
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from rsfm.data.io import IMAGE_EXTENSIONS, RASTER_EXTENSIONS, ImageReadError, read_image
from rsfm.data.samples import read_sample_list, scan_class_folders
from rsfm.data.segmentation import IGNORE_INDEX
from rsfm.tasks.contract import CLASSIFICATION, InputContract
from rsfm.tasks.onnx_metadata import (
    CONTRACT_METADATA_KEY,
    INPUT_NAME,
    TASK_METADATA_KEY,
    open_onnx_session,
    read_onnx_contract,
)

__all__ = [
    "CALIBRATION_METHODS",
    "DEFAULT_CALIBRATION_SIZE",
    "DEFAULT_MAX_DROP",
    "QUANTIZATION_METADATA_KEY",
    "AccuracyDropError",
    "CalibrationSet",
    "Evaluation",
    "QuantizationReport",
    "calibration_set",
    "check_accuracy_drop",
    "evaluate_onnx",
    "int8_cpu_features",
    "quantize_onnx",
    "read_quantization_metadata",
    "time_onnx",
]

QUANTIZATION_METADATA_KEY = "rsfm_quantization"
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_CALIBRATION_SIZE = 64
DEFAULT_CALIBRATION_METHOD = "minmax"
#: the largest allowed loss of the validation figure (accuracy or IoU, as a fraction: 0.01 is
#: one percentage point)
DEFAULT_MAX_DROP = 0.01
#: the tile side of a segmenter whose contract records no image size (as tiled inference)
FALLBACK_TILE_SIZE = 512
#: the operators quantized: the matrix products, where the time goes. Quantizing every operator
#: ONNX Runtime can (also the residual Add/Mul, norms, softmax, resize) cost the building model
#: 5.5-6 points of IoU in our measurements, these three nothing (docs/howto/deploy.md).
QUANTIZED_OPERATORS = ("Conv", "MatMul", "Gemm")
#: convolutions left in FP32 among QUANTIZED_OPERATORS: ONNX Runtime's int8 grouped convolution is
#: barely faster than its FP32 one, and each quantized one adds quantize/dequantize steps around
#: it. ViTAEv2-S (45 grouped of 65 convolutions) ran 1.34x ONNX Runtime FP32 with them quantized,
#: 1.55x without (benchmarks/README.md, deployment).
FP32_OPERATORS = "Conv with groups > 1"
#: CPU flags of int8 dot-product instructions that ONNX Runtime's integer kernels use
INT8_CPU_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")

_ORT_MISSING = "INT8 export needs onnxruntime (pip install 'rsfm[onnx]')"
_BATCH_SIZE = 8
# calibration inputs per ONNX Runtime call: the calibrator keeps every intermediate tensor of a
# call, so memory grows with this
_CALIBRATION_BATCH = 4
# foreground calibration: candidates ranked by the FP32 model per calibration tile, and the
# share of calibration tiles taken from the top of that ranking (the rest are random)
_FOREGROUND_CANDIDATES = 4
_FOREGROUND_SHARE = 0.75
_SAMPLE_LIST_SUFFIXES = (".csv", ".txt")
_METHOD_NAMES = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}

PathLike = Union[str, os.PathLike]
Progress = Optional[Callable[[str], None]]


class AccuracyDropError(ValueError):
    """The INT8 model lost more than the allowed drop on the validation data."""


@dataclass(frozen=True)
class Evaluation:
    """A model's figure on labelled data.

    Attributes:
        metric: ``"top1_accuracy"`` (scene classifiers) or ``"iou"`` (the building class of a
            segmenter).
        value: the figure, a fraction in [0, 1].
        samples: images (classification) or tiles (segmentation) evaluated.
        data: the data as given.
        details: other figures (``f1`` for segmenters).
    """

    metric: str
    value: float
    samples: int
    data: str
    details: Dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        """``top-1 accuracy 0.9125`` or ``IoU 0.7012 (F1 0.8244)``."""
        name = {"top1_accuracy": "top-1 accuracy", "iou": "IoU"}.get(self.metric, self.metric)
        extra = "".join(f" ({key.upper()} {value:.4f})" for key, value in self.details.items())
        return f"{name} {self.value:.4f}{extra}"


@dataclass
class CalibrationSet:
    """Raw-pixel calibration inputs and where they came from.

    Attributes:
        tiles: ``(in_chans, H, W)`` float32 arrays of raw pixels, nodata filled with the band mean.
        sources: the file of each tile.
        files: distinct files the tiles came from.
        foreground_fraction: with foreground selection, the mean fraction of each chosen tile
            that the FP32 model predicts as foreground; ``None`` otherwise.
        candidate_foreground_fraction: the same over all ranked candidates (what random tiles
            would hold).
    """

    tiles: List[np.ndarray]
    sources: List[Path]
    files: int
    foreground_fraction: Optional[float] = None
    candidate_foreground_fraction: Optional[float] = None


@dataclass
class QuantizationReport:
    """What :func:`quantize_onnx` wrote and measured."""

    output: Path
    metadata: Dict[str, Any]
    fp32: Optional[Evaluation] = None
    int8: Optional[Evaluation] = None


def _require_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError(_ORT_MISSING) from error
    return onnxruntime


def _batches(arrays: Sequence[np.ndarray], batch_size: int) -> Iterator[Tuple[List[int], np.ndarray]]:
    """Indices and stacked batches of equally shaped arrays (shapes grouped, order kept within)."""
    by_shape: Dict[Tuple[int, ...], List[int]] = {}
    for index, array in enumerate(arrays):
        by_shape.setdefault(array.shape, []).append(index)
    for indices in by_shape.values():
        for start in range(0, len(indices), batch_size):
            chosen = indices[start : start + batch_size]
            yield chosen, np.stack([arrays[index] for index in chosen]).astype(np.float32, copy=False)


def _run(session: Any, arrays: Sequence[np.ndarray], batch_size: int = _BATCH_SIZE) -> List[np.ndarray]:
    """The logits of each raw-pixel array, in order."""
    results: List[Optional[np.ndarray]] = [None] * len(arrays)
    for indices, batch in _batches(arrays, batch_size):
        (logits,) = session.run(None, {INPUT_NAME: batch})
        for index, row in zip(indices, logits):
            results[index] = row
    return results  # type: ignore[return-value]


def _foreground(contract: InputContract, logits: np.ndarray) -> np.ndarray:
    """Pixels predicted as the building (foreground) class from ``(K, H, W)`` or ``(B, K, H, W)``
    logits: a positive logit for binary models, the building class (class 1 unless a class is
    named ``building``) winning the argmax otherwise."""
    if contract.binary:
        return logits[..., 0, :, :] > 0
    names = [name.lower() for name in contract.class_names]
    index = names.index("building") if "building" in names else 1
    return logits.argmax(axis=-3) == index


# ---------------------------------------------------------------------------------------
# reading pixels the way the predictors do


def _fit_bands(array: np.ndarray, contract: InputContract, name: str) -> np.ndarray:
    """``(H, W, bands)`` -> ``(H, W, in_chans)``: a single band is repeated for a 3-band model."""
    if array.shape[2] == 1 and contract.in_chans == 3:
        array = np.repeat(array, 3, axis=2)
    if array.shape[2] != contract.in_chans:
        bands = list(contract.bands) if contract.bands else "all"
        raise ValueError(
            f"{name}: has {array.shape[2]} band(s), the model takes {contract.in_chans} (it reads bands {bands})"
        )
    return array


def _scene_resize(contract: InputContract) -> Callable[[np.ndarray], np.ndarray]:
    """Raw ``(H, W, C)`` -> ``(C, S, S)`` float32 resized as the scene predictor does."""
    from rsfm.data.transforms import scene_eval_transform

    if not contract.image_size:
        raise ValueError("the model's contract records no image_size; scene images cannot be resized for it")
    transform = scene_eval_transform(int(contract.image_size))

    def resize(image: np.ndarray) -> np.ndarray:
        resized = transform(image=np.ascontiguousarray(image, dtype=np.float32))["image"]
        return np.ascontiguousarray(resized.transpose(2, 0, 1))

    return resize


def tile_size(contract: InputContract) -> int:
    """The side of calibration tiles: the training image or patch size (512 when unknown)."""
    return int(contract.image_size or FALLBACK_TILE_SIZE)


# ---------------------------------------------------------------------------------------
# calibration files and tiles


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _image_files(root: Path) -> List[Path]:
    """The image files below ``root``, sorted; links must stay inside it (see the module doc)."""
    found: List[Path] = []
    for folder, subfolders, files in os.walk(root):
        here = Path(folder)
        for name in subfolders + files:
            if (here / name).is_symlink() and not _inside(here / name, root):
                raise ValueError(
                    f"{here / name}: a link to {os.path.realpath(here / name)}, outside {root}; "
                    "only files inside the folder are read (copy the file in instead)"
                )
        if "images" in subfolders and "masks" in subfolders:
            subfolders[:] = ["images"]  # a building tile folder: the masks are no input
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        found.extend(
            here / name
            for name in sorted(files)
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")
        )
    return found


def _calibration_files(calibration: Union[PathLike, Sequence[PathLike]]) -> List[Path]:
    paths = [calibration] if isinstance(calibration, (str, os.PathLike)) else list(calibration)
    if not paths:
        raise ValueError("no calibration data given: pass image folders, images or GeoTIFFs")
    files: List[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = _image_files(path)
            if not found:
                raise FileNotFoundError(f"{path}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found below it")
            files.extend(found)
        elif path.is_file():
            if not path.name.lower().endswith(IMAGE_EXTENSIONS):
                raise ValueError(f"{path}: not an image ({', '.join(IMAGE_EXTENSIONS)}) or folder of images")
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: calibration data not found")
    return files


def _gdal_errors() -> Tuple[type, ...]:
    """What rasterio raises for unreadable files (some GDAL errors come as ``CPLE_*`` only)."""
    from rasterio._err import CPLE_BaseError
    from rasterio.errors import RasterioError

    return (RasterioError, CPLE_BaseError)


@dataclass
class _Source:
    """One calibration file and the tiles still to draw from it."""

    path: Path
    raster: bool  # read with rasterio (windows, nodata mask)
    windows: Optional[List[Tuple[int, int, int, int]]] = None  # (row, col, height, width) left to draw
    whole: bool = False  # a scene picture: read whole and resized, once


class _TileDrawer:
    """Draws calibration tiles round-robin over shuffled files (see the module doc)."""

    def __init__(self, contract: InputContract, files: Sequence[Path], seed: int) -> None:
        self.contract = contract
        self.size = tile_size(contract)
        self.rng = random.Random(seed)
        order: List[Union[Path, _Source]] = list(files)
        self.rng.shuffle(order)
        # files not yet opened, then sources with tiles left, in turn
        self.queue: Deque[Union[Path, _Source]] = deque(order)
        self.fill = np.asarray(contract.mean, dtype=np.float32).reshape(-1, 1, 1)
        self.resize = _scene_resize(contract) if contract.task == CLASSIFICATION else None

    def draw(self, count: int) -> Tuple[List[np.ndarray], List[Path]]:
        """Up to ``count`` tiles and their files (fewer when the files hold fewer)."""
        tiles: List[np.ndarray] = []
        origins: List[Path] = []
        while len(tiles) < count and self.queue:
            item = self.queue.popleft()
            source = item if isinstance(item, _Source) else self._open(item)
            tile = self._next_tile(source)
            if source.windows:
                self.queue.append(source)
            if tile is not None:
                tiles.append(tile)
                origins.append(source.path)
        return tiles, origins

    def _open(self, path: Path) -> _Source:
        if path.suffix.lower() in RASTER_EXTENSIONS:
            import rasterio

            try:
                with rasterio.open(path) as dataset:
                    height, width, georeferenced = dataset.height, dataset.width, dataset.crs is not None
            except _gdal_errors() as error:
                raise ImageReadError(f"{path}: cannot read image ({error})") from error
            if self.resize is not None and not georeferenced:
                return _Source(path, raster=True, whole=True)
            return _Source(path, raster=True, windows=self._grid(height, width))
        if self.resize is not None:
            return _Source(path, raster=False, whole=True)
        from PIL import Image

        try:
            with Image.open(path) as image:
                width, height = image.size
        except (OSError, ValueError) as error:
            raise ImageReadError(f"{path}: cannot read image ({type(error).__name__}: {error})") from error
        return _Source(path, raster=False, windows=self._grid(height, width))

    def _grid(self, height: int, width: int) -> List[Tuple[int, int, int, int]]:
        """The tile windows of an image, shuffled; an image smaller than a tile is one window."""
        size = self.size
        rows = range(0, height - size + 1, size) if height >= size else [0]
        cols = range(0, width - size + 1, size) if width >= size else [0]
        windows = [(row, col, min(size, height), min(size, width)) for row in rows for col in cols]
        self.rng.shuffle(windows)
        return windows

    def _next_tile(self, source: _Source) -> Optional[np.ndarray]:
        window = source.windows.pop() if source.windows else None
        if source.raster:
            pixels, valid = self._read_raster(source.path, window)
        else:
            image = _fit_bands(read_image(source.path, self.contract.bands), self.contract, str(source.path))
            if window is not None:
                row, col, height, width = window
                image = image[row : row + height, col : col + width]
            pixels, valid = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32), None
        if valid is not None:
            if not valid.any():
                return None  # nothing but nodata: no calibration value
            pixels = np.where(valid[None], pixels, self.fill).astype(np.float32)
        if self.resize is not None and (source.whole or pixels.shape[1:] != (self.size, self.size)):
            pixels = self.resize(pixels.transpose(1, 2, 0))
        return pixels

    def _read_raster(self, path: Path, window: Optional[Tuple[int, int, int, int]]) -> Tuple[np.ndarray, np.ndarray]:
        """``(in_chans, h, w)`` pixels and the ``(h, w)`` valid mask of a window (whole: None)."""
        import rasterio
        from rasterio.windows import Window

        try:
            with rasterio.open(path) as dataset:
                if self.contract.bands is not None:
                    bands = list(self.contract.bands)
                    if max(bands) > dataset.count:
                        raise ImageReadError(f"{path}: has {dataset.count} band(s), the model reads bands {bands}")
                else:
                    bands = list(range(1, dataset.count + 1))
                area = Window(window[1], window[0], window[3], window[2]) if window is not None else None
                pixels = dataset.read(bands, window=area).astype(np.float32)
                # GDAL's masks (nodata value, internal mask, alpha): valid in any band, as tiled inference
                valid = dataset.read_masks(bands, window=area).any(axis=0)
        except _gdal_errors() as error:
            raise ImageReadError(f"{path}: cannot read pixels ({error})") from error
        valid &= np.isfinite(pixels).all(axis=0)
        image = _fit_bands(pixels.transpose(1, 2, 0), self.contract, str(path))
        return np.ascontiguousarray(image.transpose(2, 0, 1)), valid


def calibration_set(
    fp32_path: PathLike,
    calibration: Union[PathLike, Sequence[PathLike]],
    size: int = DEFAULT_CALIBRATION_SIZE,
    seed: int = 0,
    foreground: bool = False,
) -> CalibrationSet:
    """Draw calibration tiles for a model from the user's images or GeoTIFFs.

    Args:
        fp32_path: the FP32 ONNX model (its contract says bands, input or tile size and band
            means; with ``foreground`` it also ranks candidate tiles).
        calibration: image files, GeoTIFFs or folders of them (see the module doc).
        size: tiles to draw (fewer when the data holds fewer).
        seed: the draw's seed.
        foreground: segmenters only: rank ``4 * size`` candidate tiles by the fraction of
            pixels the FP32 model predicts as buildings, and take three quarters of the tiles
            from the top of that ranking and the rest at random from the others, so that the
            activations of the rare foreground are measured instead of drowned in background.

    Returns:
        The tiles and a summary (:class:`CalibrationSet`).

    Raises:
        ValueError: ``size`` below 1, ``foreground`` for a scene classifier, a link leading out
            of a calibration folder, an image with other bands than the model takes, or data
            that holds no tile with valid pixels.
        rsfm.data.ImageReadError: an image cannot be read (the message names it).
        FileNotFoundError: a path does not exist or a folder holds no image.
    """
    if size < 1:
        raise ValueError(f"calibration size must be at least 1, got {size}")
    contract = read_onnx_contract(fp32_path)
    if foreground and contract.task == CLASSIFICATION:
        raise ValueError("foreground calibration is for segmentation models; this one is a scene classifier")
    files = _calibration_files(calibration)
    drawer = _TileDrawer(contract, files, seed)
    wanted = size * _FOREGROUND_CANDIDATES if foreground else size
    tiles, sources = drawer.draw(wanted)
    if not tiles:
        raise ValueError(f"{_describe_paths(calibration)}: no tile with valid (non-nodata) pixels to calibrate on")
    result = CalibrationSet(tiles, sources, files=len(set(sources)))
    if foreground:
        result = _pick_foreground(fp32_path, contract, result, size, drawer.rng)
    return result


def _pick_foreground(
    fp32_path: PathLike, contract: InputContract, candidates: CalibrationSet, size: int, rng: random.Random
) -> CalibrationSet:
    """The top of the FP32 model's foreground ranking, mixed with random other candidates."""
    session = open_onnx_session(fp32_path)
    fractions = [float(_foreground(contract, logits).mean()) for logits in _run(session, candidates.tiles)]
    ranked = sorted(range(len(fractions)), key=lambda index: -fractions[index])  # stable: draw order on ties
    count = min(size, len(ranked))
    top = max(1, round(count * _FOREGROUND_SHARE))
    chosen = ranked[:top]
    rest = ranked[top:]
    chosen += rng.sample(rest, min(count - top, len(rest)))
    chosen.sort()
    return CalibrationSet(
        [candidates.tiles[index] for index in chosen],
        [candidates.sources[index] for index in chosen],
        files=len({candidates.sources[index] for index in chosen}),
        foreground_fraction=float(np.mean([fractions[index] for index in chosen])),
        candidate_foreground_fraction=float(np.mean(fractions)),
    )


class _CalibrationReader:
    """ONNX Runtime's ``CalibrationDataReader`` over prepared tiles: one batch per item, with the
    ``set_range`` that lets the calibrator run (and forget) one batch at a time."""

    def __init__(self, tiles: Sequence[np.ndarray]) -> None:
        self.items = [{INPUT_NAME: batch} for _, batch in _batches(tiles, _CALIBRATION_BATCH)]
        self.position, self.end = 0, len(self.items)

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        if self.position >= self.end:
            return None
        self.position += 1
        return self.items[self.position - 1]

    def __len__(self) -> int:
        return len(self.items)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.position, self.end = start_index, min(end_index, len(self.items))


# ---------------------------------------------------------------------------------------
# evaluation


def _describe_paths(paths: Union[PathLike, Sequence[PathLike]]) -> str:
    if isinstance(paths, (str, os.PathLike)):
        return str(paths)
    return ", ".join(str(path) for path in paths)


class _ValidationData:
    """Labelled validation samples read in batches, prepared as the model's predictor would."""

    def __init__(self, contract: InputContract, data: PathLike, mask_values: Optional[str]) -> None:
        self.contract, self.data = contract, Path(data)
        if not self.data.exists():
            raise FileNotFoundError(f"{data}: validation data not found")
        if contract.task == CLASSIFICATION:
            self._index_scenes()
        else:
            self._index_tiles(mask_values if mask_values is not None else contract.mask_values)

    def __len__(self) -> int:
        return len(self.samples)

    def _index_scenes(self) -> None:
        data = self.data
        if data.is_file() and data.suffix.lower() in _SAMPLE_LIST_SUFFIXES:
            samples = read_sample_list(data)
        elif data.is_dir():
            samples = scan_class_folders(data)
            for path, _ in samples:
                if path.is_symlink() and not _inside(path, data):
                    raise ValueError(f"{path}: a link to {os.path.realpath(path)}, outside {data}; copy the file in")
        else:
            raise ValueError(
                f"{data}: validation data for a scene classifier is a folder of class folders or a "
                "sample list (.csv/.txt with path,label)"
            )
        names = list(self.contract.class_names)
        unknown = sorted({label for _, label in samples} - set(names))
        if unknown:
            raise ValueError(
                f"{data}: classes {unknown[:10]}{' and more' if len(unknown) > 10 else ''} are not classes of the "
                f"model ({', '.join(names[:30])}); validate on data labelled with the model's class names"
            )
        self.samples = [(path, names.index(label)) for path, label in samples]
        self.resize = _scene_resize(self.contract)

    def _index_tiles(self, mask_values: Optional[str]) -> None:
        from rsfm.data.buildings import BuildingTileDataset

        images, masks = self.data / "images", self.data / "masks"
        if not (images.is_dir() and masks.is_dir()):
            raise FileNotFoundError(
                f"{self.data}: validation data for a segmenter is a folder with images/ and masks/ "
                "(a split of a building tile dataset, e.g. xiamen_buildings/val)"
            )
        for folder in (images, masks):
            for path in folder.iterdir():
                if path.is_symlink() and not _inside(path, self.data):
                    raise ValueError(
                        f"{path}: a link to {os.path.realpath(path)}, outside {self.data}; copy the file in"
                    )
        self.tiles = BuildingTileDataset(images, masks, bands=self.contract.bands, mask_values=mask_values)
        self.samples = self.tiles.pairs

    def batches(self, batch_size: int) -> Iterator[Tuple[List[np.ndarray], List[np.ndarray]]]:
        """Raw ``(C, H, W)`` inputs and their labels (class indices, or ``(H, W)`` masks)."""
        for start in range(0, len(self.samples), batch_size):
            indices = range(start, min(start + batch_size, len(self.samples)))
            if self.contract.task == CLASSIFICATION:
                inputs, labels = [], []
                for index in indices:
                    path, label = self.samples[index]
                    image = _fit_bands(read_image(path, self.contract.bands), self.contract, str(path))
                    inputs.append(self.resize(image))
                    labels.append(np.asarray(label))
            else:
                items = [self.tiles[index] for index in indices]
                inputs = [
                    _fit_bands(item["image"].numpy().transpose(1, 2, 0), self.contract, str(self.samples[i][0]))
                    .transpose(2, 0, 1)
                    .astype(np.float32)
                    for i, item in zip(indices, items)
                ]
                labels = [item["mask"].numpy() for item in items]
            yield inputs, labels


class _Score:
    """Running counts of one model's figure."""

    def __init__(self, contract: InputContract) -> None:
        self.contract = contract
        self.correct = self.seen = 0
        self.true_positive = self.false_positive = self.false_negative = 0

    def add(self, logits: np.ndarray, label: np.ndarray) -> None:
        if self.contract.task == CLASSIFICATION:
            self.correct += int(int(logits.argmax()) == int(label))
            self.seen += 1
            return
        predicted = _foreground(self.contract, logits)
        labelled = label != IGNORE_INDEX
        building = label == 1
        self.true_positive += int((predicted & building).sum())
        self.false_positive += int((predicted & ~building & labelled).sum())
        self.false_negative += int((~predicted & building).sum())
        self.seen += 1

    def result(self, data: str) -> Evaluation:
        if self.contract.task == CLASSIFICATION:
            return Evaluation("top1_accuracy", self.correct / max(self.seen, 1), self.seen, data)
        tp, fp, fn = self.true_positive, self.false_positive, self.false_negative
        # no building in the labels and none predicted: nothing was missed or invented
        iou = tp / (tp + fp + fn) if tp + fp + fn else 1.0
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
        return Evaluation("iou", iou, self.seen, data, {"f1": f1})


def _evaluate(
    paths: Sequence[PathLike], data: PathLike, mask_values: Optional[str] = None, batch_size: int = _BATCH_SIZE
) -> List[Evaluation]:
    """Evaluate models of one contract on the same data, reading it once."""
    contract = read_onnx_contract(paths[0])
    validation = _ValidationData(contract, data, mask_values)
    sessions = [open_onnx_session(path) for path in paths]
    scores = [_Score(contract) for _ in paths]
    for inputs, labels in validation.batches(batch_size):
        for session, score in zip(sessions, scores):
            for logits, label in zip(_run(session, inputs, batch_size), labels):
                score.add(logits, label)
    return [score.result(str(data)) for score in scores]


def evaluate_onnx(
    path: PathLike, data: PathLike, mask_values: Optional[str] = None, batch_size: int = _BATCH_SIZE
) -> Evaluation:
    """Measure an rsfm ONNX model on labelled data with ONNX Runtime.

    Scene classifiers: top-1 accuracy on a folder of class folders (folder names are the model's
    class names; a subset of them is fine) or a sample list (``.csv``/``.txt`` as
    :func:`rsfm.data.read_sample_list` reads), each image resized to the model's input size as
    the predictor does. Segmenters: IoU and F1 of the building class over all pixels of a
    building tile folder (``images/`` and ``masks/``, as :class:`rsfm.data.BuildingTileDataset`
    reads), each tile whole; masks follow ``mask_values`` (default: the model's contract),
    pixels marked 255 under ``"0/1/255=ignore"`` are left out.

    Args:
        path: an ONNX model written by ``rsfm export`` (FP32 or INT8).
        data: the labelled data.
        mask_values: segmenters: the masks' convention (a key of
            :data:`rsfm.data.buildings.MASK_VALUES`), when it differs from the training masks'.
        batch_size: images per ONNX Runtime call.

    Returns:
        The :class:`Evaluation`.

    Raises:
        ValueError: the data does not fit the model (unknown classes, bands, mask values), or
            a link in it leads outside the folder.
        FileNotFoundError: the data or a file it lists is missing.
        ImportError: onnxruntime is not installed.
    """
    return _evaluate([path], data, mask_values, batch_size)[0]


def check_accuracy_drop(fp32: Evaluation, int8: Evaluation, max_drop: float) -> float:
    """The gate: the INT8 figure may be at most ``max_drop`` below the FP32 one.

    Returns:
        The drop (FP32 minus INT8; negative when INT8 does better).

    Raises:
        AccuracyDropError: one line naming both figures, the drop and the bound.
        ValueError: ``max_drop`` is negative, or the two results measure different things.
    """
    if max_drop < 0:
        raise ValueError(f"max_drop must be 0 or more (a fraction: 0.01 is one point), got {max_drop}")
    if (fp32.metric, fp32.samples, fp32.data) != (int8.metric, int8.samples, int8.data):
        raise ValueError("the FP32 and INT8 figures must be measured on the same data with the same metric")
    drop = fp32.value - int8.value
    if drop > max_drop + 1e-12:
        raise AccuracyDropError(
            f"INT8 {int8.describe()} is {drop:.4f} below FP32 {fp32.describe()} on {fp32.data} "
            f"({fp32.samples} samples), more than the allowed drop of {max_drop}; nothing written (calibrate on "
            "data like the validation data, try another --calibration-method, or ship the FP32 model)"
        )
    return drop


# ---------------------------------------------------------------------------------------
# quantization


def _refuse_overwrite(output: Path, inputs: Sequence[Optional[PathLike]]) -> None:
    for given in inputs:
        if given is None:
            continue
        path = Path(given)
        if output.resolve() == path.resolve() or (output.exists() and path.exists() and os.path.samefile(output, path)):
            raise ValueError(f"{output}: is an input ({path}); choose another output file")


def check_inputs(
    contract: InputContract,
    outputs: Sequence[Optional[PathLike]],
    calibration: Optional[Union[PathLike, Sequence[PathLike]]] = None,
    validate: Optional[PathLike] = None,
    mask_values: Optional[str] = None,
    calibration_method: str = DEFAULT_CALIBRATION_METHOD,
    max_drop: Optional[float] = DEFAULT_MAX_DROP,
    calibration_foreground: bool = False,
) -> None:
    """Check quantization settings and data against a model's contract before the long work
    (export, calibration) starts.

    Raises:
        ValueError: an unknown method, a negative ``max_drop``, foreground calibration of a
            scene classifier, an output that is one of the inputs, or validation data that does
            not fit the model.
        FileNotFoundError: missing data.
        ImportError: onnxruntime is not installed.
    """
    _require_onnxruntime()
    if calibration_method not in CALIBRATION_METHODS:
        raise ValueError(
            f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {calibration_method!r}"
        )
    if max_drop is not None and max_drop < 0:
        raise ValueError(f"max_drop must be 0 or more (a fraction: 0.01 is one point), got {max_drop}")
    if calibration_foreground and contract.task == CLASSIFICATION:
        raise ValueError("foreground calibration is for segmentation models; this one is a scene classifier")
    calibration_paths: List[PathLike] = []
    if calibration is not None:
        calibration_paths = [calibration] if isinstance(calibration, (str, os.PathLike)) else list(calibration)
    for output in outputs:
        if output is not None:
            _refuse_overwrite(Path(output), [validate, *calibration_paths])
    if calibration is not None:
        _calibration_files(calibration)
    if validate is not None:
        _ValidationData(contract, validate, mask_values)


def _preprocess(source: Path, target: Path) -> Path:
    """ONNX Runtime's recommended preparation of the FP32 model (graph optimisation and ONNX
    shape inference, so that every tensor to quantize has a known type and rank). Its symbolic
    shape inference is left out: it does not complete on the dynamic-size exported graphs (and
    then leaves a debug file in the working folder). Returns the model to quantize: the
    original when the preparation fails, since quantization works without it."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(source), str(target), skip_symbolic_shape=True)
    except Exception:  # noqa: BLE001  (preparation only helps; see above)
        target.unlink(missing_ok=True)
        return source
    return target


def _grouped_convolutions(source: Path, work: Path) -> Tuple[Path, List[str]]:
    """The model to quantize and the names of its grouped convolutions (see FP32_OPERATORS). The
    quantizer excludes nodes by name: when some nodes have none, a named copy is written into the
    folder ``work`` and returned (``source`` may be the user's file, never written)."""
    import onnx

    model = onnx.load(str(source))
    unnamed = [node for node in model.graph.node if not node.name]
    for number, node in enumerate(unnamed):
        node.name = f"rsfm_{node.op_type}_{number}"
    if unnamed:
        source = work / "named.onnx"
        onnx.save(model, str(source))
    grouped = [
        node.name
        for node in model.graph.node
        if node.op_type == "Conv" and any(attribute.name == "group" and attribute.i > 1 for attribute in node.attribute)
    ]
    return source, grouped


def _quantize(source: Path, target: Path, tiles: Sequence[np.ndarray], method: str) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    source, kept_fp32 = _grouped_convolutions(source, target.parent)

    reader = _CalibrationReader(tiles)
    # ONNX Runtime prints a line per calibration batch of the histogram methods, and warns on the
    # root logger about every 1-D weight it cannot quantize per channel (norms): noise here
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(
                str(source),
                str(target),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=getattr(CalibrationMethod, _METHOD_NAMES[method]),
                op_types_to_quantize=list(QUANTIZED_OPERATORS),
                nodes_to_exclude=kept_fp32,
                # one batch per calibrator pass: the histogram methods keep every intermediate
                # tensor of a pass in memory
                extra_options={"CalibStridedMinMax": 1},
            )
    finally:
        logging.disable(previous)


def read_quantization_metadata(path: PathLike) -> Optional[Dict[str, Any]]:
    """The ``rsfm_quantization`` record of an ONNX file written by ``rsfm export`` (``None``
    when it has none: an FP32 export without ``--validate``)."""
    metadata = open_onnx_session(path, optimize=False).get_modelmeta().custom_metadata_map
    return json.loads(metadata[QUANTIZATION_METADATA_KEY]) if QUANTIZATION_METADATA_KEY in metadata else None


def write_metadata(source: PathLike, target: PathLike, extra: Dict[str, str]) -> None:
    """Save the ONNX model ``source`` as ``target`` with ``extra`` added to its metadata."""
    import onnx

    model = onnx.load(str(source))
    props = {prop.key: prop.value for prop in model.metadata_props}
    props.update(extra)
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save_model(model, str(target))


def _rsfm_metadata(path: PathLike) -> Dict[str, str]:
    """The contract and task metadata of an rsfm ONNX file."""
    metadata = open_onnx_session(path, optimize=False).get_modelmeta().custom_metadata_map
    return {key: metadata[key] for key in (CONTRACT_METADATA_KEY, TASK_METADATA_KEY) if key in metadata}


def quantize_onnx(
    fp32_path: PathLike,
    output: PathLike,
    calibration: Union[PathLike, Sequence[PathLike]],
    *,
    calibration_size: int = DEFAULT_CALIBRATION_SIZE,
    calibration_method: str = DEFAULT_CALIBRATION_METHOD,
    calibration_foreground: bool = False,
    seed: int = 0,
    validate: Optional[PathLike] = None,
    max_drop: Optional[float] = DEFAULT_MAX_DROP,
    mask_values: Optional[str] = None,
    progress: Progress = None,
) -> QuantizationReport:
    """Write an INT8 copy of an rsfm FP32 ONNX model, calibrated on the user's data.

    ONNX Runtime static quantization (QDQ, int8 weights per output channel, uint8 activations)
    of the matrix products (:data:`QUANTIZED_OPERATORS`; grouped convolutions stay FP32,
    :data:`FP32_OPERATORS`) after its recommended pre-processing; activation ranges from ``calibration_size`` tiles of
    ``calibration`` (see the module doc). With ``validate``, both models are measured on that
    labelled data (:func:`evaluate_onnx`) and nothing is written when the INT8 figure is more
    than ``max_drop`` below the FP32 one. The output carries the FP32 model's contract and an
    ``rsfm_quantization`` metadata record (JSON: precision, formats, calibration settings and
    files, validation data, metric, sample count, both figures and the bound). The file is
    written under a temporary name and renamed when complete.

    Args:
        fp32_path: an FP32 model written by :func:`rsfm.tasks.onnx.export_onnx`.
        output: the INT8 ``.onnx`` to write (not one of the inputs).
        calibration: image files, GeoTIFFs or folders of them.
        calibration_size: calibration tiles (or images).
        calibration_method: ``"minmax"`` (default), ``"entropy"`` or ``"percentile"``: how the
            activation ranges are chosen from the calibration activations.
        calibration_foreground: segmenters: calibrate mostly on tiles where the FP32 model
            finds buildings (see :func:`calibration_set`).
        seed: seed of the tile draw.
        validate: labelled data to measure both models on (see :func:`evaluate_onnx`).
        max_drop: the largest allowed loss of the figure (a fraction, 0.01 = one point);
            ``None`` records the figures without a gate.
        mask_values: segmenters: the validation masks' convention, when not the training one.
        progress: called with a line of text at each step (e.g. ``print``).

    Returns:
        A :class:`QuantizationReport` (output, metadata, both evaluations).

    Raises:
        AccuracyDropError: the INT8 model lost more than ``max_drop`` (nothing written).
        ValueError: bad settings, output equal to an input, data that does not fit the model.
        FileNotFoundError, rsfm.data.ImageReadError: missing or unreadable data.
        ImportError: onnxruntime is not installed.
    """
    say = progress or (lambda line: None)
    fp32_path, output = Path(fp32_path), Path(output)
    _refuse_overwrite(output, [fp32_path])
    contract = read_onnx_contract(fp32_path)
    check_inputs(
        contract, [output], calibration, validate, mask_values, calibration_method, max_drop, calibration_foreground
    )
    ort = _require_onnxruntime()
    output.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        tiles = calibration_set(fp32_path, calibration, calibration_size, seed, calibration_foreground)
        side = tile_size(contract)
        say(
            f"calibrating on {len(tiles.tiles)} {'images' if contract.task == CLASSIFICATION else 'tiles'} "
            f"of {side} px from {tiles.files} file(s) ({calibration_method})"
            + (
                f"; predicted building share {tiles.foreground_fraction:.3f} "
                f"(candidates: {tiles.candidate_foreground_fraction:.3f})"
                if tiles.foreground_fraction is not None
                else ""
            )
        )
        prepared = _preprocess(fp32_path, work / "prepared.onnx")
        quantized = work / "int8.onnx"
        _quantize(prepared, quantized, tiles.tiles, calibration_method)
        record: Dict[str, Any] = {
            "precision": "int8",
            "format": "QDQ",
            "weights": "int8, per output channel",
            "activations": "uint8, per tensor",
            "operators": list(QUANTIZED_OPERATORS),
            "fp32_operators": FP32_OPERATORS,
            "onnxruntime": ort.__version__,
            "calibration": {
                "data": _describe_paths(calibration),
                "samples": len(tiles.tiles),
                "files": tiles.files,
                "tile_size": side,
                "method": calibration_method,
                "foreground": calibration_foreground,
                "seed": seed,
            },
        }
        if tiles.foreground_fraction is not None:
            record["calibration"]["foreground_fraction"] = tiles.foreground_fraction
            record["calibration"]["candidate_foreground_fraction"] = tiles.candidate_foreground_fraction
        fp32_result = int8_result = None
        if validate is not None:
            fp32_result, int8_result = _evaluate([fp32_path, quantized], validate, mask_values)
            drop = fp32_result.value - int8_result.value
            say(
                f"validation on {validate} ({fp32_result.samples} samples): FP32 {fp32_result.describe()}, "
                f"INT8 {int8_result.describe()}, drop {drop:.4f}"
                + (f" (allowed {max_drop})" if max_drop is not None else "")
            )
            if max_drop is not None:
                check_accuracy_drop(fp32_result, int8_result, max_drop)
            record["validation"] = _validation_record(fp32_result, int8_result, max_drop)
        extra = dict(_rsfm_metadata(fp32_path), **{QUANTIZATION_METADATA_KEY: json.dumps(record, sort_keys=True)})
        final = work / "final.onnx"
        write_metadata(quantized, final, extra)
        os.replace(final, output)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return QuantizationReport(output, record, fp32_result, int8_result)


def _validation_record(fp32: Evaluation, int8: Optional[Evaluation], max_drop: Optional[float]) -> Dict[str, Any]:
    record: Dict[str, Any] = {"data": fp32.data, "metric": fp32.metric, "samples": fp32.samples, "fp32": fp32.value}
    details = {"fp32": fp32.details} if fp32.details else {}
    if int8 is not None:
        record.update(int8=int8.value, drop=fp32.value - int8.value, max_drop=max_drop)
        if int8.details:
            details["int8"] = int8.details
    if details:
        record["details"] = details
    return record


def fp32_validation_metadata(evaluation: Evaluation) -> Dict[str, str]:
    """The ``rsfm_quantization`` record of an FP32 model measured on validation data."""
    record = {"precision": "fp32", "validation": _validation_record(evaluation, None, None)}
    return {QUANTIZATION_METADATA_KEY: json.dumps(record, sort_keys=True)}


# ---------------------------------------------------------------------------------------
# which to ship


def int8_cpu_features(cpuinfo: PathLike = "/proc/cpuinfo") -> Optional[List[str]]:
    """The int8 dot-product flags of this CPU (``avx512_vnni``, ``avx_vnni``, ``amx_int8``) as
    Linux reports them; ``None`` when the CPU's flags cannot be read (not Linux)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    flags: set = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    if not flags:
        return None
    return [flag for flag in INT8_CPU_FLAGS if flag in flags]


def time_onnx(path: PathLike, batch_size: int = 8, runs: int = 5, warmup: int = 2) -> float:
    """Median seconds of one forward pass of a batch of ``batch_size`` inputs of the contract's
    input (or tile) size on this machine's CPU, after ``warmup`` passes."""
    contract = read_onnx_contract(path)
    session = open_onnx_session(path)
    side = tile_size(contract)
    rng = np.random.default_rng(0)
    mean = np.asarray(contract.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(contract.std, dtype=np.float32).reshape(1, -1, 1, 1)
    pixels = (mean + std * rng.standard_normal((batch_size, contract.in_chans, side, side))).astype(np.float32)
    for _ in range(warmup):
        session.run(None, {INPUT_NAME: pixels})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {INPUT_NAME: pixels})
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed_report(fp32_path: PathLike, int8_path: PathLike, batch_size: int = 8) -> List[str]:
    """Lines saying how fast each model runs here, which is faster, and whether this CPU has the
    int8 instructions that make INT8 pay."""
    side = tile_size(read_onnx_contract(fp32_path))
    fp32, int8 = time_onnx(fp32_path, batch_size), time_onnx(int8_path, batch_size)
    faster = "INT8" if int8 < fp32 else "FP32"
    ratio = max(fp32, int8) / max(min(fp32, int8), 1e-9)
    features = int8_cpu_features()
    if features is None:
        cpu = "this CPU's int8 instructions are unknown (no /proc/cpuinfo)"
    elif features:
        cpu = f"this CPU has {', '.join(features)} (int8 dot products)"
    else:
        cpu = "this CPU has no VNNI/AMX int8 instructions (AVX-512 VNNI, AVX-VNNI or AMX make INT8 pay)"
    return [
        f"speed here, batch {batch_size} of {side}x{side} px: FP32 {fp32 * 1000:.1f} ms, INT8 {int8 * 1000:.1f} ms; "
        f"{faster} is {ratio:.2f}x faster on this machine",
        cpu,
    ]
