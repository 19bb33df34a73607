"""Wall time of the CPU quickstart configs, run as a user runs them: ``rsfm fit --config FILE``.

Each config runs as written, in its own process, from a scratch working folder that mirrors the
repository root (``configs/``, ``datasets/`` and ``../shared`` linked in), so the relative data
paths resolve and ``lightning_logs/`` lands in the scratch folder, not in the checkout. The
distillation quickstarts find their teachers where the scene and buildings quickstarts left
them, so the order below matters. Prints one JSON line per config (wall seconds of the whole
command, start-up included, and the time stated in the config's comment) and a final line with
the machine.

    python benchmarks/config_times.py [--configs scene_quickstart change_quickstart ...]

On a machine with AVX-512/AMX, time the AVX2 path (what most laptops and cloud VMs run) with
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2``. Needs
``../shared/data`` beside the checkout, like the configs.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from machine import cpu_description  # benchmarks/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]
# teachers first: the distillation configs read their checkpoints
CONFIGS = (
    "scene_quickstart",
    "distill_scene_quickstart",
    "buildings_quickstart",
    "distill_buildings_quickstart",
    "change_quickstart",
    "buildings_geotiff_vectors",
)


def stated_time(config: Path) -> Optional[str]:
    """The time a config's header comment promises ("About 4 minutes ..."), if any."""
    header = " ".join(line.lstrip("# ").strip() for line in config.read_text().splitlines() if line.startswith("#"))
    found = re.search(r"(?:about|a few) [^.;:]*?(?:minutes?|seconds?)[^.;:]*", header, re.IGNORECASE)
    return found.group(0) if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    args = parser.parse_args()
    shared = REPO.parent / "shared"
    if not (shared / "data").is_dir():
        sys.exit(f"config_times: {shared / 'data'} not found: the quickstart configs read ../shared/data")
    rsfm = Path(sys.executable).with_name("rsfm")
    with tempfile.TemporaryDirectory(prefix="rsfm-config-times-") as scratch:
        root = Path(scratch) / "repo"
        root.mkdir()
        for name in ("configs", "datasets"):
            (root / name).symlink_to(REPO / name)
        (Path(scratch) / "shared").symlink_to(shared)
        for name in args.configs:
            config = REPO / "configs" / f"{name}.yaml"
            command = [str(rsfm), "fit", "--config", f"configs/{name}.yaml", "--trainer.enable_progress_bar=false"]
            start = time.perf_counter()
            done = subprocess.run(command, cwd=root, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            if done.returncode != 0:
                sys.exit(f"config_times: {name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
            report = {"config": name, "fit_seconds": round(seconds, 1), "stated": stated_time(config)}
            print(json.dumps(report), flush=True)
    print(json.dumps({"machine": cpu_description(), "python": sys.version.split()[0]}))


if __name__ == "__main__":
    main()
