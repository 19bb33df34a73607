"""Errors of inference as one line for people: I/O errors (the file, the reason and the fix),
and what to install when PyTorch is missing."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, Optional, Tuple

_NOT_WRITABLE = (errno.EACCES, errno.EPERM)
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_TORCH_STACK = frozenset(
    {
        "albumentations",
        "jsonargparse",
        "lightning",
        "lightning_fabric",
        "pytorch_lightning",
        "segmentation_models_pytorch",
        "timm",
        "torch",
        "torchgeo",
        "torchmetrics",
        "torchvision",
    }
)
"""Modules of the ``rsfm[torch]`` extra: the PyTorch training stack."""


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


def is_missing_torch(error: BaseException) -> bool:
    """Whether ``error`` says that a module of the PyTorch stack (``rsfm[torch]``) is not
    installed, as opposed to an import that failed for another reason."""
    name = getattr(error, "name", None)
    return isinstance(error, ImportError) and isinstance(name, str) and name.split(".")[0] in _TORCH_STACK


def needs_torch(what: str) -> ImportError:
    """The error for ``what`` (e.g. ``"buildings.ckpt: a PyTorch checkpoint"``) on an install
    without PyTorch: one line with the command that installs it."""
    return ImportError(f"{what} needs PyTorch: pip install 'rsfm[torch]'")
