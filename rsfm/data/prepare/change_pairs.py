"""Bi-temporal change-detection pairs (LEVIR-CD, WHU-CD, CDD) for ``ChangeDetectionDataModule``.

Every change dataset is prepared into the same layout::

    OUTPUT/A/NAME.png        before image, RGB uint8
    OUTPUT/B/NAME.png        after image, same name and size
    OUTPUT/label/NAME.png    single-band uint8 mask, 0 = no change, 255 = change
    OUTPUT/list/<split>.txt  one NAME per line (train, val, test), sorted

Names are unique across splits. Two kinds of download are read: folders of before/after/label
images matched by file name (``prepare_change_pairs``: LEVIR-CD, CDD), and one large
co-registered before/after/label raster triple cut into patches and split at random
(``prepare_change_scene``: WHU-CD). Patches are non-overlapping windows of the source, named
after their top-left pixel (``<name>_r<row>_c<col>``), so each can be placed back on the source grid.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np
import rasterio
from PIL import Image
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from rsfm.data.io import IMAGE_EXTENSIONS, read_image
from rsfm.data.prepare.checks import QUARANTINE, find_failures
from rsfm.data.prepare.rasters import check_same_grid
from rsfm.data.prepare.report import PrepareError, Report, shorten
from rsfm.data.prepare.sources import Source, place_file
from rsfm.data.samples import stratified_split

__all__ = [
    "CHANGE_SPLITS",
    "EDGE_MODES",
    "ChangePair",
    "binary_change_label",
    "change_name",
    "match_change_files",
    "patch_origins",
    "prepare_change_pairs",
    "prepare_change_scene",
    "write_change_lists",
]

CHANGE_SPLITS = ("train", "val", "test")
BEFORE_DIR, AFTER_DIR, LABEL_DIR, LIST_DIR = "A", "B", "label", "list"
#: How a scene cut into patches treats its last row and column of patches: ``pad`` writes them
#: zero-padded on the bottom/right (label 0 = no change there), ``drop`` leaves them out.
EDGE_MODES = ("pad", "drop")
GRID_FILE = "source_grid.json"

_RGB_BANDS = [1, 2, 3]  # read from before/after rasters; a 4th (alpha) band is left out
_SEARCH_DEPTH = 6  # archive wrappers seen so far are at most 4 folders deep
_OFFSET_DIGITS = 5  # pixel offsets up to 99,999 sort as text; WHU-CD is 32,507 px wide


@dataclass(frozen=True)
class ChangePair:
    """One before/after/label triple of a download.

    Args:
        split: ``train``, ``val`` or ``test``.
        name: output name (file stem), unique across splits.
        before, after, label: the source files.
    """

    split: str
    name: str
    before: Path
    after: Path
    label: Path

    @property
    def files(self) -> Tuple[Path, Path, Path]:
        """``(before, after, label)``."""
        return self.before, self.after, self.label


def change_name(split: str, stem: str) -> str:
    """``stem`` prefixed with ``<split>_`` unless it already starts so (LEVIR-CD's ``train_1``)."""
    return stem if stem.lower().startswith(f"{split}_") else f"{split}_{stem}"


def patch_origins(height: int, width: int, patch_size: int, edges: str = "drop") -> List[Tuple[int, int]]:
    """Top-left ``(row, col)`` pixels of non-overlapping ``patch_size`` windows, row by row.

    Unlike ``patch_windows`` (which shifts the last row and column back inside the raster, so
    they overlap their neighbours), change-detection protocols cut disjoint windows: ``drop``
    keeps only windows that lie wholly inside, ``pad`` also starts windows in the partial last
    row and column (their missing pixels are zero-filled when written).

    Raises:
        ValueError: ``patch_size`` is not positive or ``edges`` is not one of ``EDGE_MODES``.
    """
    if patch_size < 1:
        raise ValueError(f"patch size must be a positive number of pixels, got {patch_size}")
    if edges not in EDGE_MODES:
        raise ValueError(f"edges must be one of {EDGE_MODES}, got {edges!r}")
    last = (lambda length: length - patch_size + 1) if edges == "drop" else (lambda length: length)
    return [(row, col) for row in range(0, last(height), patch_size) for col in range(0, last(width), patch_size)]


def _patch_name(prefix: str, row: int, col: int) -> str:
    window = f"r{row:0{_OFFSET_DIGITS}d}_c{col:0{_OFFSET_DIGITS}d}"
    return f"{prefix}_{window}" if prefix else window


def _cut(array: np.ndarray, row: int, col: int, patch_size: int) -> np.ndarray:
    """The ``patch_size`` window at (row, col), zero-filled where it reaches past the array."""
    patch = array[row : row + patch_size, col : col + patch_size]
    missing_rows, missing_cols = patch_size - patch.shape[0], patch_size - patch.shape[1]
    if missing_rows or missing_cols:
        padding = [(0, missing_rows), (0, missing_cols)] + [(0, 0)] * (array.ndim - 2)
        patch = np.pad(patch, padding)
    return patch


# checks --------------------------------------------------------------------------------------


def _rgb(image: np.ndarray, what: str) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        bands = image.shape[2] if image.ndim == 3 else 1
        raise ValueError(
            f"{what}: {bands} band(s) of {image.dtype}, expected a 3-band (RGB) uint8 image like the rest of the dataset"
        )
    return image


def binary_change_label(label: np.ndarray, what: str, threshold: Optional[int] = None) -> Tuple[np.ndarray, int]:
    """A change mask as an ``(H, W)`` uint8 array of 0 (no change) and 255 (change).

    Args:
        label: ``(H, W)`` or ``(H, W, bands)`` as read. Several bands are accepted only when they
            are identical (a grey mask saved as RGB), or when ``threshold`` is given.
        what: the file (and window) named in errors.
        threshold: for lossy (JPEG) labels: pixels ``>= threshold`` (mean of the bands) are
            change. ``None``: the values must be 0/255 or 0/1 (0/1 is scaled to 0/255).

    Returns:
        ``(mask, noisy)``: the mask and how many pixels were neither 0 nor 255 before
        thresholding (0 without ``threshold``).

    Raises:
        ValueError: bands that differ, or values other than 0/255 or 0/1 (without ``threshold``).
    """
    if label.ndim == 2:
        label = label[:, :, None]
    if threshold is not None:
        grey = label[:, :, 0] if label.shape[2] == 1 else label.mean(axis=2)
        noisy = int(np.count_nonzero((grey != 0) & (grey != 255)))
        return np.where(grey >= threshold, 255, 0).astype(np.uint8), noisy
    if label.shape[2] > 1 and not np.array_equal(label, np.repeat(label[:, :, :1], label.shape[2], axis=2)):
        raise ValueError(f"{what}: label has {label.shape[2]} different bands; a change mask has one band (0/255)")
    band = label[:, :, 0]
    values = set(np.unique(band).tolist())
    if values <= {0, 255}:
        return band.astype(np.uint8), 0
    if values <= {0, 1}:
        return (band * 255).astype(np.uint8), 0
    raise ValueError(
        f"{what}: label values {sorted(values)[:10]} are not 0/255 or 0/1 (no change/change); "
        "a lossy (JPEG) label needs a threshold"
    )


def _check_triple(
    before: np.ndarray, after: np.ndarray, label: np.ndarray, files: Sequence[object], threshold: Optional[int]
) -> Tuple[np.ndarray, int]:
    """Check sizes and bands of one triple; returns the 0/255 label and its noisy pixel count."""
    sizes = [array.shape[:2] for array in (before, after, label)]
    if len(set(sizes)) != 1:
        described = ", ".join(f"{path} {width}x{height}" for path, (height, width) in zip(files, sizes))
        raise ValueError(f"before, after and label differ in size ({described}); they must cover the same pixels")
    _rgb(before, str(files[0]))
    _rgb(after, str(files[1]))
    return binary_change_label(label, str(files[2]), threshold)


def _write_triple(output: Path, name: str, before: np.ndarray, after: np.ndarray, label: np.ndarray) -> None:
    """Write ``A/NAME.png``, ``B/NAME.png`` and ``label/NAME.png``; nothing stays of a failed write."""
    written = []
    try:
        for folder, array in ((BEFORE_DIR, before), (AFTER_DIR, after), (LABEL_DIR, label)):
            path = output / folder / f"{name}.png"
            written.append(path)
            Image.fromarray(array).save(path, format="PNG")
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def write_change_lists(output: Path, names: Mapping[str, Iterable[str]]) -> List[Path]:
    """Write ``output/list/<split>.txt`` (sorted names, one per line) for every split, empty or not.

    Raises:
        ValueError: a name is in two splits.
    """
    seen: Dict[str, str] = {}
    for split in CHANGE_SPLITS:
        for name in names.get(split, ()):
            if seen.setdefault(name, split) != split:
                raise ValueError(f"{name} is in both {seen[name]} and {split}; names must be unique across splits")
    (output / LIST_DIR).mkdir(parents=True, exist_ok=True)
    written = []
    for split in CHANGE_SPLITS:
        path = output / LIST_DIR / f"{split}.txt"
        path.write_text("".join(f"{name}\n" for name in sorted(names.get(split, ()))), encoding="utf-8")
        written.append(path)
    return written


def _make_folders(output: Path) -> None:
    for folder in (BEFORE_DIR, AFTER_DIR, LABEL_DIR):
        (output / folder).mkdir(parents=True, exist_ok=True)


# folders of pairs ----------------------------------------------------------------------------


def _split_in_name(name: str) -> Optional[str]:
    """The split a file or folder name stands for: ``train.zip``, ``LEVIR-CD_val``, ``test``."""
    words = re.split(r"[^a-z0-9]+", name.lower())
    found = [split for split in CHANGE_SPLITS if split in words]
    return found[0] if len(found) == 1 else None


def _pair_folders(root: Path, label_dir: str) -> List[Path]:
    """Folders at or below ``root`` holding ``A/``, ``B/`` and ``<label_dir>/`` (not searched below one)."""
    found, level = [], [root]
    for _ in range(_SEARCH_DEPTH + 1):
        deeper = []
        for folder in level:
            if all((folder / name).is_dir() for name in (BEFORE_DIR, AFTER_DIR, label_dir)):
                found.append(folder)
                continue
            deeper.extend(
                sorted(
                    child
                    for child in folder.iterdir()
                    if child.is_dir() and not child.name.startswith((".", "__MACOSX"))
                )
            )
        level = deeper
    return found


def _images(folder: Path) -> List[Path]:
    return sorted(path for path in folder.iterdir() if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS)


def match_change_files(
    sources: Sequence[Source], hints: Sequence[str], label_dir: str, report: Report
) -> Tuple[List[ChangePair], Dict[str, List[Tuple[str, Path]]], Dict[str, int]]:
    """Find the before/after/label folders of each split in the sources and match files by name.

    A folder holding ``A/``, ``B/`` and ``<label_dir>/`` belongs to the split its name says
    (``train/``), else, when it is the top of a source, to the split the source's name says
    (``train.zip``), else each file goes to the split its name starts with (``val_12.png``: the
    three LEVIR-CD zips extracted into one folder).

    Args:
        sources: the opened downloads.
        hints: the path the user gave for each source (its name may tell the split).
        label_dir: folder name of the labels (``label``; CDD: ``OUT``).
        report: receives a problem for files whose split cannot be told.

    Returns:
        ``(pairs, incomplete, found)``: complete triples; per split, the ``(folder name, file)``
        of names missing a partner; and the number of names found per split.

    Raises:
        PrepareError: no such folder, or two files for one name and folder (a split given twice,
            or ``x.png`` next to ``x.jpg``).
    """
    files: Dict[Tuple[str, str], Dict[str, Path]] = defaultdict(dict)
    unassigned: List[Path] = []
    folders_found = 0
    for source, hint in zip(sources, hints):
        for folder in _pair_folders(source.folder, label_dir):
            folders_found += 1
            split = _split_in_name(folder.name)
            if split is None and folder == source.folder:
                split = _split_in_name(Path(hint).name)
            for kind in (BEFORE_DIR, AFTER_DIR, label_dir):
                for path in _images(folder / kind):
                    file_split = split or _split_in_name(path.stem.split("_")[0])
                    if file_split is None:
                        unassigned.append(path)
                        continue
                    entry = files[(file_split, path.stem)]
                    if kind in entry:
                        raise PrepareError(
                            f"{entry[kind]} and {path} are both {kind}/{path.stem} of the {file_split} split; "
                            "give each split once and remove one of the two files"
                        )
                    entry[kind] = path
    if not folders_found:
        raise PrepareError(
            f"no folder holding {BEFORE_DIR}/, {AFTER_DIR}/ and {label_dir}/ found in "
            f"{shorten([str(hint) for hint in hints])}; pass the downloaded archives or the folder that holds them"
        )
    if unassigned:
        report.problem(
            f"{len(unassigned)} file(s) are in no split folder and their names do not start with "
            f"{'_, '.join(CHANGE_SPLITS)}_, so they were left out: {shorten(unassigned)}"
        )
    pairs: List[ChangePair] = []
    incomplete: Dict[str, List[Tuple[str, Path]]] = defaultdict(list)
    found: Dict[str, int] = defaultdict(int)
    for (split, stem), entry in sorted(files.items()):
        found[split] += 1
        if len(entry) == 3:
            name = change_name(split, stem)
            pairs.append(ChangePair(split, name, entry[BEFORE_DIR], entry[AFTER_DIR], entry[label_dir]))
        else:
            incomplete[split].extend(sorted(entry.items()))
    return pairs, dict(incomplete), dict(found)


def _set_aside(files: Iterable[Tuple[str, str, Path]], output: Path, transfer: str) -> List[Path]:
    """Put ``(split, folder name, file)`` at ``output/.unreadable/<split>/<folder>/<file name>``.

    Unlike ``checks.quarantine`` the files may lie outside ``output`` (a user's folder, which
    is copied, never changed).
    """
    placed = []
    for split, kind, path in files:
        target = output / QUARANTINE / split / kind / path.name
        place_file(path, target, transfer)
        placed.append(target)
    return placed


def prepare_change_pairs(
    sources: Sequence[Source],
    hints: Sequence[str],
    output: Path,
    published_pairs: Mapping[str, int],
    report: Report,
    *,
    label_dir: str = LABEL_DIR,
    patch_size: int = 0,
    label_threshold: Optional[int] = None,
    published_outputs: Optional[Mapping[str, int]] = None,
    workers: int = 1,
    partial: bool = False,
) -> Dict[str, int]:
    """Match before/after/label files, check and write them (whole or as patches) and the split lists.

    Every triple is read once, in ``workers`` threads: before and after must be 3-band uint8
    images of one size, the label a single band of that size holding 0/255 or 0/1 (written as
    0/255), or any values when ``label_threshold`` is given (JPEG labels). Triples failing a
    check, and files without both partners, are put in ``output/.unreadable/<split>/<folder>/``
    and named in the report. Everything is written as PNG.

    Args:
        sources: the opened downloads (see ``match_change_files`` for how splits are told).
        hints: the path the user gave for each source.
        output: the prepared dataset folder (empty).
        published_pairs: published number of triples per split (before any patch cutting).
        report: receives notes and problems.
        label_dir: the labels' folder name in the download.
        patch_size: cut every triple into non-overlapping windows of this many pixels, leaving
            out a remainder at the bottom and right (LEVIR-CD's 1024 px cut into 256 px has
            none); 0 keeps whole images.
        label_threshold: threshold lossy labels at this value (see ``binary_change_label``).
        published_outputs: published number of prepared pairs per split for this
            ``patch_size``, where a protocol publishes them.
        workers: threads reading and writing triples.
        partial: report missing splits and count differences as notes, not problems.

    Returns:
        Prepared pairs (patches or whole images) per split.

    Raises:
        PrepareError: no before/after/label folders, or a negative ``patch_size``.
    """
    if patch_size < 0:
        raise PrepareError(f"--patch-size must be 0 (whole images) or a number of pixels, got {patch_size}")
    pairs, incomplete, found = match_change_files(sources, hints, label_dir, report)
    transfers = {source.transfer for source in sources}
    transfer = transfers.pop() if len(transfers) == 1 else "copy"
    for split, published in published_pairs.items():
        if split not in found:
            report.mismatch(f"split {split} not found in the download", partial)
        elif found[split] != published:
            report.mismatch(f"{split}: {found[split]} pairs, the published dataset has {published}", partial)
    for split, entries in incomplete.items():
        moved = _set_aside([(split, kind, path) for kind, path in entries], output, transfer)
        names = len({path.stem for _, path in entries})
        report.problem(
            f"{split}: {names} name(s) lack a file in one of {BEFORE_DIR}/, {AFTER_DIR}/ and {label_dir}/; "
            f"their files were put in {output / QUARANTINE}: {shorten([path.relative_to(output) for path in moved])}"
        )

    _make_folders(output)
    written: Dict[str, List[str]] = {}
    noisy: List[int] = []
    margins: List[str] = []

    def process(pair: ChangePair) -> None:
        before, after, label = (read_image(path) for path in pair.files)
        mask, noisy_pixels = _check_triple(before, after, label, pair.files, label_threshold)
        if not patch_size:
            _write_triple(output, pair.name, before, after, mask)
            written[pair.name] = [pair.name]
            noisy.append(noisy_pixels)
            return
        height, width = mask.shape
        origins = patch_origins(height, width, patch_size, "drop")
        if not origins:
            raise ValueError(f"{pair.before}: {width}x{height} px is smaller than --patch-size {patch_size}")
        if height % patch_size or width % patch_size:
            margins.append(pair.name)
        names = []
        try:
            for row, col in origins:
                name = _patch_name(pair.name, row, col)
                names.append(name)
                _write_triple(output, name, *(_cut(array, row, col, patch_size) for array in (before, after, mask)))
        except BaseException:
            for name in names:
                for folder in (BEFORE_DIR, AFTER_DIR, LABEL_DIR):
                    (output / folder / f"{name}.png").unlink(missing_ok=True)
            raise
        written[pair.name] = names
        noisy.append(noisy_pixels)

    failures = find_failures(pairs, process, workers, "checking and writing pairs")
    if failures:
        kinds = (BEFORE_DIR, AFTER_DIR, label_dir)
        aside = [(pair.split, kind, path) for pair, _ in failures for kind, path in zip(kinds, pair.files)]
        moved = _set_aside(aside, output, transfer)
        report.problem(
            f"{len(failures)} pair(s) could not be used and were put in {output / QUARANTINE} "
            f"({shorten([path.relative_to(output) for path in moved], 6)}): "
            f"{shorten([message for _, message in failures])}"
        )
    names_by_split: Dict[str, List[str]] = defaultdict(list)
    for pair in pairs:
        names_by_split[pair.split].extend(written.get(pair.name, ()))
    write_change_lists(output, names_by_split)

    if label_threshold is not None:
        report.note(
            f"labels are lossy: {sum(noisy)} label pixel(s) were neither 0 nor 255 (compression noise); "
            f"pixels >= {label_threshold} were taken as change and every label written as a lossless 0/255 PNG"
        )
    if margins:
        report.note(
            f"{len(margins)} image(s) are not a multiple of {patch_size} px; the remainder at their bottom "
            f"and right was left out (e.g. {shorten(margins, 3)})"
        )
    counts = {split: len(names_by_split.get(split, ())) for split in CHANGE_SPLITS}
    unit = f"patches of {patch_size} px" if patch_size else "pairs"
    for split in CHANGE_SPLITS:
        good = sum(1 for pair in pairs if pair.split == split and pair.name in written)
        cut = f"{good} pairs cut into {counts[split]} {unit}" if patch_size else f"{good} pairs"
        report.note(f"{split}: {cut}, listed in {output / LIST_DIR / split}.txt")
    for split, published in (published_outputs or {}).items():
        if counts[split] != published:
            report.mismatch(f"{split}: {counts[split]} {unit}, the published protocol has {published}", partial)
    return counts


# one large scene -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scene:
    width: int
    height: int
    crs: Optional[str]
    transform: Tuple[float, ...]


def _open_scene(before: Path, after: Path, label: Path, report: Report) -> _Scene:
    """Check that the three rasters can be cut on one grid; problems that still allow it are reported."""
    shapes = {}
    for role, path in (("before", before), ("after", after), ("label", label)):
        try:
            with rasterio.open(path) as src:
                shapes[role] = (src.width, src.height)
                dtypes, count, colours = src.dtypes, src.count, src.colorinterp
                if role == "label":
                    if count != 1:
                        raise PrepareError(f"{path}: the change label has {count} bands, expected 1 (0/255 or 0/1)")
                    continue
                if dtypes[0] != "uint8" or count not in (3, 4):
                    raise PrepareError(
                        f"{path}: {count} band(s) of {dtypes[0]}, expected an RGB uint8 image (3 bands, or 4 with alpha)"
                    )
                if count == 4:
                    if colours[3].name != "alpha":
                        raise PrepareError(f"{path}: 4 bands and the 4th is {colours[3].name}, not alpha; expected RGB")
                    report.note(f"{path.name}: alpha band left out, bands 1-3 (RGB) are written")
        except RasterioIOError as error:
            raise PrepareError(f"{path}: cannot be read ({error}); extract the archive again") from error
    if len(set(shapes.values())) != 1:
        described = ", ".join(f"{role} {width}x{height}" for role, (width, height) in shapes.items())
        raise PrepareError(f"the rasters differ in size ({described}); they must cover the same pixels")
    for other in (after, label):
        try:
            check_same_grid(before, other)
        except ValueError as error:
            report.problem(f"{error}; the grid of {before.name} is used for all three")
    with rasterio.open(before) as src:
        crs = src.crs.to_string() if src.crs else None
        scene = _Scene(src.width, src.height, crs, tuple(src.transform)[:6])
        if crs is None:
            report.note(f"{before.name} has no CRS; patch names still give their pixel window")
        else:
            report.note(
                f"{before.name}: {src.width}x{src.height} px, {crs}, pixel {abs(src.res[0]):g} x {abs(src.res[1]):g}"
            )
    return scene


def prepare_change_scene(
    before: Path,
    after: Path,
    label: Path,
    output: Path,
    report: Report,
    *,
    patch_size: int,
    edges: str,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    published_size: Optional[Tuple[int, int]] = None,
    workers: int = 1,
    partial: bool = False,
) -> Dict[str, int]:
    """Cut one co-registered before/after/label raster triple into patches and split them at random.

    The rasters are read a row of patches at a time (never whole: WHU-CD's are 1.5 GB each), in
    ``workers`` threads. Patches are named ``r<row>_c<col>`` after their top-left pixel in the
    source; ``output/source_grid.json`` records the source's size, CRS and transform, so
    ``transform * Affine.translation(col, row)`` georeferences any patch. Labels must be 0/255
    or 0/1 (written as 0/255); a patch whose label holds other values is left out and named.
    The split shuffles all patches with ``seed`` (``rsfm.data.stratified_split``) and gives
    ``val_fraction`` and ``test_fraction`` of them (rounded) to validation and test.

    Args:
        before, after: RGB uint8 rasters (a 4th alpha band is left out).
        label: single-band change mask of the same size.
        output: the prepared dataset folder (empty).
        report: receives notes and problems.
        patch_size: patch side in pixels.
        edges: ``pad`` or ``drop`` the partial last row and column of patches (``EDGE_MODES``).
        val_fraction, test_fraction: shares of patches for validation and test.
        seed: split seed.
        published_size: the published ``(width, height)`` of the rasters, compared.
        workers: threads cutting rows of patches.
        partial: report a size other than ``published_size`` as a note, not a problem.

    Returns:
        Patches per split.

    Raises:
        PrepareError: invalid options, or rasters that cannot be cut on one grid (sizes, bands).
    """
    if patch_size < 1:
        raise PrepareError(f"--patch-size must be a positive number of pixels, got {patch_size}")
    if edges not in EDGE_MODES:
        raise PrepareError(f"--edges must be one of {EDGE_MODES}, got {edges!r}")
    if min(val_fraction, test_fraction) < 0 or val_fraction + test_fraction >= 1:
        raise PrepareError(
            f"--val-fraction {val_fraction} and --test-fraction {test_fraction} must be >= 0 "
            "and leave some patches for training (sum below 1)"
        )
    scene = _open_scene(before, after, label, report)
    if published_size is not None and (scene.width, scene.height) != tuple(published_size):
        width, height = published_size
        report.mismatch(
            f"the rasters are {scene.width}x{scene.height} px, the published dataset {width}x{height}", partial
        )
    origins = patch_origins(scene.height, scene.width, patch_size, edges)
    if not origins:
        raise PrepareError(
            f"{before}: {scene.width}x{scene.height} px holds no whole {patch_size} px patch; use --edges pad"
        )
    rows = sorted({row for row, _ in origins})
    columns = sorted({col for _, col in origins})
    _make_folders(output)
    written: List[str] = []
    rejected: List[str] = []
    label_values: Set[int] = set()

    def cut_row(row: int) -> None:
        window = Window(0, row, scene.width, min(patch_size, scene.height - row))
        with rasterio.open(before) as before_src, rasterio.open(after) as after_src, rasterio.open(label) as label_src:
            before_rows = before_src.read(_RGB_BANDS, window=window).transpose(1, 2, 0)
            after_rows = after_src.read(_RGB_BANDS, window=window).transpose(1, 2, 0)
            label_rows = label_src.read(1, window=window)
        label_values.update(np.unique(label_rows).tolist())
        for col in columns:
            name = _patch_name("", row, col)
            try:
                mask, _ = binary_change_label(_cut(label_rows, 0, col, patch_size), f"{label.name} window {name}")
            except ValueError as error:
                rejected.append(str(error))
                continue
            patches = (_cut(before_rows, 0, col, patch_size), _cut(after_rows, 0, col, patch_size), mask)
            _write_triple(output, name, *patches)
            written.append(name)

    failures = find_failures(rows, cut_row, workers, f"cutting {len(rows)} rows of {patch_size} px patches")
    if failures:
        raise PrepareError(
            f"{len(failures)} row(s) of patches could not be read: {shorten([message for _, message in failures], 3)}; "
            "the rasters are damaged: extract or download them again"
        )
    if rejected:
        report.problem(f"{len(rejected)} patch(es) were left out: {shorten(sorted(rejected))}")
    if {1, 255} <= label_values:
        report.problem(
            f"{label.name} holds both 1 and 255 (values {sorted(label_values)[:10]}); one convention, "
            "0/1 or 0/255, was expected; both were written as 255"
        )
    samples = [(Path(name), "patches") for name in sorted(written)]
    fractions = [1 - val_fraction - test_fraction, val_fraction, test_fraction]
    parts = stratified_split(samples, fractions, seed)
    names = {split: [str(path) for path, _ in part] for split, part in zip(CHANGE_SPLITS, parts)}
    write_change_lists(output, names)
    grid = {
        "source": {"before": before.name, "after": after.name, "label": label.name},
        "width": scene.width,
        "height": scene.height,
        "crs": scene.crs,
        "transform": list(scene.transform),
        "patch_size": patch_size,
        "edges": edges,
        "patch_names": "r<row>_c<col>: top-left pixel of the patch in the source rasters",
    }
    (output / GRID_FILE).write_text(json.dumps(grid, indent=2) + "\n", encoding="utf-8")
    counts = {split: len(names[split]) for split in CHANGE_SPLITS}
    edge_note = "zero-padded" if edges == "pad" else "left out"
    report.note(
        f"{len(written)} patches of {patch_size} px ({len(rows)} x {len(columns)}, partial edge patches {edge_note}); "
        f"seed {seed}: train {counts['train']} / val {counts['val']} / test {counts['test']}; "
        f"source grid in {output / GRID_FILE}"
    )
    return counts
