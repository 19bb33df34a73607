"""Where the downloaded data is (an archive or an extracted folder) and how files move out of it."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from rsfm.data.prepare.archives import check_archive_type, extract_archive
from rsfm.data.prepare.checksums import PublishedChecksum, check_published_checksum
from rsfm.data.prepare.report import PrepareError, Report

__all__ = ["Source", "check_source", "find_folder", "open_source", "place_file"]

TRANSFERS = ("move", "copy", "link")


@dataclass(frozen=True)
class Source:
    """A folder holding the downloaded data.

    Args:
        folder: the extracted archive, or the folder the user gave.
        transfer: how files leave it: ``move`` (a folder this run extracted), ``copy`` or
            ``link`` (hard links; the user's own folder is never changed).
    """

    folder: Path
    transfer: str


def check_source(path: Path) -> None:
    """Raise ``PrepareError`` unless ``path`` is a folder or a zip/tar archive (see ``check_archive_type``)."""
    if not path.exists():
        raise PrepareError(f"{path}: not found; pass the downloaded archive or the folder it was extracted to")
    if not path.is_dir():
        check_archive_type(path)


def open_source(
    path: Path,
    work_dir: Path,
    link: bool,
    published: Sequence[PublishedChecksum],
    skip_checksum: bool,
    report: Report,
) -> Source:
    """Extract an archive into ``work_dir`` (after checking its published checksum), or use a folder.

    Args:
        path: downloaded archive or extracted folder.
        work_dir: empty folder for the extraction; removed by the caller afterwards.
        link: hard-link files out of a user's folder instead of copying them.
        published: known digests of the dataset's archives.
        skip_checksum: do not compare the archive with its published digest.
        report: receives notes.

    Raises:
        PrepareError: see ``check_source``, ``extract_archive`` and ``check_published_checksum``.
    """
    path = Path(path)
    check_source(path)
    if path.is_dir():
        report.note(f"reading the extracted folder {path} ({'hard links' if link else 'copies'}; it is left unchanged)")
        return Source(path, "link" if link else "copy")
    if not skip_checksum:
        check_published_checksum(path, published, report)
    extract_archive(path, work_dir)
    return Source(work_dir, "move")


def place_file(source: Path, target: Path, transfer: str) -> None:
    """Put ``source`` at ``target`` by moving, copying or hard-linking it.

    Raises:
        PrepareError: a hard link across file systems (the message says to copy instead).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if transfer == "move":
        shutil.move(source, target)
    elif transfer == "copy":
        shutil.copy2(source, target)
    elif transfer == "link":
        try:
            os.link(source, target)
        except OSError as error:
            raise PrepareError(
                f"cannot hard-link {source} to {target} ({error.strerror}); drop --link to copy the files"
            ) from error
    else:
        raise ValueError(f"transfer must be one of {TRANSFERS}, got {transfer!r}")


def find_folder(root: Path, score: Callable[[Path], int], what: str, perfect: Optional[int] = None) -> Path:
    """The folder at or below ``root`` that ``score`` rates highest (the shallowest on ties).

    Archives wrap the data in one or more folders whose names differ between releases
    (``AID/``, ``UCMerced_LandUse/Images/``, ``3. The cropped image tiles and raster labels/``),
    so the data is found by its content instead of by a fixed path.

    Args:
        root: where to search.
        score: how well a folder matches; 0 means not at all.
        what: what is looked for, for the error message.
        perfect: the highest possible score; the search stops at the first folder reaching
            it instead of listing the whole tree (a million-image archive).

    Raises:
        PrepareError: no folder scores above 0.
    """
    best, best_score = root, score(root)
    level: List[Path] = [root]
    while level and best_score != perfect:
        children = sorted(
            child
            for folder in level
            for child in folder.iterdir()
            if child.is_dir() and not child.name.startswith((".", "__MACOSX"))
        )
        for child in children:
            child_score = score(child)
            if child_score > best_score:
                best, best_score = child, child_score
                if best_score == perfect:
                    break
        level = children
    if best_score <= 0:
        raise PrepareError(f"{root}: no folder holding {what} found; pass the archive or the folder that holds them")
    return best
