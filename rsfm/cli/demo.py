"""``rsfm demo`` (``make demo``): the main job end to end on data embedded in the repository.

1. Trains a small building model (ViTAEv2 test size + UperNet, from scratch) on the embedded
   SpaceNet Atlanta chip (``datasets/samples/spacenet_atlanta``: 900 x 900 pixels at 0.5 m,
   43 footprints), holding out its eastern fifth for validation; a checkpoint already in the
   output folder is loaded instead (``--retrain`` to train again).
2. Maps the chip with ``rsfm predict-raster``: tiled inference, a building mask GeoTIFF and
   polygons (GeoPackage).
3. Draws an overview PNG: the image with predicted outlines and the reference footprints.

    rsfm demo --output demo_output [--epochs 60] [--retrain]

The sample is read from the repository checkout, not from package resources: the demo finds
``datasets/samples/spacenet_atlanta`` next to the ``rsfm`` package folder, which is where it is
in a clone installed with ``pip install -e .`` (``make install``). Wheels do not carry the
``datasets/`` folder, so there the command says so and stops.

About 80 s on 2 CPU cores (AVX2 kernels, after the install). The model sees one small chip, so
this shows the pipeline, not state-of-the-art accuracy. Imagery and labels: SpaceNet / Maxar,
CC BY-SA 4.0; the outputs are shared under the same licence.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Dict, List, Optional

# the source checkout holding the rsfm package (rsfm/cli/demo.py -> the repository root)
REPO = Path(__file__).resolve().parents[2]
SAMPLE_DIR = REPO / "datasets" / "samples" / "spacenet_atlanta"
IMAGE = SAMPLE_DIR / "sample_geotiff.tif"
FOOTPRINTS = SAMPLE_DIR / "geotiff_labels.geojson"
ATTRIBUTION = "Imagery and footprints: SpaceNet / Maxar, CC BY-SA 4.0"


def _log(message: str) -> None:
    print(f"[rsfm demo] {message}", flush=True)


def train(output: Path, epochs: int, seed: int = 0) -> Path:
    """Train the building model on the embedded chip; returns the checkpoint path.

    Normalisation statistics are the chip's own (raw uint16 units) and travel in the checkpoint.
    """
    import lightning.pytorch as pl
    import rasterio

    from rsfm.data.geo import BuildingGeoDataModule
    from rsfm.data.stats import band_statistics
    from rsfm.tasks.segmentation import BuildingSegmentationTask

    with rasterio.open(IMAGE) as dataset:
        pixels = dataset.read(1, masked=True).compressed().reshape(-1, 1, 1)
    mean, std = band_statistics([pixels])
    pl.seed_everything(seed, verbose=False)
    task = BuildingSegmentationTask(
        backbone="vitaev2_tiny_test",
        in_chans=1,
        mean=mean,
        std=std,
        class_names=["background", "building"],
        decoder_channels=16,
        dropout=0.0,
        lr=3e-3,
        weight_decay=0.01,
        schedule="poly",
        warmup_steps=10,
        num_overlays=0,
    )
    datamodule = BuildingGeoDataModule(
        str(IMAGE),
        str(FOOTPRINTS),
        val_fraction=0.2,
        patch_size=128,
        length=96,
        batch_size=8,
        scale_range=(0.8, 1.25),
    )
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        precision="32-true",
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=output,
        log_every_n_steps=4,
        # a validation pass every fifth epoch (the last one included) is enough to follow training
        check_val_every_n_epoch=5 if epochs % 5 == 0 else 1,
    )
    trainer.fit(task, datamodule)
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items() if name.startswith("val/")}
    _log("validation (eastern fifth of the chip): " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(metrics.items())))
    checkpoint = output / "building_model.ckpt"
    trainer.save_checkpoint(checkpoint)
    return checkpoint


def draw_overview(image: Path, vector: Path, footprints: Path, destination: Path, scores: Dict[str, float]) -> Path:
    """PNG of the image (2-98% stretch) with predicted outlines and reference footprints."""
    import geopandas
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import rasterio
    from matplotlib.lines import Line2D

    with rasterio.open(image) as dataset:
        pixels = dataset.read(1, masked=True).astype(float)
        bounds, crs = dataset.bounds, dataset.crs
    low, high = np.percentile(pixels.compressed(), [2, 98])
    stretched = np.clip((pixels.filled(low) - low) / (high - low), 0, 1)
    predicted = geopandas.read_file(vector)
    reference = geopandas.read_file(footprints).to_crs(crs)

    figure, axes = plt.subplots(figsize=(8, 8.4), dpi=110)
    axes.imshow(stretched, cmap="gray", extent=(bounds.left, bounds.right, bounds.bottom, bounds.top))
    reference.boundary.plot(ax=axes, color="#00e5ff", linewidth=1.0, linestyle="--")
    predicted.boundary.plot(ax=axes, color="#ff7a00", linewidth=1.6)
    axes.set_xlim(bounds.left, bounds.right)
    axes.set_ylim(bounds.bottom, bounds.top)
    axes.set_axis_off()
    axes.legend(
        handles=[
            Line2D([], [], color="#ff7a00", linewidth=1.6, label=f"predicted ({len(predicted)} polygons)"),
            Line2D([], [], color="#00e5ff", linestyle="--", label=f"reference ({len(reference)} footprints)"),
        ],
        loc="upper right",
        framealpha=0.85,
        fontsize=9,
    )
    score_text = ", ".join(f"{name} {value:.2f}" for name, value in scores.items())
    axes.set_title(f"rsfm predict-raster on SpaceNet Atlanta (0.5 m, {crs.to_string()})\n{score_text}", fontsize=10)
    figure.text(0.5, 0.015, ATTRIBUTION, ha="center", fontsize=8, color="#555555")
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    figure.savefig(destination)
    plt.close(figure)
    return destination


def pixel_scores(mask: Path, footprints: Path) -> Dict[str, float]:
    """IoU and F1 of the predicted building pixels against the rasterised reference footprints."""
    import geopandas
    import rasterio
    import torch
    from rasterio.features import rasterize
    from torchmetrics.functional.classification import binary_f1_score, binary_jaccard_index

    with rasterio.open(mask) as dataset:
        predicted = torch.from_numpy(dataset.read(1) == 1)
        reference_shapes = geopandas.read_file(footprints).to_crs(dataset.crs).geometry
        reference = torch.from_numpy(
            rasterize(reference_shapes, out_shape=dataset.shape, transform=dataset.transform) == 1
        )
    # no building pixels on either side scores 0 (zero_division), as before
    return {
        "pixel IoU": float(binary_jaccard_index(predicted, reference)),
        "F1": float(binary_f1_score(predicted, reference)),
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rsfm demo",
        description="The main job end to end: train a small building model on the SpaceNet chip embedded in "
        "the repository, map it with predict-raster and draw an overview. The sample is read from the "
        "repository checkout (datasets/samples/spacenet_atlanta), not from package resources.",
    )
    parser.add_argument("--output", type=Path, default=Path("demo_output"), help="folder for every output")
    parser.add_argument("--epochs", type=int, default=60, help="training epochs (12 batches of 8 patches each)")
    parser.add_argument("--retrain", action="store_true", help="train even if the folder holds a checkpoint")
    args = parser.parse_args(argv)
    if not (IMAGE.is_file() and FOOTPRINTS.is_file()):
        parser.exit(
            2,
            f"rsfm demo: error: {SAMPLE_DIR}: sample not found; the demo reads it from a clone of the rsfm "
            "repository (datasets/samples/), installed with 'pip install -e .' (make install)\n",
        )
    started = time.perf_counter()
    args.output.mkdir(parents=True, exist_ok=True)

    checkpoint = args.output / "building_model.ckpt"
    if checkpoint.is_file() and not args.retrain:
        _log(f"1/3 loading {checkpoint} (pass --retrain to train again)")
    else:
        _log(
            f"1/3 training a small building model on {IMAGE.relative_to(REPO)} (read from the repository "
            f"checkout {REPO}; {args.epochs} epochs)"
        )
        checkpoint = train(args.output, args.epochs)

    from rsfm.cli.predict_raster import main as predict_raster_command

    mask, vector = args.output / "buildings_mask.tif", args.output / "buildings.gpkg"
    command = [
        str(IMAGE),
        "--checkpoint",
        str(checkpoint),
        "--output",
        str(mask),
        "--vector",
        str(vector),
        "--tile-size",
        "256",
        "--overlap",
        "64",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--min-area",
        "4",
        "--simplify",
        "0.25",
        "--overwrite",
    ]
    _log("2/3 rsfm predict-raster " + " ".join(command))
    predict_raster_command(command)

    scores = pixel_scores(mask, FOOTPRINTS)
    overview = draw_overview(IMAGE, vector, FOOTPRINTS, args.output / "overview.png", scores)
    _log(f"3/3 overview {overview}")
    _log("whole chip (mostly training area): " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    _log(f"done in {time.perf_counter() - started:.0f} s: {mask}, {vector}, {overview}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
