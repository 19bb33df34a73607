"""The command line: one program under two names, and a cheap import path."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(args):
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, check=False)


def test_help_is_identical_for_both_entry_points():
    """How long ``rsfm --help`` takes is measured by benchmarks/cli_startup.py."""
    console_script = Path(sys.executable).with_name("rsfm")
    installed = _run([str(console_script), "--help"])
    shim = _run([sys.executable, "cli.py", "--help"])
    assert installed.returncode == shim.returncode == 0
    assert installed.stdout == shim.stdout
    for command in ("fit", "validate", "test", "predict", "models"):
        assert f"\n  {command} " in installed.stdout


def test_import_rsfm_and_help_do_not_import_the_heavy_stack():
    code = (
        "import sys, rsfm, rsfm.cli; rsfm.cli.main(['--help']);"
        "heavy = [m for m in ('torch', 'lightning', 'torchgeo', 'rasterio', 'timm') if m in sys.modules];"
        "print(heavy)"
    )
    result = _run([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_unknown_command_fails_with_usage():
    result = _run([sys.executable, "cli.py", "segment-everything"])
    assert result.returncode == 2
    assert "unknown command 'segment-everything'" in result.stderr and "usage: rsfm" in result.stderr


def test_models_command_lists_the_family():
    result = _run([sys.executable, "cli.py", "models"])
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("vitaev2_s "))
    assert "18.84M parameters" in line and "[64, 128, 256, 512]" in line
