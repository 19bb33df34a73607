"""Fixtures for the data tests: running a ``datasets/<name>/prepare.py`` script."""

from __future__ import annotations

import runpy
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

DATASETS = Path(__file__).resolve().parents[2] / "datasets"


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def prepare(monkeypatch, capsys):
    """``prepare(name, *args)`` runs ``datasets/<name>/prepare.py`` as ``__main__``."""

    def run(name: str, *args: object) -> Result:
        script = DATASETS / name / "prepare.py"
        monkeypatch.setattr(sys, "argv", [str(script), *map(str, args)])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(script), run_name="__main__")
        captured = capsys.readouterr()
        return Result(exit_info.value.code, captured.out, captured.err)

    return run
