"""Safe extraction of downloaded zip and tar archives.

Archives are hostile input, so nothing is left to ``tarfile``'s or ``zipfile``'s own
extraction (their checks have been bypassed before: on Python 3.11.7 symlinks nested past
PATH_MAX defeat ``filter="data"``, CVE-2025-4517). ``extract_archive`` reads the member list,
writes every file itself, and guarantees, on any Python version:

* Only regular files and folders are extracted. Symbolic and hard links, devices, pipes,
  unknown tar entry types and encrypted zip members are refused, as are empty names,
  absolute names, drive letters, ``..`` components, names that collide with another member
  ignoring case or after normalisation (``a/./b`` and ``a/b``, a trailing ``/``), and members
  below a name that is a file in the archive. Every member is checked before anything is
  written.
* The declared uncompressed sizes are added up before anything is written and compared with
  ``max_bytes`` (when given) and with the free space at the destination minus a reserve. A
  member that yields more bytes than it declares is stopped at its declared size.
* Files are written into a new private folder inside the destination (``.rsfm-extract-*``):
  the real path of each file's folder must lie inside it, files are created with
  ``O_CREAT | O_EXCL | O_NOFOLLOW`` (an existing file or link is never opened), with mode
  0o644 and folders 0o755; owners and special permission bits in the archive are ignored.
* Only when every member is written are the entries moved into the destination. An existing
  file or link there is never replaced (existing folders are merged into); a clash refuses
  the archive with nothing moved. On any error the private folder, and the destination when
  this call created it, are removed: a refused or damaged archive leaves nothing behind.

RAR and 7z archives are not read here: the error says which command extracts them.
"""

from __future__ import annotations

import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

from tqdm import tqdm

from rsfm.data.prepare.report import PrepareError

__all__ = ["ARCHIVE_SUFFIXES", "UnsafeArchiveError", "check_archive_type", "extract_archive", "is_archive"]

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")

_EXTRACT_FIRST = {
    ".rar": "unrar x {name}   (or: 7z x {name})",
    ".7z": "7z x {name}",
}
_DRIVE = re.compile(r"^[A-Za-z]:")
_STAGING_PREFIX = ".rsfm-extract-"
_CHUNK_BYTES = 1 << 20
_BLOCK_BYTES = 4096  # a file takes at least one file-system block
_DISK_RESERVE_BYTES = 1 << 30  # left free after extraction (at most 5 % of the disk)
_CREATE_FLAGS = (
    os.O_CREAT | os.O_EXCL | os.O_WRONLY
    | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
)  # fmt: skip
_ZIP_METHODS = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}
# What a damaged archive raises while it is read (gzip and bz2 errors are OSError).
_READ_ERRORS = (
    zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError, NotImplementedError
)  # fmt: skip
_DOWNLOAD_AGAIN = "Do not use this archive: download it again from the official page"


class UnsafeArchiveError(PrepareError):
    """An archive member could write outside the extraction folder, or lies about itself."""


@dataclass(frozen=True)
class _Member:
    """An archive entry that passed the checks."""

    name: str  # as stored in the archive, for messages
    parts: Tuple[str, ...]  # normalised path components below the extraction folder
    is_dir: bool
    size: int  # declared uncompressed bytes; 0 for folders
    entry: Union[tarfile.TarInfo, zipfile.ZipInfo]


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


def _one_line(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())


def _gigabytes(size: int) -> str:
    return f"{size / 1e9:.2f} GB"


def _refuse(archive: Path, name: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"{archive}: member {name!r} {why}; nothing was extracted. {_DOWNLOAD_AGAIN}")


def _name_parts(archive: Path, name: str, is_dir: bool) -> Tuple[str, ...]:
    """The components of a member name below the extraction folder (``\\`` counts as ``/``)."""
    raw_parts = name.replace("\\", "/").split("/")
    if not name:
        raise _refuse(archive, name, "has an empty name")
    if "\0" in name:
        raise _refuse(archive, name, "has a NUL character in its name")
    if name.startswith(("/", "\\")) or any(_DRIVE.match(part) for part in raw_parts):
        raise _refuse(archive, name, "has an absolute path or a drive letter")
    if ".." in raw_parts:
        raise _refuse(archive, name, "has a '..' component")
    parts = tuple(part for part in raw_parts if part not in ("", "."))
    if not parts and not is_dir:
        raise _refuse(archive, name, "has an empty name")
    return parts


def _tar_members(archive: Path, handle: tarfile.TarFile) -> List[_Member]:
    members = []
    for entry in handle.getmembers():
        parts = _name_parts(archive, entry.name, entry.isdir())
        if entry.issym() or entry.islnk():
            kind = "symbolic" if entry.issym() else "hard"
            raise _refuse(
                archive, entry.name, f"is a {kind} link to {entry.linkname!r} (links are refused: datasets need none)"
            )
        if entry.isdev() or entry.isfifo():
            raise _refuse(archive, entry.name, "is a device or a pipe")
        if not (entry.isreg() or entry.isdir()):
            raise _refuse(archive, entry.name, f"has the tar entry type {entry.type!r}, which is not extracted")
        if parts:  # a bare "./" entry is the extraction folder itself
            members.append(_Member(entry.name, parts, entry.isdir(), entry.size if entry.isreg() else 0, entry))
    return members


def _zip_members(archive: Path, handle: zipfile.ZipFile) -> List[_Member]:
    members = []
    for entry in handle.infolist():
        file_type = stat.S_IFMT(entry.external_attr >> 16)  # Unix mode bits, 0 when made elsewhere
        is_dir = entry.filename.endswith(("/", "\\")) or file_type == stat.S_IFDIR
        parts = _name_parts(archive, entry.filename, is_dir)
        if file_type == stat.S_IFLNK:
            raise _refuse(archive, entry.filename, "is a symbolic link (links are refused: datasets need none)")
        if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise _refuse(archive, entry.filename, "is a device, pipe or socket")
        if entry.flag_bits & 0x1:
            raise PrepareError(
                f"{archive}: member {entry.filename!r} is encrypted; nothing was extracted. "
                "Extract the archive with its password (unzip or 7z) and pass the extracted folder"
            )
        if not is_dir and entry.compress_type not in _ZIP_METHODS:
            raise PrepareError(
                f"{archive}: member {entry.filename!r} uses zip compression method {entry.compress_type}, "
                "which Python cannot read (often Deflate64 from Windows); nothing was extracted. "
                f"Extract it with '7z x {archive.name}' and pass the extracted folder"
            )
        if parts:
            members.append(_Member(entry.filename, parts, is_dir, 0 if is_dir else entry.file_size, entry))
    return members


def _path_key(parts: Sequence[str]) -> str:
    """The same key for names a file system may take for the same path (case, Unicode form)."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", "/".join(parts)).casefold())


def _check_collisions(archive: Path, members: Sequence[_Member]) -> None:
    owners: Dict[str, str] = {}
    files: Set[str] = set()
    for member in members:
        key = _path_key(member.parts)
        if key in owners:
            raise _refuse(
                archive,
                member.name,
                f"has the same path as member {owners[key]!r} (compared ignoring case, './' and a trailing '/')",
            )
        owners[key] = member.name
        if not member.is_dir:
            files.add(key)
    for member in members:
        for depth in range(1, len(member.parts)):
            above = _path_key(member.parts[:depth])
            if above in files:
                raise _refuse(archive, member.name, f"lies below {owners[above]!r}, which is a file in the archive")


def _existing_folder(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_size(archive: Path, destination: Path, members: Sequence[_Member], max_bytes: Optional[int]) -> int:
    """Refuse an archive larger than ``max_bytes`` or than the free disk space; returns its size."""
    total = sum(member.size for member in members)
    if max_bytes is not None and total > max_bytes:
        raise PrepareError(
            f"{archive}: declares {_gigabytes(total)} of files, more than the limit of {_gigabytes(max_bytes)} "
            "(max_bytes); nothing was extracted. Raise the limit only if the archive is expected to be that large"
        )
    needed = sum(-(-max(member.size, 1) // _BLOCK_BYTES) * _BLOCK_BYTES for member in members)
    usage = shutil.disk_usage(_existing_folder(destination))
    reserve = min(_DISK_RESERVE_BYTES, usage.total // 20)
    if needed > usage.free - reserve:
        raise PrepareError(
            f"{archive}: extracting needs {_gigabytes(needed)} but {destination} has {_gigabytes(usage.free)} free "
            f"(keeping {_gigabytes(reserve)} in reserve); nothing was extracted. "
            "Free some space there or extract to a larger disk"
        )
    return total


def _check_inside(archive: Path, what: str, folder: str, real_root: str, strict: bool = True) -> None:
    """Refuse unless the real path of ``folder`` (links resolved) lies inside ``real_root``."""
    try:
        real = os.path.realpath(folder, strict=strict)
        inside = os.path.commonpath([real, real_root]) == real_root
    except (OSError, ValueError) as error:
        raise UnsafeArchiveError(
            f"{archive}: {what}: cannot resolve {folder} ({_one_line(error)}); nothing was extracted"
        ) from error
    if not inside:
        raise UnsafeArchiveError(
            f"{archive}: {what} would be written to {real}, outside {real_root}; nothing was extracted. "
            "Something on disk links out of the extraction folder: remove it and extract again"
        )


def _copy(archive: Path, member: _Member, source: IO[bytes], output: IO[bytes], bar: tqdm) -> None:
    """Copy at most the declared size of ``member``; refuse more bytes, report fewer."""
    written = 0
    while True:
        try:
            chunk = source.read(min(_CHUNK_BYTES, member.size - written + 1))
        except _READ_ERRORS as error:
            raise PrepareError(
                f"{archive}: member {member.name!r} is damaged ({_one_line(error)}) after {written} of its "
                f"{member.size} declared bytes; nothing was extracted. {_DOWNLOAD_AGAIN}"
            ) from error
        if not chunk:
            break
        written += len(chunk)
        if written > member.size:
            raise _refuse(archive, member.name, f"holds more than its declared {member.size} bytes")
        output.write(chunk)
        bar.update(len(chunk))
    if written < member.size:
        raise PrepareError(
            f"{archive}: member {member.name!r} ends after {written} of its {member.size} declared bytes; "
            f"nothing was extracted. {_DOWNLOAD_AGAIN}"
        )


def _write_member(
    archive: Path,
    member: _Member,
    open_member: Callable[[_Member], IO[bytes]],
    staging: str,
    real_root: str,
    bar: tqdm,
) -> None:
    target = os.path.join(staging, *member.parts)
    folder = target if member.is_dir else os.path.dirname(target)
    what = f"member {member.name!r}"
    if not os.path.isdir(folder):
        _check_inside(archive, what, folder, real_root, strict=False)
        os.makedirs(folder, mode=0o755, exist_ok=True)
    _check_inside(archive, what, folder, real_root)
    if member.is_dir:
        return
    try:
        descriptor = os.open(target, _CREATE_FLAGS, 0o644)
    except FileExistsError as error:
        raise _refuse(archive, member.name, "clashes with another member on this file system") from error
    with os.fdopen(descriptor, "wb") as output:
        try:
            source = open_member(member)
        except _READ_ERRORS as error:
            raise PrepareError(
                f"{archive}: member {member.name!r} cannot be read ({_one_line(error)}); nothing was extracted. "
                f"{_DOWNLOAD_AGAIN}"
            ) from error
        with source:
            _copy(archive, member, source, output, bar)


def _plan_moves(archive: Path, source_dir: str, target_dir: str, staging: str, moves: List[Tuple[str, str]]) -> None:
    """List the (staged, final) paths to rename; existing folders are merged, anything else clashes."""
    for name in sorted(os.listdir(source_dir)):
        source, target = os.path.join(source_dir, name), os.path.join(target_dir, name)
        try:
            existing = os.lstat(target)
        except FileNotFoundError:
            moves.append((source, target))
            continue
        if target != staging and stat.S_ISDIR(existing.st_mode) and stat.S_ISDIR(os.lstat(source).st_mode):
            _plan_moves(archive, source, target, staging, moves)
        else:
            raise PrepareError(
                f"{archive}: {target} already exists and would be replaced; nothing was extracted. "
                "Move it away or extract into an empty folder"
            )


def _rename_without_replacing(archive: Path, source: str, target: str) -> None:
    if os.path.lexists(target):
        raise PrepareError(f"{archive}: {target} appeared during extraction; nothing was extracted. Extract again")
    if stat.S_ISDIR(os.lstat(source).st_mode):
        os.rename(source, target)  # fails on an existing file or non-empty folder
        return
    try:
        os.link(source, target)  # unlike rename, never replaces an existing target
    except FileExistsError as error:
        raise PrepareError(
            f"{archive}: {target} appeared during extraction; nothing was extracted. Extract again"
        ) from error
    except OSError:  # a file system without hard links
        os.rename(source, target)
    else:
        os.unlink(source)


def _move_into(archive: Path, staging: str, destination: str) -> None:
    """Move the staged entries into ``destination``; all or nothing."""
    moves: List[Tuple[str, str]] = []
    _plan_moves(archive, staging, destination, staging, moves)
    real_destination = os.path.realpath(destination, strict=True)
    done: List[Tuple[str, str]] = []
    try:
        for source, target in moves:
            _check_inside(archive, os.path.relpath(target, destination), os.path.dirname(target), real_destination)
            _rename_without_replacing(archive, source, target)
            done.append((source, target))
    except BaseException:
        for source, target in reversed(done):
            try:
                os.rename(target, source)
            except OSError:
                pass
        raise


def _missing_folders(path: Path) -> List[str]:
    """``path`` and its missing parents, deepest first: what ``os.makedirs`` would create."""
    missing = []
    folder = os.path.abspath(path)
    while not os.path.lexists(folder) and os.path.dirname(folder) != folder:
        missing.append(folder)
        folder = os.path.dirname(folder)
    return missing


def _extract(
    archive: Path,
    members: Sequence[_Member],
    open_member: Callable[[_Member], IO[bytes]],
    total: int,
    destination: Path,
) -> None:
    """Write ``members`` into a private folder in ``destination``, then move them in; all or nothing."""
    created = _missing_folders(destination)
    staging: Optional[str] = None
    succeeded = False
    try:
        os.makedirs(destination, mode=0o755, exist_ok=True)
        staging = os.path.abspath(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=destination))
        real_root = os.path.realpath(staging, strict=True)
        with tqdm(total=total, desc=f"extracting {archive.name}", unit="B", unit_scale=True) as bar:
            for member in members:
                _write_member(archive, member, open_member, staging, real_root, bar)
        _move_into(archive, staging, os.path.abspath(destination))
        succeeded = True
    except OSError as error:
        place = error.filename or destination
        raise PrepareError(
            f"{archive}: cannot write {place} ({error.strerror or _one_line(error)}); nothing was extracted. "
            f"Check the free space and permissions of {destination}"
        ) from error
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if not succeeded:
            for folder in created:
                try:
                    os.rmdir(folder)
                except OSError:
                    break


def extract_archive(
    archive: Union[str, os.PathLike], destination: Union[str, os.PathLike], max_bytes: Optional[int] = None
) -> Path:
    """Extract the files and folders of a zip or tar archive after checking every member.

    See the module docstring for what is refused and what is guaranteed. Shows a progress
    bar (bytes written).

    Args:
        archive: ``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2`` or ``.tar.xz`` file.
        destination: folder to extract into (created when missing). Existing folders in it
            are merged into; an existing file or link at a member's path refuses the archive.
        max_bytes: refuse the archive when its members declare more uncompressed bytes than
            this (default: only the free disk space limits it).

    Returns:
        ``destination``.

    Raises:
        UnsafeArchiveError: a link, device, pipe, absolute or ``..`` name, duplicate name,
            member below a file, or a member holding more bytes than it declares.
        PrepareError: a RAR/7z archive (extract it first, the message says how), not an
            archive, damaged, larger than ``max_bytes`` or the free disk space, or a clash
            with a file already in ``destination``. Nothing is left behind in any case.
    """
    archive, destination = Path(archive), Path(destination)
    if not archive.is_file():
        raise PrepareError(f"{archive}: file not found")
    check_archive_type(archive)
    if os.path.lexists(destination) and not destination.is_dir():
        raise PrepareError(f"{destination}: exists and is not a folder; choose a folder to extract {archive.name} into")
    is_zip = archive.name.lower().endswith(".zip")
    try:
        handle: Union[zipfile.ZipFile, tarfile.TarFile] = zipfile.ZipFile(archive) if is_zip else tarfile.open(archive)
    except _READ_ERRORS as error:
        raise PrepareError(
            f"{archive}: damaged or incomplete archive ({_one_line(error)}); download it again"
        ) from error
    with handle:
        try:
            if isinstance(handle, zipfile.ZipFile):
                members = _zip_members(archive, handle)
            else:
                members = _tar_members(archive, handle)
        except _READ_ERRORS as error:
            raise PrepareError(
                f"{archive}: damaged or incomplete archive ({_one_line(error)}); download it again"
            ) from error
        _check_collisions(archive, members)
        total = _check_size(archive, destination, members, max_bytes)

        def open_member(member: _Member) -> IO[bytes]:
            if isinstance(handle, zipfile.ZipFile):
                return handle.open(member.entry)
            source = handle.extractfile(member.entry)
            if source is None:  # only links and special files have no data; they were refused above
                raise PrepareError(f"{archive}: member {member.name!r} has no data; nothing was extracted")
            return source

        _extract(archive, members, open_member, total, destination)
    return destination
