"""``rsfm export``: an ONNX model of a task that takes raw pixels and carries its contract."""

from pathlib import Path

import numpy as np
import pytest
import torch

from rsfm.cli import main
from rsfm.tasks.base import load_task

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "release_0_1"
SCENE = FIXTURES / "scene_release_0_1.ckpt"


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


@pytest.mark.slow  # the torch.export-based exporter takes about a minute on 2 CPU cores
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
    for batch, height, width in [(2, 64, 64), (1, 48, 80), (3, 50, 70)]:
        pixels = torch.rand(batch, task.contract.in_chans, height, width, generator=generator) * 255
        with torch.no_grad():
            expected = task.forward_raw(pixels).numpy()
        (logits,) = session.run(None, {"pixels": pixels.numpy()})
        assert logits.shape == expected.shape == (batch, task.contract.num_outputs)
        assert np.abs(logits - expected).max() <= 1e-4
