"""The ``rsfm predict-raster`` command, in process and (slow) spread over two processes by
Lightning Fabric."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from inference_helpers import smooth_image, write_raster

from rsfm.cli import main

HELPERS = Path(__file__).resolve().parent


def test_help_lists_the_command(capsys):
    assert main(["--help"]) == 0
    assert "predict-raster" in capsys.readouterr().out


def test_command_writes_raster_and_polygons(tmp_path, brightness_checkpoint, capsys):
    image = np.full((1, 150, 160), 200, dtype=np.uint16)
    image[0, 20:120, 30:140] = 900
    source = write_raster(tmp_path / "pan.tif", image)
    status = main(
        [
            "predict-raster",
            str(source),
            "--checkpoint",
            str(brightness_checkpoint),
            "--output",
            str(tmp_path / "mask.tif"),
            "--vector",
            str(tmp_path / "buildings.geojson"),
            "--tile-size",
            "64",
            "--overlap",
            "16",
            "--batch-size",
            "2",
            "--device",
            "cpu",
            "--precision",
            "32",
            "--quiet",
        ]
    )
    assert status == 0
    out = capsys.readouterr().out
    assert "1 polygons" in out and "mask.tif written" in out
    with rasterio.open(tmp_path / "mask.tif") as dataset:
        assert (dataset.read(1) == 1).sum() == 100 * 110


def test_command_reports_bad_input_in_one_line(tmp_path, conv_checkpoint, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "predict-raster",
                str(tmp_path / "absent.tif"),
                "--checkpoint",
                str(conv_checkpoint),
                "--output",
                str(tmp_path / "out.tif"),
            ]
        )
    assert exit_info.value.code == 2
    assert "absent.tif: file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["predict-raster", "x.tif", "--checkpoint", "c.ckpt", "--output", "o.tif", "--bands", "1,b"])
    assert "--bands takes 1-based band numbers" in capsys.readouterr().err


# the command line of a package that registers its own tasks (here the test tasks) on import
COMMAND_WITH_TEST_TASKS = """
import sys
import inference_helpers  # registers the test tasks
from rsfm.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_two_processes_share_the_files(tmp_path, conv_checkpoint):
    """``--devices 2`` on the CPU: Fabric launches a second process (DDP, gloo); every input is
    predicted exactly once, and each process's result lines arrive whole (they used to interleave
    mid-line about one run in four)."""
    folder = tmp_path / "scenes"
    folder.mkdir()
    for index in range(3):
        write_raster(folder / f"scene_{index}.tif", smooth_image(3, 90, 100, seed=index))
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HELPERS), os.environ.get("PYTHONPATH", "")]))
    script = tmp_path / "rsfm_with_test_tasks.py"
    script.write_text(COMMAND_WITH_TEST_TASKS)
    command = [
        sys.executable,
        str(script),
        "predict-raster",
        str(folder),
        "--checkpoint",
        str(conv_checkpoint),
        "--output",
        str(tmp_path / "out"),
        "--tile-size",
        "64",
        "--overlap",
        "16",
        "--device",
        "cpu",
        "--devices",
        "2",
        "--quiet",
    ]
    completed = subprocess.run(
        command, env=environment, capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2]
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = [line for line in completed.stdout.splitlines() if " written" in line]
    assert sorted(Path(line.split(" -> ")[0]).name for line in lines) == [f"scene_{i}.tif" for i in range(3)]
    assert "Starting with 2 processes" in completed.stderr and "GLOBAL_RANK: 1" in completed.stderr
    for index in range(3):
        with rasterio.open(tmp_path / "out" / f"scene_{index}.tif") as dataset:
            assert dataset.height == 90
