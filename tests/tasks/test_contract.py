"""The input contract: written into every checkpoint, read back as it was written, and derived
on read for checkpoints of rsfm 0.1, which load and compute what they computed then."""

from pathlib import Path

import pytest
import torch

from rsfm.tasks import load_task
from rsfm.tasks.contract import CONTRACT_KEY, CONTRACT_VERSION, InputContract

RELEASE = Path(__file__).resolve().parents[1] / "fixtures" / "release_0_1"


@pytest.fixture(scope="module")
def expected():
    return torch.load(RELEASE / "release_0_1_expected.pt", weights_only=True)


@pytest.mark.parametrize("name", ["scene", "buildings"])
def test_release_0_1_checkpoints_load_and_compute_the_same(name, expected):
    assert CONTRACT_KEY not in torch.load(RELEASE / f"{name}_release_0_1.ckpt", weights_only=True)
    task = load_task(RELEASE / f"{name}_release_0_1.ckpt")
    with torch.no_grad():
        logits = task.forward_raw(expected[name]["input"])
    torch.testing.assert_close(logits, expected[name]["logits"], atol=1e-5, rtol=1e-5)


def test_release_0_1_contracts_are_derived_on_read():
    scene = load_task(RELEASE / "scene_release_0_1.ckpt").contract
    assert (scene.task, scene.class_names, scene.num_outputs, scene.image_size) == (
        "classification",
        ("field", "forest", "town"),
        3,
        48,
    )
    assert scene.mean == (90.0, 100.0, 80.0) and scene.pixel_range is None and scene.version == CONTRACT_VERSION
    buildings = load_task(RELEASE / "buildings_release_0_1.ckpt").contract
    assert (buildings.task, buildings.num_outputs, buildings.binary, buildings.image_size) == (
        "segmentation",
        1,
        True,
        None,
    )
    assert buildings.class_names == ("background", "building") and buildings.std == (40.0, 45.0, 50.0)


def test_a_checkpoint_saved_today_carries_its_contract(tmp_path):
    task = load_task(RELEASE / "scene_release_0_1.ckpt")
    from lightning.pytorch import Trainer

    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(tmp_path / "resaved.ckpt", weights_only=True)
    saved = torch.load(tmp_path / "resaved.ckpt", weights_only=True)
    assert InputContract.from_dict(saved[CONTRACT_KEY]) == task.contract
    assert saved[CONTRACT_KEY]["class_names"] == ["field", "forest", "town"]  # plain lists in the file

    altered = dict(saved, **{CONTRACT_KEY: {**saved[CONTRACT_KEY], "class_names": ["a", "b", "c"]}})
    torch.save(altered, tmp_path / "altered.ckpt")
    with pytest.raises(ValueError, match="altered.ckpt: its 'rsfm_contract' disagrees with its hyperparameters"):
        load_task(tmp_path / "altered.ckpt")
    newer = dict(saved, **{CONTRACT_KEY: {**saved[CONTRACT_KEY], "version": CONTRACT_VERSION + 1}})
    torch.save(newer, tmp_path / "newer.ckpt")
    with pytest.raises(ValueError, match="newer.ckpt: written by a newer rsfm .* upgrade rsfm"):
        load_task(tmp_path / "newer.ckpt")


def test_contract_round_trip_and_checks():
    contract = InputContract(
        task="segmentation",
        in_chans=2,
        mean=(1.0, 2.0),
        std=(3.0, 4.0),
        class_names=("background", "building"),
        num_outputs=1,
        bands=(4, 3),
        pixel_range={"dtype": "uint16", "min": 0.0, "max": 4095.0},
        image_size=256,
        mask_values="0/255",
        pixel_size=0.3,
    )
    assert InputContract.from_dict(contract.to_dict()) == contract
    with pytest.raises(ValueError, match="mean and std need one value per band"):
        InputContract(task="segmentation", in_chans=3, mean=(1.0,), std=(1.0,), class_names=("b",), num_outputs=1)
    with pytest.raises(ValueError, match="task must be"):
        InputContract(task="detection", in_chans=1, mean=(1.0,), std=(1.0,), class_names=("b",), num_outputs=1)
    with pytest.raises(ValueError, match=r"file.ckpt: 'rsfm_contract' has unknown fields \['colour'\]"):
        InputContract.from_dict({**contract.to_dict(), "colour": "red"}, source="file.ckpt")
    with pytest.raises(ValueError, match="malformed"):
        InputContract.from_dict({**contract.to_dict(), "mean": "abc"}, source="file.ckpt")
