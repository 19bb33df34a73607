"""The small JSON file next to a partial output that lets ``--resume`` continue a run."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional


def file_identity(path: Path) -> Dict[str, Any]:
    """What tells a changed file apart cheaply: absolute path, size in bytes, modification time."""
    stat = path.stat()
    return {"path": str(path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def temporary_path(state: Path) -> Path:
    """Where :meth:`ResumeState.save` writes ``state`` before renaming it: ``<state>.tmp``."""
    return state.with_name(state.name + ".tmp")


@dataclass
class ResumeState:
    """Progress of one output raster.

    Attributes:
        settings: everything the output depends on (input and checkpoint identity, tiling,
            bands, output type); a run with other settings must not continue this output.
        rows_done: output rows, from the top, that are written and flushed to disk.
    """

    settings: Dict[str, Any]
    rows_done: int = 0

    def save(self, path: Path) -> None:
        """Write atomically (temporary file + rename), so a crash never leaves half a state."""
        temporary = temporary_path(path)
        temporary.write_text(json.dumps({"settings": self.settings, "rows_done": self.rows_done}, indent=1))
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: Path) -> Optional["ResumeState"]:
        """The saved state, or None when there is none or it is unreadable."""
        try:
            content = json.loads(path.read_text())
            return cls(dict(content["settings"]), int(content["rows_done"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
