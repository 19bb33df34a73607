"""Runs a ``datasets/<name>/prepare.py`` script: the argument parser every such script shares
and the run around its preparation step (a library for those scripts, not an ``rsfm`` command).

Every script takes the downloaded archive (or its extracted folder) and ``--output``, and
``--verify`` re-checks a prepared folder against its ``MANIFEST.sha256``. Exit status: 0 when
all is well, 1 when the data has problems (listed at the end; the output is still written),
2 when it cannot be prepared (the message says why and what to do).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from rsfm.data.prepare.checksums import MANIFEST_NAME, PublishedChecksum, verify_manifest, write_manifest
from rsfm.data.prepare.report import PrepareError, Report
from rsfm.data.prepare.sources import Source, check_source, open_source

__all__ = ["Prepare", "build_parser", "run"]

Prepare = Callable[[argparse.Namespace, List[Source], Report], None]

_WORK_DIR = ".extract"


def build_parser(
    script: str, description: str, example: str, several_sources: bool = False, seeds: bool = False
) -> argparse.ArgumentParser:
    """An argument parser with the options every preparation script has.

    Args:
        script: the script path shown in the usage line, e.g. ``datasets/aid/prepare.py``.
        description: what the script does, shown by ``--help``.
        example: the exact command(s) for a typical download, shown after the options.
        several_sources: accept several archives/folders (SpaceNet: imagery and labels).
        seeds: add ``--seeds`` (one set of split lists per seed).
    """
    parser = argparse.ArgumentParser(
        prog=script,
        description=description,
        epilog=f"example:\n{example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "source",
        type=Path,
        nargs="*" if several_sources else "?",
        help="downloaded .zip/.tar(.gz) archive, or the folder it was extracted to (extract .rar/.7z first)",
    )
    parser.add_argument("--output", "-o", type=Path, required=True, help="prepared dataset folder (new or empty)")
    parser.add_argument(
        "--verify", action="store_true", help=f"only check --output against its {MANIFEST_NAME} and report differences"
    )
    parser.add_argument(
        "--link", action="store_true", help="hard-link files from an extracted folder instead of copying (same disk)"
    )
    parser.add_argument(
        "--workers", type=int, default=min(8, os.cpu_count() or 1), help="threads that decode files to check them"
    )
    parser.add_argument(
        "--partial", action="store_true", help="accept a subset: missing classes/files and other counts are only noted"
    )
    parser.add_argument(
        "--skip-checksum", action="store_true", help="do not compare the archive with its published checksum"
    )
    if seeds:
        parser.add_argument(
            "--seeds", type=int, nargs="+", default=[0], help="split seeds, one set of lists per seed (default: 0)"
        )
    return parser


def _check_output(output: Path) -> None:
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise PrepareError(
            f"{output}: exists and is not empty; choose a new folder or delete it "
            "(preparing into a used folder would mix two datasets)"
        )


def _verify(output: Path, report: Report) -> int:
    problems = verify_manifest(output)
    for problem in problems:
        report.problem(problem)
    if not problems:
        report.note(f"every file matches {output / MANIFEST_NAME}")
    return report.finish()


def run(
    parser: argparse.ArgumentParser,
    prepare: Prepare,
    title: str,
    published: Sequence[PublishedChecksum] = (),
    argv: Optional[Sequence[str]] = None,
) -> int:
    """Parse the command line, then verify, or open the sources, prepare and write the manifest.

    Args:
        parser: from ``build_parser`` plus the script's own options.
        prepare: ``prepare(args, sources, report)`` fills ``args.output``.
        title: dataset name printed before each line.
        published: known digests of the dataset's archives.
        argv: arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status (see the module docstring).
    """
    args = parser.parse_args(argv)
    report = Report(title)
    started = False
    try:
        if args.verify:
            return _verify(args.output, report)
        paths = args.source if isinstance(args.source, list) else [args.source] if args.source else []
        if not paths:
            parser.error("give the downloaded archive or its extracted folder (or --verify to check --output)")
        for path in paths:
            check_source(path)
        _check_output(args.output)
        args.output.mkdir(parents=True, exist_ok=True)
        started = True
        work_dir = args.output / _WORK_DIR
        sources = [
            open_source(path, work_dir / str(index), args.link, published, args.skip_checksum, report)
            for index, path in enumerate(paths)
        ]
        prepare(args, sources, report)
        shutil.rmtree(work_dir, ignore_errors=True)
        manifest = write_manifest(args.output)
        report.note(f"wrote {manifest}; check the folder later with --verify")
        return report.finish()
    except (PrepareError, ValueError, OSError) as error:
        print(f"{title}: error: {error}", file=sys.stderr)
        if started and any(args.output.iterdir()):
            print(f"{title}: {args.output} is incomplete; delete it before running again", file=sys.stderr)
        return 2
