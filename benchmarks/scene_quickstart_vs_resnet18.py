"""The scene quickstart against a timm ResNet-18 trained with the same recipe for the same wall-clock time.

1. ``configs/scene_quickstart.yaml`` as written (its backbone, ``vitaev2_xs``), through
   LightningCLI so that every setting comes from the config: its fit takes ``T`` seconds.
2. The same config with ``--model.init_args.backbone resnet18``, for two epochs, to time
   ResNet-18's epochs on this machine (skipped with ``--resnet-epochs``).
3. The same config with ResNet-18 for ``round(T / its epoch time)`` epochs: the same recipe,
   data, split, augmentation and seed, with the number of epochs that fits the quickstart's
   wall-clock time. Each model gets a complete learning-rate schedule; a hard stop at ``T``
   (Lightning's ``max_time``) would cut the slower model off in the middle of its warm-up or
   decay. Both fits' wall times are printed with their ratio (``budget_ratio``, ResNet-18 /
   quickstart); far from 1 means the load changed between the runs: rerun on a quiet machine.

With ``--seeds 0 1 2`` steps 1 and 3 are repeated per seed (the training seed and the data
split's: both models see the same split for a seed), ResNet-18's epochs timed once; means and
sample standard deviations over the seeds decide. For each run it reports the held-out top-1
accuracy (the config's 30 % test split) of the last checkpoint and of the best-on-validation one, parameters, epochs and the fit's wall time; then
an interleaved micro-benchmark (forward + backward + AdamW on one batch, models timed in turn,
load-robust) and the CPU with its vector flags.

    nice python benchmarks/scene_quickstart_vs_resnet18.py [--output-dir DIR] [--epochs N]
        [--resnet-epochs N] [--seeds 0 1 2] [--override trainer.limit_train_batches=2 ...]

``--epochs`` shortens the quickstart run; ``--override`` passes ``KEY=VALUE`` to both runs (a
smoke test: ``--epochs 1 --override trainer.limit_train_batches=2 --override
trainer.limit_val_batches=1 --override trainer.limit_test_batches=2``). Prints one JSON line per
run and a final JSON line with everything.
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

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "scene_quickstart.yaml"
BASELINE = "resnet18"


class EpochTimes(Callback):
    """Wall time of every epoch, validation included (what a wall-clock budget pays for)."""

    def __init__(self) -> None:
        self.seconds: List[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def _cli(name: str, output_dir: Path, extra: List[str]) -> LightningCLI:
    args = [
        "--config",
        str(CONFIG),
        f"--trainer.logger.init_args.save_dir={output_dir}",
        f"--trainer.logger.init_args.name={name}",
        "--trainer.enable_progress_bar=false",
        *extra,
    ]
    os.chdir(REPO)  # the config's data path is relative to the repository root
    cli = LightningCLI(
        subclass_mode_model=True, subclass_mode_data=True, run=False, args=args, save_config_kwargs={"overwrite": True}
    )
    for callback in cli.trainer.checkpoint_callbacks:  # the best one and the one writing last.ckpt
        callback.dirpath = str(output_dir / name / "checkpoints")
    return cli


def _fit(name: str, output_dir: Path, extra: List[str], test: bool = True) -> Dict[str, Any]:
    cli = _cli(name, output_dir, extra)
    trainer, model, datamodule = cli.trainer, cli.model, cli.datamodule
    epochs = EpochTimes()
    trainer.callbacks.append(epochs)
    start = time.perf_counter()
    trainer.fit(model, datamodule)
    report: Dict[str, Any] = {
        "backbone": model.hparams.backbone,
        "parameters_m": round(sum(p.numel() for p in model.model.parameters()) / 1e6, 3),
        "epochs": trainer.current_epoch,
        "fit_seconds": round(time.perf_counter() - start, 1),
        "epoch_seconds": [round(seconds, 1) for seconds in epochs.seconds],
        "image_size": datamodule.image_size,
        "batch_size": datamodule.batch_size,
    }
    if test:
        for which in ("last", "best"):
            (metrics,) = trainer.test(model, datamodule, ckpt_path=which, verbose=False)
            report[f"test_top1_{which}"] = round(metrics["test/acc"], 4)
            report[f"test_top5_{which}"] = round(metrics.get("test/acc_top5", float("nan")), 4)
        report["test_images"] = len(datamodule.split_samples("test"))
    return report


def _summary(scores: List[float]) -> Dict[str, float]:
    spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
    return {"mean": round(statistics.mean(scores), 4), "std": round(spread, 4), "scores": scores}


def _steady_epoch_seconds(report: Dict[str, Any]) -> float:
    """Median epoch time after the first (which also pays for worker start-up)."""
    seconds = report["epoch_seconds"]
    return statistics.median(seconds[1:] or seconds)


def _interleaved_step_rate(names: List[str], batch: int, image_size: int, repeats: int = 10) -> Dict[str, float]:
    """Training images/s of a bare forward + backward + AdamW step, models timed in turn."""
    from rsfm.models import create_model

    steps = {}
    for name in names:
        model = create_model(name, num_classes=30)
        optimizer = torch.optim.AdamW(model.parameters())
        images = torch.randn(batch, 3, image_size, image_size)
        labels = torch.randint(0, 30, (batch,))

        def step(model=model, optimizer=optimizer, images=images, labels=labels) -> None:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()

        steps[name] = step
    times: Dict[str, List[float]] = {name: [] for name in steps}
    for repeat in range(repeats + 2):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            if repeat >= 2:  # two warm-up rounds
                times[name].append(time.perf_counter() - start)
    return {name: round(batch / statistics.median(values), 1) for name, values in times.items()}


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=None, help="logs and checkpoints (default: a temp folder)")
    parser.add_argument(
        "--epochs", type=int, default=None, help="max_epochs of the quickstart run (default: as written)"
    )
    parser.add_argument(
        "--resnet-epochs", type=int, default=None, help="ResNet-18's epochs (default: timed to match the quickstart)"
    )
    parser.add_argument(
        "--override", action="append", default=[], metavar="KEY=VALUE", help="a config override for both runs"
    )
    parser.add_argument(
        "--seeds", nargs="+", type=int, default=[0], help="seeds of the runs (training and the data split)"
    )
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds of the interleaved micro-benchmark")
    args = parser.parse_args(argv)
    output_dir = (args.output_dir or Path(tempfile.mkdtemp(prefix="scene_benchmark_"))).resolve()
    sys.argv = sys.argv[:1]  # LightningCLI gets its arguments from _cli only
    overrides = [f"--{override}" for override in args.override]
    report: Dict[str, Any] = {
        "config": str(CONFIG.relative_to(REPO)),
        "machine": torch_description(),
        "cpu_count": os.cpu_count(),
        "output_dir": str(output_dir),
        "load_average_start": round(os.getloadavg()[0], 2),  # other processes share the cores
    }
    baseline_args = [f"--model.init_args.backbone={BASELINE}", *overrides]
    epochs = args.resnet_epochs
    runs: Dict[str, List[Dict[str, Any]]] = {"quickstart": [], BASELINE: []}
    for seed in args.seeds:
        seeded = [f"--seed_everything={seed}", f"--data.init_args.seed={seed}"]
        quickstart_args = [*overrides, *seeded, *([f"--trainer.max_epochs={args.epochs}"] if args.epochs else [])]
        quickstart = _fit(f"quickstart_seed{seed}", output_dir, quickstart_args)
        quickstart["seed"] = seed
        runs["quickstart"].append(quickstart)
        print(json.dumps({"quickstart": quickstart}), flush=True)
        if epochs is None:
            timing = _fit(f"{BASELINE}_timing", output_dir, [*baseline_args, "--trainer.max_epochs=2"], test=False)
            # the quickstart's fit time less its fixed costs (setup, statistics, first-epoch start-up)
            budget = _steady_epoch_seconds(quickstart) * quickstart["epochs"]
            epochs = max(1, round(budget / _steady_epoch_seconds(timing)))
            report["baseline_timing"] = {"epoch_seconds": timing["epoch_seconds"], "epochs_in_budget": epochs}
            print(json.dumps({"baseline_timing": report["baseline_timing"]}), flush=True)
        baseline = _fit(
            f"{BASELINE}_seed{seed}", output_dir, [*baseline_args, *seeded, f"--trainer.max_epochs={epochs}"]
        )
        baseline["seed"] = seed
        runs[BASELINE].append(baseline)
        print(json.dumps({BASELINE: baseline}), flush=True)
    report["runs"] = runs
    backbone = runs["quickstart"][0]["backbone"]
    fit_seconds = {name: sum(run["fit_seconds"] for run in values) for name, values in runs.items()}
    report["budget_ratio"] = round(fit_seconds[BASELINE] / fit_seconds["quickstart"], 3)
    for which in ("top1_last", "top1_best", "top5_last"):
        report[which] = {
            label: _summary([run[f"test_{which[:4]}_{which[5:]}"] for run in runs[name]])
            for label, name in ((backbone, "quickstart"), (BASELINE, BASELINE))
        }
    report["quickstart_wins"] = report["top1_last"][backbone]["mean"] > report["top1_last"][BASELINE]["mean"]
    report["interleaved_train_step_images_per_s"] = _interleaved_step_rate(
        [backbone, BASELINE], runs["quickstart"][0]["batch_size"], runs["quickstart"][0]["image_size"], args.repeats
    )
    report["load_average_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
