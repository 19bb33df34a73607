"""I/O errors of tiled inference as one line for people: the file, the reason and the fix."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, Optional, Tuple

_NOT_WRITABLE = (errno.EACCES, errno.EPERM)
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class InferenceIOError(OSError):
    """An input could not be read or an output could not be written.

    ``str(error)`` is ``"<path>: <reason> (<fix>)"``, one line.

    Attributes:
        path: the file or folder concerned.
        reason: what went wrong, e.g. ``No space left on device``.
        fix: what to do about it.
    """

    def __init__(self, path: os.PathLike, reason: str, fix: str) -> None:
        super().__init__(f"{path}: {reason} ({fix})")
        self.path, self.reason, self.fix = Path(path), reason, fix

    def __reduce__(self) -> Tuple[Any, ...]:  # OSError pickles its args, not ours
        return type(self), (self.path, self.reason, self.fix)


def error_reason(error: BaseException) -> str:
    """The reason of an I/O error in one line: the operating system's text when there is one,
    else GDAL's message (rasterio raises ``Read failed. See previous exception for details.``
    and chains GDAL's message as the cause)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    if error.__cause__ is not None and "previous exception" in str(error):
        error = error.__cause__
    return " ".join(str(error).split()) or type(error).__name__


def write_fix(code: Optional[int], option: str) -> str:
    """What to do when writing failed with ``errno`` ``code``; ``option`` names the output
    (``--output`` or ``--vector``)."""
    if code in _NOT_WRITABLE:
        return f"no permission to write there: make the folder writable or choose another {option}"
    if code == errno.EROFS:
        return f"read-only file system: choose another {option}"
    if code in _FULL:
        return f"the disk is full or a file-size limit was reached: free some space or choose another {option}"
    return f"check free disk space and write permission there, or choose another {option}"
