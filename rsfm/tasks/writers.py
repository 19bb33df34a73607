"""``ScenePredictionWriter``: ``rsfm predict`` results of scene classification as CSV."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

__all__ = ["ScenePredictionWriter"]


class ScenePredictionWriter(BasePredictionWriter):
    """Append each predict batch to ``predictions.csv`` (``predictions_rank<r>.csv`` with DDP).

    The rows go to ``predictions.csv.partial``, renamed when prediction ends, so a CSV in the
    folder is always complete. The writer refuses to start when the CSV would replace one of the
    datamodule's input files (its sample lists or images).

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
        self.path = folder / name
        _refuse_inputs([self.path, self._partial], trainer.datamodule)
        folder.mkdir(parents=True, exist_ok=True)
        with open(self._partial, "w", newline="") as handle:
            csv.writer(handle).writerow(["path", "predicted", "probability", "true", "top_k"])

    @property
    def _partial(self) -> Path:
        assert self.path is not None
        return self.path.with_name(self.path.name + ".partial")

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
        with open(self._partial, "a", newline="") as handle:
            writer = csv.writer(handle)
            for path, label, values, indices in zip(prediction["path"], labels, top.values, top.indices):
                ranked = ";".join(
                    f"{names[index]}:{value:.4f}" for value, index in zip(values.tolist(), indices.tolist())
                )
                true = names[label] if label >= 0 else ""
                writer.writerow([path, names[int(indices[0])], f"{float(values[0]):.4f}", true, ranked])

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        os.replace(self._partial, self.path)
        rank_zero_info(f"predictions written to {self.path}")


def _refuse_inputs(outputs: Sequence[Path], datamodule: Any) -> None:
    """Raise when an output is one of the datamodule's input files: its sample lists (compared
    by real path and inode) or the images it predicts (by path, links resolved on our side)."""
    hparams = getattr(datamodule, "hparams", {}) or {}
    lists = [Path(value) for key, value in hparams.items() if key.endswith("_list") and value]
    dataset = (getattr(datamodule, "datasets", None) or {}).get("predict")
    images = {os.path.abspath(path) for path, _ in getattr(dataset, "samples", [])}
    for output in outputs:
        victims = [
            source
            for source in lists
            if output.resolve() == source.resolve()
            or (output.exists() and source.exists() and os.path.samefile(output, source))
        ]
        victims += [Path(path) for path in {os.path.abspath(output), str(output.resolve())} & images]
        if victims:
            raise ValueError(f"{output}: would overwrite the input {victims[0]}; choose another output_dir")
