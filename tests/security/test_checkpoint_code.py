"""Task checkpoints from strangers: the file names its task, but never the code that runs.

Each hostile file is a real torch checkpoint built here. Every test asserts that the marker
file the payload would create never appears, and the legitimate checkpoints still load."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

import rsfm
from rsfm.cli.predict_raster import main as predict_raster_main
from rsfm.tasks import BuildingSegmentationTask, SceneClassificationTask, load_task, register_task


def _hostile_task_checkpoint(path: Path, task: str, hyper_parameters: dict) -> Path:
    """Only strings, lists and dicts: it passes ``torch.load(weights_only=True)``."""
    torch.save({"rsfm_task": task, "state_dict": {}, "hyper_parameters": hyper_parameters}, path)
    return path


@pytest.fixture
def shell_command_checkpoint(tmp_path):
    """Loaded by the old ``load_task``, this ran ``subprocess.run(args=["touch", marker])``."""
    marker = tmp_path / "code_ran"
    path = _hostile_task_checkpoint(tmp_path / "evil.ckpt", "subprocess:run", {"args": ["touch", str(marker)]})
    return path, marker


@pytest.mark.parametrize(
    "load",
    [rsfm.load_checkpoint, load_task, rsfm.SceneClassifier.load, rsfm.BuildingExtractor.load],
    ids=["load_checkpoint", "load_task", "SceneClassifier.load", "BuildingExtractor.load"],
)
def test_task_named_by_the_file_is_never_imported(shell_command_checkpoint, load):
    path, marker = shell_command_checkpoint
    with pytest.raises(ValueError, match="'subprocess:run', which is not a registered rsfm task"):
        load(path)
    assert not marker.exists()


def test_predict_raster_refuses_the_checkpoint_in_one_line(shell_command_checkpoint, tmp_path, capsys):
    path, marker = shell_command_checkpoint
    scene = tmp_path / "scene.tif"
    with rasterio.open(scene, "w", driver="GTiff", width=32, height=32, count=3, dtype="uint8") as dataset:
        dataset.write(np.full((3, 32, 32), 120, dtype=np.uint8))
    with pytest.raises(SystemExit) as exit_info:
        predict_raster_main([str(scene), "--checkpoint", str(path), "--output", str(tmp_path / "out.tif"), "--quiet"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "not a registered rsfm task" in error
    assert not marker.exists() and not (tmp_path / "out.tif").exists()


def test_module_level_names_of_rsfm_itself_are_not_tasks(tmp_path):
    """A name that imports fine (rsfm.cli.export:main) is still only looked up, not imported."""
    path = _hostile_task_checkpoint(tmp_path / "evil.ckpt", "rsfm.cli.export:main", {"argv": ["--help"]})
    with pytest.raises(ValueError, match="not a registered rsfm task"):
        load_task(path)


def test_hyperparameters_are_checked_against_the_task(building_checkpoint, tmp_path):
    checkpoint = torch.load(building_checkpoint, weights_only=True)
    for name, value, message in [
        ("shell", "touch x", r"\['shell'\] are not arguments of BuildingSegmentationTask"),
        ("in_chans", "3; rm -rf /", "in_chans='3; rm -rf /' does not fit"),
        ("mean", {"class_path": "subprocess.Popen"}, "does not fit"),
        ("class_names", [b"bytes"], "holds a bytes"),
    ]:
        altered = dict(checkpoint, hyper_parameters={**checkpoint["hyper_parameters"], name: value})
        torch.save(altered, tmp_path / "altered.ckpt")
        with pytest.raises(ValueError, match=message):
            load_task(tmp_path / "altered.ckpt")


def test_legitimate_checkpoints_still_load(building_checkpoint, scene_task_checkpoint):
    """Checkpoints of this release (``rsfm_task`` = ``module:qualname``) load as before."""
    assert torch.load(building_checkpoint, weights_only=True)["rsfm_task"] == (
        "rsfm.tasks.segmentation:BuildingSegmentationTask"
    )
    buildings = rsfm.BuildingExtractor.load(building_checkpoint)
    assert isinstance(buildings.task, BuildingSegmentationTask)
    image = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    prediction = buildings.predict(image)[0]
    assert prediction.mask.shape == (40, 48) and 0 <= prediction.probability.min() <= prediction.probability.max() <= 1
    scenes = rsfm.SceneClassifier.load(scene_task_checkpoint)
    assert isinstance(scenes.task, SceneClassificationTask) and scenes.class_names == ["field", "town"]
    assert sum(scenes.predict(image)[0].probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_a_task_registered_by_the_user_loads(building_checkpoint, tmp_path):
    class MyBuildings(BuildingSegmentationTask):
        pass

    checkpoint = torch.load(building_checkpoint, weights_only=True)
    name = f"{MyBuildings.__module__}:{MyBuildings.__qualname__}"
    torch.save(dict(checkpoint, rsfm_task=name), tmp_path / "mine.ckpt")
    with pytest.raises(ValueError, match="rsfm.tasks.register_task"):
        load_task(tmp_path / "mine.ckpt")
    register_task(MyBuildings)
    assert type(load_task(tmp_path / "mine.ckpt")) is MyBuildings
    with pytest.raises(ValueError, match="already registered"):
        register_task(
            type(
                "MyBuildings",
                (BuildingSegmentationTask,),
                {"__qualname__": MyBuildings.__qualname__, "__module__": MyBuildings.__module__},
            )
        )


def test_a_fresh_process_imports_nothing_the_file_names(tmp_path):
    """End to end in a clean interpreter: a module named by the file is never imported."""
    module_dir = tmp_path / "site"
    module_dir.mkdir()
    marker = tmp_path / "imported"
    (module_dir / "evil_tasks.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Task: pass\n")
    path = _hostile_task_checkpoint(tmp_path / "evil.ckpt", "evil_tasks:Task", {})
    script = "import sys, rsfm\ntry:\n    rsfm.load_checkpoint(sys.argv[1])\nexcept ValueError as e:\n    print(e)\n"
    completed = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(module_dir), "PATH": "/usr/bin:/bin", "NO_ALBUMENTATIONS_UPDATE": "1"},
    )
    assert "not a registered rsfm task" in completed.stdout, completed.stderr[-2000:]
    assert not marker.exists()
