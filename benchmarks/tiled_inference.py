"""Tiled raster inference: throughput against the bare forward pass, and peak memory against
raster size, measured in one run.

Builds two 3-band uint8 GeoTIFFs (tiled 256, deflate) from the embedded Landsat sample
(``datasets/samples/rasterio/RGB.byte.tif``, mirrored to size) in a temporary folder, and a
small convolutional segmentation checkpoint written by a Lightning ``Trainer``. Then:

* **overhead**: ``rsfm.predict_raster`` on the small raster against the model's forward
  pass alone (normalisation, model, sigmoid) over the very same batches of tiles held in
  memory; median of interleaved repeats, in pixels/s.
* **memory**: peak resident memory (``VmHWM``) of a fresh process running
  ``rsfm predict-raster`` (or, with ``--entry api``, ``rsfm.predict_raster``) on each raster,
  and the same process's memory before the run.

Prints one line per measurement and a final JSON line.

    python benchmarks/tiled_inference.py                      # 2,000^2 and 20,000^2 pixels
    python benchmarks/tiled_inference.py --big 8000 --keep /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from rsfm import _compat  # noqa: F401  (before lightning imports torchvision)

# isort: split

import numpy as np
import rasterio
import torch
from machine import peak_rss_mib, torch_description  # benchmarks/ is on sys.path when run as a script
from rasterio.windows import Window
from torch import nn

from rsfm.tasks.base import BaseTask, register_task

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "datasets" / "samples" / "rasterio" / "RGB.byte.tif"
SAMPLE_WINDOW = Window(250, 200, 300, 300)  # fully inside the rotated scene (no nodata border)


@register_task  # checkpoints name their task; the child processes import this module too
class BenchmarkConvTask(BaseTask):
    """Three convolutions (3 -> 16 -> 16 -> 1), about 1.4 GFLOP per 512 x 512 tile: small
    enough for a 20,000^2 raster in a few minutes on 2 CPU cores."""

    def __init__(
        self,
        in_chans: int = 3,
        mean: Sequence[float] = (60.0, 60.0, 60.0),
        std: Sequence[float] = (40.0, 40.0, 40.0),
        class_names: Sequence[str] = ("background", "building"),
        width: int = 16,
        backbone_checkpoint: Optional[str] = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._register_normalization(mean, std, in_chans)
        self.net = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 1, 1),
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)

    def training_step(self, batch: Any, batch_index: int) -> torch.Tensor:
        images, targets = batch
        return nn.functional.binary_cross_entropy_with_logits(self(self.normalize(images)), targets)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def write_checkpoint(path: Path) -> Path:
    """One real training step, then the checkpoint (as ``rsfm fit`` writes it)."""
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    data = TensorDataset(torch.rand(4, 3, 64, 64) * 255, (torch.rand(4, 1, 64, 64) > 0.5).float())
    trainer = pl.Trainer(
        fast_dev_run=1, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(BenchmarkConvTask(), DataLoader(data, batch_size=4))
    trainer.save_checkpoint(path)
    return path


def write_raster(path: Path, size: int) -> Path:
    """A size x size 3-band uint8 GeoTIFF, tiled 256 and deflate-compressed, made of mirrored
    copies of the sample's interior; written one block row at a time."""
    with rasterio.open(SAMPLE) as sample:
        patch = sample.read(window=SAMPLE_WINDOW)
        crs, transform = sample.crs, sample.window_transform(SAMPLE_WINDOW)
    tile = np.concatenate([patch, patch[:, :, ::-1]], axis=2)
    tile = np.concatenate([tile, tile[:, ::-1]], axis=1)  # mirrored 2x2: seamless when repeated
    repeats = -(-size // tile.shape[2])
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=3,
        dtype="uint8",
        crs=crs,
        transform=transform,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        bigtiff="IF_SAFER",
    )
    with rasterio.open(path, "w", **profile) as dataset:
        for top in range(0, size, 256):
            rows = np.arange(top, min(top + 256, size)) % tile.shape[1]
            band = np.tile(tile[:, rows], (1, 1, repeats))[:, :, :size]
            dataset.write(band, window=Window(0, top, size, len(rows)))
    return path


def _current_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found in /proc/self/status (Linux only)")


def measure_memory(
    raster: Path, checkpoint: Path, output: Path, options: Dict[str, Any], entry: str
) -> Dict[str, float]:
    """Run in a fresh process: everything imported and the model loaded, then one prediction
    through the command line (``rsfm predict-raster``) or the Python API."""
    from rsfm import predict_raster
    from rsfm.cli.predict_raster import main as command
    from rsfm.inference.predictor import Predictor

    Predictor.load(checkpoint)  # import and warm everything the run needs
    before = _current_rss_mib()
    start = time.perf_counter()
    if entry == "cli":
        command(
            [
                str(raster),
                "--checkpoint",
                str(checkpoint),
                "--output",
                str(output),
                "--overwrite",
                "--quiet",
                "--device",
                "cpu",
                "--tile-size",
                str(options["tile_size"]),
                "--overlap",
                str(options["overlap"]),
                "--batch-size",
                str(options["batch_size"]),
            ]
        )
    else:
        predict_raster(raster, checkpoint, output, overwrite=True, progress=False, device="cpu", **options)
    seconds = time.perf_counter() - start
    with rasterio.open(raster) as dataset:
        pixels = dataset.width * dataset.height
    return {
        "rss_before_mib": before,
        "peak_rss_mib": peak_rss_mib(),
        "seconds": seconds,
        "pixels_per_s": pixels / seconds,
    }


def _in_fresh_process(
    raster: Path, checkpoint: Path, output: Path, options: Dict[str, Any], entry: str
) -> Dict[str, float]:
    command = [
        sys.executable,
        __file__,
        "--measure",
        str(raster),
        str(checkpoint),
        str(output),
        json.dumps(options),
        entry,
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"memory run failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def measure_overhead(
    raster: Path, checkpoint: Path, output: Path, options: Dict[str, Any], repeats: int
) -> Dict[str, float]:
    """Median pixels/s of predict_raster and of the forward pass alone over the same batches."""
    from rsfm import predict_raster
    from rsfm.data.tiling import TileGrid
    from rsfm.inference.inputs import check_input
    from rsfm.inference.predictor import Predictor
    from rsfm.inference.reader import iter_tile_batches

    model = Predictor.load(checkpoint)
    source = check_input(raster, model.in_chans)
    grid = TileGrid(source.width, source.height, options["tile_size"], options["overlap"])
    batches = list(iter_tile_batches(source, grid, options["batch_size"]))
    pixels = source.width * source.height

    def forward() -> None:
        for batch in batches:
            model(batch.pixels, batch.valid)

    def tiled() -> None:
        predict_raster(raster, checkpoint, output, overwrite=True, progress=False, device="cpu", **options)

    steps = {"forward": forward, "tiled": tiled}
    for step in steps.values():
        step()  # warm-up
    times: Dict[str, List[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    forward_rate = pixels / statistics.median(times["forward"])
    tiled_rate = pixels / statistics.median(times["tiled"])
    return {
        "tiles": len(grid),
        "forward_pixels_per_s": forward_rate,
        "tiled_pixels_per_s": tiled_rate,
        "overhead": forward_rate / tiled_rate - 1,
    }


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=2000, help="side of the small raster, pixels")
    parser.add_argument("--big", type=int, default=20000, help="side of the big raster, pixels")
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats of the overhead timing")
    parser.add_argument(
        "--entry",
        choices=["cli", "api"],
        default="cli",
        help="memory runs through 'rsfm predict-raster' (default) or rsfm.predict_raster",
    )
    parser.add_argument("--keep", type=Path, help="work in this folder and keep its files")
    parser.add_argument("--measure", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        raster, checkpoint, output, options, entry = args.measure
        print(json.dumps(measure_memory(Path(raster), Path(checkpoint), Path(output), json.loads(options), entry)))
        return

    options = {"tile_size": args.tile_size, "overlap": args.overlap, "batch_size": args.batch_size}
    with tempfile.TemporaryDirectory(prefix="rsfm-bench-") as temporary:
        folder = args.keep or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        print(json.dumps(torch_description()))
        print(
            f"python {platform.python_version()}; tile {args.tile_size}, overlap {args.overlap}, batch {args.batch_size}"
        )
        checkpoint = write_checkpoint(folder / "bench_conv.ckpt")
        rasters = {}
        for size in (args.small, args.big):
            start = time.perf_counter()
            rasters[size] = write_raster(folder / f"scene_{size}.tif", size)
            print(
                f"wrote {size}x{size} raster ({rasters[size].stat().st_size / 2**20:.0f} MiB) "
                f"in {time.perf_counter() - start:.0f} s"
            )

        overhead = measure_overhead(rasters[args.small], checkpoint, folder / "overhead.tif", options, args.repeats)
        print(
            f"{args.small}^2, {overhead['tiles']} tiles: forward pass {overhead['forward_pixels_per_s'] / 1e6:.2f} "
            f"Mpx/s, predict_raster {overhead['tiled_pixels_per_s'] / 1e6:.2f} Mpx/s, "
            f"overhead {overhead['overhead']:.1%} (target < 15%)"
        )

        memory = {}
        for size in (args.small, args.big):
            memory[size] = _in_fresh_process(rasters[size], checkpoint, folder / f"out_{size}.tif", options, args.entry)
            print(
                f"{size}^2 ({args.entry}): peak RSS {memory[size]['peak_rss_mib']:.0f} MiB (before the run "
                f"{memory[size]['rss_before_mib']:.0f} MiB), {memory[size]['seconds']:.0f} s, "
                f"{memory[size]['pixels_per_s'] / 1e6:.2f} Mpx/s"
            )
        growth = memory[args.big]["peak_rss_mib"] / memory[args.small]["peak_rss_mib"] - 1
        print(f"peak RSS {args.big}^2 vs {args.small}^2: {growth:+.1%} (target within 10%)")
        print(
            json.dumps(
                {
                    "overhead": overhead,
                    "memory": {str(size): value for size, value in memory.items()},
                    "rss_growth": growth,
                    "entry": args.entry,
                    "options": options,
                }
            )
        )


if __name__ == "__main__":
    main()
