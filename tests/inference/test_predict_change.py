"""predict_change, ChangeDetector and ``rsfm predict-change`` on LEVIR-CD pairs written here as
GeoTIFFs: the after date a 2x2 mosaic in UTM at 0.5 m, the before date the same place in Web
Mercator at another resolution and extent, read through a real ChangeDetectionTask checkpoint."""

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from inference_helpers import write_raster
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, from_bounds
from scipy import ndimage

import rsfm
from rsfm import ChangeDetector, predict_change, predict_raster
from rsfm.cli import main
from rsfm.inference import NODATA
from rsfm.inference import pair as pair_module
from rsfm.inference.outputs import scale_probability
from rsfm.inference.pair import check_pair
from rsfm.inference.predictor import Predictor

pytestmark = pytest.mark.usefixtures("single_thread")

UTM, MERCATOR = "EPSG:32650", "EPSG:3857"
AFTER_GRID = Affine(0.5, 0, 500000.0, 0, -0.5, 3400000.0)  # 0.5 m, 512 x 512 px = 256 m
MEAN, STD = [110.0, 110.0, 100.0], [50.0, 50.0, 45.0]
FAST = dict(progress=False, device="cpu")


# --- data and model ----------------------------------------------------------------------


def _mosaic(folder: Path, names) -> np.ndarray:
    from PIL import Image

    tiles = [np.asarray(Image.open(folder / name)) for name in names]
    tiles = [tile.transpose(2, 0, 1) if tile.ndim == 3 else tile[None] for tile in tiles]
    return np.concatenate([np.concatenate(tiles[:2], axis=2), np.concatenate(tiles[2:], axis=2)], axis=1)


@pytest.fixture(scope="module")
def levir(data_dir):
    """The first four LEVIR-CD samples as 512 x 512 mosaics: before (A), after (B), change label."""
    folder = data_dir / "change" / "levir_samples"
    if not (folder / "A").is_dir():
        pytest.skip(f"{folder}: LEVIR-CD samples not found")
    names = sorted(path.name for path in (folder / "A").glob("*.png"))[:4]
    return _mosaic(folder / "A", names), _mosaic(folder / "B", names), _mosaic(folder / "label", names)[0] > 0


@pytest.fixture(scope="module")
def change_checkpoint(levir, tmp_path_factory):
    """A tiny ChangeDetectionTask trained one step on LEVIR-CD by a real Trainer. Its
    classifier bias is then set so that about a fifth of the mosaic is change, as a trained
    model would map it, so that the maps and polygons have both classes."""
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader

    from rsfm.tasks.change import ChangeDetectionTask

    torch.manual_seed(0)
    task = ChangeDetectionTask(
        backbone="vitaev2_tiny_test", in_chans=3, mean=MEAN, std=STD, decoder_channels=16, num_overlays=0
    )
    before, after, label = levir
    pair = torch.from_numpy(np.concatenate([before, after]).astype(np.float32))
    mask = torch.from_numpy(label.astype(np.int64))
    samples = [
        {"image": pair[:, :256, :256], "mask": mask[:256, :256]},
        {"image": pair[:, 256:, 256:], "mask": mask[256:, 256:]},
    ]
    folder = tmp_path_factory.mktemp("change_ckpt")
    trainer = pl.Trainer(
        fast_dev_run=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=folder,
    )
    trainer.fit(task, DataLoader(samples, batch_size=2))
    task.eval()
    with torch.no_grad():
        logits = task.forward_raw(pair[None])
        task.model.head.bias -= torch.quantile(logits.flatten(), 0.8)
    path = folder / "change.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def scenes(levir, tmp_path_factory):
    """after.tif: UTM 50N, 0.5 m, 512 x 512. before.tif: Web Mercator at 0.7 m, a footprint
    that misses the after raster's left 40 m and reaches past its top and right."""
    before, after, _ = levir
    folder = tmp_path_factory.mktemp("scenes")
    after_path = write_raster(folder / "after.tif", after, crs=UTM, transform=AFTER_GRID)
    left, bottom, right, top = transform_bounds(UTM, MERCATOR, 500040.0, 3399700.0, 500300.0, 3400030.0)
    grid = Affine(0.7, 0, left, 0, -0.7, top)
    width, height = int((right - left) / 0.7), int((top - bottom) / 0.7)
    warped = np.zeros((3, height, width), dtype=np.uint8)
    reproject(
        before,
        warped,
        src_transform=AFTER_GRID,
        src_crs=UTM,
        dst_transform=grid,
        dst_crs=MERCATOR,
        resampling=Resampling.bilinear,
    )
    before_path = write_raster(folder / "before.tif", warped, crs=MERCATOR, transform=grid)
    return before_path, after_path


def _expected_grid(before_path, after_path):
    """The after raster's pixels inside the before raster's footprint (bounding box in UTM)."""
    with rasterio.open(before_path) as before, rasterio.open(after_path) as after:
        bounds = transform_bounds(before.crs, after.crs, *before.bounds, densify_pts=21)
        exact = from_bounds(*bounds, transform=after.transform)
        left, top = np.floor(exact.col_off), np.floor(exact.row_off)
        right, bottom = np.ceil(exact.col_off + exact.width), np.ceil(exact.row_off + exact.height)
        window = Window(left, top, right - left, bottom - top).intersection(Window(0, 0, after.width, after.height))
        return rasterio.windows.transform(window, after.transform), (int(window.height), int(window.width)), window


def _warp_myself(before_path, grid, shape, resampling=Resampling.bilinear, **options):
    with rasterio.open(before_path) as before:
        warped = np.zeros((before.count, *shape), dtype=before.dtypes[0])
        reproject(
            before.read(),
            warped,
            src_transform=before.transform,
            src_crs=before.crs,
            dst_transform=grid,
            dst_crs=UTM,
            resampling=resampling,
            **options,
        )
    return warped


# --- (a) the warp path ---------------------------------------------------------------------


def test_output_grid_is_the_after_grid_over_the_overlap_and_matches_a_warp_done_by_hand(
    tmp_path, scenes, change_checkpoint
):
    before_path, after_path = scenes
    output = tmp_path / "change.tif"
    result = predict_change(
        before_path, after_path, change_checkpoint, output, tile_size=512, output_type="probabilities", **FAST
    )
    assert (result.before, result.input, result.raster) == (before_path, after_path, output)
    grid, shape, window = _expected_grid(before_path, after_path)
    # the before raster misses the after raster's left 40 m (80 px) and covers the rest
    assert 78 <= window.col_off <= 80 and shape == (512, 512 - window.col_off)
    with rasterio.open(output) as dataset:
        assert dataset.crs.to_string() == UTM
        assert dataset.transform.almost_equals(grid) and dataset.shape == shape
        assert dataset.descriptions == ("probability of change",)
        probability = dataset.read(1)
    valid = probability != NODATA

    # the footprint: GDAL's edge pixels aside, valid exactly where the before raster covers
    with rasterio.open(before_path) as before:
        ones = np.full((1, before.height, before.width), 255, np.uint8)
        covered = np.zeros((1, *shape), np.uint8)
        reproject(ones, covered, src_transform=before.transform, src_crs=MERCATOR, dst_transform=grid, dst_crs=UTM)
    covered = covered[0] > 0
    assert np.all(valid[ndimage.binary_erosion(covered, iterations=2)])
    assert not np.any(valid[~ndimage.binary_dilation(covered, iterations=2)])
    assert 0.9 < valid.mean() < 1.0

    # the model on the pair warped by rasterio.warp.reproject, run once on the valid area (the
    # output fits one tile, which then takes the valid area whole)
    with rasterio.open(after_path) as after:
        after_pixels = after.read(window=window)
    pair = np.concatenate([_warp_myself(before_path, grid, shape), after_pixels]).astype(np.float32)
    rows, cols = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
    box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    model = Predictor.load(change_checkpoint)
    reference = np.full(shape, NODATA, np.uint8)
    reference[box] = scale_probability(model(pair[(None, slice(None), *box)], valid[box][None])[0, 0])
    difference = np.abs(probability.astype(int) - reference.astype(int))[valid]
    assert difference.max() <= 1 and (difference == 0).mean() > 0.999  # float rounding across a step at most
    assert 0.05 < (probability[valid] >= 127).mean() < 0.5  # both classes


def test_pair_on_one_grid_is_read_without_resampling(tmp_path, levir, change_checkpoint):
    """Same CRS and pixel size, extents shifted by whole pixels: the before raster is read, not
    warped, and the result is the model on the stacked pixels of the overlap."""
    before, after, _ = levir
    before_path = write_raster(tmp_path / "before.tif", before[:, :, :480], crs=UTM, transform=AFTER_GRID)
    shifted = AFTER_GRID * Affine.translation(30, 50)
    after_path = write_raster(tmp_path / "after.tif", after[:, 50:400, 30:], crs=UTM, transform=shifted)
    assert check_pair(before_path, after_path, in_chans=3).offset == (30, 50)  # read at this offset, not warped
    output = tmp_path / "change.tif"
    predict_change(
        before_path, after_path, change_checkpoint, output, tile_size=512, output_type="probabilities", **FAST
    )
    with rasterio.open(output) as dataset:
        assert dataset.transform == shifted and dataset.shape == (350, 450)
        probability = dataset.read(1)
    pair = np.concatenate([before[:, 50:400, 30:480], after[:, 50:400, 30:480]]).astype(np.float32)
    reference = scale_probability(Predictor.load(change_checkpoint)(pair[None])[0, 0])
    assert np.abs(probability.astype(int) - reference.astype(int)).max() <= 1


# --- (b) nodata --------------------------------------------------------------------------


def test_output_is_nodata_where_either_date_is(tmp_path, levir, change_checkpoint):
    """Before: nodata value 0 on a border, in Web Mercator. After: an internal mask (a hole).
    Nearest resampling, so that where the before date is nodata after warping is exact."""
    before, after, _ = levir
    before = np.maximum(before, 1)
    before[:, :, :90] = 0  # a nodata border
    grid = Affine(0.5, 0, 500000.0, 0, -0.5, 3400000.0)
    in_utm = write_raster(tmp_path / "before_utm.tif", before, crs=UTM, transform=grid, nodata=0)
    with rasterio.open(in_utm) as source, WarpedVRT(source, crs=MERCATOR, resampling=Resampling.nearest) as vrt:
        before_path = tmp_path / "before.tif"
        write_raster(before_path, vrt.read(), crs=MERCATOR, transform=vrt.transform, nodata=0)
    after_path = write_raster(tmp_path / "after.tif", after, crs=UTM, transform=AFTER_GRID)
    hole = np.zeros(after.shape[1:], bool)
    hole[300:380, 200:330] = True
    with rasterio.open(after_path, "r+") as dataset:
        dataset.write_mask(np.where(hole, 0, 255).astype(np.uint8))
    output = tmp_path / "change.tif"
    predict_change(
        before_path, after_path, change_checkpoint, output, tile_size=256, overlap=32, resampling="nearest", **FAST
    )

    grid, shape, window = _expected_grid(before_path, after_path)
    before_valid = _warp_myself(before_path, grid, shape, Resampling.nearest, src_nodata=0, dst_nodata=0)[0] > 0
    after_valid = ~hole[window.toslices()]
    with rasterio.open(output) as dataset:
        assert dataset.transform.almost_equals(grid) and dataset.shape == shape
        classes, probability = dataset.read()
    nodata = classes == NODATA
    np.testing.assert_array_equal(nodata, ~(before_valid & after_valid))
    assert np.all(probability[nodata] == NODATA)
    assert before_valid.mean() < 0.9 and (~after_valid).sum() == hole.sum()  # both masks are in the map


# --- (c) resume --------------------------------------------------------------------------


class Interrupted(Exception):
    pass


def test_resume_after_an_interruption_equals_an_uninterrupted_run(tmp_path, scenes, change_checkpoint):
    before_path, after_path = scenes
    settings = dict(tile_size=128, overlap=32, batch_size=2, output_type="probabilities", **FAST)
    reference = tmp_path / "reference.tif"
    predict_change(before_path, after_path, change_checkpoint, reference, **settings)

    def stop_at_two_thirds(path, done, total):
        if done >= 2 * total / 3:
            raise Interrupted

    output = tmp_path / "change.tif"
    with pytest.raises(Interrupted):
        predict_change(
            before_path, after_path, change_checkpoint, output, progress_callback=stop_at_two_thirds, **settings
        )
    state = json.loads((tmp_path / "change.partial.json").read_text())
    assert state["rows_done"] >= 256 and not output.exists()
    assert state["settings"]["resampling"] == "bilinear"
    assert {state["settings"]["before"]["path"], state["settings"]["after"]["path"]} == {
        str(before_path.resolve()),
        str(after_path.resolve()),
    }

    progress = []
    predict_change(
        before_path,
        after_path,
        change_checkpoint,
        output,
        resume=True,
        progress_callback=lambda path, done, total: progress.append(done),
        **settings,
    )
    assert progress[0] > settings["batch_size"]  # continued, not started over
    with rasterio.open(reference) as first, rasterio.open(output) as second:
        np.testing.assert_array_equal(first.read(), second.read())
        assert first.profile == second.profile and first.tags() == second.tags()
    assert not list(tmp_path.glob("*.partial*"))


# --- (d) bad inputs ----------------------------------------------------------------------


def _nothing_written(folder):
    return not list(folder.glob("change*")) and not list(folder.glob("*.partial*"))


def test_pairs_that_cannot_be_mapped_fail_before_any_work(tmp_path, scenes, levir, change_checkpoint):
    before_path, after_path = scenes
    output = tmp_path / "change.tif"
    far = write_raster(
        tmp_path / "far.tif", levir[1][:, :100, :100], crs=UTM, transform=AFTER_GRID * Affine.translation(5000, 0)
    )
    with pytest.raises(
        ValueError, match=r"before\.tif: does not overlap .*far\.tif.*pass two rasters of the same place"
    ):
        predict_change(before_path, far, change_checkpoint, output, **FAST)
    four = write_raster(tmp_path / "four.tif", np.concatenate([levir[0], levir[0][:1]]), crs=UTM, transform=AFTER_GRID)
    with pytest.raises(ValueError, match=r"four\.tif: has 4 band\(s\) to use, model expects 3 \(use --bands"):
        predict_change(four, after_path, change_checkpoint, output, **FAST)
    plain = write_raster(tmp_path / "plain.tif", levir[0], crs=None, transform=AFTER_GRID)
    with (
        pytest.warns(UserWarning, match="no CRS"),
        pytest.raises(ValueError, match=r"plain\.tif: has no CRS but .*after\.tif has one"),
    ):
        predict_change(plain, after_path, change_checkpoint, output, **FAST)
    with pytest.raises(ValueError, match=r"before\.tif: the output raster would overwrite the input .*before\.tif"):
        predict_change(before_path, after_path, change_checkpoint, before_path, overwrite=True, **FAST)
    with pytest.raises(ValueError, match="--resampling must be one of nearest, bilinear, cubic"):
        predict_change(before_path, after_path, change_checkpoint, output, resampling="lanczos", **FAST)
    assert _nothing_written(tmp_path)


def test_checkpoints_of_the_other_kind_are_refused(tmp_path, scenes, conv_checkpoint, change_checkpoint):
    before_path, after_path = scenes
    with pytest.raises(ValueError, match=r"conv\.ckpt: holds a segmentation model, not a change-detection model"):
        predict_change(before_path, after_path, conv_checkpoint, tmp_path / "change.tif", **FAST)
    with pytest.raises(
        ValueError,
        match=r"change\.ckpt: the model detects change between two dates: use rsfm predict-change BEFORE AFTER",
    ):
        predict_raster(after_path, change_checkpoint, tmp_path / "change.tif", **FAST)
    with pytest.raises(ValueError, match=r"conv\.ckpt: holds a ConvSegmentationTask, not a change-detection task"):
        ChangeDetector.load(conv_checkpoint)
    assert _nothing_written(tmp_path)


# --- (e) the command line, with polygons -------------------------------------------------


def test_command_writes_the_change_raster_and_polygons(tmp_path, scenes, change_checkpoint, capsys):
    import geopandas

    before_path, after_path = scenes
    output, vector = tmp_path / "change.tif", tmp_path / "change.gpkg"
    status = main(
        [
            "predict-change",
            str(before_path),
            str(after_path),
            "--checkpoint",
            str(change_checkpoint),
            "--output",
            str(output),
            "--vector",
            str(vector),
            "--tile-size",
            "256",
            "--overlap",
            "32",
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert status == 0
    polygons = geopandas.read_file(vector)
    assert (
        f"{before_path} + {after_path} -> {output} written, {len(polygons)} polygons -> {vector}"
        in capsys.readouterr().out
    )
    with rasterio.open(output) as dataset:
        tags = dataset.tags()
        assert (tags["rsfm_before"], tags["rsfm_after"], tags["rsfm_checkpoint"]) == (
            "before.tif",
            "after.tif",
            "change.ckpt",
        )
        assert tags["rsfm_task"] == "change" and tags["rsfm_class_names"] == "no change,change"
        classes, confidence = dataset.read()
        pixel_area = abs(dataset.transform.a * dataset.transform.e)
        crs = dataset.crs
    changed = classes == 1
    assert len(polygons) > 5 and set(polygons["class"]) == {"change"}
    assert polygons.crs == crs
    np.testing.assert_allclose(polygons["area"], polygons.geometry.area, rtol=1e-6)
    assert polygons["area"].sum() == pytest.approx(changed.sum() * pixel_area)  # polygons cover the change pixels
    assert polygons["mean_probability"].between(0.5, 1.0).all()
    largest = polygons.loc[polygons["area"].idxmax()]
    assert largest["mean_probability"] == pytest.approx(confidence[changed].mean() / 254, abs=0.1)


def test_command_help_and_one_line_errors(tmp_path, scenes, conv_checkpoint, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict-change", "--help"])
    assert exit_info.value.code == 0
    assert "--resampling {bilinear,nearest,cubic}" in capsys.readouterr().out
    before_path, after_path = scenes
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "predict-change",
                str(before_path),
                str(after_path),
                "--checkpoint",
                str(conv_checkpoint),
                "--output",
                str(tmp_path / "c.tif"),
            ]
        )
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("rsfm predict-change: error: ") and "not a change-detection model" in error
    assert len(error.strip().splitlines()) == 1


# --- (f) bounded memory: the before raster is warped window by window --------------------


def test_the_before_raster_is_warped_window_by_window(tmp_path, scenes, change_checkpoint, monkeypatch):
    reads = []

    class RecordingVRT(WarpedVRT):
        def read(self, indexes=None, window=None, **options):
            reads.append(window)
            return super().read(indexes, window=window, **options)

        def read_masks(self, indexes=None, window=None, **options):
            reads.append(window)
            return super().read_masks(indexes, window=window, **options)

    monkeypatch.setattr(pair_module, "WarpedVRT", RecordingVRT)
    before_path, after_path = scenes
    tile_size = 128
    predict_change(
        before_path,
        after_path,
        change_checkpoint,
        tmp_path / "change.tif",
        tile_size=tile_size,
        overlap=32,
        batch_size=2,
        **FAST,
    )
    assert reads and all(window is not None for window in reads)
    largest = max(int(window.width) * int(window.height) for window in reads)
    # a read covers a batch's row of tiles, or the tiles around one: never the whole raster
    assert largest <= (3 * tile_size) ** 2 < 512 * 432


# --- ChangeDetector ------------------------------------------------------------------------


def test_change_detector_on_arrays_files_and_rasters(tmp_path, levir, change_checkpoint, data_dir):
    before, after, _ = levir
    detector = rsfm.ChangeDetector.load(change_checkpoint, threshold=0.6)
    prediction = detector.predict(before[:, :256, :256].transpose(1, 2, 0), after[:, :256, :256].transpose(1, 2, 0))
    assert prediction.probability.shape == (256, 256) and prediction.probability.dtype == np.float32
    pair = np.concatenate([before[:, :256, :256], after[:, :256, :256]]).astype(np.float32)
    np.testing.assert_allclose(prediction.probability, Predictor.load(change_checkpoint)(pair[None])[0, 0], atol=1e-5)
    np.testing.assert_array_equal(prediction.mask, (prediction.probability > 0.6).astype(np.uint8))

    # the LEVIR PNG files themselves (first mosaic tile), and the same files as rasters without CRS
    folder = data_dir / "change" / "levir_samples"
    name = sorted(path.name for path in (folder / "A").glob("*.png"))[0]
    from_files = detector.predict(folder / "A" / name, folder / "B" / name)
    np.testing.assert_allclose(from_files.probability, prediction.probability, atol=1e-5)
    with pytest.warns(UserWarning, match="no CRS"):
        result = detector.predict_raster(
            folder / "A" / name,
            folder / "B" / name,
            tmp_path / "png.tif",
            tile_size=256,
            output_type="probabilities",
            progress=False,
        )
    with rasterio.open(result.raster) as dataset:
        mapped = dataset.read(1)
    assert np.abs(mapped.astype(int) - scale_probability(prediction.probability).astype(int)).max() <= 1

    with pytest.raises(ValueError, match=r"image 0 \(before\) is 256x256 pixels, image 1 \(after\) 200x256"):
        detector.predict(before[:, :256, :256].transpose(1, 2, 0), after[:, :200, :256].transpose(1, 2, 0))
