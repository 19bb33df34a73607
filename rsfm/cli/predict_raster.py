"""``rsfm predict-raster``: the command line over :func:`rsfm.predict_raster`."""

from __future__ import annotations

import argparse
import ctypes
import sys
import warnings
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Union

if TYPE_CHECKING:
    from rsfm.inference.predict import PredictionResult

_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
_MMAP_THRESHOLD_BYTES = 4 * 2**20

EPILOG = """examples:
  rsfm predict-raster scene.tif --checkpoint buildings.ckpt --output mask.tif --vector buildings.gpkg
  rsfm predict-raster 'tiles/*.tif' --checkpoint buildings.ckpt --output masks/ --resume
  rsfm predict-raster scenes/ --checkpoint buildings.ckpt --output masks/ --device cuda --devices 4
  rsfm predict-raster scene.tif --checkpoint buildings.onnx --output mask.tif   (onnxruntime, no torch)

Several GPUs or machines: the inputs are shared out file by file by Lightning Fabric's launcher,
e.g. 'rsfm predict-raster scenes/ ... --devices 4', under SLURM
'srun --ntasks-per-node 4 rsfm predict-raster scenes/ ... --devices 4 --num-nodes 2'."""


def band_list(text: str) -> List[int]:
    """``--bands`` as 1-based band numbers: ``"3,2,1"`` -> ``[3, 2, 1]``."""
    try:
        bands = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--bands takes 1-based band numbers like 1,2,3, got {text!r}") from None
    if not bands:
        raise argparse.ArgumentTypeError("--bands needs at least one band number")
    return bands


def _devices(text: str) -> object:
    return text if text == "auto" else int(text)


def add_prediction_options(parser: argparse.ArgumentParser) -> None:
    """The options that ``predict-raster`` and ``predict-change`` share: tiling, device,
    output type and format, polygons, resuming and the pixel check."""
    parser.add_argument(
        "--tile-size", type=int, help="tile side in pixels (default: the checkpoint's training size, else 512)"
    )
    parser.add_argument(
        "--overlap", type=int, help="pixels shared by neighbouring tiles (default: min(64, tile size / 4))"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="tiles per forward pass (default 8)")
    parser.add_argument("--bands", type=band_list, help="1-based input bands in model order, e.g. 3,2,1")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precision", default="32", choices=["32", "bf16"], help="bf16: mixed precision on CUDA")
    parser.add_argument(
        "--output-type",
        default="classes",
        choices=["classes", "probabilities"],
        help="classes: class index + its probability; probabilities: one band per class (uint8, p*254)",
    )
    parser.add_argument("--cog", action="store_true", help="write Cloud-Optimized GeoTIFFs with overviews")
    parser.add_argument("--simplify", type=float, default=0.0, help="polygon simplification tolerance, CRS units")
    parser.add_argument("--min-area", type=float, default=0.0, help="drop polygons smaller than this, CRS units²")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run; keep finished outputs")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse inputs whose data type or value range differ from the model's training pixels (default: warn)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rsfm predict-raster",
        description="Run a building-segmentation or scene-classification checkpoint (or its ONNX export) "
        "over whole GeoTIFF scenes, tile by tile, into georeferenced rasters and polygons.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="raster files, glob patterns or directories")
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="rsfm task checkpoint (.ckpt, PyTorch) or a model exported from one with 'rsfm export' "
        "(.onnx, onnxruntime: --devices 1, --precision 32)",
    )
    parser.add_argument("--output", required=True, help="output GeoTIFF (one input) or directory (several)")
    parser.add_argument("--vector", help="polygons: .gpkg or .geojson file (one input) or directory (several)")
    add_prediction_options(parser)
    parser.add_argument("--devices", type=_devices, default=1, help="processes (GPUs) per node, or auto")
    parser.add_argument("--num-nodes", type=int, default=1, help="machines taking part (SLURM, torchrun)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _return_large_blocks_to_the_system() -> None:
    """Every batch allocates and frees arrays of several MB (tiles, normalised inputs,
    probabilities). After such a free, glibc raises its mmap threshold, so later arrays of that
    size come from the heap, whose freed memory stays resident: a long run's memory creeps up
    by about 10% before levelling off. A fixed threshold (as with MALLOC_MMAP_THRESHOLD_)
    keeps blocks of 4 MB and more out of the heap. This process is ours, so the command sets
    it; other allocators are left alone."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)


def _run(args: argparse.Namespace) -> List["PredictionResult"]:
    from rsfm.inference.predict import predict_raster  # heavy (rasterio; torch for a .ckpt): not for --help

    return predict_raster(
        args.inputs,
        args.checkpoint,
        args.output,
        vector=args.vector,
        tile_size=args.tile_size,
        overlap=args.overlap,
        batch_size=args.batch_size,
        bands=args.bands,
        device=args.device,
        precision=args.precision,
        output_type=args.output_type,
        cog=args.cog,
        simplify=args.simplify,
        min_area=args.min_area,
        resume=args.resume,
        overwrite=args.overwrite,
        strict=args.strict,
        devices=args.devices,
        num_nodes=args.num_nodes,
        progress=not args.quiet,
    )


def _one_line(error: BaseException) -> str:
    """``<file>: <reason> (<fix>)`` for an error, on one line. rsfm's own errors are written
    that way; an ``OSError`` from elsewhere gets its file and reason, and a generic fix."""
    text = str(error)
    if isinstance(error, OSError) and error.errno is not None and error.filename:
        text = f"{error.filename}: {error.strerror} (check the path, its permissions and free disk space)"
    return " ".join(text.split())


def _warning_printer(prog: str) -> Callable[..., None]:
    def show_warning(
        message: Union[Warning, str],
        category: type,
        filename: str,
        lineno: int,
        file: object = None,
        line: object = None,
    ) -> None:
        """Warnings as one line each, like the errors, without the source line."""
        sys.stderr.write(f"{prog}: warning: {' '.join(str(message).split())}\n")

    return show_warning


def run_command(parser: argparse.ArgumentParser, run: Callable[[], Sequence["PredictionResult"]]) -> int:
    """Run an inference command (``run``) and report it: one line per result on stdout;
    errors about inputs, options and files exit with status 2 and one line
    ``<prog>: error: <file>: <reason> (<fix>)``; Ctrl-C exits with 130 and keeps unfinished
    outputs for ``--resume``."""
    _return_large_blocks_to_the_system()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_printer(parser.prog)
            results = run()
    # OSError: FileNotFoundError, rasterio's and rsfm's I/O errors; ImportError: the model's runtime
    # (PyTorch for a .ckpt, onnxruntime for an .onnx) is not installed
    except (ValueError, OSError, ImportError) as error:
        parser.exit(2, f"{parser.prog}: error: {_one_line(error)}\n")
    except KeyboardInterrupt:
        parser.exit(
            130,
            f"{parser.prog}: interrupted; unfinished outputs are kept: run the same command with --resume to continue\n",
        )
    for result in results:
        state = "kept (already complete)" if result.skipped else "written"
        read = str(result.input) if result.before is None else f"{result.before} + {result.input}"
        line = f"{read} -> {result.raster} {state}"
        if result.vector is not None and not result.skipped:
            line += f", {result.polygons} polygons -> {result.vector}"
        # one write per line, newline included, flushed at once: with --devices 2 both processes
        # write to the same stdout, and print's separate writes of text and newline interleaved
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv`` and run (see :func:`run_command` for what is reported and exit codes)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(parser, lambda: _run(args))
