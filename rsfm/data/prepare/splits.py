"""Published split protocols written as CSV sample lists that ``SceneDataModule`` reads."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

from rsfm.data.samples import Sample, stratified_split

__all__ = ["SplitProtocol", "split_list_path", "write_sample_list", "write_split_lists"]

_PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitProtocol:
    """Per-class shares of train, validation and test images.

    Args:
        name: used in the list file names, e.g. ``2-8`` for AID's 20 % / 80 % protocol.
        train, val, test: fractions of each class, summing to at most 1.
    """

    name: str
    train: float
    val: float
    test: float

    @property
    def fractions(self) -> List[float]:
        """``[train, val, test]``, the ``split`` argument of ``SceneDataModule`` for the same split."""
        return [self.train, self.val, self.test]


def split_list_path(root: Path, protocol: SplitProtocol, seed: int, part: str) -> Path:
    """``root/split_<protocol>_seed<seed>_<part>.csv``."""
    return root / f"split_{protocol.name}_seed{seed}_{part}.csv"


def write_sample_list(path: Path, samples: Sequence[Sample]) -> None:
    """Write ``path,label`` CSV rows with paths relative to the list's folder (POSIX separators)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for image, label in samples:
            writer.writerow([Path(image).relative_to(path.parent).as_posix(), label])


def write_split_lists(root: Path, samples: Sequence[Sample], protocol: SplitProtocol, seed: int) -> List[Path]:
    """Split ``samples`` class by class (``rsfm.data.stratified_split``) and write one list per part.

    The lists hold exactly the split that ``SceneDataModule(root=..., split=protocol.fractions,
    seed=seed)`` makes in memory; they make it explicit and portable. Parts with a zero
    fraction get no list.

    Args:
        root: folder the lists are written to; samples must lie below it.
        samples: ``(path, class name)`` pairs.
        protocol: the shares per part.
        seed: split seed.

    Returns:
        The written list files.
    """
    written = []
    for part, fraction, chosen in zip(_PARTS, protocol.fractions, stratified_split(samples, protocol.fractions, seed)):
        if fraction == 0:
            continue
        path = split_list_path(root, protocol, seed, part)
        write_sample_list(path, chosen)
        written.append(path)
    return written
