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
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

from rsfm.data.io import IMAGE_EXTENSIONS

__all__ = [
    "ClassFolders",
    "Sample",
    "index_class_folders",
    "missing_files",
    "missing_files_problem",
    "read_sample_list",
    "scan_class_folders",
    "shorten",
    "stratified_split",
]

Sample = Tuple[Path, str]

_PATH_HEADERS = {"path", "image", "image_path", "file", "filename", "file_name"}
_LABEL_HEADERS = ("label", "class", "class_name", "category", "scene")


class ClassFolders(NamedTuple):
    """What :func:`index_class_folders` found: the samples, and class folders without images."""

    samples: List[Sample]
    empty_folders: List[Path]


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
    return index_class_folders(root, label_level, extensions).samples


def index_class_folders(
    root: Union[str, os.PathLike],
    label_level: int = -1,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
) -> ClassFolders:
    """:func:`scan_class_folders`, plus the class folders that hold no image.

    A folder counts as a class folder when it lies as deep below ``root`` as the class folders
    of the images found (for ``label_level=1``: the first level; for ``-1`` in Million-AID:
    the second and third levels); an empty one is a class that would silently be missing.
    Only the topmost folder of an empty branch is listed.

    Returns:
        ``ClassFolders(samples, empty_folders)``; ``empty_folders`` sorted by path.

    Raises:
        the same errors as :func:`scan_class_folders`.
    """
    root = Path(root)
    if label_level == 0:
        raise ValueError("label_level=0 does not name a folder: use 1, 2, ... (from the root) or -1, -2, ...")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: image folder not found")
    suffixes = tuple(suffix.lower() for suffix in extensions)
    samples: List[Sample] = []
    images_in: Dict[Tuple[str, ...], int] = {}  # folder levels below root -> images directly in it
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        levels = Path(folder).relative_to(root).parts
        images_in[levels] = 0
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
            images_in[levels] += 1
    if not samples:
        raise FileNotFoundError(f"{root}: no image files ({', '.join(suffixes)}) found in its sub-folders")
    return ClassFolders(sorted(samples), _empty_class_folders(root, images_in, label_level))


def _empty_class_folders(root: Path, images_in: Dict[Tuple[str, ...], int], label_level: int) -> List[Path]:
    """Topmost folders without images in their branch that lie as deep as a class folder."""
    images_below: Dict[Tuple[str, ...], int] = defaultdict(int)
    for levels, count in images_in.items():
        for depth in range(len(levels) + 1):
            images_below[levels[:depth]] += count
    # label_level -1 names the folder holding the image, -2 its parent, ...
    class_depths = (
        {label_level}
        if label_level > 0
        else {len(levels) + label_level + 1 for levels, count in images_in.items() if count}
    )
    empty = {levels for levels, count in images_below.items() if count == 0 and len(levels) in class_depths}
    topmost = [levels for levels in empty if not any(levels[:depth] in empty for depth in range(len(levels)))]
    return sorted(root.joinpath(*levels) for levels in topmost)


def read_sample_list(
    list_file: Union[str, os.PathLike],
    root: Optional[Union[str, os.PathLike]] = None,
    check_files: bool = True,
) -> List[Sample]:
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
        check_files: check that every listed image exists (one ``stat`` per line); callers
            that collect problems check later with :func:`missing_files_problem`.

    Returns:
        ``(path, class name)`` pairs in file order.

    Raises:
        FileNotFoundError: the list, or (with ``check_files``) any image it names, does not
            exist; the message counts the missing images and names the first ten.
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
    rows = [(number, next(csv.reader(io.StringIO(line))) if is_csv else line.split()) for number, line in lines]
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
    if check_files:
        problem = missing_files_problem(list_file, samples, root)
        if problem is not None:
            raise FileNotFoundError(problem)
    return samples


def missing_files(samples: Sequence[Sample]) -> List[Path]:
    """The paths of ``samples`` that are not files, in list order."""
    return [path for path, _ in samples if not os.path.isfile(path)]


def missing_files_problem(
    list_file: Union[str, os.PathLike],
    samples: Sequence[Sample],
    root: Optional[Union[str, os.PathLike]] = None,
) -> Optional[str]:
    """Why the images listed in ``list_file`` cannot all be read, or ``None`` when they exist.

    Args:
        list_file: the list the samples came from (named in the message).
        samples: what :func:`read_sample_list` returned for it.
        root: the ``root`` given to :func:`read_sample_list` (named in the hint).
    """
    missing = missing_files(samples)
    if not missing:
        return None
    base = Path(root) if root is not None else Path(list_file).parent
    return (
        f"{list_file}: {len(missing)} of {len(samples)} listed image(s) do not exist: {shorten(missing)} "
        f"(relative paths are resolved against {base}; pass root=... to change that, or fix the list)"
    )


def shorten(items: Sequence[object], count: int = 10) -> str:
    """``a, b, c and 7 more``: at most ``count`` items of a problem report."""
    shown = ", ".join(str(item) for item in list(items)[:count])
    return shown + (f" and {len(items) - count} more" if len(items) > count else "")


def stratified_split(samples: Sequence[Sample], fractions: Sequence[float], seed: int = 0) -> List[List[Sample]]:
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
