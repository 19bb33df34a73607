"""A distilled student against the same student trained alone, on the shared scene and building data.

For each task (``--tasks``, both by default):

1. The teacher: the quickstart config (``configs/scene_quickstart.yaml``,
   ``configs/buildings_quickstart.yaml``: vitaev2_xs) for ``--teacher-epochs`` epochs (default:
   twice the config's), once, seed 0; or a checkpoint given with ``--scene-teacher`` /
   ``--buildings-teacher``.
2. For every seed (``--seeds``, default 0 1 2) the student config
   (``configs/distill_*_quickstart.yaml``: vitaev2_tiny_test) twice with the same epochs, data,
   split, augmentation and seed: from the labels alone (``teacher_checkpoint`` null) and
   distilled from the teacher.

Scores are those of the last checkpoint: top-1 accuracy on the scene quickstart's held-out test
split (30 % of the AID sample, unseen by teacher and students), IoU on the Xiamen val tiles. It
prints the teacher's score, each run, and per task the mean and sample standard deviation over
the seeds of both students, with the machine's CPU and vector flags.

    nice python benchmarks/distillation.py [--tasks scene buildings] [--seeds 0 1 2]
        [--teacher-epochs N] [--student-epochs N] [--scene-teacher CKPT] [--buildings-teacher CKPT]
        [--override KEY=VALUE ...] [--output-dir DIR]

``--override`` passes a config override to every run (a smoke test: ``--teacher-epochs 1
--student-epochs 1 --seeds 0 --override trainer.limit_train_batches=2 --override
trainer.limit_val_batches=1 --override trainer.limit_test_batches=1``). Every fit goes through
LightningCLI, so all other settings come from the configs. One JSON line per run, then one with
everything.
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
from lightning.pytorch.cli import LightningCLI
from machine import torch_description  # benchmarks/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]
TASKS = {
    "scene": dict(
        teacher=REPO / "configs" / "scene_quickstart.yaml",
        student=REPO / "configs" / "distill_scene_quickstart.yaml",
        evaluate="test",
        metric="test/acc",
    ),
    "buildings": dict(
        teacher=REPO / "configs" / "buildings_quickstart.yaml",
        student=REPO / "configs" / "distill_buildings_quickstart.yaml",
        evaluate="validate",
        metric="val/iou",
    ),
}


def _run(config: Path, name: str, output_dir: Path, extra: List[str], task: Dict[str, Any]) -> Dict[str, Any]:
    """Fit ``config`` with ``extra`` overrides; score the last checkpoint."""
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
    trainer = cli.trainer
    for callback in trainer.checkpoint_callbacks:  # the best one and the one writing last.ckpt
        callback.dirpath = str(output_dir / name / "checkpoints")
    start = time.perf_counter()
    trainer.fit(cli.model, cli.datamodule)
    seconds = time.perf_counter() - start
    evaluate = getattr(trainer, task["evaluate"])
    (metrics,) = evaluate(cli.model, cli.datamodule, ckpt_path="last", verbose=False)
    return {
        "backbone": cli.model.hparams.backbone,
        "epochs": trainer.current_epoch,
        "fit_seconds": round(seconds, 1),
        "score": round(float(metrics[task["metric"]]), 4),
        "checkpoint": trainer.checkpoint_callbacks[-1].last_model_path,
    }


def _summary(scores: List[float]) -> Dict[str, float]:
    spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
    return {"mean": round(statistics.mean(scores), 4), "std": round(spread, 4), "n": len(scores)}


def _benchmark_task(name: str, args: argparse.Namespace, output_dir: Path, overrides: List[str]) -> Dict[str, Any]:
    task = TASKS[name]
    report: Dict[str, Any] = {"metric": task["metric"]}
    teacher_path: Optional[Path] = getattr(args, f"{name}_teacher")
    if teacher_path is None:
        # default: twice the quickstart's budget, a teacher stronger than the quickstart itself
        epochs = args.teacher_epochs or 2 * _config_epochs(task["teacher"])
        extra = [*overrides, f"--trainer.max_epochs={epochs}"]
        teacher = _run(task["teacher"], f"{name}_teacher", output_dir, extra, task)
        report["teacher"] = teacher
        print(json.dumps({f"{name}_teacher": teacher}), flush=True)
        teacher_path = Path(teacher["checkpoint"])
    else:
        report["teacher"] = {"checkpoint": str(teacher_path)}
    student_epochs = [f"--trainer.max_epochs={args.student_epochs}"] if args.student_epochs else []
    runs: Dict[str, List[Dict[str, Any]]] = {"scratch": [], "distilled": []}
    for seed in args.seeds:
        for kind, teacher_arg in (("scratch", "null"), ("distilled", str(teacher_path.resolve()))):
            extra = [
                *overrides,
                *student_epochs,
                f"--seed_everything={seed}",
                f"--model.init_args.teacher_checkpoint={teacher_arg}",
            ]
            run = _run(task["student"], f"{name}_{kind}_seed{seed}", output_dir, extra, task)
            run["seed"] = seed
            runs[kind].append(run)
            print(json.dumps({f"{name}_{kind}": run}), flush=True)
    report["runs"] = runs
    report["scratch"] = _summary([run["score"] for run in runs["scratch"]])
    report["distilled"] = _summary([run["score"] for run in runs["distilled"]])
    report["distilled_minus_scratch"] = round(report["distilled"]["mean"] - report["scratch"]["mean"], 4)
    return report


def _config_epochs(config: Path) -> int:
    import yaml

    return int(yaml.safe_load(config.read_text())["trainer"]["max_epochs"])


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=sorted(TASKS, reverse=True))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="student seeds (default: 0 1 2)")
    parser.add_argument("--teacher-epochs", type=int, default=None, help="default: twice the quickstart config's")
    parser.add_argument("--student-epochs", type=int, default=None, help="default: the distill config's")
    parser.add_argument("--scene-teacher", type=Path, default=None, help="a trained scene teacher checkpoint to reuse")
    parser.add_argument("--buildings-teacher", type=Path, default=None, help="a trained building teacher to reuse")
    parser.add_argument(
        "--override", action="append", default=[], metavar="KEY=VALUE", help="a config override for every run"
    )
    parser.add_argument("--output-dir", type=Path, default=None, help="logs and checkpoints (default: a temp folder)")
    args = parser.parse_args(argv)
    output_dir = (args.output_dir or Path(tempfile.mkdtemp(prefix="distillation_benchmark_"))).resolve()
    sys.argv = sys.argv[:1]  # LightningCLI gets its arguments from _run only
    overrides = [f"--{override}" for override in args.override]
    report: Dict[str, Any] = {
        "machine": torch_description(),
        "cpu_count": os.cpu_count(),
        "output_dir": str(output_dir),
        "load_average_start": round(os.getloadavg()[0], 2),
    }
    start = time.perf_counter()
    for name in args.tasks:
        report[name] = _benchmark_task(name, args, output_dir, overrides)
        summary = {key: report[name][key] for key in ("scratch", "distilled", "distilled_minus_scratch")}
        print(json.dumps({f"{name}_summary": summary}), flush=True)
    report["total_seconds"] = round(time.perf_counter() - start, 1)
    report["load_average_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
