"""Interrupted runs continue with --resume and end identical to uninterrupted runs."""

import json

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
    predict_raster(scene, conv_checkpoint, output, resume=True,
                   progress_callback=lambda path, done, total: progress.append((done, total)), **SETTINGS)
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
    predict_raster(scene, conv_checkpoint, output, resume=True,
                   progress_callback=lambda path, done, total: progress.append(done), **changed)
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
