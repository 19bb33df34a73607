"""``rsfm export``: an ONNX model of a task that takes raw pixels and carries its contract,
and gives the logits of PyTorch at any batch and image size, whatever the backbone."""

import time
from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np
import pytest
import torch

from rsfm.cli import main
from rsfm.tasks import BuildingSegmentationTask, ChangeDetectionTask, SceneClassificationTask
from rsfm.tasks.base import BaseTask, load_task

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "release_0_1"
SCENE = FIXTURES / "scene_release_0_1.ckpt"
BUILDINGS = FIXTURES / "buildings_release_0_1.ckpt"
STATS = dict(mean=[90.0, 100.0, 80.0], std=[40.0, 45.0, 50.0])
# The bound on ONNX Runtime vs PyTorch logits; measured differences are ~1e-7.
TOLERANCE = 1e-4


def _save(task: BaseTask, path: Path) -> Path:
    """Write ``task`` as ``rsfm fit`` does (weights-only Lightning checkpoint with its contract)."""
    from lightning.pytorch import Trainer

    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(path, weights_only=True)
    return path


def _onnx_differences(
    checkpoint: Path, output: Path, sizes: Sequence[Tuple[int, int, int]]
) -> Dict[Tuple[int, int, int], float]:
    """Export ``checkpoint`` once, then the max abs logit difference ONNX Runtime vs PyTorch
    for each (batch, height, width) of raw pixels in 0-255."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from rsfm.tasks.onnx import export_onnx

    started = time.perf_counter()
    export_onnx(checkpoint, output)
    print(f"{checkpoint.name}: exported in {time.perf_counter() - started:.0f} s")
    task = load_task(checkpoint).eval()
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    differences = {}
    for batch, height, width in sizes:
        pixels = torch.rand(batch, task.contract.input_channels, height, width, generator=generator) * 255
        with torch.no_grad():
            expected = task.forward_raw(pixels).numpy()
        (logits,) = session.run(None, {"pixels": pixels.numpy()})
        assert logits.shape == expected.shape
        differences[batch, height, width] = float(np.abs(logits - expected).max())
    print(", ".join(f"{b}x{h}x{w}: {d:.1e}" for (b, h, w), d in differences.items()))
    return differences


def test_refuses_to_overwrite_its_input(tmp_path, capsys):
    checkpoint = tmp_path / "scene.ckpt"
    checkpoint.write_bytes(SCENE.read_bytes())
    assert main(["export", str(checkpoint), "--output", str(checkpoint)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("rsfm export:") and "input checkpoint" in error and "\n" not in error
    assert checkpoint.read_bytes() == SCENE.read_bytes()


def test_missing_checkpoint_is_one_line_exit_2(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope.ckpt"), "--output", str(tmp_path / "model.onnx")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("rsfm export:") and "nope.ckpt" in error and "\n" not in error
    assert not list(tmp_path.iterdir())


def test_help_lists_the_command(capsys):
    assert main(["--help"]) == 0
    assert "export " in capsys.readouterr().out


def test_scene_classifier_matches_pytorch_at_several_sizes(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    from rsfm.tasks.onnx import read_onnx_contract

    output = tmp_path / "out" / "scene.onnx"
    assert main(["export", str(SCENE), "--output", str(output)]) == 0
    assert output.exists() and not list(output.parent.glob("*.partial"))
    task = load_task(SCENE)
    assert read_onnx_contract(output) == task.contract
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    for batch, height, width in [(2, 64, 64), (1, 48, 80), (3, 50, 70), (1, 100, 130), (2, 77, 93)]:
        pixels = torch.rand(batch, task.contract.input_channels, height, width, generator=generator) * 255
        with torch.no_grad():
            expected = task.forward_raw(pixels).numpy()
        (logits,) = session.run(None, {"pixels": pixels.numpy()})
        assert logits.shape == expected.shape == (batch, task.contract.num_outputs)
        assert np.abs(logits - expected).max() <= 1e-4


# Sizes no multiple of the backbone stride (32): the pyramid pooling bins no longer divide the
# coarsest map, which is where the exported UperNet used to differ (or fail).
ODD_SIZES = [(2, 100, 130), (1, 77, 93), (1, 64, 64), (2, 33, 47)]


def test_resnet_scene_classifier_matches_pytorch_at_odd_sizes(tmp_path, single_thread):
    torch.manual_seed(0)
    task = SceneClassificationTask(
        backbone="resnet18", class_names=["field", "forest", "town"], in_chans=3, image_size=64, **STATS
    )
    differences = _onnx_differences(_save(task, tmp_path / "scene.ckpt"), tmp_path / "scene.onnx", ODD_SIZES)
    assert max(differences.values()) <= TOLERANCE, differences


def test_resnet_building_model_matches_pytorch_at_odd_sizes(tmp_path, single_thread):
    torch.manual_seed(0)
    task = BuildingSegmentationTask(
        backbone="resnet18", out_indices=(1, 2, 3, 4), decoder_channels=16, num_overlays=0, **STATS
    )
    differences = _onnx_differences(_save(task, tmp_path / "buildings.ckpt"), tmp_path / "buildings.onnx", ODD_SIZES)
    assert max(differences.values()) <= TOLERANCE, differences


def test_vitaev2_building_model_matches_pytorch_at_odd_sizes(tmp_path):
    differences = _onnx_differences(BUILDINGS, tmp_path / "buildings.onnx", [*ODD_SIZES, (1, 128, 96)])
    assert max(differences.values()) <= TOLERANCE, differences


def test_change_model_matches_pytorch_and_runs_in_the_change_detector(tmp_path, single_thread):
    from rsfm import ChangeDetector
    from rsfm.tasks.onnx import export_onnx

    torch.manual_seed(0)
    task = ChangeDetectionTask(
        backbone="vitaev2_tiny_test", decoder_channels=16, num_overlays=0, before_mean=[60.0, 70.0, 80.0], **STATS
    )
    checkpoint = _save(task, tmp_path / "change.ckpt")
    differences = _onnx_differences(checkpoint, tmp_path / "change.onnx", ODD_SIZES)
    assert max(differences.values()) <= TOLERANCE, differences
    rng = np.random.default_rng(0)
    before, after = rng.integers(0, 256, (2, 70, 90, 3), dtype=np.uint8)
    exported = ChangeDetector.load(tmp_path / "change.onnx").predict(before, after)
    expected = ChangeDetector.load(checkpoint).predict(before, after)
    np.testing.assert_allclose(exported.probability, expected.probability, atol=1e-5)
    with pytest.raises(ValueError, match="a change model reads two dates; INT8 calibration"):
        export_onnx(checkpoint, tmp_path / "change_int8.onnx", int8=True, calibration=tmp_path)


@pytest.mark.slow  # about a minute on 2 CPU cores: exporting vitaev2_s
def test_vitaev2_s_scene_classifier_matches_pytorch(tmp_path):
    torch.manual_seed(0)
    task = SceneClassificationTask(
        backbone="vitaev2_s", class_names=[f"class {i}" for i in range(10)], in_chans=3, image_size=224, **STATS
    )
    sizes = [(2, 224, 224), (1, 256, 320)]
    differences = _onnx_differences(_save(task, tmp_path / "scene.ckpt"), tmp_path / "scene.onnx", sizes)
    assert max(differences.values()) <= TOLERANCE, differences


@pytest.mark.slow  # about a minute on 2 CPU cores: exporting vitaev2_s with its UperNet decoder
def test_vitaev2_s_building_model_matches_pytorch(tmp_path):
    torch.manual_seed(0)
    task = BuildingSegmentationTask(backbone="vitaev2_s", image_size=512, num_overlays=0, **STATS)
    sizes = [(1, 512, 512), (1, 500, 700)]
    differences = _onnx_differences(_save(task, tmp_path / "buildings.ckpt"), tmp_path / "buildings.onnx", sizes)
    assert max(differences.values()) <= TOLERANCE, differences
