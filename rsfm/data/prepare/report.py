"""What a preparation run did and what it found wrong, printed at the end of the run."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import List, TextIO

from tqdm import tqdm

from rsfm.data.samples import shorten  # one list formatter for all data messages

__all__ = ["PrepareError", "Report", "shorten"]


class PrepareError(ValueError):
    """The input cannot be prepared; the message names the file and says what to do."""


@dataclass
class Report:
    """Notes (what was done) and problems (what is wrong) of one run.

    Notes are printed as they come, above any progress bar; problems are collected and
    printed together at the end, and turn the exit status to 1.

    Args:
        title: dataset name, printed before each line.
        stream: where lines go (default: standard output).
    """

    title: str
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    problems: List[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        """Print one line about what was done."""
        tqdm.write(f"{self.title}: {message}", file=self.stream)

    def problem(self, message: str) -> None:
        """Record something wrong with the data; the run ends with exit status 1."""
        self.problems.append(message)

    def mismatch(self, message: str, partial: bool) -> None:
        """A difference from the published dataset: a note under ``--partial``, otherwise a problem."""
        if partial:
            self.note(f"{message} (accepted: --partial)")
        else:
            self.problem(f"{message}; re-download or re-extract the dataset, or pass --partial for a subset")

    def finish(self) -> int:
        """Print the problems (or that there are none) and return the exit status."""
        if not self.problems:
            self.note("done, no problems found")
            return 0
        self.note(f"{len(self.problems)} problem(s):")
        for message in self.problems:
            tqdm.write(f"  - {message}", file=self.stream)
        return 1
