"""``predict_raster``: run a task checkpoint over whole GeoTIFF scenes, tile by tile, into
georeferenced rasters and polygons, at memory that does not depend on the scene size."""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import rasterio
from affine import Affine

from rsfm.inference.background import Prefetcher, Worker
from rsfm.inference.blending import BlendAccumulator
from rsfm.inference.inputs import PathLike, RasterInput, check_input, expand_inputs
from rsfm.inference.model import SEGMENTATION, TileModel, load_tile_model
from rsfm.inference.outputs import OutputEncoding, OutputType
from rsfm.inference.reader import TileBatch, iter_tile_batches
from rsfm.inference.resume import file_identity
from rsfm.inference.tiling import TileGrid
from rsfm.inference.vectorize import vector_driver, write_polygons
from rsfm.inference.writer import OutputSpec, PartialRaster, partial_path

ProgressCallback = Callable[[Path, int, int], None]

GDAL_CACHE_BYTES = 16 * 2**20
"""GDAL's block cache while predicting. GDAL's default (5% of RAM) lets the cache, and so the
process, grow with the raster; tiles are read row by row, so a small cache is enough."""

_PRECISIONS = {"32": "32-true", "32-true": "32-true", "bf16": "bf16-mixed", "bf16-mixed": "bf16-mixed"}


@dataclass(frozen=True)
class PredictionResult:
    """What one input produced.

    Attributes:
        input: the input raster.
        raster: the output raster.
        vector: the polygon file, if requested.
        polygons: number of polygons written (None without ``vector``).
        skipped: the output already existed and ``resume`` left it as it was.
    """

    input: Path
    raster: Path
    vector: Optional[Path] = None
    polygons: Optional[int] = None
    skipped: bool = False


@dataclass(frozen=True)
class _Job:
    source: RasterInput
    raster: Path
    vector: Optional[Path]


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


def _plan_jobs(
    sources: List[RasterInput], output: Path, vector: Optional[Path], resume: bool, overwrite: bool
) -> Tuple[List[_Job], List[PredictionResult]]:
    """Output paths per input; finished outputs are skipped when resuming."""
    several = len(sources) > 1 or output.is_dir() or not output.suffix
    if several:
        if output.suffix and not output.is_dir():
            raise ValueError(f"{output}: with several inputs --output names a directory, not a file")
        if vector is not None and vector.suffix and not vector.is_dir():
            raise ValueError(f"{vector}: with several inputs --vector names a directory (one .gpkg per input)")
        stems = [source.path.stem for source in sources]
        clashes = sorted({stem for stem in stems if stems.count(stem) > 1})
        if clashes:
            raise ValueError(f"inputs share the name(s) {clashes}; outputs would collide (run them separately)")
        rasters = [output / f"{source.path.stem}.tif" for source in sources]
        vectors = [vector / f"{source.path.stem}.gpkg" if vector is not None else None for source in sources]
    else:
        if output.suffix.lower() not in (".tif", ".tiff"):
            raise ValueError(f"{output}: output raster must end in .tif or .tiff")
        rasters, vectors = [output], [vector]
    jobs, finished = [], []
    input_paths = {source.path.resolve() for source in sources}
    for source, raster, polygons in zip(sources, rasters, vectors):
        if polygons is not None:
            vector_driver(polygons)
        for target in (raster, polygons):
            if target is not None and target.resolve() in input_paths:
                raise ValueError(f"{target}: output would overwrite an input; choose another --output/--vector")
        if raster.exists():
            complete = not partial_path(raster).exists() and (polygons is None or polygons.exists())
            if resume and complete:
                finished.append(PredictionResult(source.path, raster, polygons, skipped=True))
                continue
            if not (overwrite or resume):
                raise ValueError(f"{raster}: already exists (pass --overwrite to replace it, or --resume to keep it)")
        jobs.append(_Job(source, raster, polygons))
    return jobs, finished


def _output_spec(
    source: RasterInput, grid: TileGrid, model: TileModel, encoding: OutputEncoding, tags: Dict[str, str]
) -> OutputSpec:
    common = dict(
        count=encoding.count, crs=source.crs, descriptions=encoding.descriptions, scales=encoding.scales, tags=tags
    )
    if model.kind == SEGMENTATION:
        return OutputSpec(width=source.width, height=source.height, transform=source.transform, **common)
    # one pixel per tile, centred on the tile: pixel size = stride, origin shifted by overlap/2
    transform = source.transform @ Affine.translation(grid.overlap / 2, grid.overlap / 2) @ Affine.scale(grid.stride)
    return OutputSpec(width=grid.cols, height=grid.rows, transform=transform, block_size=None, **common)


def _run_tiles(
    job: _Job,
    grid: TileGrid,
    model: TileModel,
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
    predicted again and dropped."""
    from tqdm.auto import tqdm

    segmentation = model.kind == SEGMENTATION
    first_row = grid.first_row_reaching(partial.rows_done) if segmentation else partial.rows_done
    accumulator = BlendAccumulator(grid, model.num_outputs, first_row) if segmentation else None
    nodata_pixel = np.zeros((1, 1), dtype=bool)
    valid_pixel = np.ones((1, 1), dtype=bool)

    def write(item: Tuple[TileBatch, Optional[np.ndarray]]) -> None:
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
    bar = tqdm(total=total, initial=done, unit="tile", desc=job.source.path.name, disable=not progress,
               position=position, dynamic_ncols=True, file=sys.stderr)
    writer = Worker(write)
    try:
        with Prefetcher(lambda: iter_tile_batches(job.source, grid, batch_size, first_row)) as batches:
            for batch in batches:
                probabilities = model(batch.pixels, batch.valid) if batch.tiles else None
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


def _predict_file(
    job: _Job,
    model: TileModel,
    checkpoint: Path,
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
        "input": file_identity(source.path),
        "checkpoint": file_identity(checkpoint),
        "bands": list(source.bands),
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
        "rsfm_bands": ",".join(map(str, source.bands)),
    }
    spec = _output_spec(source, grid, model, encoding, tags)
    job.raster.parent.mkdir(parents=True, exist_ok=True)
    with PartialRaster(job.raster, spec, settings, resume) as partial:
        if not partial.complete:
            _run_tiles(job, grid, model, encoding, partial, batch_size, progress, position, progress_callback)
    polygons = None
    if job.vector is not None:
        job.vector.parent.mkdir(parents=True, exist_ok=True)
        polygons = write_polygons(partial.path, job.vector, encoding, simplify=simplify, min_area=min_area)
    resampling = "nearest" if output_type is OutputType.CLASSES else "average"
    partial.finish(cog=cog, resampling=resampling)
    return PredictionResult(source.path, job.raster, job.vector, polygons)


def predict_raster(
    inputs: Union[PathLike, Sequence[PathLike]],
    checkpoint: PathLike,
    output: PathLike,
    *,
    vector: Optional[PathLike] = None,
    tile_size: int = 512,
    overlap: int = 64,
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
    devices: Union[int, str] = 1,
    num_nodes: int = 1,
    progress: bool = True,
    progress_callback: Optional[ProgressCallback] = None,
) -> List[PredictionResult]:
    """Run an rsfm task checkpoint over whole rasters, tile by tile.

    Segmentation checkpoints give a raster on the input's grid (same size, CRS and
    transform); scene-classification checkpoints give one pixel per tile, on a grid of
    ``tile_size - overlap`` input pixels centred on the tiles. Overlapping tiles are blended
    with smooth weights; nodata/masked input pixels are nodata (255) in the output and tiles
    without valid pixels are not run. Outputs are written as ``<name>.partial.tif`` and
    renamed when complete.

    Args:
        inputs: raster files, glob patterns or directories.
        checkpoint: an rsfm task checkpoint (``.ckpt``); its normalisation and band count apply.
        output: output GeoTIFF for one input; a directory (``<input stem>.tif`` inside) for
            several.
        vector: polygons of the predicted classes (segmentation only): a ``.gpkg`` or
            ``.geojson`` file for one input, a directory (``<input stem>.gpkg``) for several.
        tile_size: tile side in pixels.
        overlap: pixels shared by neighbouring tiles (at most ``tile_size // 2``). Tiled
            results equal whole-image inference when the model's receptive-field radius is at
            most ``overlap // 4`` pixels.
        batch_size: tiles per forward pass (consecutive tiles in row-major order).
        bands: 1-based input bands to use, in model order (default: all but alpha).
        device: ``cpu``, ``cuda`` or ``auto`` (cuda when available).
        precision: ``32`` or ``bf16`` (mixed precision, CUDA only).
        output_type: ``classes`` (class index + its probability) or ``probabilities`` (one
            band per class); probabilities are stored as uint8 ``round(p * 254)``.
        cog: write Cloud-Optimized GeoTIFFs with overviews.
        simplify: polygon simplification tolerance, in CRS units (metres for UTM).
        min_area: drop polygons smaller than this, in square CRS units.
        resume: continue partial outputs of an interrupted run made with the same settings,
            and keep outputs that are already complete.
        overwrite: replace existing outputs.
        devices: processes per node (GPUs), or ``"auto"``. With more than one process (or
            ``num_nodes > 1``) Lightning Fabric launches them and the inputs are shared out
            file by file; a single raster is not split.
        num_nodes: machines taking part (Lightning's cluster environments: SLURM, torchrun).
        progress: show a progress bar (tiles/s and time left) per input on stderr.
        progress_callback: called after every batch with (input, tiles done, tiles in the
            input); raising from it stops the run, which ``resume=True`` then continues.

    Returns:
        One result per input handled by this process.

    Raises:
        FileNotFoundError: an input or the checkpoint does not exist.
        ValueError: invalid options or inputs (raised before any tile is predicted).
    """
    tile_size, overlap, batch_size = int(tile_size), int(overlap), int(batch_size)
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    fabric_precision = _check_options(tile_size, overlap, batch_size, device, precision)
    output_type = OutputType(output_type)
    checkpoint = Path(checkpoint)
    files = expand_inputs(inputs)
    model = load_tile_model(checkpoint)
    sources = [check_input(path, model.in_chans, bands) for path in files]
    model.probe(tile_size)
    vector_path = Path(vector) if vector is not None else None
    if vector_path is not None and model.kind != SEGMENTATION:
        raise ValueError(f"{checkpoint}: polygons need a segmentation checkpoint; this one classifies scenes (drop --vector)")
    jobs, results = _plan_jobs(sources, Path(output), vector_path, resume, overwrite)

    from lightning.fabric import Fabric

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
        fabric = Fabric(
            accelerator=device,
            devices=devices,
            num_nodes=num_nodes,
            precision=fabric_precision,
        )
    fabric.launch()
    model.to(fabric.device, fabric.autocast)
    for job in jobs[fabric.global_rank :: fabric.world_size]:
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):  # bounds the cache in every thread
            result = _predict_file(
                job,
                model,
                checkpoint,
                tile_size=tile_size,
                overlap=overlap,
                batch_size=batch_size,
                output_type=output_type,
                cog=cog,
                simplify=simplify,
                min_area=min_area,
                resume=resume,
                progress=progress,
                position=fabric.local_rank,
                progress_callback=progress_callback,
            )
        results.append(result)
    if fabric.world_size > 1:
        fabric.barrier()
    return results
