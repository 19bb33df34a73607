"""Bad inputs and options fail before any work, naming the file and the fix."""

import numpy as np
import pytest
from inference_helpers import smooth_image, write_raster

from rsfm import predict_raster

FAST = dict(tile_size=64, overlap=16, progress=False)


@pytest.fixture()
def good(tmp_path):
    return write_raster(tmp_path / "good.tif", smooth_image(3, 80, 90))


def _nothing_written(folder):
    return not list(folder.glob("out*")) and not list(folder.glob("*.partial*"))


def test_missing_file(tmp_path, good, conv_checkpoint):
    missing = tmp_path / "missing.tif"
    with pytest.raises(FileNotFoundError, match=r"missing\.tif: file not found"):
        predict_raster([good, missing], conv_checkpoint, tmp_path / "out", **FAST)
    assert _nothing_written(tmp_path)  # the good file before it was not processed either


def test_unreadable_file(tmp_path, good, conv_checkpoint):
    broken = tmp_path / "broken.tif"
    broken.write_text("this is not a GeoTIFF")
    with pytest.raises(ValueError, match=r"broken\.tif: not a raster GDAL can read.*convert it to GeoTIFF"):
        predict_raster([good, broken], conv_checkpoint, tmp_path / "out", **FAST)
    assert _nothing_written(tmp_path)


def test_empty_file(tmp_path, conv_checkpoint):
    empty = tmp_path / "empty.tif"
    empty.touch()
    with pytest.raises(ValueError, match=r"empty\.tif: file is empty \(0 bytes\).*fetch it again"):
        predict_raster(empty, conv_checkpoint, tmp_path / "out.tif", **FAST)
    assert _nothing_written(tmp_path)


def test_wrong_band_count_suggests_bands(tmp_path, conv_checkpoint):
    four = write_raster(tmp_path / "four.tif", smooth_image(4, 50, 50))
    with pytest.raises(ValueError, match=r"four\.tif: has 4 band\(s\) to use, model expects 3 \(use --bands"):
        predict_raster(four, conv_checkpoint, tmp_path / "out.tif", **FAST)
    single = write_raster(tmp_path / "single.tif", smooth_image(1, 50, 50))
    with pytest.raises(ValueError, match=r"single\.tif: has 1 band\(s\) to use, model expects 3 \(the model needs"):
        predict_raster(single, conv_checkpoint, tmp_path / "out.tif", **FAST)
    with pytest.raises(ValueError, match=r"four\.tif: has bands 1-4, band\(s\) \[7\] do not exist"):
        predict_raster(four, conv_checkpoint, tmp_path / "out.tif", bands=[1, 2, 7], **FAST)
    assert _nothing_written(tmp_path)


def test_unsupported_data_type(tmp_path, conv_checkpoint):
    complex_path = write_raster(tmp_path / "complex.tif", np.zeros((3, 20, 20), dtype=np.complex64))
    with pytest.raises(ValueError, match=r"complex\.tif: data type complex64 is not supported"):
        predict_raster(complex_path, conv_checkpoint, tmp_path / "out.tif", **FAST)


def test_not_a_checkpoint(tmp_path, good):
    with pytest.raises(FileNotFoundError, match=r"nope\.ckpt: checkpoint not found"):
        predict_raster(good, tmp_path / "nope.ckpt", tmp_path / "out.tif", **FAST)


@pytest.mark.parametrize(
    "options,message",
    [
        (dict(overlap=40), "--overlap must be between 0 and tile-size/2 = 32"),
        (dict(tile_size=8), "--tile-size must be at least 16"),
        (dict(batch_size=0), "--batch-size must be at least 1"),
        (dict(precision="bf16", device="cpu"), "bf16 needs --device cuda"),
        (dict(output_type="logits"), "'logits' is not a valid OutputType"),
    ],
)
def test_bad_options(tmp_path, good, conv_checkpoint, options, message):
    with pytest.raises(ValueError, match=message):
        predict_raster(good, conv_checkpoint, tmp_path / "out.tif", **{**FAST, **options})
    assert _nothing_written(tmp_path)


def test_bad_outputs(tmp_path, good, conv_checkpoint):
    with pytest.raises(ValueError, match=r"out\.shp: unknown vector format; end the name with \.gpkg"):
        predict_raster(good, conv_checkpoint, tmp_path / "out.tif", vector=tmp_path / "out.shp", **FAST)
    with pytest.raises(ValueError, match=r"good\.tif: the output raster would overwrite the input .*good\.tif"):
        predict_raster(good, conv_checkpoint, good, overwrite=True, **FAST)
    with pytest.raises(ValueError, match=r"out\.png: output raster must end in \.tif"):
        predict_raster(good, conv_checkpoint, tmp_path / "out.png", **FAST)
    other = write_raster(tmp_path / "other.tif", smooth_image(3, 40, 40))
    with pytest.raises(ValueError, match=r"out\.tif: with several inputs --output names a directory"):
        predict_raster([good, other], conv_checkpoint, tmp_path / "out.tif", **FAST)
    assert _nothing_written(tmp_path)


def test_polygons_need_a_segmentation_model(tmp_path, good, scene_checkpoint):
    with pytest.raises(ValueError, match="polygons need a segmentation checkpoint"):
        predict_raster(good, scene_checkpoint, tmp_path / "out.tif", vector=tmp_path / "out.gpkg", **FAST)


def test_patterns_and_directories_that_match_nothing(tmp_path, conv_checkpoint):
    with pytest.raises(ValueError, match=r"nothing\*\.tif: pattern matches no file"):
        predict_raster(str(tmp_path / "nothing*.tif"), conv_checkpoint, tmp_path / "out", **FAST)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ValueError, match=r"empty_dir: directory holds no raster"):
        predict_raster(tmp_path / "empty_dir", conv_checkpoint, tmp_path / "out", **FAST)
