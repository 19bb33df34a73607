"""Deployment: PyTorch FP32 against ONNX Runtime FP32 and INT8 and a small model, in one run.

For (a) a scene classifier at 224 px and (b) a building segmenter at 512 px, the same raw
pixels go through every variant:

* ``pytorch-fp32``: the task checkpoint through ``rsfm.inference.Predictor`` (BatchNorms fused);
* ``onnx-fp32``: ``rsfm export`` of that checkpoint through ONNX Runtime;
* ``onnx-int8``: ``rsfm export --int8`` (QDQ, per-channel weights) calibrated on shared data;
* ``small-pytorch-fp32`` / ``small-onnx-fp32``: the small model's checkpoint (e.g. a
  ``vitaev2_xs`` student distilled from the large one) in both runtimes.

Each variant runs in a fresh process: load, two warm-up batches, then the median of
``--repeats`` timed batches (images/s, the predictor's whole call: nodata fill, normalisation,
model, softmax/sigmoid) and the process's peak resident memory (``VmHWM``); ``.onnx`` files run
as in a ``rsfm[runtime]`` install, importing no torch (``torch_imported`` says so). File sizes are those
of the checkpoint or the ``.onnx``. For the building models, ``predict_raster`` then runs every
variant over the same real scene (a ``--raster-size`` square of the Xiamen mosaic without holes),
in fresh processes, interleaved for ``--raster-repeats`` rounds: the end-to-end figure (checks,
reading, tiling, model, blending, writing; imports reported apart). Accuracy (top-1 on scene class folders, IoU of the building
class on image/mask tiles) is measured with ``rsfm.tasks.quantize.evaluate_onnx`` on the ONNX
files; the PyTorch checkpoints give the same logits as their FP32 ONNX files (parity <= 1e-4,
tested), so their accuracy is that of ``onnx-fp32``.

Without checkpoints, untrained tasks are written: ``vitaev2_s`` (building model: UperNet with 256
channels) and ``vitaev2_xs`` (building model: the decoder width of
``configs/buildings_quickstart.yaml``). Speed, memory and size are then real, accuracy is not (it
is printed but marked untrained).

    python benchmarks/deployment.py --workdir /tmp/deploy                       # untrained models
    python benchmarks/deployment.py --scene runs/scene.ckpt --small-scene runs/scene_xs.ckpt \\
        --buildings runs/buildings.ckpt --small-buildings runs/buildings_xs.ckpt

Prints the CPU model and vector flags, one line per measurement and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from machine import cpu_description, peak_rss_mib  # benchmarks/ is on sys.path when run as a script

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def measure(model: Path, size: int, batch: int, repeats: int) -> Dict[str, float]:
    """In a fresh process: images/s of ``model``'s predictor on random raw pixels, peak RSS."""
    import numpy as np

    from rsfm.inference.predictor import load_predictor

    predictor = load_predictor(model)
    pixels = np.random.default_rng(0).uniform(0, 255, (batch, predictor.in_chans, size, size)).astype(np.float32)
    for _ in range(2):
        predictor(pixels)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor(pixels)
        times.append(time.perf_counter() - start)
    return {
        "images_per_s": batch / statistics.median(times),
        "peak_rss_mib": peak_rss_mib(),
        "torch_imported": "torch" in sys.modules,
    }


def measure_raster(model: Path, raster: Path, output: Path, batch: int) -> Dict[str, float]:
    """In a fresh process: ``predict_raster`` of ``model`` over ``raster`` (the whole pipeline:
    checks, reading, tiling, model, blending, writing), seconds and peak RSS."""
    started = time.perf_counter()
    from rsfm.inference.predict import predict_raster

    imported = time.perf_counter()
    predict_raster(raster, model, output, batch_size=batch, overwrite=True, progress=False)
    finished = time.perf_counter()
    return {
        "seconds": finished - imported,
        "import_seconds": imported - started,
        "peak_rss_mib": peak_rss_mib(),
        "torch_imported": "torch" in sys.modules,
    }


def _in_fresh_process(*arguments: Any) -> Dict[str, float]:
    command = [sys.executable, __file__, *[str(argument) for argument in arguments]]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"measurement {arguments} failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _untrained(kind: str, backbone: str, path: Path, size: int, **options: Any) -> Path:
    """Write an untrained task checkpoint as ``rsfm fit`` would (weights only, with contract)."""
    if path.exists():
        return path
    import rsfm.tasks  # noqa: F401  (torchvision shim first)

    # isort: split
    from lightning.pytorch import Trainer

    from rsfm.tasks import BuildingSegmentationTask, SceneClassificationTask

    if kind == "scene":
        classes = sorted(entry.name for entry in (SHARED / "aid_150px").iterdir() if entry.is_dir())
        task = SceneClassificationTask(
            backbone=backbone, in_chans=3, class_names=classes, mean=[100.0] * 3, std=[50.0] * 3, image_size=size
        )
    else:
        task = BuildingSegmentationTask(backbone=backbone, mean=[100.0] * 3, std=[50.0] * 3, image_size=size, **options)
    task.configure_model()
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(task)
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path, weights_only=True)
    return path


def _quickstart_decoder_channels() -> int:
    import yaml

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "buildings_quickstart.yaml").read_text())
    return int(config["model"]["init_args"]["decoder_channels"])


def _export(checkpoint: Path, output: Path, **options: Any) -> Path:
    from rsfm.tasks.onnx import export_onnx

    if not output.exists():
        started = time.perf_counter()
        export_onnx(checkpoint, output, **options)
        print(f"  exported {output.name} in {time.perf_counter() - started:.0f} s", flush=True)
    return output


def _family(
    name: str,
    checkpoint: Optional[Path],
    small: Optional[Path],
    size: int,
    calibration: Path,
    validation: Path,
    args: argparse.Namespace,
) -> Dict[str, Any]:
    from rsfm.tasks.quantize import evaluate_onnx

    work = args.workdir / name
    trained = checkpoint is not None and small is not None
    checkpoint = checkpoint or _untrained(name, "vitaev2_s", work / "vitaev2_s.ckpt", size)
    # the small building model of configs/buildings_quickstart.yaml: vitaev2_xs with its narrow decoder
    small_options = {"decoder_channels": _quickstart_decoder_channels()} if name == "buildings" else {}
    small = small or _untrained(name, "vitaev2_xs", work / "vitaev2_xs.ckpt", size, **small_options)
    fp32 = _export(checkpoint, work / "model.onnx")
    int8 = _export(
        checkpoint,
        work / "model.int8.onnx",
        int8=True,
        calibration=calibration,
        calibration_size=args.calibration_size,
        calibration_foreground=name == "buildings",
        max_drop=None,
    )
    small_fp32 = _export(small, work / "small.onnx")
    variants = {
        "pytorch-fp32": checkpoint,
        "onnx-fp32": fp32,
        "onnx-int8": int8,
        "small-pytorch-fp32": small,
        "small-onnx-fp32": small_fp32,
    }
    accuracy = {path: evaluate_onnx(path, validation) for path in (fp32, int8, small_fp32)}
    rows = {}
    for variant, path in variants.items():
        figures = _in_fresh_process("--measure", path, size, args.batch, args.repeats)
        scored = accuracy.get(path) or accuracy[fp32 if path == checkpoint else small_fp32]
        figures.update(
            file_mib=path.stat().st_size / 2**20,
            metric=scored.metric,
            score=scored.value,
        )
        rows[variant] = figures
        print(
            f"{name:9s} {variant:19s} {figures['images_per_s']:7.2f} img/s  peak RSS {figures['peak_rss_mib']:6.0f} MiB"
            f"  file {figures['file_mib']:6.1f} MiB  {scored.metric} {scored.value:.4f}",
            flush=True,
        )
    base = rows["pytorch-fp32"]["images_per_s"]
    for figures in rows.values():
        figures["speed_vs_pytorch_fp32"] = figures["images_per_s"] / base
    family = {"size": size, "trained": trained, "variants": rows}
    if name == "buildings":
        family["predict_raster"] = _predict_raster(variants, work, args)
    return family


def _scene_crop(work: Path, size: int) -> Path:
    """A ``size`` x ``size`` GeoTIFF cut from the Xiamen mosaic where every pixel is valid."""
    import rasterio
    from rasterio.windows import Window

    path = work / f"xiamen_{size}.tif"
    if not path.exists():
        with rasterio.open(SHARED / "xiamen_buildings" / "mosaic_trainval_rgb.tif") as source:
            window = Window(512, 6144, size, size)  # a block of the mosaic with no holes
            profile = source.profile | {
                "width": size,
                "height": size,
                "transform": source.window_transform(window),
                "tiled": True,
                "blockxsize": 256,
                "blockysize": 256,
            }
            with rasterio.open(path, "w", **profile) as target:
                target.write(source.read(window=window))
    return path


def _predict_raster(variants: Dict[str, Path], work: Path, args: argparse.Namespace) -> Dict[str, Any]:
    """End to end: ``predict_raster`` of every variant over the same real scene, interleaved
    (each round runs every variant once, in a fresh process), median seconds."""
    raster = _scene_crop(work, args.raster_size)
    seconds: Dict[str, List[float]] = {variant: [] for variant in variants}
    rows: Dict[str, Dict[str, float]] = {}
    for _ in range(args.raster_repeats):
        for variant, path in variants.items():
            figures = _in_fresh_process("--measure-raster", path, raster, work / f"{variant}.tif", args.batch)
            seconds[variant].append(figures["seconds"])
            rows[variant] = figures
    base = statistics.median(seconds["pytorch-fp32"])
    for variant, figures in rows.items():
        median = statistics.median(seconds[variant])
        figures.update(seconds=median, all_seconds=seconds[variant], speed_vs_pytorch_fp32=base / median)
        print(
            f"predict-raster {args.raster_size}^2 {variant:19s} {median:7.2f} s  (x{base / median:4.2f})"
            f"  import {figures['import_seconds']:4.1f} s  peak RSS {figures['peak_rss_mib']:6.0f} MiB",
            flush=True,
        )
    return {"raster": str(raster), "size": args.raster_size, "variants": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", type=Path, help="scene task checkpoint (default: untrained vitaev2_s)")
    parser.add_argument("--small-scene", type=Path, help="small scene checkpoint (default: untrained vitaev2_xs)")
    parser.add_argument("--buildings", type=Path, help="building task checkpoint (default: untrained vitaev2_s)")
    parser.add_argument("--small-buildings", type=Path, help="small building checkpoint (default: untrained)")
    parser.add_argument("--scene-data", type=Path, default=SHARED / "aid_150px", help="scene class folders")
    parser.add_argument("--building-data", type=Path, default=SHARED / "xiamen_buildings", help="train/ and val/")
    parser.add_argument("--workdir", type=Path, default=Path("deployment_bench"), help="exports are kept here")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calibration-size", type=int, default=32)
    parser.add_argument("--only", choices=("scene", "buildings"), help="measure one family")
    parser.add_argument("--raster-size", type=int, default=1536, help="side of the predict-raster scene")
    parser.add_argument("--raster-repeats", type=int, default=3, help="interleaved predict-raster rounds")
    parser.add_argument("--measure", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--measure-raster", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_raster:
        model, raster, output, batch = args.measure_raster
        print(json.dumps(measure_raster(Path(model), Path(raster), Path(output), int(batch))))
        return
    if args.measure:
        model, size, batch, repeats = args.measure
        print(json.dumps(measure(Path(model), int(size), int(batch), int(repeats))))
        return
    print(json.dumps(cpu_description()), flush=True)
    results: Dict[str, Any] = {"cpu": cpu_description(), "batch": args.batch}
    families: List[str] = [args.only] if args.only else ["scene", "buildings"]
    if "scene" in families:
        results["scene"] = _family("scene", args.scene, args.small_scene, 224, args.scene_data, args.scene_data, args)
    if "buildings" in families:
        results["buildings"] = _family(
            "buildings",
            args.buildings,
            args.small_buildings,
            512,
            args.building_data / "train" / "images",
            args.building_data / "val",
            args,
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
