"""Writing a confusion matrix as CSV (counts) and PNG (row-normalised heat map)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence, Tuple, Union

import numpy as np

__all__ = ["save_confusion_matrix"]


def save_confusion_matrix(
    matrix: np.ndarray,
    class_names: Sequence[str],
    out_dir: Union[str, os.PathLike],
    stem: str = "confusion_matrix",
) -> Tuple[Path, Path]:
    """Write ``<stem>.csv`` and ``<stem>.png`` into ``out_dir``.

    Args:
        matrix: ``(num_classes, num_classes)`` counts, rows = true class, columns = predicted.
        class_names: one name per row/column.
        out_dir: folder to write into (created when missing).
        stem: file name without extension.

    Returns:
        The CSV and PNG paths. The CSV has a header row of predicted class names and one row per
        true class; the PNG shows row-normalised rates (recall on the diagonal).

    Raises:
        ValueError: the matrix is not square or does not match ``class_names``.
    """
    matrix = np.asarray(matrix)
    num_classes = len(class_names)
    if matrix.shape != (num_classes, num_classes):
        raise ValueError(f"confusion matrix has shape {matrix.shape}, expected ({num_classes}, {num_classes})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.png"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["true \\ predicted", *class_names])
        for name, row in zip(class_names, matrix):
            writer.writerow([name, *(int(value) for value in row)])

    from matplotlib.figure import Figure  # no pyplot: no GUI backend, safe in workers and CI

    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    side = max(4.0, 0.32 * num_classes + 2.0)
    figure = Figure(figsize=(side + 1.0, side))
    axes = figure.add_subplot()
    image = axes.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of true class")
    axes.set_xticks(range(num_classes), labels=class_names, rotation=90, fontsize=7)
    axes.set_yticks(range(num_classes), labels=class_names, fontsize=7)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    axes.set_title(f"{int(matrix.sum())} images, accuracy {accuracy:.3f}")
    if num_classes <= 30:
        for row in range(num_classes):
            for column in range(num_classes):
                if matrix[row, column]:
                    colour = "white" if rates[row, column] > 0.5 else "black"
                    axes.text(column, row, int(matrix[row, column]), ha="center", va="center", fontsize=6, color=colour)
    figure.tight_layout()
    figure.savefig(png_path, dpi=120)
    return csv_path, png_path
