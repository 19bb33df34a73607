"""``ScenePredictionWriter``: ``rsfm predict`` results of scene classification as CSV."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

__all__ = ["ScenePredictionWriter"]


class ScenePredictionWriter(BasePredictionWriter):
    """Append each predict batch to ``predictions.csv`` (``predictions_rank<r>.csv`` with DDP).

    Columns: ``path``, ``predicted`` (class name), ``probability``, ``true`` (class name, empty
    for unlabelled images) and ``top_k`` (``name:probability`` pairs separated by ``;``).

    Args:
        output_dir: folder for the CSV; default: the trainer's log folder.
        top_k: number of classes listed in the ``top_k`` column.
    """

    def __init__(self, output_dir: Optional[str] = None, top_k: int = 5) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.top_k = top_k
        self.path: Optional[Path] = None

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        folder = Path(self.output_dir or trainer.log_dir or trainer.default_root_dir)
        name = "predictions.csv" if trainer.world_size == 1 else f"predictions_rank{trainer.global_rank}.csv"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / name
        with open(self.path, "w", newline="") as handle:
            csv.writer(handle).writerow(["path", "predicted", "probability", "true", "top_k"])

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Dict[str, Any],
        batch_indices: Optional[Sequence[int]],
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        names = pl_module.class_names
        probabilities = prediction["probabilities"].float().cpu()
        labels = prediction["label"].tolist() if prediction["label"] is not None else [-1] * len(probabilities)
        top = probabilities.topk(min(self.top_k, len(names)), dim=1)
        with open(self.path, "a", newline="") as handle:
            writer = csv.writer(handle)
            for path, label, values, indices in zip(prediction["path"], labels, top.values, top.indices):
                ranked = ";".join(f"{names[index]}:{value:.4f}" for value, index in zip(values.tolist(), indices.tolist()))
                true = names[label] if label >= 0 else ""
                writer.writerow([path, names[int(indices[0])], f"{float(values[0]):.4f}", true, ranked])

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        rank_zero_info(f"predictions written to {self.path}")
