"""Reading every prepared file once, in threads, to find the ones training would fail on."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, TypeVar

from tqdm import tqdm

from rsfm.data.prepare.sources import place_file

__all__ = ["QUARANTINE", "find_failures", "quarantine"]

#: Folder (inside the output) that unreadable files are moved to. Its name starts with a
#: dot, so class-folder scans and the datamodules never see it.
QUARANTINE = ".unreadable"

Item = TypeVar("Item")


def find_failures(
    items: Sequence[Item], check: Callable[[Item], None], workers: int, desc: str
) -> List[Tuple[Item, str]]:
    """Run ``check`` on every item in ``workers`` threads and collect the errors it raises.

    Decoders (PIL, GDAL) release the GIL, so threads read files in parallel.

    Args:
        items: what to check, e.g. image paths or (image, mask) pairs.
        check: raises ``ValueError``/``OSError`` (with a message naming the file) on failure.
        workers: number of threads.
        desc: progress bar label.

    Returns:
        ``(item, error message)`` for each failing item, in input order.
    """

    def run(item: Item) -> Optional[str]:
        try:
            check(item)
        except (ValueError, OSError) as error:
            return str(error)
        return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(tqdm(pool.map(run, items), total=len(items), desc=desc, unit="file"))
    return [(item, message) for item, message in zip(items, results) if message is not None]


def quarantine(paths: Sequence[Path], root: Path) -> List[Path]:
    """Move files under ``root`` to ``root/.unreadable/`` keeping their relative paths.

    Returns:
        The new paths.
    """
    moved = []
    for path in paths:
        target = root / QUARANTINE / path.relative_to(root)
        place_file(path, target, "move")
        moved.append(target)
    return moved
