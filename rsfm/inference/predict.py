"""``predict_raster``: run a task checkpoint over whole GeoTIFF scenes, tile by tile, into
georeferenced rasters and polygons, at memory that does not depend on the scene size; and
``predict_change``: the same for a change-detection checkpoint over two scenes of one place
(read as one, :mod:`rsfm.inference.pair`), through the same jobs.

Everything that can be checked is checked before the first tile (inputs, options, every file
that will be written against the inputs, writable output folders), and a failed run leaves no
unfinished files behind unless it was asked to resume."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import rasterio
from affine import Affine
from rasterio._err import CPLE_BaseError  # what rasterio raises for some GDAL errors; not exported elsewhere

from rsfm.data.tiling import TileGrid
from rsfm.inference.background import Prefetcher, Worker
from rsfm.inference.blending import BlendAccumulator
from rsfm.inference.errors import InferenceIOError, error_reason, needs_torch, write_fix
from rsfm.inference.inputs import PathLike, RasterInput, check_input, expand_inputs
from rsfm.inference.outputs import OutputEncoding, OutputType
from rsfm.inference.pair import RasterPair, check_pair
from rsfm.inference.predictor import BasePredictor, Predictor, is_onnx_model, load_predictor
from rsfm.inference.reader import Crop, CropBatch, TileBatch, iter_crop_batches, iter_tile_batches
from rsfm.inference.resume import file_identity, temporary_path
from rsfm.inference.vectorize import partial_vector_path, vector_driver, vector_side_files, write_polygons
from rsfm.inference.writer import OutputSpec, PartialRaster, cog_path, cog_side_files, partial_path, state_path
from rsfm.tasks.contract import CHANGE

ProgressCallback = Callable[[Path, int, int], None]
_Source = Union[RasterInput, RasterPair]  # what a job reads: one raster, or two dates read as one

GDAL_CACHE_BYTES = 16 * 2**20
"""GDAL's block cache while predicting. GDAL's default (5% of RAM) lets the cache, and so the
process, grow with the raster; tiles are read row by row, so a small cache is enough."""

_PRECISIONS = {"32": "32-true", "32-true": "32-true", "bf16": "bf16-mixed", "bf16-mixed": "bf16-mixed"}


@dataclass(frozen=True)
class PredictionResult:
    """What one input produced.

    Attributes:
        input: the input raster (of a change map: the after date).
        raster: the output raster.
        vector: the polygon file, if requested.
        polygons: number of polygons written (None without ``vector``).
        skipped: the output already existed and ``resume`` left it as it was.
        before: the before date of a change map (None for one raster).
    """

    input: Path
    raster: Path
    vector: Optional[Path] = None
    polygons: Optional[int] = None
    skipped: bool = False
    before: Optional[Path] = None


def _check_options(tile_size: int, overlap: int, batch_size: int, device: str, precision: str) -> str:
    if tile_size < 16:
        raise ValueError(f"--tile-size must be at least 16 pixels, got {tile_size}")
    if not 0 <= overlap <= tile_size // 2:
        raise ValueError(f"--overlap must be between 0 and tile-size/2 = {tile_size // 2} pixels, got {overlap}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device must be cpu, cuda or auto, got {device!r}")
    if precision not in _PRECISIONS:
        raise ValueError(f"--precision must be 32 or bf16, got {precision!r}")
    if _PRECISIONS[precision] == "bf16-mixed" and device != "cuda":
        raise ValueError("--precision bf16 needs --device cuda; on the CPU use --precision 32")
    return _PRECISIONS[precision]


def _check_onnx_options(checkpoint: Path, precision: str, devices: Union[int, str], num_nodes: int) -> None:
    """What an ONNX model cannot do: onnxruntime runs it in this one process, at the precision
    it was exported (or quantised) with; Lightning Fabric, which shares inputs out among
    processes and casts to bf16, is for PyTorch checkpoints."""
    if _PRECISIONS.get(precision) == "bf16-mixed":
        raise ValueError(
            f"{checkpoint}: --precision bf16 is for PyTorch checkpoints; an ONNX model runs at the precision it "
            "was exported or quantised with (use --precision 32)"
        )
    if str(devices) != "1" or num_nodes != 1:
        raise ValueError(
            f"{checkpoint}: an ONNX model runs in one process (--devices 1 --num-nodes 1); for several GPUs run "
            "one command per GPU on its share of the inputs (CUDA_VISIBLE_DEVICES=N), or use the .ckpt"
        )


def _cuda_available(checkpoint: Path) -> bool:
    try:
        import torch
    except ImportError as error:
        raise needs_torch(f"{checkpoint}: a task checkpoint (.ckpt)") from error
    return torch.cuda.is_available()


@dataclass(frozen=True)
class _Processes:
    """This process among those that share the inputs out, file by file."""

    global_rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    barrier: Callable[[], None] = lambda: None


def _launch_fabric(
    model: Predictor, device: str, devices: Union[int, str], num_nodes: int, precision: str
) -> _Processes:
    """Start the processes of a PyTorch checkpoint with Lightning Fabric and move the model to
    this process's device."""
    from lightning.fabric import Fabric

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
        fabric = Fabric(accelerator=device, devices=devices, num_nodes=num_nodes, precision=precision)
    fabric.launch()
    model.to(fabric.device, fabric.autocast)
    return _Processes(fabric.global_rank, fabric.world_size, fabric.local_rank, fabric.barrier)


_FINAL, _RESUME_STATE, _TEMPORARY = "final", "resume state", "temporary"


@dataclass(frozen=True)
class _Output:
    """A file a job may write.

    Attributes:
        path: the file.
        role: what it is, for messages (``the unfinished output raster``).
        kind: ``_FINAL`` (the result), ``_RESUME_STATE`` (what ``resume`` continues from) or
            ``_TEMPORARY``.
        option: the command-line option that names it (``--output`` or ``--vector``).
    """

    path: Path
    role: str
    kind: str
    option: str


def _job_outputs(raster: Path, vector: Optional[Path], cog: bool) -> Tuple[_Output, ...]:
    """Every file a job may write, named by the same functions the writers use; the one list
    that the checks against inputs and the clean-up after a failure rely on."""
    state = state_path(raster)
    outputs = [
        _Output(raster, "the output raster", _FINAL, "--output"),
        _Output(partial_path(raster), f"the unfinished output raster (of {raster.name})", _RESUME_STATE, "--output"),
        _Output(state, f"the resume state (of {raster.name})", _RESUME_STATE, "--output"),
        _Output(temporary_path(state), f"the resume state's temporary file (of {raster.name})", _TEMPORARY, "--output"),
    ]
    if cog:
        converted = cog_path(raster)
        outputs.append(_Output(converted, f"the Cloud-Optimized copy (of {raster.name})", _TEMPORARY, "--output"))
        outputs += [
            _Output(path, f"an overview file of the Cloud-Optimized copy (of {raster.name})", _TEMPORARY, "--output")
            for path in cog_side_files(converted)
        ]
    if vector is not None:
        unfinished = partial_vector_path(vector)
        outputs.append(_Output(vector, "the polygon file", _FINAL, "--vector"))
        outputs.append(_Output(unfinished, f"the unfinished polygon file (of {vector.name})", _TEMPORARY, "--vector"))
        outputs += [
            _Output(path, f"a journal of the unfinished polygon file (of {vector.name})", _TEMPORARY, "--vector")
            for path in vector_side_files(unfinished)
        ]
    return tuple(outputs)


@dataclass(frozen=True)
class _Job:
    source: _Source
    raster: Path
    vector: Optional[Path]
    outputs: Tuple[_Output, ...] = ()


def _file_keys(path: Path) -> List[Tuple[object, ...]]:
    """What makes two names the same file: the resolved real path (symbolic links, ``..``) and,
    for a file that exists, its device and inode, which is what ``os.path.samefile`` compares
    (hard links, other spellings on case-insensitive file systems)."""
    keys: List[Tuple[object, ...]] = [("path", os.path.normcase(os.path.realpath(path)))]
    try:
        stat = os.stat(path)
    except OSError:
        return keys
    return keys + [("inode", stat.st_dev, stat.st_ino)]


def _check_written_files(jobs: List[_Job], checkpoint: Path) -> None:
    """Refuse a run that would write over an input or the checkpoint, or write one file for
    two jobs, before anything is written.

    Raises:
        ValueError: naming both files and the fix.
    """
    protected: Dict[Tuple[object, ...], Tuple[str, str]] = {}
    for key in _file_keys(checkpoint):
        protected[key] = (f"the checkpoint {checkpoint}", "move the checkpoint")
    for job in jobs:
        for read in job.source.files:
            for key in _file_keys(read.path):
                protected[key] = (f"the input {read.path}", "rename the input")
    claimed: Dict[Tuple[object, ...], Tuple[_Job, _Output]] = {}
    for job in jobs:
        for output in job.outputs:
            for key in _file_keys(output.path):
                if key in protected:
                    victim, remedy = protected[key]
                    raise ValueError(
                        f"{output.path}: {output.role} would overwrite {victim}; "
                        f"choose another {output.option} or {remedy}"
                    )
                other_job, other = claimed.setdefault(key, (job, output))
                if other is not output:
                    raise ValueError(
                        f"{output.path}: would be written twice, as {other.role} for {other_job.source.path} and as "
                        f"{output.role} for {job.source.path}; rename one of the inputs or run them separately"
                    )


def _plan_jobs(
    sources: Sequence[_Source],
    output: Path,
    vector: Optional[Path],
    checkpoint: Path,
    *,
    resume: bool,
    overwrite: bool,
    cog: bool,
) -> Tuple[List[_Job], List[PredictionResult]]:
    """Output paths per input, checked against the inputs and each other; finished outputs
    are skipped when resuming."""
    several = len(sources) > 1 or output.is_dir() or not output.suffix
    if several:
        if output.suffix and not output.is_dir():
            raise ValueError(f"{output}: with several inputs --output names a directory, not a file")
        if vector is not None and vector.suffix and not vector.is_dir():
            raise ValueError(f"{vector}: with several inputs --vector names a directory (one .gpkg per input)")
        rasters = [output / f"{source.path.stem}.tif" for source in sources]
        vectors = [vector / f"{source.path.stem}.gpkg" if vector is not None else None for source in sources]
    else:
        if output.suffix.lower() not in (".tif", ".tiff"):
            raise ValueError(f"{output}: output raster must end in .tif or .tiff")
        rasters, vectors = [output], [vector]
    for polygons in vectors:
        if polygons is not None:
            vector_driver(polygons)
    planned = [
        _Job(source, raster, polygons, _job_outputs(raster, polygons, cog))
        for source, raster, polygons in zip(sources, rasters, vectors)
    ]
    _check_written_files(planned, checkpoint)
    jobs, finished = [], []
    for job in planned:
        raster, polygons = job.raster, job.vector
        if raster.exists():
            complete = not partial_path(raster).exists() and (polygons is None or polygons.exists())
            if resume and complete:
                finished.append(PredictionResult(job.source.path, raster, polygons, skipped=True))
                continue
            if not (overwrite or resume):
                raise ValueError(f"{raster}: already exists (pass --overwrite to replace it, or --resume to keep it)")
        elif polygons is not None and polygons.exists() and not (overwrite or resume):
            raise ValueError(f"{polygons}: already exists (pass --overwrite to replace it)")
        jobs.append(job)
    return jobs, finished


def _check_folder_writable(folder: Path, option: str) -> None:
    """Create and remove a file in ``folder`` (or, when it does not exist yet, in the folder
    that will hold it), so that an output folder that cannot be written fails before any work.
    This also catches what permission bits do not show: read-only mounts, immutable folders,
    and folders that root may not write either.

    Raises:
        InferenceIOError: naming the folder and the fix.
    """
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise InferenceIOError(existing, "is a file, not a folder", f"choose another {option}")
    try:
        handle, probe = tempfile.mkstemp(prefix=".rsfm-write-test-", dir=existing)
    except OSError as error:
        raise InferenceIOError(
            existing, f"folder is not writable: {error_reason(error)}", write_fix(error.errno, option)
        ) from error
    os.close(handle)
    os.unlink(probe)


def _check_outputs_writable(jobs: List[_Job]) -> None:
    folders: Dict[Path, str] = {}
    for job in jobs:
        folders.setdefault(job.raster.parent, "--output")
        if job.vector is not None:
            folders.setdefault(job.vector.parent, "--vector")
    for folder, option in folders.items():
        _check_folder_writable(folder, option)


def _check_pixels(jobs: List[_Job], model: BasePredictor) -> None:
    """Compare a sample of each input's pixels with the pixels the model was trained on."""
    for job in jobs:
        for read in job.source.files:
            if read.pixels is not None:
                model.check_pixels(read.pixels, str(read.path), stacklevel=4)


def _output_spec(
    source: _Source, grid: TileGrid, model: BasePredictor, encoding: OutputEncoding, tags: Dict[str, str]
) -> OutputSpec:
    common = dict(
        count=encoding.count, crs=source.crs, descriptions=encoding.descriptions, scales=encoding.scales, tags=tags
    )
    if model.contract.dense:
        return OutputSpec(width=source.width, height=source.height, transform=source.transform, **common)
    # one pixel per tile, centred on the tile: pixel size = stride, origin shifted by overlap/2
    transform = source.transform @ Affine.translation(grid.overlap / 2, grid.overlap / 2) @ Affine.scale(grid.stride)
    return OutputSpec(width=grid.cols, height=grid.rows, transform=transform, block_size=None, **common)


def _predict_crops(model: BasePredictor, batch: CropBatch, tile_size: int, batch_size: int) -> np.ndarray:
    """Probabilities (tiles, channels, tile_size, tile_size) of a batch's windows from the model
    run on its crops: crops of one shape go through the model together, ``batch_size`` at a time,
    in the order the batch lists them (so a resumed run computes exactly what an uninterrupted
    one did). Pixels that no crop predicts (nodata, past the raster) are 0."""
    probabilities = np.zeros((len(batch.tiles), model.num_outputs, tile_size, tile_size), dtype=np.float32)
    shapes: Dict[Tuple[int, ...], List[Crop]] = {}
    for crop in batch.crops:
        shapes.setdefault(crop.pixels.shape, []).append(crop)
    for crops in shapes.values():
        for start in range(0, len(crops), batch_size):
            group = crops[start : start + batch_size]
            predicted = model(np.stack([crop.pixels for crop in group]), np.stack([crop.valid for crop in group]))
            for crop, values in zip(group, predicted):
                for use in crop.uses:
                    window = probabilities[use.tile][(slice(None), *use.window)]
                    np.copyto(window, values[(slice(None), *use.crop)], where=use.take)
    return probabilities


def _run_tiles(
    job: _Job,
    grid: TileGrid,
    model: BasePredictor,
    encoding: OutputEncoding,
    partial: PartialRaster,
    batch_size: int,
    progress: bool,
    position: int,
    progress_callback: Optional[ProgressCallback],
) -> None:
    """Predict the tiles not yet written: a reader thread reads, this thread runs the model, a
    writer thread blends and writes. Batches are fixed groups of the tile sequence (see
    :func:`rsfm.inference.reader.first_batch_tile`), so the tiles of rows before ``first_row`` in the first batch are
    predicted again and dropped. Dense models (segmentation, change) run on the rectangles of
    valid data of each window (:mod:`rsfm.inference.crops`), scene models on whole windows."""
    from tqdm.auto import tqdm

    dense = model.contract.dense
    first_row = grid.first_row_reaching(partial.rows_done) if dense else partial.rows_done
    accumulator = BlendAccumulator(grid, model.num_outputs, first_row) if dense else None
    nodata_pixel = np.zeros((1, 1), dtype=bool)
    valid_pixel = np.ones((1, 1), dtype=bool)

    def write(item: Tuple[Union[TileBatch, CropBatch], Optional[np.ndarray]]) -> None:
        batch, probabilities = item
        results = list(zip(batch.tiles, probabilities if probabilities is not None else [], batch.valid))
        results += [(tile, None, None) for tile in batch.skipped]
        for (row, col), values, valid in results:
            if row < first_row:
                continue  # part of the first batch when resuming: already written
            if accumulator is None:
                pixel = (values[:, None, None], valid_pixel) if values is not None else (None, nodata_pixel)
                partial.write(row, col, encoding.encode(*pixel))
                continue
            for region in accumulator.add(row, col, values, valid):
                partial.write(region.row_off, region.col_off, encoding.encode(region.values, region.valid))

    total = len(grid)
    done = first_row * grid.cols
    bar = tqdm(
        total=total,
        initial=done,
        unit="tile",
        desc=job.source.path.name,
        disable=not progress,
        position=position,
        dynamic_ncols=True,
        file=sys.stderr,
    )
    writer = Worker(write)
    try:
        read = iter_crop_batches if dense else iter_tile_batches
        with Prefetcher(lambda: read(job.source, grid, batch_size, first_row)) as batches:
            for batch in batches:
                probabilities = None
                if batch.tiles:
                    probabilities = (
                        _predict_crops(model, batch, grid.tile_size, batch_size)
                        if dense
                        else model(batch.pixels, batch.valid)
                    )
                writer.submit((batch, probabilities))
                new = sum(1 for row, _ in batch.tiles + batch.skipped if row >= first_row)
                done += new
                bar.update(new)
                if progress_callback is not None:
                    progress_callback(job.source.path, done, total)
    finally:
        bar.close()
        writer.close()
    if not partial.complete:
        raise RuntimeError(f"{partial.path}: {partial.rows_done} of {partial.height} rows written after the last tile")


@dataclass
class _Made:
    """What a job has made so far that a failed run removes again."""

    folders: List[Path] = field(default_factory=list)
    partial: bool = False  # started its unfinished raster (replacing one left by an earlier run)
    vector: bool = False


def _make_folder(folder: Path) -> List[Path]:
    """Create ``folder`` and its missing parents; return those created, deepest first."""
    missing = []
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    if missing:
        missing[0].mkdir(parents=True, exist_ok=True)
    return missing


@contextlib.contextmanager
def _writing(path: Path, option: str, errors: Tuple[type, ...] = ()) -> Iterator[None]:
    """Turn an error while writing ``path`` (``OSError``, GDAL's errors and ``errors``) into an
    :class:`InferenceIOError` naming the file and the fix. GDAL reports a failed write as
    "Write failed" (the reason, e.g. "No space left on device", goes to stderr), so the fix then
    also says how much space is left."""
    try:
        yield
    except InferenceIOError:
        raise  # already says which file (an input that could not be read)
    except (OSError, CPLE_BaseError) + errors as error:
        code = getattr(error, "errno", None)
        target = Path(error.filename) if isinstance(error, OSError) and error.filename else path
        fix = write_fix(code, option)
        if code is None:
            fix = f"{_space_left(target.parent)}; {fix}"
        raise InferenceIOError(target, f"cannot write: {error_reason(error)}", fix) from error


def _space_left(folder: Path) -> str:
    """Free space in ``folder`` and this process's file-size limit (``ulimit -f``), if any."""
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    try:
        text = f"{shutil.disk_usage(folder).free / 2**20:.0f} MB free there"
    except OSError:
        text = "free space unknown"
    try:
        import resource  # not on Windows
    except ImportError:
        return text
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        text += f", files limited to {limit / 2**20:.1f} MB (ulimit -f)"
    return text


def _predict_file(
    job: _Job,
    model: BasePredictor,
    checkpoint: Path,
    made: _Made,
    *,
    tile_size: int,
    overlap: int,
    batch_size: int,
    output_type: OutputType,
    cog: bool,
    simplify: float,
    min_area: float,
    resume: bool,
    progress: bool,
    position: int,
    progress_callback: Optional[ProgressCallback],
) -> PredictionResult:
    source = job.source
    grid = TileGrid(source.width, source.height, tile_size, overlap)
    encoding = OutputEncoding(output_type, model.num_outputs, model.class_names)
    settings = {
        **source.resume_settings(),
        "checkpoint": file_identity(checkpoint),
        "tile_size": tile_size,
        "overlap": overlap,
        "output_type": output_type.value,
        "task": model.kind,
    }
    tags = {
        "rsfm_checkpoint": checkpoint.name,
        "rsfm_task": model.kind,
        "rsfm_class_names": ",".join(encoding.labels),
        "rsfm_tile_size": str(tile_size),
        "rsfm_overlap": str(overlap),
        **source.tags(),
    }
    spec = _output_spec(source, grid, model, encoding, tags)
    with _writing(partial_path(job.raster), "--output"):
        made.folders += _make_folder(job.raster.parent)
        made.partial = True
        with PartialRaster(job.raster, spec, settings, resume) as partial:
            if not partial.complete:
                _run_tiles(job, grid, model, encoding, partial, batch_size, progress, position, progress_callback)
    polygons = None
    if job.vector is not None:
        from pyogrio.errors import DataLayerError, DataSourceError  # raised for files OGR cannot write

        with _writing(partial_vector_path(job.vector), "--vector", (DataLayerError, DataSourceError)):
            made.folders += _make_folder(job.vector.parent)
            polygons = write_polygons(partial.path, job.vector, encoding, simplify=simplify, min_area=min_area)
        made.vector = True
    resampling = "nearest" if output_type is OutputType.CLASSES else "average"
    with _writing(cog_path(job.raster) if cog else job.raster, "--output"):
        partial.finish(cog=cog, resampling=resampling)
    return PredictionResult(source.path, job.raster, job.vector, polygons)


class _CallerStop:
    """The caller's progress callback, remembering what it raised: a run the caller stops is
    interrupted, not failed, and keeps its partial outputs for ``resume=True``."""

    def __init__(self, callback: ProgressCallback) -> None:
        self.callback = callback
        self.error: Optional[BaseException] = None

    def __call__(self, path: Path, done: int, total: int) -> None:
        try:
            self.callback(path, done, total)
        except BaseException as error:
            self.error = error
            raise


def _remove_outputs(job: _Job, made: _Made, keep_resume_state: bool) -> None:
    """Remove what a job that did not finish wrote: its temporary files, its polygon file if
    it wrote one, its unfinished raster and resume state if it started them and they are not
    kept for resuming, and the folders it created if they are empty again. The final raster is
    only ever written by the job's last step."""
    for output in job.outputs:
        if output.kind == _FINAL and not (output.path == job.vector and made.vector):
            continue
        if output.kind == _RESUME_STATE and (keep_resume_state or not made.partial):
            continue
        with contextlib.suppress(OSError):  # a folder that cannot be written cannot be cleaned either
            output.path.unlink(missing_ok=True)
    for folder in made.folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _run_job(
    job: _Job, model: BasePredictor, checkpoint: Path, stop: Optional[_CallerStop], *, resume: bool, **options: Any
) -> PredictionResult:
    """:func:`_predict_file`, cleaning up when it fails.

    An interrupted job (Ctrl-C, or the caller's progress callback raised) keeps its unfinished
    raster and resume state, so that ``resume=True`` continues it. A failed job removes them,
    unless the run was asked to resume: then they are what makes resuming possible, and the
    error says that they were kept.
    """
    made = _Made()
    try:
        return _predict_file(job, model, checkpoint, made, resume=resume, **options)
    except BaseException as error:
        caller_stopped = stop is not None and stop.error is not None
        interrupted = caller_stopped or not isinstance(error, Exception)
        unfinished = partial_path(job.raster)
        _remove_outputs(job, made, keep_resume_state=interrupted or resume)
        if caller_stopped and error is not stop.error:
            raise stop.error from None  # the caller's own exception, not its wrapping
        if interrupted or not isinstance(error, InferenceIOError):
            raise
        if not resume:
            note = "partial outputs removed" if made.partial else "nothing was written"
        elif unfinished.exists():
            note = f"{unfinished.name} kept: fix this and run the command again with --resume to continue"
        else:
            note = "nothing to resume yet"
        raise InferenceIOError(error.path, error.reason, f"{error.fix}; {note}") from error


def predict_raster(
    inputs: Union[PathLike, Sequence[PathLike]],
    checkpoint: PathLike,
    output: PathLike,
    *,
    vector: Optional[PathLike] = None,
    tile_size: Optional[int] = None,
    overlap: Optional[int] = None,
    batch_size: int = 8,
    bands: Optional[Sequence[int]] = None,
    device: str = "auto",
    precision: str = "32",
    output_type: Union[str, OutputType] = OutputType.CLASSES,
    cog: bool = False,
    simplify: float = 0.0,
    min_area: float = 0.0,
    resume: bool = False,
    overwrite: bool = False,
    strict: bool = False,
    devices: Union[int, str] = 1,
    num_nodes: int = 1,
    progress: bool = True,
    progress_callback: Optional[ProgressCallback] = None,
) -> List[PredictionResult]:
    """Run an rsfm model over whole rasters, tile by tile: a task checkpoint with PyTorch, or a
    model exported from one (``rsfm export``) with onnxruntime, the same way and without torch.

    Segmentation checkpoints give a raster on the input's grid (same size, CRS and
    transform); scene-classification checkpoints give one pixel per tile, on a grid of
    ``tile_size - overlap`` input pixels centred on the tiles. Overlapping tiles are blended
    with smooth weights; nodata/masked input pixels are nodata (255) in the output and tiles
    without valid pixels are not run. A segmentation model runs on the valid data of each tile
    (:mod:`rsfm.inference.crops`): a region of valid pixels that fits in a tile is taken whole,
    so imagery surrounded by nodata is predicted as it would be alone, and a larger one gets a
    full tile moved onto it, so nodata borders and the raster's edges look like image edges
    (nothing is padded); only nodata inside a region is filled with the band mean. Outputs are
    written as ``<name>.partial.tif`` and renamed when complete.

    Before any work, every input is checked (readable to its last block, bands, a sample of
    its pixels against the model's training pixels), every file the run would write (outputs,
    their unfinished and temporary files, resume state) is checked not to be an input or the
    checkpoint, also through a link, and the output folders are checked to be writable. A run
    that fails removes the unfinished outputs it wrote, unless ``resume`` is set; one that is
    interrupted (Ctrl-C, or ``progress_callback`` raising) keeps them for ``resume``.

    Args:
        inputs: raster files, glob patterns or directories.
        checkpoint: an rsfm task checkpoint (``.ckpt``, run with PyTorch) or an ONNX model written
            by ``rsfm export`` (``.onnx``, run with onnxruntime; needs no torch); the suffix
            decides. Its normalisation and band count apply.
        output: output GeoTIFF for one input; a directory (``<input stem>.tif`` inside) for
            several.
        vector: polygons of the predicted classes (segmentation only): a ``.gpkg`` or
            ``.geojson`` file for one input, a directory (``<input stem>.gpkg``) for several.
        tile_size: tile side in pixels; default: the checkpoint's training image or patch size
            (its input contract), 512 when it records none.
        overlap: pixels shared by neighbouring tiles (at most ``tile_size // 2``; default
            ``min(64, tile_size // 4)``). Tiled results equal inference on the whole valid
            area when the model's receptive-field radius is at most ``overlap // 4`` pixels.
        batch_size: tiles per forward pass (consecutive tiles in row-major order).
        bands: 1-based input bands to use, in model order (default: the checkpoint's bands, else all
            but alpha).
        device: ``cpu``, ``cuda`` or ``auto`` (cuda when available). For an ONNX model ``cuda`` is
            onnxruntime's CUDA execution provider (the ``onnxruntime-gpu`` package).
        precision: ``32`` or ``bf16`` (mixed precision, CUDA only; PyTorch checkpoints only).
        output_type: ``classes`` (class index + its probability) or ``probabilities`` (one
            band per class); probabilities are stored as uint8 ``round(p * 254)``.
        cog: write Cloud-Optimized GeoTIFFs with overviews.
        simplify: polygon simplification tolerance, in CRS units (metres for UTM).
        min_area: drop polygons smaller than this, in square CRS units.
        resume: continue partial outputs of an interrupted run made with the same settings,
            and keep outputs that are already complete.
        overwrite: replace existing outputs.
        strict: refuse inputs whose pixels differ in data type or value range from those the
            model was trained on (checkpoints that record them), instead of warning.
        devices: processes per node (GPUs), or ``"auto"``. With more than one process (or
            ``num_nodes > 1``) Lightning Fabric launches them and the inputs are shared out
            file by file; a single raster is not split. An ONNX model runs in one process.
        num_nodes: machines taking part (Lightning's cluster environments: SLURM, torchrun).
        progress: show a progress bar (tiles/s and time left) per input on stderr.
        progress_callback: called after every batch with (input, tiles done, tiles in the
            input); raising from it stops the run, which ``resume=True`` then continues.

    Returns:
        One result per input handled by this process.

    Raises:
        FileNotFoundError: an input or the checkpoint does not exist.
        ImportError: the model's runtime is not installed (``rsfm[torch]`` for a ``.ckpt``,
            ``rsfm[runtime]`` for an ``.onnx``).
        ValueError: invalid options or inputs: a model file that is not what its suffix says,
            options an ONNX model cannot take (``devices``, ``num_nodes``, bf16), unreadable,
            truncated or damaged inputs, an output that would overwrite an input or the
            checkpoint, outputs that exist without ``overwrite``/``resume``, and with ``strict``
            pixels unlike the training pixels (:class:`rsfm.data.pixel_range.PixelRangeMismatch`).
            Raised before any tile is predicted.
        InferenceIOError: an ``OSError`` naming the file and the fix: an output folder that
            cannot be written (before any tile is predicted), or a read or write that failed
            during the run (the message says whether partial outputs were removed or kept).

    Warns:
        PixelRangeWarning: an input's pixels differ from the training pixels (without ``strict``).
        UserWarning: an input has no CRS.
    """
    output_type = OutputType(output_type)
    checkpoint = Path(checkpoint)
    onnx, device = _runtime(checkpoint, device, precision, devices, num_nodes)
    files = expand_inputs(inputs)
    run = _load(checkpoint, onnx, device, precision, strict, tile_size, overlap, batch_size)
    model = run.model
    if model.kind == CHANGE:
        raise ValueError(
            f"{checkpoint}: the model detects change between two dates: use rsfm predict-change BEFORE AFTER "
            "(rsfm.predict_change in Python)"
        )
    sources = [
        check_input(path, model.in_chans, bands if bands is not None else model.contract.bands) for path in files
    ]
    vector_path = Path(vector) if vector is not None else None
    if vector_path is not None and not model.contract.dense:
        raise ValueError(
            f"{checkpoint}: polygons need a segmentation checkpoint; this one classifies scenes (drop --vector)"
        )
    jobs, results = _plan_jobs(
        sources, Path(output), vector_path, checkpoint, resume=resume, overwrite=overwrite, cog=cog
    )
    return _run_jobs(
        run,
        jobs,
        results,
        devices=devices,
        num_nodes=num_nodes,
        progress_callback=progress_callback,
        output_type=output_type,
        cog=cog,
        simplify=simplify,
        min_area=min_area,
        resume=resume,
        progress=progress,
    )


def predict_change(
    before: PathLike,
    after: PathLike,
    checkpoint: PathLike,
    output: PathLike,
    *,
    vector: Optional[PathLike] = None,
    tile_size: Optional[int] = None,
    overlap: Optional[int] = None,
    batch_size: int = 8,
    bands: Optional[Sequence[int]] = None,
    device: str = "auto",
    precision: str = "32",
    output_type: Union[str, OutputType] = OutputType.CLASSES,
    cog: bool = False,
    simplify: float = 0.0,
    min_area: float = 0.0,
    resampling: str = "bilinear",
    resume: bool = False,
    overwrite: bool = False,
    strict: bool = False,
    progress: bool = True,
    progress_callback: Optional[ProgressCallback] = None,
) -> PredictionResult:
    """Map the change between two rasters of one place with a change-detection checkpoint, tile
    by tile, as :func:`predict_raster` maps one raster (the same tiling, blending, checks,
    resuming and outputs).

    The two rasters may differ in CRS, resolution, extent and grid. The output is on the after
    raster's grid, restricted to the window that the before raster's footprint overlaps (its
    bounding box in the after raster's CRS); the before raster is warped onto that grid window
    by window as the tiles are read (GDAL's warped VRT, at memory that does not depend on the
    rasters' size). An output pixel is nodata (255) where either date is nodata: a nodata
    value, an internal mask or an alpha band, and outside the before raster's footprint. The
    model gets the before date's bands, then the after date's.

    Args:
        before: raster of the earlier date.
        after: raster of the later date; its grid is the output grid.
        checkpoint: a change-detection task checkpoint (``.ckpt``) or its ONNX export.
        output: the output GeoTIFF (``.tif``).
        vector: polygons of the change class (``.gpkg`` or ``.geojson``), with their ``area``
            (square CRS units) and ``mean_probability``.
        tile_size, overlap, batch_size, device, precision, output_type, cog, simplify, min_area,
            resume, overwrite, strict: as for :func:`predict_raster`.
        bands: 1-based bands to use from each raster, in model order (default: the
            checkpoint's bands, else all but alpha).
        resampling: how the before raster is resampled onto the output grid: ``bilinear``,
            ``nearest`` or ``cubic``.
        progress: show a progress bar (tiles/s and time left) on stderr.
        progress_callback: called after every batch with (after raster, tiles done, tiles in
            all); raising from it stops the run, which ``resume=True`` then continues.

    Returns:
        What was written (``input`` is the after raster, ``before`` the before raster).

    Raises:
        FileNotFoundError: a raster or the checkpoint does not exist.
        ImportError: the model's runtime is not installed.
        ValueError: as for :func:`predict_raster`, and: a checkpoint that does not detect
            change, rasters that do not overlap, an output that would overwrite either raster.
            Raised before any tile is predicted.
        InferenceIOError: an output folder that cannot be written, or a read or write that
            failed during the run.

    Warns:
        PixelRangeWarning: a raster's pixels differ from the training pixels (without ``strict``).
        UserWarning: the rasters have no CRS.
    """
    output_type = OutputType(output_type)
    checkpoint, output = Path(checkpoint), Path(output)
    onnx, device = _runtime(checkpoint, device, precision, 1, 1)
    run = _load(checkpoint, onnx, device, precision, strict, tile_size, overlap, batch_size)
    if run.model.kind != CHANGE:
        raise ValueError(
            f"{checkpoint}: holds a {run.model.kind} model, not a change-detection model (for one date use "
            "rsfm predict-raster)"
        )
    if output.is_dir() or output.suffix.lower() not in (".tif", ".tiff"):
        raise ValueError(f"{output}: --output names the change raster, a file ending in .tif or .tiff")
    bands = bands if bands is not None else run.model.contract.bands
    pair = check_pair(Path(before), Path(after), run.model.in_chans, bands, resampling)
    vector_path = Path(vector) if vector is not None else None
    jobs, results = _plan_jobs([pair], output, vector_path, checkpoint, resume=resume, overwrite=overwrite, cog=cog)
    results = _run_jobs(
        run,
        jobs,
        results,
        devices=1,
        num_nodes=1,
        progress_callback=progress_callback,
        output_type=output_type,
        cog=cog,
        simplify=simplify,
        min_area=min_area,
        resume=resume,
        progress=progress,
    )
    return dataclasses.replace(results[0], before=pair.before.path)


@dataclass(frozen=True)
class _Run:
    """A loaded model and the checked options that every job of a run shares."""

    model: BasePredictor
    checkpoint: Path
    onnx: bool
    device: str
    fabric_precision: str
    tile_size: int
    overlap: int
    batch_size: int


def _runtime(
    checkpoint: Path, device: str, precision: str, devices: Union[int, str], num_nodes: int
) -> Tuple[bool, str]:
    """Whether the model runs with onnxruntime (options it cannot take are refused), and the
    device that ``auto`` stands for."""
    onnx = is_onnx_model(checkpoint)
    if onnx:
        _check_onnx_options(checkpoint, precision, devices, num_nodes)
    elif device == "auto":
        device = "cuda" if _cuda_available(checkpoint) else "cpu"
    return onnx, device


def _load(
    checkpoint: Path,
    onnx: bool,
    device: str,
    precision: str,
    strict: bool,
    tile_size: Optional[int],
    overlap: Optional[int],
    batch_size: int,
) -> _Run:
    """Load the model and check the tiling options against it (defaults from its contract)."""
    # a checkpoint is loaded on the CPU and moved by Fabric; an ONNX session starts on its device
    model = load_predictor(checkpoint, device=device if onnx else "cpu", strict=strict)
    tile_size = int(tile_size) if tile_size is not None else model.default_tile_size()
    overlap = int(overlap) if overlap is not None else min(64, tile_size // 4)
    batch_size = int(batch_size)
    fabric_precision = _check_options(tile_size, overlap, batch_size, device, precision)
    return _Run(model, checkpoint, onnx, device, fabric_precision, tile_size, overlap, batch_size)


def _run_jobs(
    run: _Run,
    jobs: List[_Job],
    results: List[PredictionResult],
    *,
    devices: Union[int, str],
    num_nodes: int,
    progress_callback: Optional[ProgressCallback],
    **options: Any,
) -> List[PredictionResult]:
    """The last checks (input pixels, writable output folders), then every job of this process,
    appended to ``results``. ``options`` are those of :func:`_predict_file`."""
    _check_pixels(jobs, run.model)
    _check_outputs_writable(jobs)
    stop = _CallerStop(progress_callback) if progress_callback is not None else None
    processes = (
        _Processes() if run.onnx else _launch_fabric(run.model, run.device, devices, num_nodes, run.fabric_precision)
    )
    for job in jobs[processes.global_rank :: processes.world_size]:
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):  # bounds the cache in every thread
            result = _run_job(
                job,
                run.model,
                run.checkpoint,
                stop,
                tile_size=run.tile_size,
                overlap=run.overlap,
                batch_size=run.batch_size,
                position=processes.local_rank,
                progress_callback=stop,
                **options,
            )
        results.append(result)
    if processes.world_size > 1:
        processes.barrier()
    return results
