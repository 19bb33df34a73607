"""The scene quickstart against a timm ResNet-18 trained with the same recipe, budget and data.

Runs ``configs/scene_quickstart.yaml`` as written (through LightningCLI, so every setting comes
from the config), then the same config with ``--model.init_args.backbone resnet18``, in one
process, one after the other. For each model it reports training throughput (images/s over the
training batches of every epoch after the first, data loading included), the wall time of the
fit, and the held-out accuracy on the config's test split for the last checkpoint and for the
best-on-validation one. A final interleaved micro-benchmark (forward + backward + AdamW step
on one batch, models timed in turn) gives a load-robust speed ratio.

    python benchmarks/scene_quickstart_vs_resnet18.py [--output-dir DIR] [--epochs N]

Prints one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import rsfm.tasks  # noqa: F401  (torchvision shim first)

# isort: split
import torch
from lightning.pytorch import Callback
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.trainer.states import TrainerFn

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "scene_quickstart.yaml"


class TrainThroughput(Callback):
    """Images per second over each epoch's training batches (validation excluded)."""

    def __init__(self) -> None:
        self.epochs: List[Dict[str, float]] = []
        self._start = self._end = 0.0
        self._images = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start, self._images = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._images += len(batch["image"])
        self._end = time.perf_counter()

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if trainer.state.fn == TrainerFn.FITTING:  # the end of an epoch's training batches
            self._close_epoch()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._close_epoch()  # epochs without validation

    def _close_epoch(self) -> None:
        if self._images:
            self.epochs.append({"images": self._images, "seconds": self._end - self._start})
            self._images = 0


def _run(backbone: str, output_dir: Path, epochs: int | None) -> Dict[str, Any]:
    args = [
        "--config",
        str(CONFIG),
        f"--model.init_args.backbone={backbone}",
        f"--trainer.logger.init_args.save_dir={output_dir}",
        f"--trainer.logger.init_args.name={backbone}",
        "--trainer.enable_progress_bar=false",
    ]
    if epochs is not None:
        args.append(f"--trainer.max_epochs={epochs}")
    os.chdir(REPO)  # the config's data path is relative to the repository root
    cli = LightningCLI(
        subclass_mode_model=True, subclass_mode_data=True, run=False, args=args, save_config_kwargs={"overwrite": True}
    )
    trainer, model, datamodule = cli.trainer, cli.model, cli.datamodule
    trainer.checkpoint_callback.dirpath = str(output_dir / backbone / "checkpoints")
    throughput = TrainThroughput()
    trainer.callbacks.append(throughput)
    start = time.perf_counter()
    trainer.fit(model, datamodule)
    fit_seconds = time.perf_counter() - start
    results = {}
    for which in ("last", "best"):
        (metrics,) = trainer.test(model, datamodule, ckpt_path=which, verbose=False)
        results[which] = {key: metrics[f"test/{key}"] for key in ("acc", "acc_top5", "acc_macro")}
    steady = throughput.epochs[1:] or throughput.epochs
    rates = [epoch["images"] / epoch["seconds"] for epoch in steady]
    return {
        "parameters_m": round(sum(p.numel() for p in model.model.parameters()) / 1e6, 3),
        "epochs": trainer.current_epoch,
        "fit_seconds": round(fit_seconds, 1),
        "train_images_per_s_median": round(statistics.median(rates), 1),
        "train_images_per_s_min_max": [round(min(rates), 1), round(max(rates), 1)],
        "test_last": {key: round(value, 4) for key, value in results["last"].items()},
        "test_best_val": {key: round(value, 4) for key, value in results["best"].items()},
        "train_images": len(datamodule.split_samples("train")),
        "test_images": len(datamodule.split_samples("test")),
        "image_size": datamodule.image_size,
        "batch_size": datamodule.batch_size,
    }


def _interleaved_step_rate(batch: int, image_size: int, repeats: int = 10) -> Dict[str, float]:
    """Training images/s of a bare forward + backward + AdamW step, models timed in turn."""
    from rsfm.models import create_model

    steps = {}
    for name in ("vitaev2_tiny_test", "resnet18"):
        model = create_model(name, num_classes=30)
        optimizer = torch.optim.AdamW(model.parameters())
        images = torch.randn(batch, 3, image_size, image_size)
        labels = torch.randint(0, 30, (batch,))

        def step(model=model, optimizer=optimizer, images=images, labels=labels) -> None:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()

        steps[name] = step
    times = {name: [] for name in steps}
    for repeat in range(repeats + 2):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            if repeat >= 2:  # two warm-up rounds
                times[name].append(time.perf_counter() - start)
    return {name: round(batch / statistics.median(values), 1) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=None, help="logs and checkpoints (default: a temp folder)")
    parser.add_argument(
        "--epochs", type=int, default=None, help="override max_epochs of the config (default: as written)"
    )
    args = parser.parse_args()
    output_dir = args.output_dir or Path(tempfile.mkdtemp(prefix="scene_benchmark_"))
    sys.argv = sys.argv[:1]  # LightningCLI gets its arguments from _run only
    report: Dict[str, Any] = {
        "config": str(CONFIG.relative_to(REPO)),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "output_dir": str(output_dir),
        "load_average_start": round(os.getloadavg()[0], 2),  # other processes share the cores
    }
    for backbone in ("vitaev2_tiny_test", "resnet18"):
        report[backbone] = _run(backbone, output_dir, args.epochs)
        print(json.dumps({backbone: report[backbone]}), flush=True)
    quickstart = report["vitaev2_tiny_test"]
    report["interleaved_train_step_images_per_s"] = _interleaved_step_rate(
        quickstart["batch_size"], quickstart["image_size"]
    )
    report["load_average_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
