"""Start-up time of ``rsfm --help`` against the bare interpreter and the full stack, in one run.

tests/test_cli.py checks that ``import rsfm`` and ``rsfm --help`` import none of torch,
lightning, torchgeo, rasterio and timm; this script measures what that buys. Every command
runs in a fresh process, all commands in turn within each repeat (median of ``--repeats``
after one warm-up round that fills the file cache), so background load hits them alike.
Prints one line per command and a final JSON line with the medians in seconds and the ratios
against the interpreter alone and against importing the stack.

    python benchmarks/cli_startup.py               # 7 repeats, about a minute
    python benchmarks/cli_startup.py --repeats 1   # a quick check that it runs
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "lightning", "torchgeo", "rasterio", "timm")
TARGET_S = 2.0  # the project's target for ``rsfm --help`` on the 2-core development box


def _commands() -> Dict[str, List[str]]:
    commands = {
        "python": [sys.executable, "-c", "pass"],
        "import_rsfm": [sys.executable, "-c", "import rsfm"],
        "rsfm_help": [sys.executable, str(REPO / "cli.py"), "--help"],
        # through rsfm's torchvision fix, as rsfm itself imports the stack
        "heavy_stack": [sys.executable, "-c", f"import rsfm._compat, {', '.join(HEAVY)}"],
    }
    console_script = Path(sys.executable).with_name("rsfm")
    if console_script.is_file():
        commands["console_script_help"] = [str(console_script), "--help"]
    return commands


def _run(command: List[str]) -> float:
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {completed.returncode}: {completed.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (default 7)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    commands = _commands()
    for name, command in list(commands.items()):  # warm-up: file cache, .pyc files
        try:
            _run(command)
        except RuntimeError as error:
            if name != "console_script_help":
                raise
            # an install older than the package (pip install -e . again) should not stop the rest
            print(f"skipping the console script: {error}", file=sys.stderr)
            del commands[name]
    times: Dict[str, List[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, command in commands.items():
            times[name].append(_run(command))
    seconds = {name: statistics.median(values) for name, values in times.items()}
    for name, value in seconds.items():
        print(f"{name:>20}: {value:.3f} s (min {min(times[name]):.3f}, max {max(times[name]):.3f})", flush=True)
    startup = seconds["python"]
    summary = {
        "repeats": args.repeats,
        "seconds": {name: round(value, 4) for name, value in seconds.items()},
        "rsfm_help_over_python": round(seconds["rsfm_help"] / startup, 2),
        "rsfm_help_over_heavy_stack": round(seconds["rsfm_help"] / seconds["heavy_stack"], 3),
        "import_rsfm_over_python": round(seconds["import_rsfm"] / startup, 2),
        "rsfm_help_target_s": TARGET_S,
        "rsfm_help_within_target": seconds["rsfm_help"] < TARGET_S,
        "python_version": platform.python_version(),
        "machine": platform.machine(),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
