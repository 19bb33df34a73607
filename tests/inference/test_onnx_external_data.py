"""Hostile ONNX models (security tests beside the inference fixtures they use): weights kept as external data that name files outside the model's folder
(``../``, an absolute path, a symlink out) are refused before anything is read, with one line
naming the model; an onnxruntime that would read them is refused too."""

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio

import rsfm
from rsfm.cli import main as rsfm_main
from rsfm.tasks import onnx_metadata

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

SECRET = b"not-for-models" * 64


@pytest.fixture(scope="module")
def exported(conv_checkpoint, tmp_path_factory) -> Path:
    """The small segmenter of ``conv_checkpoint`` as rsfm export writes it (one file)."""
    from rsfm.tasks.onnx import export_onnx

    return export_onnx(conv_checkpoint, tmp_path_factory.mktemp("onnx") / "buildings.onnx")


def _with_external_weights(model: Path, folder: Path, location: str, data_path: Path) -> Path:
    """A copy of ``model`` in ``folder`` whose largest weight is read from ``location`` (as the
    model says it), its bytes written to ``data_path`` (where that location really leads)."""
    proto = onnx.load(str(model))
    tensor = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
    assert len(tensor.raw_data) >= 64  # a real weight moves out
    data_path.parent.mkdir(parents=True, exist_ok=True)
    data_path.write_bytes(tensor.raw_data)
    onnx.external_data_helper.set_external_data(tensor, location=location, offset=0, length=len(tensor.raw_data))
    tensor.ClearField("raw_data")
    folder.mkdir(parents=True, exist_ok=True)
    destination = folder / "model.onnx"
    destination.write_bytes(proto.SerializeToString())
    return destination


@pytest.fixture
def image(tmp_path) -> Path:
    pixels = np.random.default_rng(0).integers(0, 256, (3, 48, 40), dtype=np.uint8)
    path = tmp_path / "scene.tif"
    profile = dict(driver="GTiff", width=40, height=48, count=3, dtype="uint8", crs="EPSG:32616")
    with rasterio.open(
        path, "w", transform=rasterio.transform.from_origin(733600, 3725000, 0.5, 0.5), **profile
    ) as dst:
        dst.write(pixels)
    return path


def test_weights_beside_the_model_run_as_the_single_file(tmp_path, exported, image):
    """External data inside the model's folder is legitimate (large models need it) and gives
    the same map as the one-file model."""
    folder = tmp_path / "beside"
    model = _with_external_weights(exported, folder, "weights.bin", folder / "weights.bin")
    first, second = tmp_path / "single.tif", tmp_path / "beside.tif"
    rsfm.predict_raster(image, exported, first, output_type="probabilities", progress=False)
    rsfm.predict_raster(image, model, second, output_type="probabilities", progress=False)
    with rasterio.open(first) as a, rasterio.open(second) as b:
        np.testing.assert_array_equal(a.read(), b.read())


@pytest.mark.parametrize("kind", ["parent", "absolute", "symlink"])
def test_weights_outside_the_folder_are_refused(tmp_path, exported, image, kind, capsys):
    """A model that names a weight file out of its folder is refused with one line, by the API
    and the command line, and writes nothing."""
    outside = tmp_path / "private" / "secret.bin"
    folder = tmp_path / "download"
    if kind == "parent":
        model = _with_external_weights(exported, folder, "../private/secret.bin", outside)
    elif kind == "absolute":
        model = _with_external_weights(exported, folder, str(outside), outside)
    else:
        model = _with_external_weights(exported, folder, "weights.bin", outside)
        os.symlink(outside, folder / "weights.bin")
    secret = outside.read_bytes()
    output = tmp_path / "out" / "map.tif"
    output.parent.mkdir()
    with pytest.raises(ValueError, match="refused: the model reads weights from a file outside its folder") as error:
        rsfm.predict_raster(image, model, output, progress=False)
    assert str(model) in str(error.value)
    with pytest.raises(SystemExit) as exit_info:
        rsfm_main(["predict-raster", str(image), "--checkpoint", str(model), "--output", str(output)])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and str(model) in message and "outside its folder" in message
    with pytest.raises(ValueError, match="outside its folder"):
        rsfm.BuildingExtractor.load(model)
    assert list(output.parent.iterdir()) == [] and outside.read_bytes() == secret


def test_an_onnxruntime_that_reads_outside_files_is_refused(monkeypatch, exported):
    """onnxruntime < 1.24.1 reads such files (1.20.1 and 1.23.2 did, measured): rsfm refuses to
    open any model with it, saying which version to install."""
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "__version__", "1.23.2")
    with pytest.raises(ImportError, match=r"onnxruntime 1\.23\.2 .* pip install 'onnxruntime>=1\.24\.1'"):
        onnx_metadata.open_onnx_session(exported)
    monkeypatch.setattr(onnxruntime, "__version__", "1.24.1")
    assert onnx_metadata.open_onnx_session(exported).get_inputs()[0].name == onnx_metadata.INPUT_NAME
