"""Whole-scene prediction (``predict_raster``) against tile-by-tile prediction (``BuildingExtractor``)
on a held-out scene with nodata between the tiles.

The scene is the 74 Xiamen val tiles (``../shared/data/xiamen_buildings/val``) placed on their
z18 XYZ grid in a GeoTIFF (EPSG:3857, 0.597 m pixels, nodata 0, deflate, 256 px blocks); where
there is no val tile there is nodata, as real scenes have nodata borders, gaps and masks. The
model is the buildings quickstart (``configs/buildings_quickstart.yaml``, trained here through
LightningCLI as ``rsfm fit`` does, or ``--checkpoint``). It reports building IoU over the val
tiles' pixels for

* ``per_tile``: ``BuildingExtractor`` on each 256 px tile alone, IoU over all tiles' pixels
  together (what ``rsfm validate`` reports, up to its metric's thresholding);
* ``predict_raster``: the class raster of ``rsfm.predict_raster`` on the mosaic at the
  checkpoint's default tile size and at each ``--tile-sizes``, IoU over the valid pixels against
  the val masks placed the same way;

and their ratios. Pixels that are (0, 0, 0) in a tile are raised to (1, 1, 1) in both paths, so
that nodata 0 marks only the holes.

Nodata inside valid data (cloud masks) is measured too: ``cloud_holes`` is the per-tile IoU on
the pixels outside synthetic clouds (smoothed noise over 20 % and 50 % of each tile, fixed
seed), once with the real pixels under the clouds and once with the clouds as nodata (filled
with the band mean, as tiled inference fills them).

    OMP_NUM_THREADS=2 python benchmarks/whole_scene_vs_tiles.py [--checkpoint FILE]
        [--output-dir DIR] [--epochs N] [--seed N] [--nodata-p P] [--tile-sizes 512 ...] [--threads N]

Prints a JSON line per stage and a final JSON line with everything.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import rsfm.tasks  # noqa: F401  (torchvision shim first)

# isort: split
import numpy as np
import rasterio
import torch
from affine import Affine
from machine import torch_description  # benchmarks/ is on sys.path when run as a script
from PIL import Image
from scipy import ndimage

import rsfm

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "buildings_quickstart.yaml"
DATA = REPO.parent / "shared" / "data" / "xiamen_buildings"
TILE = 256  # pixels per XYZ tile side
WEB_MERCATOR_HALF = 20037508.342789244  # metres from the origin to the edge of the EPSG:3857 square
ZOOM = 18


def read_val_tiles(data_dir: Path) -> List[Dict[str, Any]]:
    """The val tiles: x, y, RGB (256, 256, 3) uint8 with (0, 0, 0) raised to (1, 1, 1), 0/1 mask."""
    tiles = []
    with open(data_dir / "val" / "tiles.csv", newline="") as listing:
        for entry in csv.DictReader(listing):
            image = np.asarray(Image.open(data_dir / "val" / entry["image"]).convert("RGB"))
            image = np.where((image == 0).all(axis=2, keepdims=True), np.uint8(1), image)
            mask = np.asarray(Image.open(data_dir / "val" / entry["mask"]))
            tiles.append({"x": int(entry["x"]), "y": int(entry["y"]), "image": image, "mask": mask})
    return tiles


def tile_transform(x: int, y: int, zoom: int = ZOOM) -> Affine:
    """EPSG:3857 transform of the XYZ tile (x, y) at ``zoom`` (origin at its top-left corner)."""
    size = 2 * WEB_MERCATOR_HALF / 2**zoom
    return Affine(size / TILE, 0, -WEB_MERCATOR_HALF + x * size, 0, -size / TILE, WEB_MERCATOR_HALF - y * size)


def write_mosaic(tiles: List[Dict[str, Any]], path: Path) -> Tuple[int, int]:
    """The tiles on their z18 grid in a GeoTIFF (nodata 0 elsewhere); returns the top-left tile."""
    x0, y0 = min(tile["x"] for tile in tiles), min(tile["y"] for tile in tiles)
    columns = max(tile["x"] for tile in tiles) - x0 + 1
    rows = max(tile["y"] for tile in tiles) - y0 + 1
    profile = dict(
        driver="GTiff",
        width=columns * TILE,
        height=rows * TILE,
        count=3,
        dtype="uint8",
        crs="EPSG:3857",
        transform=tile_transform(x0, y0),
        nodata=0,
        tiled=True,
        blockxsize=TILE,
        blockysize=TILE,
        compress="deflate",
        sparse_ok=True,
    )
    with rasterio.open(path, "w", **profile) as dataset:
        for tile in tiles:
            window = rasterio.windows.Window((tile["x"] - x0) * TILE, (tile["y"] - y0) * TILE, TILE, TILE)
            dataset.write(tile["image"].transpose(2, 0, 1), window=window)
    return x0, y0


def _counts(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    predicted, truth = predicted.astype(bool), truth.astype(bool)
    return np.array([(predicted & truth).sum(), (predicted | truth).sum()], dtype=np.int64)


def per_tile_iou(checkpoint: Path, tiles: List[Dict[str, Any]]) -> Dict[str, Any]:
    extractor = rsfm.BuildingExtractor.load(checkpoint)
    counts, start = np.zeros(2, dtype=np.int64), time.perf_counter()
    for tile in tiles:
        counts += _counts(extractor.predict(tile["image"])[0].mask, tile["mask"])
    return {"iou": round(float(counts[0] / counts[1]), 4), "seconds": round(time.perf_counter() - start, 1)}


def cloud_holes_iou(checkpoint: Path, tiles: List[Dict[str, Any]], fraction: float) -> Dict[str, float]:
    model = rsfm.BuildingExtractor.load(checkpoint).predictor
    rng = np.random.default_rng(0)
    counts = {"clear": np.zeros(2, dtype=np.int64), "clouds_filled": np.zeros(2, dtype=np.int64)}
    for tile in tiles:
        noise = ndimage.gaussian_filter(rng.standard_normal((TILE, TILE)), 12)
        clear = noise <= np.quantile(noise, 1 - fraction)
        image = tile["image"].transpose(2, 0, 1)[None]
        for name, valid in (("clear", None), ("clouds_filled", clear[None])):
            building = model(image, valid)[0, 0] > 0.5
            counts[name] += _counts(building[clear], tile["mask"][clear])
    return {name: round(float(count[0] / count[1]), 4) for name, count in counts.items()}


def predict_raster_iou(
    checkpoint: Path, mosaic: Path, origin: Tuple[int, int], tiles: List[Dict[str, Any]], tile_size: Optional[int]
) -> Dict[str, Any]:
    output = mosaic.with_name(f"classes_{tile_size or 'default'}.tif")
    start = time.perf_counter()
    rsfm.predict_raster(mosaic, checkpoint, output, tile_size=tile_size, overwrite=True, progress=False, device="cpu")
    seconds = time.perf_counter() - start
    counts = np.zeros(2, dtype=np.int64)
    with rasterio.open(output) as dataset:
        classes = dataset.read(1)
        used = int(dataset.tags()["rsfm_tile_size"])
    inside = np.zeros(classes.shape, dtype=bool)
    for tile in tiles:
        rows = slice((tile["y"] - origin[1]) * TILE, (tile["y"] - origin[1] + 1) * TILE)
        cols = slice((tile["x"] - origin[0]) * TILE, (tile["x"] - origin[0] + 1) * TILE)
        inside[rows, cols] = True
        counts += _counts(classes[rows, cols] == 1, tile["mask"])
    if not np.array_equal(classes != rsfm.inference.NODATA, inside):
        raise RuntimeError(f"{output}: nodata of the prediction is not the mosaic's holes")
    return {"tile_size": used, "iou": round(float(counts[0] / counts[1]), 4), "seconds": round(seconds, 1)}


def train(output_dir: Path, epochs: Optional[int], seed: Optional[int], nodata_p: Optional[float]) -> Path:
    """``configs/buildings_quickstart.yaml`` through LightningCLI (``rsfm fit``); the last checkpoint."""
    from lightning.pytorch.cli import LightningCLI

    args = [
        "--config",
        str(CONFIG),
        f"--trainer.logger.init_args.save_dir={output_dir}",
        "--trainer.logger.init_args.name=buildings_quickstart",
        "--trainer.enable_progress_bar=false",
        f"--data.init_args.root={DATA}",
    ]
    if epochs is not None:
        args.append(f"--trainer.max_epochs={epochs}")
    if seed is not None:
        args.append(f"--seed_everything={seed}")
    if nodata_p is not None:
        args.append(f"--data.init_args.nodata_p={nodata_p}")
    cli = LightningCLI(
        subclass_mode_model=True, subclass_mode_data=True, run=False, args=args, save_config_kwargs={"overwrite": True}
    )
    for callback in cli.trainer.checkpoint_callbacks:  # the best one and the one writing last.ckpt
        callback.dirpath = str(output_dir / "checkpoints")
    cli.trainer.fit(cli.model, cli.datamodule)
    return Path(cli.trainer.checkpoint_callbacks[-1].last_model_path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="a buildings checkpoint (default: train one)")
    parser.add_argument("--output-dir", type=Path, default=None, help="mosaic, outputs, logs (default: a temp folder)")
    parser.add_argument("--data-dir", type=Path, default=DATA, help="the shared xiamen_buildings folder")
    parser.add_argument("--epochs", type=int, default=None, help="override max_epochs when training")
    parser.add_argument("--seed", type=int, default=None, help="override the config's seed when training")
    parser.add_argument("--nodata-p", type=float, default=None, help="override the datamodule's nodata_p when training")
    parser.add_argument(
        "--tile-sizes", type=int, nargs="*", default=[512], help="predict_raster tile sizes besides the default"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # LightningCLI gets its arguments from train only
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    output_dir = (args.output_dir or Path(tempfile.mkdtemp(prefix="whole_scene_"))).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    report: Dict[str, Any] = {
        **torch_description(),
        "rsfm": str(Path(rsfm.__file__).parent),
        "output_dir": str(output_dir),
    }
    print(json.dumps(report), flush=True)

    checkpoint = args.checkpoint
    if checkpoint is None:
        start = time.perf_counter()
        checkpoint = train(output_dir, args.epochs, args.seed, args.nodata_p)
        report["training"] = {
            "epochs": args.epochs,
            "seed": args.seed,
            "nodata_p": args.nodata_p,
            "seconds": round(time.perf_counter() - start),
        }
    report["checkpoint"] = str(checkpoint.resolve())
    tiles = read_val_tiles(args.data_dir)
    mosaic = output_dir / "val_mosaic.tif"
    origin = write_mosaic(tiles, mosaic)
    with rasterio.open(mosaic) as dataset:
        valid = dataset.dataset_mask() > 0
        report["mosaic"] = {"path": str(mosaic), "size": [dataset.width, dataset.height], "tiles": len(tiles)}
        report["mosaic"]["valid_fraction"] = round(float(valid.mean()), 4)
    report["per_tile"] = per_tile_iou(checkpoint, tiles)
    print(json.dumps({"per_tile": report["per_tile"]}), flush=True)
    report["cloud_holes"] = {str(fraction): cloud_holes_iou(checkpoint, tiles, fraction) for fraction in (0.2, 0.5)}
    print(json.dumps({"cloud_holes": report["cloud_holes"]}), flush=True)
    report["predict_raster"] = []
    for tile_size in [None, *args.tile_sizes]:
        result = predict_raster_iou(checkpoint, mosaic, origin, tiles, tile_size)
        result["ratio_to_per_tile"] = round(result["iou"] / report["per_tile"]["iou"], 3)
        report["predict_raster"].append(result)
        print(json.dumps({"predict_raster": result}), flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
