"""Hostile zip and tar archives, built here under ``tmp_path``, against ``extract_archive``.

Every refusal is checked the same way: the error names the archive and the member on one
line, the destination holds nothing new (it is not even created when it was missing), and
nothing else under ``tmp_path`` changed (a "victim" file next to the destination keeps its
sha256 and mtime; no marker file appears).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import struct
import subprocess
import sys
import tarfile
import warnings
import zipfile
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

import pytest

from rsfm.data.prepare import PrepareError, UnsafeArchiveError, extract_archive

REPO = Path(__file__).resolve().parents[2]
PAYLOAD = b"written by a hostile archive\n"
VICTIM_TEXT = b"a file the archive must not touch\n"

Snapshot = Dict[str, Tuple[object, ...]]


def _snapshot(root: Path, skip: Optional[Path] = None) -> Snapshot:
    """Type, content digest (or link target) and mtime of everything below ``root`` but ``skip``."""
    state: Snapshot = {}
    for folder, folders, files in os.walk(root):
        if skip is not None:
            folders[:] = [name for name in folders if Path(folder, name) != skip]
        for name in folders + files:
            path = Path(folder, name)
            if path == skip:
                continue
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                state[str(path)] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                state[str(path)] = ("folder",)
            else:
                state[str(path)] = ("file", hashlib.sha256(path.read_bytes()).hexdigest(), info.st_mtime_ns)
    return state


@pytest.fixture
def victim(tmp_path) -> Path:
    """A file and an empty folder next to where archives are extracted."""
    (tmp_path / "outside").mkdir()
    path = tmp_path / "victim.txt"
    path.write_bytes(VICTIM_TEXT)
    return path


def _assert_refused(error: pytest.ExceptionInfo, archive: Path, member: Optional[str]) -> None:
    message = str(error.value)
    assert "\n" not in message
    assert str(archive) in message
    if member is not None:
        assert repr(member) in message


def _assert_untouched(tmp_path: Path, before: Snapshot, destination: Path) -> None:
    assert _snapshot(tmp_path, skip=destination) == before
    assert (tmp_path / "victim.txt").read_bytes() == VICTIM_TEXT
    assert not any((tmp_path / "outside").iterdir())
    assert not list(tmp_path.rglob("marker.txt"))


# archive builders ----------------------------------------------------------------------------


def _file(name: str, data: bytes = PAYLOAD, mode: int = 0o644) -> Tuple[tarfile.TarInfo, bytes]:
    member = tarfile.TarInfo(name)
    member.size, member.mode = len(data), mode
    return member, data


def _folder(name: str) -> Tuple[tarfile.TarInfo, None]:
    member = tarfile.TarInfo(name)
    member.type, member.mode = tarfile.DIRTYPE, 0o755
    return member, None


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> Tuple[tarfile.TarInfo, None]:
    member = tarfile.TarInfo(name)
    member.type, member.linkname = kind, target
    return member, None


def _special(name: str, kind: bytes) -> Tuple[tarfile.TarInfo, None]:
    member = tarfile.TarInfo(name)
    member.type = kind
    return member, None


def _tar(path: Path, members: Iterable[Tuple[tarfile.TarInfo, Optional[bytes]]]) -> Path:
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as archive:
        for member, data in members:
            archive.addfile(member, io.BytesIO(data) if data is not None else None)
    return path


def _zip(path: Path, members: Iterable[Tuple[str, bytes]], mode: Optional[int] = None) -> Path:
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate names we want
        for name, data in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode is not None:
                info.external_attr = mode << 16
            archive.writestr(info, data)
    return path


def _cve_2025_4517_tar(path: Path, levels_up: int, victim_name: str) -> Path:
    """The published shape of the CVE-2025-4517 exploit.

    Sixteen nested folders with 247-character names are each reached through a one-letter
    symlink, so ``a/b/.../p`` is short but resolves to about 4,000 characters. A link with a
    254-character name in there points back up by sixteen levels: the kernel follows it to
    the extraction folder, but ``os.path.realpath`` (on which ``filter="data"`` relies) hits
    PATH_MAX, stops resolving and treats the rest lexically. ``escape`` then goes through
    that link and ``levels_up`` more ``..``: inside the folder for realpath, ``levels_up``
    folders above it for the kernel. Finally a regular file is written through ``escape``.
    """
    long_name, steps = "d" * 247, "abcdefghijklmnop"
    members = []
    prefix = ""
    for step in steps:
        members += [_folder(prefix + long_name), _link(prefix + step, long_name)]
        prefix += step + "/"
    loop = prefix + "l" * 254
    members.append(_link(loop, "../" * len(steps)))
    members.append(_link("escape", loop + "/.." * levels_up))
    members.append(_file(f"escape/{victim_name}"))
    return _tar(path, members)


def _patch_zip_declared_size(path: Path, name: str, declared: int) -> None:
    """Overwrite the uncompressed size of ``name`` in the central directory, leaving its data."""
    data = bytearray(path.read_bytes())
    end = data.rindex(b"PK\x05\x06")  # end of central directory record
    entries, start = struct.unpack_from("<H", data, end + 10)[0], struct.unpack_from("<I", data, end + 16)[0]
    for _ in range(entries):
        assert data[start : start + 4] == b"PK\x01\x02"
        name_length, extra_length, comment_length = struct.unpack_from("<3H", data, start + 28)
        if data[start + 46 : start + 46 + name_length] == name.encode():
            struct.pack_into("<I", data, start + 24, declared)  # uncompressed size
            path.write_bytes(bytes(data))
            return
        start += 46 + name_length + extra_length + comment_length
    raise KeyError(name)


# 1. CVE-2025-4517 --------------------------------------------------------------------------


def test_cve_2025_4517_archive_is_a_real_exploit_for_tarfile(tmp_path, victim):
    """The archive of the next test is no dud: Python's own ``filter="data"`` either refuses it
    (a fixed Python) or writes through it (3.11.7 and other unfixed versions)."""
    probe = tmp_path / "probe"
    (probe / "dest").mkdir(parents=True)
    (probe / "victim.txt").write_bytes(VICTIM_TEXT)
    archive = _cve_2025_4517_tar(tmp_path / "exploit.tar", levels_up=1, victim_name="victim.txt")
    with tarfile.open(archive) as handle:
        try:
            handle.extractall(probe / "dest", filter="data")
        except (tarfile.FilterError, OSError):
            return
    assert (probe / "victim.txt").read_bytes() == PAYLOAD


def test_cve_2025_4517_archive_is_refused_by_the_prepare_script(tmp_path, victim):
    # prepare.py extracts into OUTPUT/.extract/0: three levels up is tmp_path, where the victim is.
    archive = _cve_2025_4517_tar(tmp_path / "UCMerced_LandUse.tar", levels_up=3, victim_name=victim.name)
    output = tmp_path / "ucm"
    before = _snapshot(tmp_path)
    result = subprocess.run(
        [sys.executable, str(REPO / "datasets" / "ucm" / "prepare.py"), str(archive), "--output", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"UCM: error: {archive}: member 'a' is a symbolic link")
    assert list(output.iterdir()) == []  # the script made OUTPUT; extraction left nothing in it
    _assert_untouched(tmp_path, before, output)


# 2. links, special files and names that leave the folder ----------------------------------------

# Each case: members (built from the absolute path of a marker outside the destination and the
# victim file) and the member that must be named in the error.
TAR_ESCAPES = {
    "symlink out": (lambda marker, victim: [_link("escape", "../outside"), _file("escape/marker.txt")], "escape"),
    "symlink to itself": (lambda marker, victim: [_link("link", "."), _file("link/../../marker.txt")], "link"),
    "symlink inside": (lambda marker, victim: [_file("data/a.txt"), _link("data/b.txt", "a.txt")], "data/b.txt"),
    "hard link absolute": (lambda marker, victim: [_link("passwd", str(victim), tarfile.LNKTYPE)], "passwd"),
    "hard link inside": (lambda marker, victim: [_file("a.txt"), _link("b.txt", "a.txt", tarfile.LNKTYPE)], "b.txt"),
    "absolute name": (lambda marker, victim: [_file(marker)], "MARKER"),
    "parent": (lambda marker, victim: [_file("../marker.txt")], "../marker.txt"),
    "parent inside": (
        lambda marker, victim: [_file("data/ok.txt"), _file("data/../../marker.txt")],
        "data/../../marker.txt",
    ),
    "backslash parent": (lambda marker, victim: [_file("data\\..\\..\\marker.txt")], "data\\..\\..\\marker.txt"),
    "drive letter": (lambda marker, victim: [_file("C:/marker.txt")], "C:/marker.txt"),
    "empty name": (lambda marker, victim: [_file("")], ""),
    "character device": (lambda marker, victim: [_special("dev/null", tarfile.CHRTYPE)], "dev/null"),
    "block device": (lambda marker, victim: [_special("dev/sda", tarfile.BLKTYPE)], "dev/sda"),
    "fifo": (lambda marker, victim: [_special("pipe", tarfile.FIFOTYPE)], "pipe"),
}


@pytest.mark.parametrize("case", TAR_ESCAPES)
def test_tar_links_special_files_and_escaping_names_are_refused(tmp_path, victim, case):
    build, refused = TAR_ESCAPES[case]
    marker = str(tmp_path / "outside" / "marker.txt")
    archive = _tar(tmp_path / "hostile.tar.gz", build(marker, victim))
    destination = tmp_path / "extracted"
    before = _snapshot(tmp_path)
    with pytest.raises(UnsafeArchiveError) as error:
        extract_archive(archive, destination)
    _assert_refused(error, archive, marker if refused == "MARKER" else refused)
    assert not destination.exists()
    _assert_untouched(tmp_path, before, destination)


ZIP_ESCAPES = {
    "symlink": ([("escape", b"../outside")], stat.S_IFLNK | 0o777, "escape"),
    "fifo": ([("pipe", b"")], stat.S_IFIFO | 0o644, "pipe"),
    "absolute name": ([("ok.txt", PAYLOAD), ("/marker.txt", PAYLOAD)], None, "/marker.txt"),
    "parent": ([("ok.txt", PAYLOAD), ("../marker.txt", PAYLOAD)], None, "../marker.txt"),
    "backslash parent": ([("..\\marker.txt", PAYLOAD)], None, "..\\marker.txt"),
    "drive letter": ([("c:\\marker.txt", PAYLOAD)], None, "c:\\marker.txt"),
}


@pytest.mark.parametrize("case", ZIP_ESCAPES)
def test_zip_links_and_escaping_names_are_refused(tmp_path, victim, case):
    members, mode, refused = ZIP_ESCAPES[case]
    archive = _zip(tmp_path / "hostile.zip", members, mode)
    destination = tmp_path / "extracted"
    before = _snapshot(tmp_path)
    with pytest.raises(UnsafeArchiveError) as error:
        extract_archive(archive, destination)
    _assert_refused(error, archive, refused)
    assert not destination.exists()
    _assert_untouched(tmp_path, before, destination)


# 3. duplicate names -----------------------------------------------------------------------------

DUPLICATES = {
    "same name": (["data/a.txt", "data/a.txt"], "data/a.txt"),
    "case": (["data/a.txt", "DATA/A.txt"], "DATA/A.txt"),
    "dot folder": (["data/a.txt", "data/./a.txt"], "data/./a.txt"),
    "double slash": (["data/a.txt", "data//a.txt"], "data//a.txt"),
    "folder and file": (["data/", "data"], "data"),
    "below a file": (["data/a.txt", "data/a.txt/b.txt"], "data/a.txt/b.txt"),
}


@pytest.mark.parametrize("case", DUPLICATES)
@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_duplicate_names_are_refused_not_overwritten(tmp_path, victim, case, kind):
    names, refused = DUPLICATES[case]
    if kind == "tar":
        archive = _tar(
            tmp_path / "duplicates.tar",
            [_folder(name) if name.endswith("/") else _file(name, name.encode()) for name in names],
        )
    else:
        members = [(name, b"" if name.endswith("/") else name.encode()) for name in names]
        archive = _zip(tmp_path / "duplicates.zip", members)
    destination = tmp_path / "extracted"
    before = _snapshot(tmp_path)
    with pytest.raises(UnsafeArchiveError) as error:
        extract_archive(archive, destination)
    _assert_refused(error, archive, refused)
    assert not destination.exists()
    _assert_untouched(tmp_path, before, destination)


# 4. sizes ------------------------------------------------------------------------------------


def test_zip_bomb_is_refused_by_max_bytes_before_anything_is_written(tmp_path, victim):
    archive = tmp_path / "zeros.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle, handle.open("zeros.bin", "w") as member:
        for _ in range(200):
            member.write(bytes(1_000_000))
    assert archive.stat().st_size < 1_000_000
    destination = tmp_path / "extracted"
    before = _snapshot(tmp_path)
    with pytest.raises(PrepareError, match=r"declares 0\.20 GB of files, more than the limit of 0\.10 GB") as error:
        extract_archive(archive, destination, max_bytes=100_000_000)
    _assert_refused(error, archive, None)
    assert not destination.exists()
    _assert_untouched(tmp_path, before, destination)


def test_archive_larger_than_the_free_disk_space_is_refused(tmp_path, victim):
    archive = tmp_path / "huge.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("huge.bin", b"x")
        handle.getinfo("huge.bin").file_size = 10**16  # the central directory (zip64) declares 10 PB
    destination = tmp_path / "extracted"
    before = _snapshot(tmp_path)
    with pytest.raises(PrepareError, match=r"extracting needs 10000000\.00 GB but .* free") as error:
        extract_archive(archive, destination)
    _assert_refused(error, archive, None)
    assert not destination.exists()
    _assert_untouched(tmp_path, before, destination)


@pytest.mark.parametrize("destination_exists", [False, True])
def test_zip_member_lying_about_its_size_writes_at_most_the_declared_bytes(tmp_path, victim, destination_exists):
    archive = _zip(tmp_path / "lying.zip", [("first.txt", PAYLOAD), ("big.bin", bytes(4_000_000))])
    _patch_zip_declared_size(archive, "big.bin", 1000)
    assert zipfile.ZipFile(archive).getinfo("big.bin").file_size == 1000
    destination = tmp_path / "extracted"
    if destination_exists:
        destination.mkdir()
        (destination / "keep.txt").write_bytes(VICTIM_TEXT)
    before_inside = _snapshot(destination)
    before = _snapshot(tmp_path, skip=destination)
    with pytest.raises(PrepareError) as error:
        extract_archive(archive, destination)
    _assert_refused(error, archive, "big.bin")
    written = re.search(r"after (\d+) of its 1000 declared bytes", str(error.value))
    assert written is not None and int(written.group(1)) <= 1000, error.value
    # first.txt, already written, went with the private staging folder
    assert destination.exists() == destination_exists
    assert _snapshot(destination) == before_inside
    _assert_untouched(tmp_path, before, destination)


def test_damaged_tar_leaves_nothing_behind(tmp_path, victim):
    archive = _tar(tmp_path / "damaged.tar", [_file("data/a.txt"), _file("data/b.bin", os.urandom(200_000))])
    archive.write_bytes(archive.read_bytes()[:100_000])
    destination = tmp_path / "extracted"
    before = _snapshot(tmp_path)
    with pytest.raises(PrepareError) as error:
        extract_archive(archive, destination)
    _assert_refused(error, archive, None)
    assert not destination.exists()
    _assert_untouched(tmp_path, before, destination)


# 5. what is already in the destination ----------------------------------------------------------


def _plant_file_link(destination: Path) -> None:
    (destination / "victim.txt").symlink_to("../victim.txt")


def _plant_folder_link(destination: Path) -> None:
    (destination / "data").symlink_to("../outside", target_is_directory=True)


def _plant_nested_folder_link(destination: Path) -> None:
    (destination / "data").mkdir()
    (destination / "data" / "link").symlink_to("../../outside", target_is_directory=True)


def _plant_file(destination: Path) -> None:
    (destination / "data").mkdir()
    (destination / "data" / "existing.txt").write_bytes(VICTIM_TEXT)


@pytest.mark.parametrize(
    "plant, member",
    [
        (_plant_file_link, "victim.txt"),
        (_plant_folder_link, "data/marker.txt"),
        (_plant_nested_folder_link, "data/link/marker.txt"),
        (_plant_file, "data/existing.txt"),
    ],
    ids=["file link", "folder link", "nested folder link", "existing file"],
)
def test_existing_links_and_files_in_the_destination_are_not_followed_or_replaced(tmp_path, victim, plant, member):
    destination = tmp_path / "extracted"
    destination.mkdir()
    plant(destination)
    archive = _tar(tmp_path / "plain.tar", [_file("other/new.txt"), _file(member)])
    before_outside = _snapshot(tmp_path, skip=destination)
    before_inside = _snapshot(destination)
    with pytest.raises(PrepareError, match="already exists and would be replaced") as error:
        extract_archive(archive, destination)
    _assert_refused(error, archive, None)
    assert _snapshot(destination) == before_inside  # nothing moved in, not even other/new.txt
    _assert_untouched(tmp_path, before_outside, destination)


# 6. legitimate archives ---------------------------------------------------------------------

LEGIT = {
    "scenes/forest/forest01.tif": os.urandom(3000),
    "scenes/forest/forest02.tif": os.urandom(70_000),
    "scenes/river/deep/river01.tif": b"",
    "scenes/README.txt": b"UC Merced-like layout\n",
}


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_legitimate_archive_extracts_byte_identically(tmp_path, victim, kind):
    archive = tmp_path / f"legit.{kind}"
    if kind == "zip":
        _zip(archive, [("scenes/", b""), ("scenes/empty/", b""), *LEGIT.items()])
    else:
        members = [_folder("./"), _folder("scenes"), _folder("scenes/empty")]
        members += [_file(f"./{name}", data, mode=0o4755) for name, data in LEGIT.items()]
        _tar(archive, members)
    destination = tmp_path / "new" / "extracted"
    before = _snapshot(tmp_path)

    assert extract_archive(archive, destination) == destination

    files = {path.relative_to(destination).as_posix(): path for path in destination.rglob("*") if path.is_file()}
    assert {name: path.read_bytes() for name, path in files.items()} == LEGIT
    assert (destination / "scenes" / "empty").is_dir()
    assert sorted(os.listdir(destination)) == ["scenes"]  # the private staging folder is gone
    for path in files.values():
        assert os.lstat(path).st_mode & 0o7111 == 0  # no setuid or execute bits from the archive
    _assert_untouched(tmp_path, before, tmp_path / "new")


def test_existing_folders_are_merged_without_touching_their_files(tmp_path):
    destination = tmp_path / "extracted"
    (destination / "scenes").mkdir(parents=True)
    (destination / "scenes" / "keep.txt").write_bytes(VICTIM_TEXT)
    kept = _snapshot(destination)
    archive = _zip(tmp_path / "more.zip", LEGIT.items())

    extract_archive(archive, destination)

    assert _snapshot(destination).items() >= kept.items()
    assert (destination / "scenes" / "forest" / "forest02.tif").read_bytes() == LEGIT["scenes/forest/forest02.tif"]
