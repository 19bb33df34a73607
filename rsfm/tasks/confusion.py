"""Writing a confusion matrix as CSV (counts) and PNG (row-normalised, torchmetrics' plot)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence, Tuple, Union

from torchmetrics.classification import MulticlassConfusionMatrix

__all__ = ["save_confusion_matrix"]

# torchmetrics writes each cell's value at 15 pt; beyond this many classes the numbers overlap
_MAX_CLASSES_WITH_TEXT = 20


def save_confusion_matrix(
    confusion: MulticlassConfusionMatrix,
    class_names: Sequence[str],
    out_dir: Union[str, os.PathLike],
    stem: str = "confusion_matrix",
) -> Tuple[Path, Path]:
    """Write ``<stem>.csv`` and ``<stem>.png`` of a confusion-matrix metric into ``out_dir``.

    Args:
        confusion: the metric after its updates (counts, ``normalize=None``); rows = true class,
            columns = predicted. Its ``compute()`` is a collective under DDP: call it on every
            rank before calling this on one rank only (torchmetrics caches the result).
        class_names: one name per row/column.
        out_dir: folder to write into (created when missing).
        stem: file name without extension.

    Returns:
        The CSV and PNG paths. The CSV has a header row of predicted class names and one row per
        true class; the PNG (``MulticlassConfusionMatrix.plot``) shows row-normalised rates
        (recall on the diagonal), written in the cells up to 20 classes.

    Raises:
        ValueError: the matrix does not match ``class_names``.
    """
    counts = confusion.compute().cpu()
    num_classes = len(class_names)
    if tuple(counts.shape) != (num_classes, num_classes):
        raise ValueError(f"confusion matrix has shape {tuple(counts.shape)}, expected ({num_classes}, {num_classes})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.png"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["true \\ predicted", *class_names])
        for name, row in zip(class_names, counts.tolist()):
            writer.writerow([name, *(int(value) for value in row)])

    from matplotlib.figure import Figure  # no pyplot figure: nothing global, safe in workers and CI

    rates = counts.double() / counts.sum(dim=1, keepdim=True).clamp(min=1)
    side = max(4.0, 0.32 * num_classes + 2.0)
    figure = Figure(figsize=(side + 1.0, side))
    axes = figure.add_subplot()
    confusion.plot(
        val=rates, ax=axes, add_text=num_classes <= _MAX_CLASSES_WITH_TEXT, labels=list(class_names), cmap="Blues"
    )
    image = axes.images[0]
    image.set_clim(0.0, 1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of true class")
    axes.tick_params(labelsize=7)
    axes.tick_params(axis="x", labelrotation=90)
    for text in axes.texts:
        text.set_fontsize(6)
    total = int(counts.sum())
    axes.set_title(f"{total} images, accuracy {float(counts.trace()) / max(total, 1):.3f}")
    figure.tight_layout()
    figure.savefig(png_path, dpi=120)
    return csv_path, png_path
