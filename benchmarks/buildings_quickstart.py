"""Building quickstart from scratch against the same run initialised from a scene-pretrained backbone.

1. Scene pretraining: ``configs/scene_quickstart.yaml`` as written (AID sample), then its
   last checkpoint's backbone is exported (``rsfm export-backbone``). Skipped when
   ``--scene-backbone`` names an exported file.
2. ``configs/buildings_quickstart.yaml`` as written (Xiamen tiles), once from scratch and once
   with ``--model.init_args.backbone_checkpoint`` set to that backbone: same data order,
   augmentation, schedule and epochs (the config's seed), only the backbone's initial weights
   differ.

For each building run it reports IoU, F1, precision and recall on the Xiamen val split (74
tiles, whole 256 px tiles) for the last checkpoint and for the best-on-validation one, the fit's
wall time and training throughput. Everything goes through LightningCLI, so every setting comes
from the configs.

    nice python benchmarks/buildings_quickstart.py [--output-dir DIR] [--scene-backbone FILE]
        [--threads N] [--seed N] [--epochs N]

Prints one JSON line per stage and a final JSON line with everything.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import rsfm.tasks  # noqa: F401  (torchvision shim first)

# isort: split
import torch
from lightning.pytorch import Callback
from lightning.pytorch.cli import LightningCLI
from machine import torch_description  # benchmarks/ is on sys.path when run as a script

from rsfm.tasks.export import export_backbone

REPO = Path(__file__).resolve().parents[1]
SCENE_CONFIG = REPO / "configs" / "scene_quickstart.yaml"
BUILDINGS_CONFIG = REPO / "configs" / "buildings_quickstart.yaml"
METRICS = ("val/iou", "val/f1", "val/precision", "val/recall")


class TrainThroughput(Callback):
    """Training images per second of each epoch (validation excluded)."""

    def __init__(self) -> None:
        self.rates: List[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start, self._images = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._images += len(batch["image"])
        self._end = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._images:
            self.rates.append(self._images / (self._end - self._start))


def _cli(config: Path, output_dir: Path, name: str, extra: List[str]) -> LightningCLI:
    args = [
        "--config",
        str(config),
        f"--trainer.logger.init_args.save_dir={output_dir}",
        f"--trainer.logger.init_args.name={name}",
        "--trainer.enable_progress_bar=false",
        *extra,
    ]
    os.chdir(REPO)  # the configs' data paths are relative to the repository root
    cli = LightningCLI(
        subclass_mode_model=True, subclass_mode_data=True, run=False, args=args, save_config_kwargs={"overwrite": True}
    )
    for callback in cli.trainer.checkpoint_callbacks:  # the best one and the one writing last.ckpt
        callback.dirpath = str(output_dir / name / "checkpoints")
    return cli


def _scene_backbone(output_dir: Path) -> Dict[str, Any]:
    cli = _cli(SCENE_CONFIG, output_dir, "scene", [])
    start = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    seconds = time.perf_counter() - start
    (metrics,) = cli.trainer.validate(cli.model, cli.datamodule, ckpt_path="last", verbose=False)
    backbone = export_backbone(
        cli.trainer.checkpoint_callbacks[-1].last_model_path, output_dir / "scene_backbone.safetensors"
    )
    return {
        "backbone_file": str(backbone),
        "epochs": cli.trainer.current_epoch,
        "fit_seconds": round(seconds, 1),
        "val_acc_last": round(metrics["val/acc"], 4),
    }


def _buildings(
    output_dir: Path, name: str, backbone: Optional[Path], epochs: Optional[int], seed: Optional[int]
) -> Dict[str, Any]:
    extra = [] if backbone is None else [f"--model.init_args.backbone_checkpoint={backbone}"]
    if epochs is not None:
        extra.append(f"--trainer.max_epochs={epochs}")
    if seed is not None:
        extra.append(f"--seed_everything={seed}")
    cli = _cli(BUILDINGS_CONFIG, output_dir, name, extra)
    throughput = TrainThroughput()
    cli.trainer.callbacks.append(throughput)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    seconds = time.perf_counter() - start
    report: Dict[str, Any] = {
        "epochs": cli.trainer.current_epoch,
        "fit_seconds": round(seconds, 1),
        "train_images_per_s_median": round(statistics.median(throughput.rates[1:] or throughput.rates), 1),
    }
    for which in ("last", "best"):
        (metrics,) = cli.trainer.validate(cli.model, cli.datamodule, ckpt_path=which, verbose=False)
        report[f"val_{which}"] = {key.split("/")[1]: round(metrics[key], 4) for key in METRICS}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=None, help="logs and checkpoints (default: a temp folder)")
    parser.add_argument(
        "--scene-backbone",
        type=Path,
        default=None,
        help="a backbone exported from a scene_quickstart run (default: train one first)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's choice; 1 is faster on a busy machine)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the building runs (default: the config's); repeat runs to see the spread",
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="override max_epochs of the building runs (default: as written)"
    )
    args = parser.parse_args()
    output_dir = (args.output_dir or Path(tempfile.mkdtemp(prefix="buildings_benchmark_"))).resolve()
    sys.argv = sys.argv[:1]  # LightningCLI gets its arguments from _cli only
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    report: Dict[str, Any] = {
        "config": str(BUILDINGS_CONFIG.relative_to(REPO)),
        "machine": torch_description(),
        "seed": args.seed,
        "output_dir": str(output_dir),
    }
    backbone = args.scene_backbone.resolve() if args.scene_backbone else None
    if backbone is None:
        report["scene_pretraining"] = _scene_backbone(output_dir)
        backbone = Path(report["scene_pretraining"]["backbone_file"])
        print(json.dumps({"scene_pretraining": report["scene_pretraining"]}), flush=True)
    else:
        report["scene_pretraining"] = {"backbone_file": str(backbone)}
    for name, weights in (("from_scratch", None), ("scene_pretrained", backbone)):
        report[name] = _buildings(output_dir, name, weights, args.epochs, args.seed)
        print(json.dumps({name: report[name]}), flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
