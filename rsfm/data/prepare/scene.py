"""Scene classification datasets (class folders of images) prepared for ``SceneDataModule``.

The prepared folder holds the class folders exactly as published (``OUTPUT/<class>/<file>``,
nested for Million-AID), so ``SceneDataModule(root=OUTPUT)`` reads it, plus one CSV list per
part of each split protocol and seed (``split_2-8_seed0_train.csv``) for
``SceneDataModule(train_list=..., test_list=...)``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Mapping, Sequence, Tuple

from tqdm import tqdm

from rsfm.data.io import read_image
from rsfm.data.prepare.checks import QUARANTINE, find_failures, quarantine
from rsfm.data.prepare.checksums import PublishedChecksum
from rsfm.data.prepare.report import Report, shorten
from rsfm.data.prepare.sources import Source, find_folder, place_file
from rsfm.data.prepare.splits import SplitProtocol, write_split_lists
from rsfm.data.samples import Sample, scan_class_folders

__all__ = ["LabelLevel", "SceneDatasetSpec", "prepare_scene_dataset"]


@dataclass(frozen=True)
class LabelLevel:
    """One level of a published class hierarchy that split lists can be written for.

    Args:
        number: the level's number, e.g. ``2``: the ``--label-level`` value and the
            ``level2`` in list names.
        folder_level: which folder names the class (``label_level`` of
            ``rsfm.data.scan_class_folders``; ``-1`` is the folder holding the image, at any depth).
        title: what its classes are called in messages, e.g. ``level-2`` or ``leaf``.
        class_count: published number of classes at this level.
        class_names: the published class names, when known; they are then checked by name.
    """

    number: int
    folder_level: int
    title: str
    class_count: int
    class_names: Tuple[str, ...] = ()


@dataclass(frozen=True)
class SceneDatasetSpec:
    """What a published scene dataset contains, and how its preparation script presents it.

    Args:
        name: dataset name for messages, e.g. ``AID``.
        class_names: the folders directly below the dataset root (for Million-AID: the 8
            level-1 classes); they locate the root inside the archive.
        images_per_class: published image count per folder of ``class_names``; empty when
            not published.
        protocols: split protocols to write lists for.
        published: published digests of the dataset's archives.
        label_levels: a class hierarchy (Million-AID): the script then takes ``--label-level``
            (the last level is the default) and ``--val-fraction``, and writes one train/val
            split named ``level<N>``; every level is checked against its published classes.
        val_fraction: default of ``--val-fraction`` when ``label_levels`` are given.
        description: what the script reads and writes, shown by ``--help``.
        example: typical commands, shown at the end of ``--help``.
    """

    name: str
    class_names: Tuple[str, ...]
    images_per_class: Mapping[str, int] = field(default_factory=dict)
    protocols: Tuple[SplitProtocol, ...] = ()
    published: Tuple[PublishedChecksum, ...] = ()
    label_levels: Tuple[LabelLevel, ...] = ()
    val_fraction: float = 0.1
    description: str = ""
    example: str = ""


def _class_folder_score(class_names: Sequence[str]):
    expected = set(class_names)

    def score(folder: Path) -> int:
        return len(expected & {child.name for child in folder.iterdir() if child.is_dir()})

    return score


def _check_classes(spec: SceneDatasetSpec, found: Counter, partial: bool, report: Report) -> None:
    unexpected = sorted(set(found) - set(spec.class_names))
    missing = sorted(set(spec.class_names) - set(found))
    if unexpected:
        report.problem(
            f"{len(unexpected)} folder(s) are not {spec.name} classes: {shorten(unexpected)}; "
            "remove them from the source or check that this is the right dataset"
        )
    mismatched = [
        f"{name} {found[name]} (published {count})"
        for name, count in sorted(spec.images_per_class.items())
        if name in found and found[name] != count
    ]
    if missing:
        message = f"{len(missing)} of the {len(spec.class_names)} classes are missing: {shorten(missing)}"
        report.mismatch(message, partial)
    if mismatched:
        report.mismatch(f"image counts differ from the published ones: {shorten(mismatched)}", partial)


def _check_label_levels(spec: SceneDatasetSpec, output: Path, partial: bool, report: Report) -> None:
    """Compare each level of the prepared hierarchy with the published one (by name where known)."""
    for level in spec.label_levels:
        if level.folder_level == 1:
            continue  # the folders below the root, already checked against spec.class_names
        found = {label for _, label in scan_class_folders(output, level.folder_level)}
        if not level.class_names:
            if len(found) != level.class_count:
                message = f"{len(found)} {level.title} classes, the published hierarchy has {level.class_count}"
                report.mismatch(message, partial)
            continue
        missing, unexpected = sorted(set(level.class_names) - found), sorted(found - set(level.class_names))
        if missing:
            message = f"{len(missing)} of the {level.class_count} {level.title} classes are missing: {shorten(missing)}"
            report.mismatch(message, partial)
        if unexpected:
            report.problem(
                f"{len(unexpected)} {level.title} folder(s) are not {spec.name} classes: {shorten(unexpected)}"
            )


def prepare_scene_dataset(
    spec: SceneDatasetSpec,
    source: Source,
    output: Path,
    seeds: Sequence[int],
    label_level: int,
    workers: int,
    partial: bool,
    report: Report,
) -> List[Sample]:
    """Place the class folders in ``output``, check them and write the split lists.

    Args:
        spec: what the dataset should contain.
        source: the extracted download.
        output: the prepared dataset folder (empty).
        seeds: one set of split lists per seed.
        label_level: folder level naming the class in the lists (see
            ``rsfm.data.scan_class_folders``).
        workers: threads used to decode every image once.
        partial: report missing classes and count differences as notes, not problems.
        report: receives notes and problems. Unreadable images are moved to
            ``output/.unreadable/`` and reported by name; unknown folders are reported.

    Returns:
        The readable ``(path, class name)`` samples in ``output`` at ``label_level``; each of
        ``spec.label_levels`` is compared with the published hierarchy afterwards.

    Raises:
        PrepareError: no folder holding the class folders is found.
        ValueError: an image lies directly in the dataset root, outside any class folder.
    """
    what = f"the {spec.name} class folders ({shorten(spec.class_names, 4)})"
    class_root = find_folder(source.folder, _class_folder_score(spec.class_names), what, len(spec.class_names))
    found = scan_class_folders(class_root, label_level=1)
    report.note(f"found {len(found)} images in {len({label for _, label in found})} class folders under {class_root}")
    _check_classes(spec, Counter(label for _, label in found), partial, report)
    placed = []
    for path, _ in tqdm(found, desc=f"{source.transfer} images", unit="file"):
        target = output / path.relative_to(class_root)
        place_file(path, target, source.transfer)
        placed.append(target)
    failures = find_failures(placed, read_image, workers, "decoding images")
    if failures:
        quarantine([path for path, _ in failures], output)
        report.problem(
            f"{len(failures)} unreadable image(s) moved to {output / QUARANTINE} (training skips them; "
            f"download the dataset again to get them back): {shorten([message for _, message in failures])}"
        )
    samples = scan_class_folders(output, label_level)
    classes = len({label for _, label in samples})
    report.note(f"{len(samples)} readable images in {classes} classes (label_level={label_level}) in {output}")
    for protocol in spec.protocols:
        for seed in seeds:
            written = write_split_lists(output, samples, protocol, seed)
            report.note(f"split {protocol.name} seed {seed}: wrote {', '.join(path.name for path in written)}")
    _check_label_levels(spec, output, partial, report)
    return samples
