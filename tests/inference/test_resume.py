"""Interrupted runs continue with --resume and end identical to uninterrupted runs."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from inference_helpers import smooth_image, write_raster

from rsfm import predict_raster

SETTINGS = dict(tile_size=64, overlap=16, batch_size=4, output_type="probabilities", progress=False)


class Interrupted(Exception):
    pass


def _stop_after(fraction):
    def callback(path, done, total):
        if done >= fraction * total:
            raise Interrupted(f"stopped at {done}/{total} tiles")

    return callback


@pytest.fixture()
def scene(tmp_path):
    image = smooth_image(3, 1000, 260, seed=5)
    image[:, 300:420, :] = 0  # a nodata band across the scene: skipped tiles on the way
    return write_raster(tmp_path / "scene.tif", image, nodata=0)


def test_resume_continues_and_matches_an_uninterrupted_run(tmp_path, scene, conv_checkpoint):
    reference = tmp_path / "reference.tif"
    predict_raster(scene, conv_checkpoint, reference, **SETTINGS)

    output = tmp_path / "out.tif"
    with pytest.raises(Interrupted):
        predict_raster(scene, conv_checkpoint, output, progress_callback=_stop_after(0.6), **SETTINGS)
    assert not output.exists()
    assert (tmp_path / "out.partial.tif").exists()
    rows_done = json.loads((tmp_path / "out.partial.json").read_text())["rows_done"]
    assert rows_done >= 256  # whole blocks rows were flushed before stopping

    progress = []
    predict_raster(
        scene,
        conv_checkpoint,
        output,
        resume=True,
        progress_callback=lambda path, done, total: progress.append((done, total)),
        **SETTINGS,
    )
    total = progress[-1][1]
    assert progress[0][0] > 0.2 * total  # started in the middle, not from the first tile
    assert progress[-1][0] == total
    with rasterio.open(reference) as first, rasterio.open(output) as second:
        np.testing.assert_array_equal(first.read(), second.read())
        assert first.profile == second.profile
    assert not (tmp_path / "out.partial.tif").exists() and not (tmp_path / "out.partial.json").exists()


def test_resume_with_other_settings_starts_over(tmp_path, scene, conv_checkpoint):
    output = tmp_path / "out.tif"
    with pytest.raises(Interrupted):
        predict_raster(scene, conv_checkpoint, output, progress_callback=_stop_after(0.6), **SETTINGS)
    changed = dict(SETTINGS, overlap=32)
    progress = []
    predict_raster(
        scene,
        conv_checkpoint,
        output,
        resume=True,
        progress_callback=lambda path, done, total: progress.append(done),
        **changed,
    )
    assert progress[0] <= changed["batch_size"]  # from the first tile
    fresh = tmp_path / "fresh.tif"
    predict_raster(scene, conv_checkpoint, fresh, **changed)
    with rasterio.open(fresh) as first, rasterio.open(output) as second:
        np.testing.assert_array_equal(first.read(), second.read())


def test_resume_keeps_finished_outputs_and_overwrite_replaces_them(tmp_path, scene, conv_checkpoint):
    output = tmp_path / "out.tif"
    predict_raster(scene, conv_checkpoint, output, **SETTINGS)
    modified = output.stat().st_mtime_ns
    results = predict_raster(scene, conv_checkpoint, output, resume=True, **SETTINGS)
    assert results[0].skipped and output.stat().st_mtime_ns == modified
    with pytest.raises(ValueError, match="already exists.*--overwrite"):
        predict_raster(scene, conv_checkpoint, output, **SETTINGS)
    results = predict_raster(scene, conv_checkpoint, output, overwrite=True, **SETTINGS)
    assert not results[0].skipped and output.stat().st_mtime_ns != modified


KILLED_RUN = """
import sys, time
from pathlib import Path
import inference_helpers  # registers the test tasks
import rsfm.inference.writer as writer
from rsfm import predict_raster

writer.COMMIT_INTERVAL_S = 0.2  # flush often, so that the kill finds finished rows on disk
scene, checkpoint, output = map(Path, sys.argv[1:4])
predict_raster(scene, checkpoint, output, tile_size=64, overlap=16, batch_size=4, output_type="probabilities",
               progress=False, progress_callback=lambda path, done, total: time.sleep(0.3))
"""


@pytest.mark.slow
def test_resume_after_the_process_is_killed(tmp_path, scene, conv_checkpoint):
    """SIGKILL (no clean-up at all) in the middle of a run; --resume picks up from the last flush."""
    reference = tmp_path / "reference.tif"
    predict_raster(scene, conv_checkpoint, reference, **SETTINGS)
    output, state = tmp_path / "out.tif", tmp_path / "out.partial.json"
    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_RUN)
    helpers = str(Path(__file__).resolve().parent)
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([helpers, os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen(
        [sys.executable, str(script), str(scene), str(conv_checkpoint), str(output)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if state.exists() and json.loads(state.read_text())["rows_done"] >= 256:
                break
            time.sleep(0.05)
        assert process.poll() is None, "the run ended before it could be killed"
        process.kill()
    finally:
        process.wait()
    assert not output.exists() and json.loads(state.read_text())["rows_done"] >= 256

    progress = []
    predict_raster(
        scene,
        conv_checkpoint,
        output,
        resume=True,
        progress_callback=lambda path, done, total: progress.append(done),
        **SETTINGS,
    )
    assert progress[0] > SETTINGS["batch_size"]
    with rasterio.open(reference) as first, rasterio.open(output) as second:
        np.testing.assert_array_equal(first.read(), second.read())
