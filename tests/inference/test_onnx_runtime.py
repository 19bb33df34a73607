"""Exported ONNX models run everywhere a checkpoint runs, with onnxruntime and without torch:
the same probabilities as the checkpoint (``OnnxPredictor`` == ``Predictor``), the same tiled
rasters and polygons from ``predict_raster`` (resumable), the Python predictors, one-line errors
for files that are not rsfm ONNX models, and a run on an install without PyTorch."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import numpy as np
import pytest
import rasterio
from inference_helpers import smooth_image, write_raster

import rsfm
from rsfm.cli import main
from rsfm.inference.onnx_predictor import OnnxPredictor
from rsfm.inference.predictor import Predictor, _resize_scene, load_predictor

ort = pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[2]
TORCH_STACK = ("torch", "torchvision", "lightning", "lightning_fabric", "pytorch_lightning", "timm", "torchgeo")
TORCH_STACK += ("torchmetrics", "albumentations", "segmentation_models_pytorch")
PARITY = 1e-4  # probabilities, ONNX Runtime vs PyTorch


def _export(checkpoint: Path, output: Path) -> Path:
    pytest.importorskip("onnxscript")
    from rsfm.tasks.onnx import export_onnx

    return export_onnx(checkpoint, output)


@pytest.fixture(scope="module")
def conv_onnx(conv_checkpoint, tmp_path_factory) -> Path:
    """The 3-band binary segmenter of ``conv_checkpoint``, exported (a few seconds)."""
    return _export(conv_checkpoint, tmp_path_factory.mktemp("onnx") / "conv.onnx")


@pytest.fixture(scope="module")
def scene_onnx(scene_checkpoint, tmp_path_factory) -> Path:
    """The 3-class scene classifier of ``scene_checkpoint`` (image_size 32), exported."""
    return _export(scene_checkpoint, tmp_path_factory.mktemp("onnx") / "scene.onnx")


def _random_batch(seed: int, batch: int, height: int, width: int, nodata: float = 0.1):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(batch, 3, height, width)).astype(np.uint8)
    valid = rng.random((batch, height, width)) > nodata
    return pixels, valid


# OnnxPredictor == Predictor --------------------------------------------------------------


def test_sessions_run_without_the_cpu_memory_arena(conv_onnx):
    """The arena grows in powers of two and keeps its peak (3.9 against 2.2 GiB for a building
    model at 512 px, batch 8): tiled inference promises bounded memory, so it is off."""
    session = load_predictor(conv_onnx).session
    assert session.get_session_options().enable_cpu_mem_arena is False


@pytest.mark.parametrize("size", [(64, 64), (37, 53)], ids=["tile", "odd-size"])
def test_segmentation_probabilities_equal_the_checkpoint(conv_checkpoint, conv_onnx, size):
    torch_model, onnx_model = load_predictor(conv_checkpoint), load_predictor(conv_onnx)
    assert isinstance(torch_model, Predictor) and isinstance(onnx_model, OnnxPredictor)
    pixels, valid = _random_batch(0, 2, *size)
    expected, actual = torch_model(pixels, valid), onnx_model(pixels, valid)
    assert actual.shape == expected.shape == (2, 1, *size) and actual.dtype == np.float32
    assert np.abs(actual - expected).max() <= PARITY
    # nodata is filled with the band mean before the model, as for the checkpoint
    assert np.abs(onnx_model(pixels) - actual).max() > 1e-3


@pytest.mark.parametrize("size", [(32, 32), (45, 61)], ids=["image-size", "resized"])
def test_scene_probabilities_equal_the_checkpoint(scene_checkpoint, scene_onnx, size):
    torch_model, onnx_model = load_predictor(scene_checkpoint), load_predictor(scene_onnx)
    pixels, valid = _random_batch(1, 3, *size)
    pixels[1] //= 4  # a darker image: not every row has the same class
    expected, actual = torch_model(pixels, valid), onnx_model(pixels, valid)
    assert actual.shape == expected.shape == (3, 3)
    assert np.abs(actual - expected).max() <= PARITY
    np.testing.assert_allclose(actual.sum(axis=1), 1, atol=1e-6)


def test_the_file_carries_the_checkpoints_contract(conv_checkpoint, conv_onnx, scene_checkpoint, scene_onnx):
    from rsfm.tasks.onnx import read_onnx_contract

    for checkpoint, exported in [(conv_checkpoint, conv_onnx), (scene_checkpoint, scene_onnx)]:
        torch_model, onnx_model = Predictor.load(checkpoint), load_predictor(exported)
        assert onnx_model.contract == torch_model.contract == read_onnx_contract(exported)
        for model in (torch_model, onnx_model):
            described = (model.kind, model.in_chans, model.num_outputs, model.class_names, model.default_tile_size())
            assert described == (
                torch_model.contract.task,
                3,
                torch_model.contract.num_outputs,
                list(torch_model.contract.class_names),
                torch_model.contract.image_size or 512,
            )
        assert onnx_model.device == "cpu"


@pytest.mark.parametrize("bands", [1, 2, 3, 4, 5, 6, 10])
def test_scene_resize_is_the_training_evaluation_transform_to_the_bit(bands):
    """OnnxPredictor cannot use albumentations (it imports torch); the resize both predictors
    share is OpenCV's, grouped by band as albumentations groups them."""
    from rsfm.data.transforms import scene_eval_transform

    image = (np.random.default_rng(bands).random((45, 61, bands)) * 255).astype(np.float32)
    expected = scene_eval_transform(32)(image=image)["image"]
    actual = _resize_scene(image, 32)
    assert actual.shape == expected.shape == (32, 32, bands)
    np.testing.assert_array_equal(actual, expected)


def test_a_quantised_export_runs_the_same_way(tmp_path, conv_onnx):
    """An INT8 (QDQ) model quantised from an export keeps its input, output and metadata (plus
    keys of its own) and runs through the same predictor."""
    onnx = pytest.importorskip("onnx")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Calibration(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"pixels": _random_batch(seed, 1, 64, 64)[0].astype(np.float32)} for seed in range(4)])

        def get_next(self):
            return next(self.batches, None)

    quantised = tmp_path / "conv_int8.onnx"
    quantize_static(str(conv_onnx), str(quantised), Calibration(), quant_format=QuantFormat.QDQ)
    model = onnx.load(str(quantised))
    model.metadata_props.add(key="rsfm_quantization", value='{"method": "minmax"}')
    onnx.save_model(model, str(quantised))
    assert {prop.key for prop in model.metadata_props} >= {"rsfm_contract", "rsfm_task", "rsfm_quantization"}

    pixels, valid = _random_batch(3, 2, 48, 80)
    int8, fp32 = load_predictor(quantised), load_predictor(conv_onnx)
    assert any(node.op_type == "QuantizeLinear" for node in model.graph.node)
    difference = np.abs(int8(pixels, valid) - fp32(pixels, valid))
    assert 0 < difference.max() < 0.05  # quantised, not the same graph, and close
    assert rsfm.BuildingExtractor.load(quantised).predict(pixels[0].transpose(1, 2, 0))[0].mask.shape == (48, 80)


# the Python predictors ------------------------------------------------------------------


def test_scene_classifier_and_building_extractor_load_onnx(conv_checkpoint, conv_onnx, scene_checkpoint, scene_onnx):
    images = [smooth_image(3, 40, 50, seed=seed).transpose(1, 2, 0) for seed in range(3)]
    images[1] = images[1] // 3
    from_checkpoint = rsfm.SceneClassifier.load(scene_checkpoint).predict(images)
    from_onnx = rsfm.SceneClassifier.load(scene_onnx).predict(images)
    assert [p.label for p in from_onnx] == [p.label for p in from_checkpoint]
    for onnx_prediction, expected in zip(from_onnx, from_checkpoint):
        assert abs(onnx_prediction.probability - expected.probability) <= PARITY

    extractor = rsfm.BuildingExtractor.load(conv_onnx, threshold=0.4)
    buildings = extractor.predict(images)
    for prediction, expected in zip(buildings, rsfm.BuildingExtractor.load(conv_checkpoint).predict(images)):
        assert np.abs(prediction.probability - expected.probability).max() <= PARITY
        np.testing.assert_array_equal(prediction.mask, (prediction.probability > 0.4).astype(np.uint8))
    assert extractor.device == "cpu" and extractor.class_names == ["building"]
    with pytest.raises(AttributeError, match=r"conv\.onnx: an ONNX model has no PyTorch task"):
        _ = extractor.task


def test_predictors_refuse_an_onnx_model_of_the_other_kind(conv_onnx, scene_onnx):
    with pytest.raises(ValueError, match=r"conv\.onnx: holds a segmentation model, not a scene classification"):
        rsfm.SceneClassifier.load(conv_onnx)
    with pytest.raises(ValueError, match=r"scene\.onnx: holds a classification model, not a building segmentation"):
        rsfm.BuildingExtractor.load(scene_onnx)
    with pytest.raises(ValueError, match="an ONNX model, not a PyTorch checkpoint"):
        rsfm.load_checkpoint(conv_onnx)


# files that are not rsfm ONNX models -----------------------------------------------------


def _one_line_error(callable_, *args):
    with pytest.raises((ValueError, FileNotFoundError)) as caught:
        callable_(*args)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_file_that_is_not_onnx_is_refused_with_one_line(tmp_path, conv_checkpoint):
    text = tmp_path / "notes.onnx"
    text.write_text("not a model\n")
    renamed = tmp_path / "checkpoint.onnx"  # the suffix decides the runtime; the file must then be ONNX
    shutil.copy(conv_checkpoint, renamed)
    for path in (text, renamed):
        message = _one_line_error(load_predictor, path)
        assert message.startswith(f"{path}: not a valid ONNX model") and "rsfm export" in message
    assert "not found" in _one_line_error(load_predictor, tmp_path / "missing.onnx")


def test_an_onnx_model_without_rsfm_metadata_is_refused(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["pixels"], ["logits"])],
        "plain",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
    )
    path = tmp_path / "plain.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    message = _one_line_error(load_predictor, path)
    assert message.startswith(f"{path}: an ONNX model without rsfm metadata ('rsfm_contract')")
    assert "rsfm export" in message

    source = write_raster(tmp_path / "scene.tif", smooth_image(3, 40, 40))
    with pytest.raises(SystemExit) as exit_:
        main(["predict-raster", str(source), "--checkpoint", str(path), "--output", str(tmp_path / "o.tif")])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "without rsfm metadata" in error and not (tmp_path / "o.tif").exists()


def test_onnx_options_that_need_pytorch_are_refused(tmp_path, conv_onnx, monkeypatch):
    source = write_raster(tmp_path / "scene.tif", smooth_image(3, 40, 40))
    output = tmp_path / "out.tif"
    for options, expected in [
        (dict(devices=2), "runs in one process"),
        (dict(num_nodes=2), "runs in one process"),
        (dict(precision="bf16", device="cuda"), "--precision bf16 is for PyTorch checkpoints"),
    ]:
        with pytest.raises(ValueError, match=expected):
            rsfm.predict_raster(source, conv_onnx, output, progress=False, **options)
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ValueError, match="CUDA execution provider.*onnxruntime-gpu"):
            rsfm.predict_raster(source, conv_onnx, output, device="cuda", progress=False)
    assert not output.exists()

    import lightning.fabric

    def no_fabric(*args, **kwargs):
        raise AssertionError("Lightning Fabric started for an ONNX model")

    monkeypatch.setattr(lightning.fabric, "Fabric", no_fabric)
    (result,) = rsfm.predict_raster(source, conv_onnx, output, progress=False)
    assert result.raster == output and output.exists()


# predict_raster with ONNX Runtime == with the checkpoint ---------------------------------


def _compare_rasters(onnx_path: Path, checkpoint_path: Path) -> float:
    """Same format (bands, dtype, nodata, grid, CRS, tags); values within one uint8 level.
    Returns the fraction of values that differ."""
    with rasterio.open(onnx_path) as onnx_raster, rasterio.open(checkpoint_path) as torch_raster:
        onnx_profile, torch_profile = dict(onnx_raster.profile), dict(torch_raster.profile)
        assert onnx_profile == torch_profile
        assert onnx_raster.descriptions == torch_raster.descriptions
        onnx_tags, torch_tags = onnx_raster.tags(), torch_raster.tags()
        assert Path(onnx_tags.pop("rsfm_checkpoint")).suffix == ".onnx"
        assert Path(torch_tags.pop("rsfm_checkpoint")).suffix == ".ckpt"
        assert onnx_tags == torch_tags
        onnx_values, torch_values = onnx_raster.read().astype(int), torch_raster.read().astype(int)
    nodata = torch_values == torch_profile["nodata"]
    np.testing.assert_array_equal(onnx_values == torch_profile["nodata"], nodata)
    difference = np.abs(onnx_values - torch_values)
    assert difference.max() <= 1  # float rounding may move a probability across a uint8 step
    return float((difference > 0).mean())


@pytest.mark.parametrize("output_type", ["probabilities", "classes"])
def test_segmentation_raster_and_polygons_equal_the_checkpoint_run(tmp_path, conv_checkpoint, conv_onnx, output_type):
    image = smooth_image(3, 300, 417, seed=7)
    image[:, 120:150, :] = 0  # a band of nodata across the scene
    source = write_raster(tmp_path / "scene.tif", image, nodata=0)
    outputs = {}
    for name, model in [("onnx", conv_onnx), ("ckpt", conv_checkpoint)]:
        (result,) = rsfm.predict_raster(
            source,
            model,
            tmp_path / f"{name}.tif",
            vector=tmp_path / f"{name}.gpkg",
            tile_size=128,
            overlap=32,
            batch_size=3,
            output_type=output_type,
            progress=False,
        )
        outputs[name] = result
    assert _compare_rasters(outputs["onnx"].raster, outputs["ckpt"].raster) <= 1e-3
    assert outputs["onnx"].polygons > 0 and abs(outputs["onnx"].polygons - outputs["ckpt"].polygons) <= 1


def test_scene_raster_equals_the_checkpoint_run(tmp_path, scene_checkpoint, scene_onnx):
    image = smooth_image(3, 200, 260, seed=8)
    image[:, :, :40] = 0
    source = write_raster(tmp_path / "scene.tif", image, nodata=0)
    for name, model in [("onnx", scene_onnx), ("ckpt", scene_checkpoint)]:
        rsfm.predict_raster(source, model, tmp_path / f"{name}.tif", output_type="probabilities", progress=False)
    assert _compare_rasters(tmp_path / "onnx.tif", tmp_path / "ckpt.tif") <= 1e-2


def test_real_geotiff_equals_the_checkpoint_run(data_dir, tmp_path, conv_checkpoint, conv_onnx):
    """A real scene (Landsat RGB, uint8, nodata outside a rotated footprint) through the CLI."""
    source = data_dir / "geotiff" / "RGB.byte.tif"
    if not source.is_file():
        pytest.skip(f"{source}: shared GeoTIFF not found")
    for name, model in [("onnx", conv_onnx), ("ckpt", conv_checkpoint)]:
        arguments = [
            "predict-raster",
            str(source),
            "--checkpoint",
            str(model),
            "--output",
            str(tmp_path / f"{name}.tif"),
        ]
        assert main([*arguments, "--output-type", "probabilities", "--tile-size", "256", "--quiet"]) == 0
    assert _compare_rasters(tmp_path / "onnx.tif", tmp_path / "ckpt.tif") <= 1e-3


class Interrupted(Exception):
    pass


def test_an_interrupted_onnx_run_resumes(tmp_path, conv_onnx):
    image = smooth_image(3, 600, 200, seed=9)
    source = write_raster(tmp_path / "scene.tif", image)
    settings = dict(tile_size=64, overlap=16, batch_size=4, output_type="probabilities", progress=False)
    reference = tmp_path / "reference.tif"
    rsfm.predict_raster(source, conv_onnx, reference, **settings)

    def stop(path, done, total):
        if done >= 0.5 * total:
            raise Interrupted

    output = tmp_path / "out.tif"
    with pytest.raises(Interrupted):
        rsfm.predict_raster(source, conv_onnx, output, progress_callback=stop, **settings)
    state = json.loads((tmp_path / "out.partial.json").read_text())
    assert state["rows_done"] > 0 and state["settings"]["checkpoint"]["path"] == str(conv_onnx.resolve())
    progress = []
    rsfm.predict_raster(
        source, conv_onnx, output, resume=True, progress_callback=lambda *args: progress.append(args[1]), **settings
    )
    assert progress[0] > 0  # continued, not started over
    with rasterio.open(reference) as first, rasterio.open(output) as second:
        np.testing.assert_array_equal(first.read(), second.read())
        assert first.profile == second.profile
    assert not (tmp_path / "out.partial.tif").exists()


# without torch ---------------------------------------------------------------------------

_NO_TORCH = textwrap.dedent(
    """
    import json, sys

    BLOCKED = set(sys.argv[1].split(",")) - {""}
    STACK = set(sys.argv[2].split(","))

    class NoTorch:
        '''Import hook that makes the PyTorch stack look uninstalled.'''

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoTorch())

    import numpy as np
    from rsfm import BuildingExtractor, SceneClassifier, predict_raster  # noqa: F401
    from rsfm.cli import main

    conv, scene, source, output, checkpoint = sys.argv[3:8]
    status = main(["predict-raster", source, "--checkpoint", conv, "--output", output,
                   "--output-type", "probabilities", "--quiet", "--vector", output + ".gpkg"])
    image = np.full((40, 50, 3), 200, dtype=np.uint8)
    label = SceneClassifier.load(scene).predict(image)[0].label
    probability = BuildingExtractor.load(conv).predict(image)[0].probability
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in STACK)
    ckpt_status = None
    if checkpoint != "-":
        try:
            main(["predict-raster", source, "--checkpoint", checkpoint, "--output", output + ".ckpt.tif"])
        except SystemExit as exit:
            ckpt_status = exit.code
    print(json.dumps(dict(status=status, label=label, mean=float(probability.mean()), loaded=loaded,
                          ckpt_status=ckpt_status)))
    """
)


def _run_onnx_script(tmp_path, blocked, checkpoint, *models_and_rasters):
    script = tmp_path / "onnx_path.py"
    script.write_text(_NO_TORCH)
    arguments = [",".join(blocked), ",".join(TORCH_STACK), *map(str, models_and_rasters), str(checkpoint)]
    run = subprocess.run(
        [sys.executable, str(script), *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1"),
    )
    assert run.returncode == 0, run.stderr
    return run, json.loads(run.stdout.strip().splitlines()[-1])


def test_predict_raster_runs_without_torch(tmp_path, conv_checkpoint, conv_onnx, scene_onnx):
    """The ONNX path imports nothing of the PyTorch stack: with an import hook that makes torch,
    Lightning, timm, torchvision and albumentations look uninstalled, the command line and the
    Python predictors run an exported model, and a checkpoint fails with one line."""
    source = write_raster(tmp_path / "scene.tif", smooth_image(3, 150, 180, seed=10), nodata=0)
    output = tmp_path / "no_torch.tif"
    run, report = _run_onnx_script(tmp_path, TORCH_STACK, conv_checkpoint, conv_onnx, scene_onnx, source, output)
    assert report["status"] == 0 and report["loaded"] == [] and report["ckpt_status"] == 2
    assert "needs PyTorch: pip install 'rsfm[torch]'" in run.stderr
    assert (
        report["label"] == rsfm.SceneClassifier.load(scene_onnx).predict(np.full((40, 50, 3), 200, np.uint8))[0].label
    )

    reference = tmp_path / "reference.tif"
    rsfm.predict_raster(source, conv_onnx, reference, output_type="probabilities", progress=False)
    with rasterio.open(output) as without_torch, rasterio.open(reference) as with_torch:
        np.testing.assert_array_equal(without_torch.read(), with_torch.read())
        assert without_torch.profile == with_torch.profile
    assert Path(str(output) + ".gpkg").is_file()


def test_onnx_path_leaves_installed_torch_unimported(tmp_path, conv_onnx, scene_onnx):
    """With PyTorch installed, running an exported model still imports none of it (about 2 s
    and 250 MiB less than importing it: ``rsfm predict-raster`` on a small .onnx model and the
    791 x 718 RGB.byte.tif took 1.0 s and 0.27 GB instead of 3.9 s and 0.52 GB)."""
    source = write_raster(tmp_path / "scene.tif", smooth_image(3, 150, 180, seed=10), nodata=0)
    _, report = _run_onnx_script(tmp_path, (), "-", conv_onnx, scene_onnx, source, tmp_path / "with_torch.tif")
    assert report["status"] == 0 and report["loaded"] == [] and report["ckpt_status"] is None
    assert importlib.util.find_spec("torch") is not None  # installed, but not imported


@pytest.mark.slow  # installs rsfm[runtime] into a new virtual environment (pip, minutes)
def test_the_runtime_extra_installs_and_runs_without_torch(tmp_path, conv_onnx, scene_onnx):
    """``pip install 'rsfm[runtime]'`` gives an environment without torch that runs
    ``rsfm predict-raster`` and the Python predictors on exported models."""
    project = tmp_path / "project"  # a copy: pip must not write build files into the checkout
    shutil.copytree(REPO / "rsfm", project / "rsfm", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, project / name)
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("VIRTUAL_ENV", "PYTHON"))}
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"{project}[runtime]"],
        capture_output=True,
        text=True,
        timeout=1500,
        env=env,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    no_torch = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True, env=env)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr

    source = write_raster(tmp_path / "scene.tif", smooth_image(3, 150, 180, seed=11), nodata=0)
    output = tmp_path / "out.tif"
    command = [str(environment / "bin" / "rsfm"), "predict-raster", str(source), "--checkpoint", str(conv_onnx)]
    command += ["--output", str(output), "--vector", str(tmp_path / "out.gpkg"), "--output-type", "probabilities"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    reference = tmp_path / "reference.tif"
    rsfm.predict_raster(source, conv_onnx, reference, output_type="probabilities", progress=False)
    with rasterio.open(output) as installed, rasterio.open(reference) as here:
        np.testing.assert_array_equal(installed.read(), here.read())

    classify = "import rsfm, numpy; print(rsfm.SceneClassifier.load(%r).predict(numpy.zeros((40, 40, 3)))[0].label)"
    run = subprocess.run([str(python), "-c", classify % str(scene_onnx)], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == rsfm.SceneClassifier.load(scene_onnx).predict(np.zeros((40, 40, 3)))[0].label
