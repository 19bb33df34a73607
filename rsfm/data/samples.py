"""Scene-classification sample lists: class folders, list files and stratified splits.

A sample is ``(image path, class name)``. Folders may nest to any depth (UC Merced, AID and
NWPU-RESISC45 have one level of class folders; Million-AID has three), and the label is
taken from the folder level chosen with ``label_level``.
"""

from __future__ import annotations

import csv
import io
import os
import random
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from rsfm.data.io import IMAGE_EXTENSIONS

__all__ = ["Sample", "read_sample_list", "scan_class_folders", "stratified_split"]

Sample = Tuple[Path, str]

_PATH_HEADERS = {"path", "image", "image_path", "file", "filename", "file_name"}
_LABEL_HEADERS = ("label", "class", "class_name", "category", "scene")


def scan_class_folders(
    root: Union[str, os.PathLike],
    label_level: int = -1,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
) -> List[Sample]:
    """List the images under ``root`` with the class given by their folders.

    Args:
        root: folder of class folders, e.g. ``AID/`` holding ``Airport/``, ``BareLand/``, ...
            Sub-folders may nest to any depth; folders whose name starts with ``.`` are ignored.
        label_level: which folder names the class. ``1`` is the first level below ``root``
            (Million-AID: 8 level-1 classes), ``2`` the second, ...; ``-1`` is the folder that
            holds the image (Million-AID: the 51 leaf classes), ``-2`` its parent, ...
        extensions: file name endings to include (case-insensitive).

    Returns:
        ``(path, class name)`` pairs sorted by path.

    Raises:
        FileNotFoundError: ``root`` is missing or holds no image.
        ValueError: ``label_level`` is 0, or an image lies fewer folders deep than it asks.
    """
    root = Path(root)
    if label_level == 0:
        raise ValueError("label_level=0 does not name a folder: use 1, 2, ... (from the root) or -1, -2, ...")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: image folder not found")
    suffixes = tuple(suffix.lower() for suffix in extensions)
    samples: List[Sample] = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        levels = Path(folder).relative_to(root).parts
        for name in sorted(files):
            if not name.lower().endswith(suffixes) or name.startswith("."):
                continue
            path = Path(folder) / name
            if len(levels) < abs(label_level):
                raise ValueError(
                    f"{path}: lies {len(levels)} folder level(s) below {root} but label_level="
                    f"{label_level} needs {abs(label_level)}; move it into a class folder or change label_level"
                )
            samples.append((path, levels[label_level - 1 if label_level > 0 else label_level]))
    if not samples:
        raise FileNotFoundError(f"{root}: no image files ({', '.join(suffixes)}) found in its sub-folders")
    return sorted(samples)


def read_sample_list(list_file: Union[str, os.PathLike], root: Optional[Union[str, os.PathLike]] = None) -> List[Sample]:
    """Read a list of labelled images.

    Two formats are accepted:

    * CSV (``.csv``, or any file whose first line has a comma): ``path,label`` rows, with an
      optional header naming the path column path/image/file/filename and the label column
      label/class/category (AID's ``labels.csv`` has ``path,class``);
    * whitespace-separated text: ``path label [class_index]`` per line, as in the RSP
      ``train_label.txt`` files (``P0960374.jpg dry_field 0``). Paths may not contain spaces.

    Empty lines and lines starting with ``#`` are skipped.

    Args:
        list_file: the list.
        root: folder that relative paths are resolved against; default: the list's folder.

    Returns:
        ``(path, class name)`` pairs in file order.

    Raises:
        FileNotFoundError: the list, or the first image it names, does not exist.
        ValueError: a line has no label, or the list is empty. The message names file and line.
    """
    list_file = Path(list_file)
    if not list_file.is_file():
        raise FileNotFoundError(f"{list_file}: sample list not found")
    base = Path(root) if root is not None else list_file.parent
    lines = [
        (number, line)
        for number, line in enumerate(list_file.read_text(encoding="utf-8-sig").splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise ValueError(f"{list_file}: the sample list is empty")
    is_csv = list_file.suffix.lower() == ".csv" or "," in lines[0][1]
    rows = [
        (number, next(csv.reader(io.StringIO(line))) if is_csv else line.split())
        for number, line in lines
    ]
    path_column, label_column = 0, 1
    header = [field.strip().lower() for field in rows[0][1]]
    path_headers = [index for index, name in enumerate(header) if name in _PATH_HEADERS]
    if path_headers:
        path_column = path_headers[0]
        label_headers = [index for index, name in enumerate(header) if name in _LABEL_HEADERS]
        label_column = label_headers[0] if label_headers else 1 - min(path_column, 1)
        rows = rows[1:]
    samples: List[Sample] = []
    for number, fields in rows:
        if len(fields) <= max(path_column, label_column):
            raise ValueError(f"{list_file}:{number}: expected 'path,label' or 'path label', got {fields}")
        path = Path(fields[path_column].strip())
        samples.append((path if path.is_absolute() else base / path, fields[label_column].strip()))
    if not samples:
        raise ValueError(f"{list_file}: the sample list has a header but no samples")
    if not samples[0][0].is_file():
        raise FileNotFoundError(
            f"{list_file}: its first image {samples[0][0]} does not exist (relative paths are "
            f"resolved against {base}; pass root=... to change that)"
        )
    return samples


def stratified_split(
    samples: Sequence[Sample], fractions: Sequence[float], seed: int = 0
) -> List[List[Sample]]:
    """Split samples class by class, e.g. the AID 2:8 protocol with ``fractions=(0.2, 0.8)``.

    Each class is sorted by path and shuffled with a generator seeded by ``seed`` and the class
    name, so a split depends neither on file-system order nor on the other classes. Part ``k``
    takes the samples between the rounded cumulative fractions ``k-1`` and ``k``; fractions that
    sum to less than 1 leave the rest of each class unused.

    Args:
        samples: ``(path, class name)`` pairs.
        fractions: share of each class per part (e.g. train, val, test), each in [0, 1].
        seed: any integer; the same seed gives the same split.

    Returns:
        One list of samples per fraction, each sorted by path.

    Raises:
        ValueError: a fraction is negative or they sum to more than 1.
    """
    if any(fraction < 0 for fraction in fractions) or sum(fractions) > 1 + 1e-6:
        raise ValueError(f"split fractions {list(fractions)} must be >= 0 and sum to at most 1")
    by_class: Dict[str, List[Sample]] = defaultdict(list)
    for sample in samples:
        by_class[sample[1]].append(sample)
    parts: List[List[Sample]] = [[] for _ in fractions]
    for class_name in sorted(by_class):
        members = sorted(by_class[class_name])
        random.Random(f"{seed}:{class_name}").shuffle(members)
        start, cumulative = 0, 0.0
        for part, fraction in zip(parts, fractions):
            cumulative += fraction
            end = min(len(members), round(cumulative * len(members)))
            part.extend(members[start:end])
            start = end
    return [sorted(part) for part in parts]
