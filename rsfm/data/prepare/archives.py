"""Safe extraction of downloaded zip and tar archives.

Every member name is checked before anything is written: absolute paths, drive letters,
``..`` components, links that point outside the archive and device files are refused with
an error naming the archive and the member. Tar members are then extracted with Python's
``data`` filter as a second line of defence. RAR and 7z archives are not read here: the
error says which command extracts them.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
import tarfile
import zipfile
from pathlib import Path
from typing import List, Union

from tqdm import tqdm

from rsfm.data.prepare.report import PrepareError

__all__ = ["ARCHIVE_SUFFIXES", "UnsafeArchiveError", "check_archive_type", "extract_archive", "is_archive"]

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")

_EXTRACT_FIRST = {
    ".rar": "unrar x {name}   (or: 7z x {name})",
    ".7z": "7z x {name}",
}
_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafeArchiveError(PrepareError):
    """An archive member would be written outside the extraction folder."""


def is_archive(path: Path) -> bool:
    """Whether ``path`` has a zip or tar file name ending (case-insensitive)."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def check_archive_type(archive: Path) -> None:
    """Raise ``PrepareError`` unless ``archive`` is a zip or tar file name; for RAR and 7z the
    message gives the command that extracts them."""
    suffixes = [suffix.lower() for suffix in archive.suffixes]
    for suffix, command in _EXTRACT_FIRST.items():
        if suffix in suffixes:
            raise PrepareError(
                f"{archive}: {suffix} archives are not read by this script. Extract it first with\n"
                f"    {command.format(name=archive.name)}\n"
                "then pass the extracted folder (or, for a .zip found inside, that .zip) instead"
            )
    if not is_archive(archive):
        raise PrepareError(
            f"{archive}: not a folder or a {', '.join(ARCHIVE_SUFFIXES)} archive; "
            "pass the downloaded archive or the folder it was extracted to"
        )


def _check_name(archive: Path, name: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or _DRIVE.match(name) or ".." in parts:
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} would be written outside the extraction folder "
            "(absolute path or '..'); nothing was extracted. Do not use this archive: "
            "download it again from the official page"
        )


def _check_tar_member(archive: Path, member: tarfile.TarInfo) -> None:
    _check_name(archive, member.name)
    if member.isdev() or member.isfifo():
        raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a device or pipe; nothing was extracted")
    if member.issym() or member.islnk():
        base = posixpath.dirname(member.name) if member.issym() else ""
        target = posixpath.normpath(posixpath.join(base, member.linkname))
        if member.linkname.startswith("/") or target == ".." or target.startswith("../"):
            raise UnsafeArchiveError(
                f"{archive}: link {member.name!r} points outside the archive ({member.linkname!r}); "
                "nothing was extracted. Download the archive again from the official page"
            )


def _zip_members(archive: Path, handle: zipfile.ZipFile) -> List[zipfile.ZipInfo]:
    members = handle.infolist()
    for member in members:
        _check_name(archive, member.filename)
        if stat.S_ISLNK(member.external_attr >> 16):
            raise UnsafeArchiveError(f"{archive}: member {member.filename!r} is a symbolic link; nothing was extracted")
    return members


def extract_archive(archive: Union[str, os.PathLike], destination: Union[str, os.PathLike]) -> Path:
    """Extract a zip or tar archive after checking every member, with a progress bar.

    Args:
        archive: ``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2`` or ``.tar.xz`` file.
        destination: folder to extract into (created when missing).

    Returns:
        ``destination``.

    Raises:
        UnsafeArchiveError: a member has an absolute path, a ``..`` component, a link out of
            the archive, or is a device file; nothing is extracted then.
        PrepareError: the file is a RAR/7z archive (extract it first, the message says how),
            not an archive, or damaged.
    """
    archive, destination = Path(archive), Path(destination)
    if not archive.is_file():
        raise PrepareError(f"{archive}: file not found")
    check_archive_type(archive)
    destination.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as handle:
                members = _zip_members(archive, handle)
                for member in tqdm(members, desc=f"extracting {archive.name}", unit="file"):
                    handle.extract(member, destination)
        else:
            with tarfile.open(archive) as handle:
                tar_members = handle.getmembers()
                for tar_member in tar_members:
                    _check_tar_member(archive, tar_member)
                for tar_member in tqdm(tar_members, desc=f"extracting {archive.name}", unit="file"):
                    handle.extract(tar_member, destination, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
        raise PrepareError(
            f"{archive}: damaged or incomplete archive ({type(error).__name__}: {error}); download it again"
        ) from error
    return destination

