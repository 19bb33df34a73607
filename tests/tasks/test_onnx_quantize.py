"""``rsfm export --int8``: calibration on the user's data, the accuracy gate, the metadata.

The default tests use two small brightness models (a scene classifier and a building
segmenter of three convolutions with designed weights, saved by a real Trainer) because the
torch.export-based exporter takes minutes for ViTAEv2 on 2 CPU cores; the slow tests run the
``vitaev2_tiny_test`` checkpoints of ``tests/fixtures/release_0_1``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from rsfm import _compat  # noqa: F401  (before lightning imports torchvision)

# isort: split

import lightning.pytorch as pl
import numpy as np
import onnx
import pytest
import rasterio
import torch
from affine import Affine
from PIL import Image
from rasterio.crs import CRS
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rsfm.cli import export_onnx as export_cli
from rsfm.cli import main
from rsfm.data.io import ImageReadError
from rsfm.tasks import quantize
from rsfm.tasks.base import BaseTask, register_task
from rsfm.tasks.contract import CLASSIFICATION
from rsfm.tasks.onnx import export_onnx, fp32_companion, read_onnx_contract

ort = pytest.importorskip("onnxruntime")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "release_0_1"
MEAN, STD = (100.0, 100.0, 100.0), (50.0, 50.0, 50.0)
# raw grey levels of the scene classes: the scene model says dark below 75, bright above 125
LEVELS = {"dark": (20, 50), "medium": (88, 112), "bright": (170, 230)}


class _BrightnessNet(nn.Module):
    """Output k = slopes[k] * local brightness (normalised, 5x5 mean) + biases[k], computed by
    three convolutions whose channels carry the brightness at different scales (so that
    per-channel weight scales differ) with a little noise in the mixing layer."""

    def __init__(self, in_chans: int, slopes: Sequence[float], biases: Sequence[float], hidden: int = 48) -> None:
        super().__init__()
        first, second = nn.Conv2d(in_chans, hidden, 3, padding=1), nn.Conv2d(hidden, hidden, 3, padding=1)
        self.body = nn.Sequential(first, second)
        self.head = nn.Conv2d(hidden, len(slopes), 1)
        scales = torch.linspace(0.5, 2.0, hidden)
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            first.weight.copy_(scales.view(-1, 1, 1, 1).expand(-1, in_chans, 3, 3) / (9 * in_chans))
            mixing = torch.eye(hidden).view(hidden, hidden, 1, 1).expand(-1, -1, 3, 3) / 9
            second.weight.copy_(mixing + 1e-3 * torch.randn(hidden, hidden, 3, 3, generator=generator))
            readout = torch.tensor(slopes).view(-1, 1) * (scales / scales.pow(2).sum()).view(1, -1)
            self.head.weight.copy_(readout.view(len(slopes), hidden, 1, 1))
            self.head.bias.copy_(torch.tensor(biases))
            first.bias.zero_()
            second.bias.zero_()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(inputs))


@register_task
class BrightSceneTask(BaseTask):
    """Scene classifier: dark (< -0.5), medium, bright (> 0.5) by mean normalised brightness."""

    task_kind = CLASSIFICATION

    def __init__(
        self,
        in_chans: int = 3,
        mean: Sequence[float] = MEAN,
        std: Sequence[float] = STD,
        class_names: Sequence[str] = ("dark", "medium", "bright"),
        image_size: int = 32,
        backbone_checkpoint: Optional[str] = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._register_normalization(mean, std, in_chans)
        self.net = _BrightnessNet(in_chans, slopes=(-4.0, 0.0, 4.0), biases=(-2.0, 0.0, -2.0))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs).mean(dim=(2, 3))

    def training_step(self, batch, batch_index):
        images, labels = batch
        return nn.functional.cross_entropy(self(self.normalize(images)), labels)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)  # the designed weights stay


@register_task
class BrightBuildingTask(BaseTask):
    """Binary segmenter: 'building' where the local brightness is above the band mean."""

    def __init__(
        self,
        in_chans: int = 3,
        mean: Sequence[float] = MEAN,
        std: Sequence[float] = STD,
        class_names: Sequence[str] = ("background", "building"),
        image_size: int = 32,
        mask_values: str = "0/1",
        backbone_checkpoint: Optional[str] = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._register_normalization(mean, std, in_chans)
        self.net = _BrightnessNet(in_chans, slopes=(4.0,), biases=(0.0,))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)

    def training_step(self, batch, batch_index):
        images, targets = batch
        return nn.functional.binary_cross_entropy_with_logits(self(self.normalize(images)), targets)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _save(task: BaseTask, path: Path, scene: bool) -> Path:
    """One real training step (learning rate 0), then the checkpoint, as users get it."""
    images = torch.rand(2, 3, 16, 16) * 255
    targets = torch.randint(0, 3, (2,)) if scene else (torch.rand(2, 1, 16, 16) > 0.5).float()
    trainer = pl.Trainer(
        fast_dev_run=1, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(task, DataLoader(TensorDataset(images, targets), batch_size=2))
    trainer.save_checkpoint(path)
    return path


# data written by the tests ------------------------------------------------------------


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _scene_folder(root: Path, per_class: int, seed: int, classes: Sequence[str] = tuple(LEVELS)) -> Path:
    """Class folders of 40 x 40 RGB PNGs of noisy grey at each class's level."""
    rng = np.random.default_rng(seed)
    for name in classes:
        low, high = LEVELS[name]
        for index in range(per_class):
            pixels = rng.integers(low, high, size=(40, 40, 3), dtype=np.uint8)
            _write_png(root / name / f"{name}_{index}.png", pixels)
    return root


def _building_tile(rng: np.random.Generator, size: int = 32):
    """A dark tile with one bright rectangle (the building) and its 0/1 mask."""
    image = rng.integers(30, 50, size=(size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), np.uint8)
    top, left = rng.integers(2, size // 2, size=2)
    height, width = rng.integers(8, size // 2, size=2)
    image[top : top + height, left : left + width] = rng.integers(190, 230, size=(height, width, 3))
    mask[top : top + height, left : left + width] = 1
    return image, mask


def _building_folder(root: Path, count: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for index in range(count):
        image, mask = _building_tile(rng)
        _write_png(root / "images" / f"tile_{index}.png", image)
        _write_png(root / "masks" / f"tile_{index}.png", mask)
    return root


def _geotiff(path: Path, nodata_width: int = 40) -> Path:
    """A 96 x 128 px 3-band uint8 GeoTIFF (nodata 0) whose left ``nodata_width`` columns hold no
    data; bright 'buildings' only in the top right 32 x 32 tile and one bright pixel block in the
    bottom middle, dark ground elsewhere."""
    rng = np.random.default_rng(3)
    pixels = rng.integers(30, 60, size=(3, 96, 128), dtype=np.uint8)
    pixels[:, 0:32, 96:128] = 210  # the top right tile: all building
    pixels[:, 70:80, 70:80] = 210  # a small building in another tile
    pixels[:, :, :nodata_width] = 0
    profile = dict(
        driver="GTiff",
        width=128,
        height=96,
        count=3,
        dtype="uint8",
        crs=CRS.from_epsg(32633),
        transform=Affine(0.5, 0, 500000, 0, -0.5, 4000000),
        nodata=0,
    )
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(pixels)
    return path


@pytest.fixture(scope="module")
def scene_checkpoint(tmp_path_factory) -> Path:
    return _save(BrightSceneTask(), tmp_path_factory.mktemp("ckpt") / "scene.ckpt", scene=True)


@pytest.fixture(scope="module")
def building_checkpoint(tmp_path_factory) -> Path:
    return _save(BrightBuildingTask(), tmp_path_factory.mktemp("ckpt") / "buildings.ckpt", scene=False)


@pytest.fixture(scope="module")
def scene_fp32(scene_checkpoint, tmp_path_factory) -> Path:
    return export_onnx(scene_checkpoint, tmp_path_factory.mktemp("onnx") / "scene.onnx")


@pytest.fixture(scope="module")
def building_fp32(building_checkpoint, tmp_path_factory) -> Path:
    return export_onnx(building_checkpoint, tmp_path_factory.mktemp("onnx") / "buildings.onnx")


@pytest.fixture(scope="module")
def scene_data(tmp_path_factory) -> Path:
    return _scene_folder(tmp_path_factory.mktemp("scenes") / "val", per_class=4, seed=1)


@pytest.fixture(scope="module")
def building_data(tmp_path_factory) -> Path:
    return _building_folder(tmp_path_factory.mktemp("tiles") / "val", count=6, seed=2)


# the INT8 file -----------------------------------------------------------------------


def _logits(path: Path, pixels: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"pixels": pixels.astype(np.float32)})[0]


def _per_channel_weight_scales(model: onnx.ModelProto) -> list:
    """Sizes of the scales of DequantizeLinear nodes whose input is an int8 initializer."""
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    sizes = []
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in initializers:
            if initializers[node.input[0]].data_type == onnx.TensorProto.INT8:
                sizes.append(int(np.prod(initializers[node.input[1]].dims)))
    return sizes


def test_scene_int8_is_qdq_per_channel_smaller_and_agrees(scene_fp32, scene_data, tmp_path):
    output = tmp_path / "scene_int8.onnx"
    report = quantize.quantize_onnx(scene_fp32, output, scene_data, validate=scene_data, max_drop=0.0)
    model = onnx.load(str(output))
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > 0
    scales = _per_channel_weight_scales(model)
    assert scales and max(scales) == 48  # one scale per output channel of the hidden convolutions
    assert output.stat().st_size < 0.5 * scene_fp32.stat().st_size
    assert read_onnx_contract(output) == read_onnx_contract(scene_fp32)
    record = quantize.read_quantization_metadata(output)
    assert record == report.metadata
    assert record["precision"] == "int8" and record["calibration"]["samples"] == 12
    assert record["calibration"]["method"] == "minmax" and record["calibration"]["tile_size"] == 32
    validation = record["validation"]
    assert validation["metric"] == "top1_accuracy" and validation["samples"] == 12
    assert validation["fp32"] == 1.0 and validation["int8"] == 1.0 and validation["drop"] == 0.0
    # logits agree: the same classes, values within 5 % of the largest logit (2.6 % measured)
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, size=(6, 3, 32, 32)) * np.linspace(0.2, 1, 6)[:, None, None, None]
    fp32, int8 = _logits(scene_fp32, pixels), _logits(output, pixels)
    assert (fp32.argmax(1) == int8.argmax(1)).all()
    assert np.abs(fp32 - int8).max() < 0.05 * np.abs(fp32).max()


def test_building_int8_keeps_iou_and_records_both_figures(building_fp32, building_data, tmp_path):
    output = tmp_path / "buildings_int8.onnx"
    report = quantize.quantize_onnx(
        building_fp32, output, building_data, validate=building_data, calibration_method="percentile"
    )
    assert report.fp32.metric == "iou" and report.fp32.value > 0.8 and "f1" in report.fp32.details
    record = quantize.read_quantization_metadata(output)["validation"]
    assert record["fp32"] == report.fp32.value and record["int8"] == report.int8.value
    assert record["drop"] <= 0.01 and record["max_drop"] == 0.01
    assert set(record["details"]["int8"]) == {"f1"}
    assert quantize.evaluate_onnx(output, building_data) == report.int8


def test_the_gate_refuses_an_int8_model_calibrated_on_other_data(scene_checkpoint, scene_data, tmp_path, capsys):
    # calibrated on dark images only, the INT8 model clips bright inputs to the calibrated
    # range and calls bright scenes medium: 8/12 correct against FP32's 12/12
    dark = _scene_folder(tmp_path / "dark", per_class=4, seed=5, classes=["dark"])
    output = tmp_path / "out" / "scene.onnx"
    argv = ["export", str(scene_checkpoint), "-o", str(output), "--int8", "--calibration", str(dark)]
    assert main([*argv, "--validate", str(scene_data), "--max-drop", "0.01", "--no-timing"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and error.startswith("rsfm export: INT8 top-1 accuracy 0.6667")
    assert "FP32 top-1 accuracy 1.0000" in error and "allowed drop of 0.01" in error
    assert list(output.parent.iterdir()) == []  # nothing written, no temporary left


def test_the_gate_compares_two_real_results(scene_fp32, scene_data):
    fp32 = quantize.evaluate_onnx(scene_fp32, scene_data)
    worse = quantize.Evaluation(fp32.metric, fp32.value - 0.02, fp32.samples, fp32.data)
    assert quantize.check_accuracy_drop(fp32, worse, 0.03) == pytest.approx(0.02)
    with pytest.raises(quantize.AccuracyDropError, match="0.0200 below FP32"):
        quantize.check_accuracy_drop(fp32, worse, 0.01)
    with pytest.raises(ValueError, match="0 or more"):
        quantize.check_accuracy_drop(fp32, fp32, -1)


def test_cli_writes_int8_keeps_fp32_and_times_both(scene_checkpoint, scene_data, tmp_path, capsys):
    output = tmp_path / "scene.onnx"
    argv = ["export", str(scene_checkpoint), "-o", str(output), "--int8", "--calibration", str(scene_data)]
    assert main([*argv, "--validate", str(scene_data), "--keep-fp32", "--calibration-size", "6"]) == 0
    out = capsys.readouterr().out
    assert "calibrating on 6 images of 32 px" in out and "FP32 top-1 accuracy 1.0000" in out
    assert "INT8" in out and "faster on this machine" in out
    assert ("this CPU has" in out) or ("unknown" in out)
    companion = fp32_companion(output)
    assert companion.name == "scene.fp32.onnx" and sorted(path.name for path in tmp_path.iterdir()) == [
        "scene.fp32.onnx",
        "scene.onnx",
    ]
    assert quantize.read_quantization_metadata(output)["calibration"]["samples"] == 6
    assert quantize.read_quantization_metadata(companion) == {
        "precision": "fp32",
        "validation": {"data": str(scene_data), "metric": "top1_accuracy", "samples": 12, "fp32": 1.0},
    }


def test_fp32_export_records_its_validation_figure(building_checkpoint, building_data, tmp_path, capsys):
    output = tmp_path / "buildings.onnx"
    assert main(["export", str(building_checkpoint), "-o", str(output), "--validate", str(building_data)]) == 0
    assert "FP32 IoU" in capsys.readouterr().out
    record = quantize.read_quantization_metadata(output)
    assert record["precision"] == "fp32" and record["validation"]["metric"] == "iou"
    assert record["validation"]["samples"] == 6 and 0.8 < record["validation"]["fp32"] <= 1


# calibration data ---------------------------------------------------------------------


def test_geotiff_tiles_skip_nodata_and_fill_it_with_the_band_mean(building_fp32, tmp_path):
    raster = _geotiff(tmp_path / "scene.tif")
    first = quantize.calibration_set(building_fp32, raster, size=64, seed=0)
    # 3 x 4 tiles of 32 px; the first column holds no data and is skipped
    assert len(first.tiles) == 9 and first.files == 1
    assert all(tile.shape == (3, 32, 32) for tile in first.tiles)
    stacked = np.stack(first.tiles)
    assert (stacked > 0).all()  # no nodata value left
    # tiles of the second column (x 32-63) hold nodata up to x = 40: the band mean there
    partial = [tile for tile in first.tiles if (tile[:, :, :8] == 100.0).all()]
    assert len(partial) == 3
    again = quantize.calibration_set(building_fp32, raster, size=64, seed=0)
    assert all((a == b).all() for a, b in zip(first.tiles, again.tiles))  # reproducible
    other = quantize.calibration_set(building_fp32, raster, size=4, seed=1)
    assert len(other.tiles) == 4


def test_foreground_calibration_picks_tiles_with_buildings(building_fp32, scene_fp32, tmp_path):
    raster = _geotiff(tmp_path / "scene.tif")
    chosen = quantize.calibration_set(building_fp32, raster, size=4, seed=0, foreground=True)
    assert len(chosen.tiles) == 4
    plain = quantize.calibration_set(building_fp32, raster, size=4, seed=0)
    session = ort.InferenceSession(str(building_fp32), providers=["CPUExecutionProvider"])

    def building_share(tiles):
        return float((session.run(None, {"pixels": np.stack(tiles)})[0] > 0).mean())

    assert building_share(chosen.tiles) == pytest.approx(chosen.foreground_fraction, abs=1e-6)
    assert chosen.foreground_fraction > chosen.candidate_foreground_fraction
    assert building_share(chosen.tiles) > building_share(plain.tiles)
    # both building tiles are among the chosen ones
    assert sum((tile > 200).any() for tile in chosen.tiles) == 2
    with pytest.raises(ValueError, match="segmentation models"):
        quantize.calibration_set(scene_fp32, raster, foreground=True)


def test_calibration_reads_class_folders_and_geotiffs_for_a_scene_model(scene_fp32, scene_data, tmp_path):
    images = quantize.calibration_set(scene_fp32, scene_data, size=5, seed=0)
    assert len(images.tiles) == 5 and images.files == 5
    assert all(tile.shape == (3, 32, 32) for tile in images.tiles)  # resized as the predictor does
    raster = quantize.calibration_set(scene_fp32, [_geotiff(tmp_path / "scene.tif")], size=64)
    assert len(raster.tiles) == 9  # georeferenced: tiles of the input size, nodata skipped


def test_non_images_are_skipped_and_broken_images_named(scene_fp32, tmp_path):
    folder = _scene_folder(tmp_path / "calibration", per_class=1, seed=0)
    (folder / "README.txt").write_text("not an image")
    (folder / "dark" / "labels.csv").write_text("path,label\n")
    assert len(quantize.calibration_set(scene_fp32, folder, size=64).tiles) == 3
    (folder / "medium" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ImageReadError, match="broken.png"):
        quantize.calibration_set(scene_fp32, folder, size=64)


def test_links_out_of_the_calibration_folder_are_refused(scene_checkpoint, scene_fp32, tmp_path, capsys):
    outside = _scene_folder(tmp_path / "elsewhere", per_class=1, seed=0, classes=["bright"])
    folder = _scene_folder(tmp_path / "calibration", per_class=1, seed=1)
    os.symlink(outside / "bright" / "bright_0.png", folder / "dark" / "link.png")
    with pytest.raises(ValueError, match="link.png: a link to .* outside"):
        quantize.calibration_set(scene_fp32, folder)
    output = tmp_path / "out" / "scene.onnx"
    assert main(["export", str(scene_checkpoint), "-o", str(output), "--int8", "--calibration", str(folder)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "outside" in error and not output.parent.exists()


def test_output_equal_to_an_input_is_refused(scene_checkpoint, scene_fp32, tmp_path, capsys):
    raster = _geotiff(tmp_path / "scene.tif")
    before = raster.read_bytes()
    argv = ["export", str(scene_checkpoint), "-o", str(raster), "--int8", "--calibration", str(raster)]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("rsfm export:") and "is an input" in error and "\n" not in error
    assert raster.read_bytes() == before
    with pytest.raises(ValueError, match="is an input"):
        quantize.quantize_onnx(scene_fp32, scene_fp32, raster)


def test_validation_classes_must_be_the_models(scene_fp32, tmp_path):
    data = _scene_folder(tmp_path / "val", per_class=1, seed=0)
    (data / "Forest").mkdir()
    _write_png(data / "Forest" / "forest_0.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"classes \['Forest'\] are not classes of the model"):
        quantize.evaluate_onnx(scene_fp32, data)


def test_cli_options_check_each_other(scene_checkpoint, tmp_path, capsys):
    base = ["export", str(scene_checkpoint), "-o", str(tmp_path / "m.onnx")]
    for extra, message in [
        (["--int8"], "--int8 needs --calibration"),
        (["--calibration", str(tmp_path)], "go(es) with --int8"),
        (["--int8", "--calibration", str(tmp_path), "--max-drop", "0.01"], "--max-drop needs --validate"),
        (["--int8", "--calibration", str(tmp_path), "--validate", str(tmp_path), "--max-drop", "-1"], "0 or more"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            main([*base, *extra])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert export_cli.CALIBRATION_METHODS == quantize.CALIBRATION_METHODS
    from rsfm.data.buildings import MASK_VALUES

    assert export_cli.MASK_VALUES == tuple(MASK_VALUES)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu avx2 avx512f avx512_vnni\n\nprocessor : 1\nflags : fpu avx2\n")
    assert quantize.int8_cpu_features(cpuinfo) == ["avx512_vnni"]
    cpuinfo.write_text("processor : 0\nflags : fpu avx2\n")
    assert quantize.int8_cpu_features(cpuinfo) == []
    assert quantize.int8_cpu_features(tmp_path / "missing") is None


# ViTAEv2 (slow: the exporter takes minutes on 2 CPU cores) ------------------------------


def _quantized_convolutions(model: onnx.ModelProto) -> Dict[bool, List[bool]]:
    """For grouped (True) and dense (False) convolutions: whether each one's weight is quantized
    (comes out of a DequantizeLinear)."""
    dequantized = {node.output[0] for node in model.graph.node if node.op_type == "DequantizeLinear"}
    kinds: Dict[bool, List[bool]] = {True: [], False: []}
    for node in model.graph.node:
        if node.op_type == "Conv":
            grouped = any(attribute.name == "group" and attribute.i > 1 for attribute in node.attribute)
            kinds[grouped].append(node.input[1] in dequantized)
    return kinds


def test_vitaev2_scene_int8_from_real_images(data_dir, tmp_path, capsys):
    """The release ``vitaev2_tiny_test`` scene classifier (classes field/forest/town) calibrated
    on AID images and validated on AID Farmland/Forest/DenseResidential renamed to its classes."""
    validation = tmp_path / "val"
    for name, aid in [("field", "Farmland"), ("forest", "Forest"), ("town", "DenseResidential")]:
        (validation / name).mkdir(parents=True)
        for image in sorted((data_dir / "aid_150px" / aid).glob("*.jpg"))[:8]:
            (validation / name / image.name).write_bytes(image.read_bytes())
    output = tmp_path / "scene_int8.onnx"
    argv = ["export", str(FIXTURES / "scene_release_0_1.ckpt"), "-o", str(output), "--keep-fp32", "--no-timing"]
    calibration = ["--int8", "--calibration", str(data_dir / "aid_150px"), "--calibration-size", "32"]
    # one step of training on random data: chance-level figures, so no gate (max drop 1)
    assert main([*argv, *calibration, "--validate", str(validation), "--max-drop", "1"]) == 0
    model = onnx.load(str(output))
    assert any(size > 1 for size in _per_channel_weight_scales(model))
    assert output.stat().st_size < fp32_companion(output).stat().st_size
    # the grouped convolutions of the convolution branches stay FP32, the dense ones are int8
    convolutions = _quantized_convolutions(model)
    assert len(convolutions[True]) >= 10 and not any(convolutions[True])
    assert convolutions[False] and all(convolutions[False])
    record = quantize.read_quantization_metadata(output)
    assert record["fp32_operators"] == "Conv with groups > 1"
    assert record["calibration"]["samples"] == 32 and record["validation"]["samples"] == 24
    # on the validation images, INT8 logits stay close to FP32's: a mean difference of 21 % of the
    # spread of FP32's logits measured (the one-step model's logits are all near 0)
    from rsfm.data.transforms import scene_eval_transform

    resize = scene_eval_transform(48)
    images = sorted(validation.glob("*/*.jpg"))
    pixels = np.stack(
        [resize(image=np.asarray(Image.open(path), dtype=np.float32))["image"].transpose(2, 0, 1) for path in images]
    )
    fp32, int8 = _logits(fp32_companion(output), pixels), _logits(output, pixels)
    assert np.abs(fp32 - int8).mean() < 0.35 * fp32.std()
    assert json.loads(json.dumps(record)) == record


def test_vitaev2_building_int8_with_foreground_calibration(data_dir, tmp_path):
    """The release ``vitaev2_tiny_test`` building segmenter, calibrated with foreground selection
    on a real GeoTIFF with a nodata border and Xiamen tiles, validated on Xiamen tiles."""
    tiles = tmp_path / "val"
    source = data_dir / "xiamen_buildings" / "val"
    for image in sorted((source / "images").iterdir())[:6]:
        mask = source / "masks" / f"{image.stem}.png"
        for folder, path in (("images", image), ("masks", mask)):
            (tiles / folder).mkdir(parents=True, exist_ok=True)
            (tiles / folder / path.name).write_bytes(path.read_bytes())
    output = tmp_path / "buildings_int8.onnx"
    argv = ["export", str(FIXTURES / "buildings_release_0_1.ckpt"), "-o", str(output), "--no-timing"]
    calibration = ["--calibration", str(data_dir / "geotiff" / "RGB.byte.tif"), str(tiles), "--calibration-size", "4"]
    assert (
        main([*argv, "--int8", *calibration, "--calibration-foreground", "--validate", str(tiles), "--max-drop", "1"])
        == 0
    )
    record = quantize.read_quantization_metadata(output)
    assert record["calibration"]["foreground"] and record["calibration"]["samples"] == 4
    assert record["calibration"]["foreground_fraction"] >= record["calibration"]["candidate_foreground_fraction"]
    assert record["validation"]["metric"] == "iou" and record["validation"]["samples"] == 6
    assert any(size > 1 for size in _per_channel_weight_scales(onnx.load(str(output))))
