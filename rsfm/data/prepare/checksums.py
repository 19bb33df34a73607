"""Checksums: published digests of downloaded archives, and the manifest of prepared files.

``MANIFEST.sha256`` uses the ``sha256sum`` format (``<digest>  <relative path>``), so
``sha256sum -c MANIFEST.sha256`` run inside the folder checks it too.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from tqdm import tqdm

from rsfm.data.prepare.report import PrepareError, Report, shorten

__all__ = [
    "MANIFEST_NAME",
    "PublishedChecksum",
    "check_published_checksum",
    "file_digest",
    "verify_manifest",
    "write_manifest",
]

MANIFEST_NAME = "MANIFEST.sha256"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class PublishedChecksum:
    """A digest someone published for a downloadable file.

    Args:
        file_name: the file name the digest belongs to, e.g. ``UCMerced_LandUse.zip``.
        algorithm: a ``hashlib`` name, e.g. ``md5``.
        digest: lower-case hexadecimal digest.
        source: who publishes it, e.g. ``torchgeo 0.8.1 (torchgeo.datasets.UCMerced.md5)``.
    """

    file_name: str
    algorithm: str
    digest: str
    source: str


def file_digest(path: Union[str, os.PathLike], algorithm: str = "sha256", progress: Optional[tqdm] = None) -> str:
    """Hexadecimal digest of a file, read in 1 MiB chunks; ``progress`` advances by bytes read."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            if progress is not None:
                progress.update(len(chunk))
    return digest.hexdigest()


def check_published_checksum(archive: Path, published: Sequence[PublishedChecksum], report: Report) -> None:
    """Compare ``archive`` with the published digest of a file of the same name, if any.

    Raises:
        PrepareError: the digests differ (a damaged download or another release); the
            message gives both digests, where the published one comes from and the fix.
    """
    known = [entry for entry in published if entry.file_name == archive.name]
    if not known:
        report.note(f"no published checksum for {archive.name}; {MANIFEST_NAME} will record the prepared files")
        return
    entry = known[0]
    with tqdm(total=archive.stat().st_size, desc=f"{entry.algorithm} {archive.name}", unit="B", unit_scale=True) as bar:
        actual = file_digest(archive, entry.algorithm, bar)
    if actual != entry.digest:
        raise PrepareError(
            f"{archive}: {entry.algorithm} is {actual}, but {entry.source} publishes {entry.digest} for "
            f"{entry.file_name}. The download is damaged or is another release: download it again "
            "(or pass --skip-checksum to prepare it anyway)"
        )
    report.note(f"{archive.name}: {entry.algorithm} matches the value published by {entry.source}")


def _listed_files(root: Path) -> List[Path]:
    return sorted(
        path for path in root.rglob("*") if path.is_file() and path.relative_to(root).as_posix() != MANIFEST_NAME
    )


def write_manifest(root: Union[str, os.PathLike]) -> Path:
    """Write ``root/MANIFEST.sha256`` listing the sha256 of every file below ``root``.

    Returns:
        The manifest path.
    """
    root = Path(root)
    files = _listed_files(root)
    lines = []
    total = sum(path.stat().st_size for path in files)
    with tqdm(total=total, desc="sha256 manifest", unit="B", unit_scale=True) as bar:
        for path in files:
            lines.append(f"{file_digest(path, 'sha256', bar)}  {path.relative_to(root).as_posix()}\n")
    manifest = root / MANIFEST_NAME
    manifest.write_text("".join(lines), encoding="utf-8")
    return manifest


def _read_manifest(manifest: Path) -> Dict[str, str]:
    entries: Dict[str, str] = {}
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        digest, separator, name = line.partition("  ")
        if not separator or len(digest) != 64:
            raise PrepareError(f"{manifest}:{number}: not a sha256sum line ('<digest>  <path>'): {line!r}")
        entries[name] = digest
    return entries


def verify_manifest(root: Union[str, os.PathLike]) -> List[str]:
    """Check the files below ``root`` against its ``MANIFEST.sha256``.

    Returns:
        Problems, each naming files: modified (digest differs), missing, or not listed.
        Empty when everything matches.

    Raises:
        PrepareError: the manifest is missing or malformed.
    """
    root = Path(root)
    manifest = root / MANIFEST_NAME
    if not manifest.is_file():
        raise PrepareError(f"{manifest}: not found; prepare the dataset first (the manifest is written at the end)")
    expected = _read_manifest(manifest)
    present = {path.relative_to(root).as_posix(): path for path in _listed_files(root)}
    missing = sorted(expected.keys() - present.keys())
    extra = sorted(present.keys() - expected.keys())
    checked = sorted(expected.keys() & present.keys())
    modified = []
    total = sum(present[name].stat().st_size for name in checked)
    with tqdm(total=total, desc="sha256 verify", unit="B", unit_scale=True) as bar:
        for name in checked:
            if file_digest(present[name], "sha256", bar) != expected[name]:
                modified.append(name)
    problems = []
    if modified:
        problems.append(f"{len(modified)} file(s) differ from {MANIFEST_NAME}: {shorten(modified)}")
    if missing:
        problems.append(f"{len(missing)} file(s) listed in {MANIFEST_NAME} are missing: {shorten(missing)}")
    if extra:
        problems.append(f"{len(extra)} file(s) are not listed in {MANIFEST_NAME}: {shorten(extra)}")
    return problems
