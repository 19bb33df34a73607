"""Change quickstart against image differencing, on bi-temporal pairs neither saw in training.

1. ``configs/change_quickstart.yaml`` as written (LightningCLI; the shared LEVIR-CD and DSIFN-CD
   samples, 30 % of each folder's pairs held out with the config's split seed), once per seed;
   the model as the last epoch left it is evaluated (the best-on-validation checkpoint was picked
   on the held-out pairs, so it is not evidence).
2. The baseline: the per-pixel distance between the two dates' colours (each image's bands
   standardised to mean 0, sd 1 first, so that a global change of light or season is not
   change; the raw difference is reported too), thresholded at the value that maximises F1 on
   the **training** pairs, then applied to the held-out pairs.

Both are scored on every pixel of the held-out pairs together (F1, IoU, precision, recall of the
change class), overall and per folder.

    nice python benchmarks/change_quickstart.py [--seeds 0 1 2] [--output-dir DIR] [--threads N]
        [--override=--trainer.max_epochs=60 ...]

Prints the machine, one JSON line per run and a final JSON line with everything.
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
from typing import Any, Dict, List, Sequence, Tuple

import rsfm.tasks  # noqa: F401  (torchvision shim first)

# isort: split
import numpy as np
import torch
from lightning.pytorch.cli import LightningCLI
from machine import torch_description  # benchmarks/ is on sys.path when run as a script

from rsfm.data.change import ChangePairDataset

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "change_quickstart.yaml"
THRESHOLDS = 200


def _cli(output_dir: Path, name: str, seed: int, overrides: Sequence[str] = ()) -> LightningCLI:
    args = [
        "--config",
        str(CONFIG),
        f"--trainer.logger.init_args.save_dir={output_dir}",
        f"--trainer.logger.init_args.name={name}",
        "--trainer.enable_progress_bar=false",
        f"--seed_everything={seed}",
        *overrides,
    ]
    os.chdir(REPO)  # the config's data paths are relative to the repository root
    cli = LightningCLI(
        subclass_mode_model=True, subclass_mode_data=True, run=False, args=args, save_config_kwargs={"overwrite": True}
    )
    for callback in cli.trainer.checkpoint_callbacks:  # the best one and the one writing last.ckpt
        callback.dirpath = str(output_dir / name / "checkpoints")
    return cli


def scores(predicted: np.ndarray, target: np.ndarray) -> Dict[str, float]:
    """F1, IoU, precision and recall of the change class over all pixels given (0/1 arrays;
    target 255 = not labelled, skipped)."""
    labelled = target != 255
    predicted, target = predicted[labelled].astype(bool), target[labelled] == 1
    hits = float(np.sum(predicted & target))
    false_alarms, misses = float(np.sum(predicted & ~target)), float(np.sum(~predicted & target))
    return {
        "f1": round(2 * hits / max(2 * hits + false_alarms + misses, 1), 4),
        "iou": round(hits / max(hits + false_alarms + misses, 1), 4),
        "precision": round(hits / max(hits + false_alarms, 1), 4),
        "recall": round(hits / max(hits + misses, 1), 4),
    }


def difference(before: np.ndarray, after: np.ndarray, standardise: bool) -> np.ndarray:
    """Per-pixel Euclidean distance between the dates' (H, W, C) colours."""
    before, after = before.astype(np.float64), after.astype(np.float64)
    if standardise:
        before = (before - before.mean(axis=(0, 1))) / np.maximum(before.std(axis=(0, 1)), 1e-6)
        after = (after - after.mean(axis=(0, 1))) / np.maximum(after.std(axis=(0, 1)), 1e-6)
    return np.sqrt(((after - before) ** 2).sum(axis=2))


def best_threshold(distances: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float:
    """The distance threshold with the highest F1 over all training pixels together."""
    values = np.concatenate([d[m != 255] for d, m in zip(distances, masks)])
    target = np.concatenate([m[m != 255] == 1 for m in masks])
    candidates = np.quantile(values, np.linspace(0.5, 0.999, THRESHOLDS))
    f1 = [scores(values > t, target.astype(np.uint8))["f1"] for t in candidates]
    return float(candidates[int(np.argmax(f1))])


def _folder(pair: Tuple[Path, ...]) -> str:
    return pair[0].parent.parent.name


def _evaluate(predictions: List[np.ndarray], dataset: ChangePairDataset, masks: List[np.ndarray]) -> Dict[str, Any]:
    report = {
        "all": scores(np.concatenate([p.ravel() for p in predictions]), np.concatenate([m.ravel() for m in masks]))
    }
    for folder in sorted({_folder(pair) for pair in dataset.pairs}):
        chosen = [i for i, pair in enumerate(dataset.pairs) if _folder(pair) == folder]
        report[folder] = scores(
            np.concatenate([predictions[i].ravel() for i in chosen]), np.concatenate([masks[i].ravel() for i in chosen])
        )
    return report


def baselines(train: ChangePairDataset, held_out: ChangePairDataset) -> Dict[str, Any]:
    train_pairs = [train.read(i) for i in range(len(train))]
    test_pairs = [held_out.read(i) for i in range(len(held_out))]
    masks = [mask for _, _, mask in test_pairs]
    report = {}
    for name, standardise in (("difference_standardised", True), ("difference_raw", False)):
        threshold = best_threshold(
            [difference(b, a, standardise) for b, a, _ in train_pairs], [m for _, _, m in train_pairs]
        )
        predictions = [(difference(b, a, standardise) > threshold).astype(np.uint8) for b, a, _ in test_pairs]
        report[name] = {"threshold": round(threshold, 3), **_evaluate(predictions, held_out, masks)}
    return report


def _model_scores(task: torch.nn.Module, held_out: ChangePairDataset) -> Dict[str, Any]:
    task.eval()
    predictions, masks = [], []
    with torch.inference_mode():
        for index in range(len(held_out)):
            sample = held_out[index]
            probability = task.forward_raw(sample["image"][None]).sigmoid()[0, 0]
            predictions.append((probability > task.hparams.threshold).numpy().astype(np.uint8))
            masks.append(sample["mask"].numpy())
    return _evaluate(predictions, held_out, masks)


def _validation_curve(cli: LightningCLI) -> Dict[int, float]:
    """val/f1 (the held-out pairs) of every validation run, from the CSV log."""
    import csv

    with open(Path(cli.trainer.logger.log_dir) / "metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("val/f1")]
    return {int(row["epoch"]): round(float(row["val/f1"]), 3) for row in rows}


def run(output_dir: Path, seed: int, overrides: Sequence[str] = ()) -> Dict[str, Any]:
    cli = _cli(output_dir, f"change_seed{seed}", seed, overrides)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    seconds = time.perf_counter() - start
    datamodule = cli.datamodule
    held_out = ChangePairDataset(datamodule.split_pairs(datamodule.hparams.test_split), None, None, "0/255")
    train = ChangePairDataset(datamodule.split_pairs(datamodule.hparams.train_split), None, None, "0/255")
    return {
        "seed": seed,
        "epochs": cli.trainer.current_epoch,
        "fit_seconds": round(seconds, 1),
        "train_pairs": len(train),
        "held_out_pairs": [pair[0].name for pair in held_out.pairs],
        "model": _model_scores(cli.model, held_out),
        "val_f1_by_epoch": _validation_curve(cli),
        **baselines(train, held_out),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (the split stays fixed)")
    parser.add_argument("--output-dir", type=Path, default=None, help="logs and checkpoints (default: a temp folder)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        help="a LightningCLI option for every run, e.g. --override=--trainer.max_epochs=60",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sys.argv = sys.argv[:1]  # LightningCLI gets its arguments from _cli only
    print(json.dumps({"machine": torch_description()}), flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        output_dir = args.output_dir or Path(scratch)
        runs = []
        for seed in args.seeds:
            runs.append(run(output_dir, seed, args.override))
            print(json.dumps(runs[-1]), flush=True)
    summary: Dict[str, Any] = {"overrides": args.override, "runs": runs}
    for name in ("model", "difference_standardised", "difference_raw"):
        f1 = [report[name]["all"]["f1"] for report in runs]
        summary[f"{name}_f1_mean"] = round(statistics.mean(f1), 4)
        summary[f"{name}_f1_sd"] = round(statistics.stdev(f1), 4) if len(f1) > 1 else 0.0
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
