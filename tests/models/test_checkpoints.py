"""Checkpoint loading: the official reference, the ViTAEv2-S manifest, file formats, safety."""

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import timm
import torch

import rsfm
from rsfm.models import checkpoint_filter_fn, create_model, load_checkpoint_file


def _read_manifest(path: Path) -> dict:
    shapes = {}
    for line in path.read_text().splitlines():
        key, shape, dtype = line.split("\t")
        shapes[key] = (tuple(json.loads(shape)), getattr(torch, dtype))
    return shapes


def _manifest_state_dict(path: Path) -> dict:
    return {key: torch.zeros(shape, dtype=dtype) for key, (shape, dtype) in _read_manifest(path).items()}


# official reference -------------------------------------------------------------------


@pytest.fixture(scope="module")
def expected(reference_dir):
    return torch.load(reference_dir / "vitaev2_tiny_expected.pt", weights_only=True)


@pytest.fixture(scope="module")
def official_model(reference_dir):
    config = json.loads((reference_dir / "vitaev2_tiny_config.json").read_text())
    model = create_model(
        "vitaev2_tiny_test",
        checkpoint=reference_dir / "vitaev2_tiny_official.pt",
        num_classes=config["num_classes"],
    )
    # the registered test model is the reference configuration
    assert model.embed_dims == config["embed_dims"]
    return model.eval()


def test_official_tiny_logits_and_pooled(official_model, reference_dir, expected):
    images = torch.load(reference_dir / "vitaev2_tiny_input.pt", weights_only=True)
    with torch.no_grad():
        features = official_model.forward_features(images)
        pooled = official_model.forward_head(features, pre_logits=True)
        logits = official_model.forward_head(features)
    torch.testing.assert_close(logits, expected["logits"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled, expected["pooled"], atol=1e-5, rtol=1e-5)


def test_official_tiny_stage_and_reduction_maps(official_model, reference_dir, expected):
    x = torch.load(reference_dir / "vitaev2_tiny_input.pt", weights_only=True)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        for index, stage in enumerate(official_model.stages):
            reduced = stage.reduction(x).permute(0, 3, 1, 2)
            torch.testing.assert_close(reduced, expected[f"rc{index}"], atol=5e-5, rtol=1e-5)
            x = stage(x)
            torch.testing.assert_close(x, expected[f"stage{index}"], atol=5e-5, rtol=1e-5)


def test_official_tiny_dense_non_square_window7(reference_dir, expected):
    backbone = create_model(
        "vitaev2_tiny_test",
        checkpoint=reference_dir / "vitaev2_tiny_official.pt",
        features_only=True,
        window_sizes=(7, 7, None, None),
    ).eval()
    images = torch.load(reference_dir / "vitaev2_tiny_dense_input.pt", weights_only=True)
    with torch.no_grad():
        maps = backbone(images)
    for index, feature in enumerate(maps):
        torch.testing.assert_close(feature, expected[f"dense_stage{index}"], atol=5e-5, rtol=1e-5)


def test_wrong_window_size_breaks_the_match(reference_dir, expected):
    """The dense comparison is sensitive: window 4 instead of 7 moves stage-0 features."""
    backbone = create_model(
        "vitaev2_tiny_test", checkpoint=reference_dir / "vitaev2_tiny_official.pt", features_only=True
    ).eval()
    images = torch.load(reference_dir / "vitaev2_tiny_dense_input.pt", weights_only=True)
    with torch.no_grad():
        stage0 = backbone(images)[0]
    assert (stage0 - expected["dense_stage0"]).abs().max() > 1e-3


# ViTAEv2-S manifest --------------------------------------------------------------------


def test_vitaev2_s_manifest_maps_one_to_one(reference_dir):
    official = _manifest_state_dict(reference_dir / "vitaev2_s_rsp_state_dict.tsv")
    assert len(official) == 538
    model = timm.create_model("vitaev2_s", num_classes=51)
    converted = checkpoint_filter_fn(official, model)
    ours = model.state_dict()
    assert set(converted) == set(ours)
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in ours.items()}
    # the only official entries dropped are the never-used relative-position tables/indices
    unused = [key for key in official if "relative_position" in key]
    assert len(unused) == 12 and len(converted) == len(official) - len(unused)
    model.load_state_dict(converted, strict=True)


def test_vitaev2_s_seg_backbone_manifest(reference_dir):
    official = _manifest_state_dict(reference_dir / "vitaev2_s_rsp_seg_backbone_state_dict.tsv")
    # mmseg files keep the backbone under 'backbone.' next to the decoder's weights
    wrapped = {
        "state_dict": {
            **{f"backbone.{k}": v for k, v in official.items()},
            "decode_head.conv_seg.weight": torch.zeros(6, 512, 1, 1),
        }
    }
    model = timm.create_model("vitaev2_s", num_classes=0)
    converted = checkpoint_filter_fn(wrapped, model)
    assert set(converted) == set(model.state_dict())


# file formats and the timm convention ------------------------------------------------


@pytest.fixture
def tiny_rgb_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = timm.create_model("vitaev2_tiny_test", num_classes=5).eval()
    path = tmp_path / "tiny.pth"
    torch.save(model.state_dict(), path)
    return model, path


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"model": sd, "epoch": 3},
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
        lambda sd: {"state_dict": {f"model.backbone.{k}": v for k, v in sd.items()}},
    ],
    ids=["plain", "model", "state_dict+module", "lightning-style"],
)
def test_round_trip_through_any_container(tiny_rgb_checkpoint, tmp_path, wrap):
    model, path = tiny_rgb_checkpoint
    wrapped_path = tmp_path / "wrapped.pth"
    torch.save(wrap(torch.load(path, weights_only=True)), wrapped_path)
    loaded = create_model("vitaev2_tiny_test", checkpoint=wrapped_path, num_classes=5).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images))


def test_timm_pretrained_cfg_overlay_file(tiny_rgb_checkpoint):
    model, path = tiny_rgb_checkpoint
    loaded = timm.create_model(
        "vitaev2_tiny_test", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), num_classes=5
    ).eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images))


def test_classifier_dropped_when_classes_differ(tiny_rgb_checkpoint):
    model, path = tiny_rgb_checkpoint
    loaded = create_model("vitaev2_tiny_test", checkpoint=path, num_classes=9).eval()
    assert loaded.head.out_features == 9
    torch.testing.assert_close(loaded.stages[3].blocks[0].mlp.fc1.weight, model.stages[3].blocks[0].mlp.fc1.weight)
    features = create_model("vitaev2_tiny_test", checkpoint=path, features_only=True).eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(features(images)[-1], model.forward_features(images))


def test_stem_adapted_to_other_band_counts(tiny_rgb_checkpoint):
    """timm's adaptation: 1 band sums the RGB kernels, 6 bands repeat them scaled by 3/6."""
    model, path = tiny_rgb_checkpoint
    gray = torch.randn(1, 1, 64, 64)
    rgb = torch.randn(1, 3, 64, 64)
    one_band = create_model("vitaev2_tiny_test", checkpoint=path, num_classes=5, in_chans=1).eval()
    six_band = create_model("vitaev2_tiny_test", checkpoint=path, num_classes=5, in_chans=6).eval()
    with torch.no_grad():
        torch.testing.assert_close(one_band(gray), model(gray.expand(-1, 3, -1, -1)), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(six_band(torch.cat([rgb, rgb], 1)), model(rgb), atol=1e-5, rtol=1e-4)


def test_mismatched_checkpoint_names_the_file(tiny_rgb_checkpoint):
    _, path = tiny_rgb_checkpoint
    with pytest.raises(RuntimeError, match=str(path.name)):
        create_model("vitaev2_s", checkpoint=path)


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        create_model("vitaev2_tiny_test", checkpoint=tmp_path / "nope.pth")


def test_pretrained_without_local_file_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("RSFM_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as error:
        timm.create_model("vitaev2_s", pretrained=True)
    message = str(error.value)
    assert str(tmp_path / "weights" / "vitaev2_s.rsp_millionaid.pth") in message
    assert "ViTAE-Transformer/RSP" in message and "never downloads" in message


def test_pretrained_from_default_folder(tiny_rgb_checkpoint, tmp_path, monkeypatch):
    model, path = tiny_rgb_checkpoint
    monkeypatch.setenv("RSFM_HOME", str(tmp_path))
    (tmp_path / "weights").mkdir()
    path.rename(tmp_path / "weights" / "vitaev2_tiny_test.untrained.pth")
    loaded = rsfm.create_model("vitaev2_tiny_test", pretrained=True, num_classes=5).eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images))


def test_not_a_checkpoint_names_the_file(tmp_path):
    bogus = tmp_path / "weights.pth"
    bogus.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="weights.pth"):
        load_checkpoint_file(bogus)


# RSP training checkpoints with a pickled yacs config -----------------------------------

FAKE_YACS = '''
class CfgNode(dict):
    """Same pickling shape as yacs.config.CfgNode: a dict subclass with __dict__ flags."""
    def __init__(self, init_dict=None):
        super().__init__(init_dict or {})
        self.__dict__["__immutable__"] = False
        self.__dict__["__deprecated_keys__"] = set()
'''

WRITE_RSP_CHECKPOINT = """
import sys, torch, os
from yacs.config import CfgNode
state = torch.load(sys.argv[1], weights_only=True)
config = CfgNode({"MODEL": CfgNode({"TYPE": "ViTAE_Window_NoShift_12_basic_stages4_14", "DROP_PATH_RATE": 0.1}),
                  "DATA": CfgNode({"IMG_SIZE": 224})})

torch.save({"model": state, "optimizer": {"state": {}, "param_groups": []}, "lr_scheduler": {},
            "max_accuracy": 98.97, "epoch": 99, "config": config}, sys.argv[2])
"""


def test_rsp_checkpoint_with_yacs_config_loads_without_yacs(tiny_rgb_checkpoint, tmp_path):
    """Hostile variants of such files are in tests/security/test_checkpoint_code.py."""
    model, path = tiny_rgb_checkpoint
    (tmp_path / "fake_site" / "yacs").mkdir(parents=True)
    (tmp_path / "fake_site" / "yacs" / "__init__.py").write_text("")
    (tmp_path / "fake_site" / "yacs" / "config.py").write_text(textwrap.dedent(FAKE_YACS))
    rsp_file = tmp_path / "ckpt.pth"
    subprocess.run(
        [sys.executable, "-c", WRITE_RSP_CHECKPOINT, str(path), str(rsp_file)],
        check=True,
        env={"PYTHONPATH": str(tmp_path / "fake_site"), "PATH": "/usr/bin:/bin"},
    )
    with pytest.raises(pickle.UnpicklingError, match="yacs.config.CfgNode"):
        torch.load(rsp_file, weights_only=True)  # what plain torch does with such a file

    checkpoint = load_checkpoint_file(rsp_file)
    assert "yacs" not in sys.modules
    assert checkpoint["epoch"] == 99 and checkpoint["max_accuracy"] == pytest.approx(98.97)
    assert checkpoint["config"]["MODEL"]["DROP_PATH_RATE"] == 0.1
    assert "yacs.config.CfgNode" in repr(checkpoint["config"])
    with pytest.raises(TypeError, match="read-only"):
        checkpoint["config"]["MODEL"]["DROP_PATH_RATE"] = 0.5

    loaded = create_model("vitaev2_tiny_test", checkpoint=rsp_file, num_classes=5).eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images))
