"""ViTAEv2 follows timm's model contract: what timm's own ``tests/test_models.py`` checks, at tiny size.

The fast tests below check the same properties with rsfm's code: forward and backward, the
default config fields, ``features_only`` through timm's getter wrapper, ``forward_intermediates``
(``indices``, ``norm``, ``intermediates_only``, ``stop_early``) against the stage maps,
``prune_intermediate_layers``, TorchScript and torch.fx.

``test_timm_suite`` runs timm's own file against the ``vitaev2_*`` models when
``RSFM_TIMM_TESTS`` names a copy of it (skipped otherwise). To reproduce, take the file at the
tag of the installed timm (``.venv/bin/pip show timm``; the closest earlier tag if that one
is missing) and point the variable at it::

    git clone --filter=blob:none --no-checkout https://github.com/huggingface/pytorch-image-models /tmp/timm_src
    mkdir -p /tmp/timm_tests
    git -C /tmp/timm_src show v1.0.28:tests/test_models.py > /tmp/timm_tests/test_models.py
    RSFM_TIMM_TESTS=/tmp/timm_tests/test_models.py OMP_NUM_THREADS=1 \\
        .venv/bin/python -m pytest tests/models/test_timm_conformance.py -k timm_suite -rs

It writes a ``conftest.py`` (``TIMM_SUITE_CONFTEST``) next to a copy of the file and runs
``pytest test_models.py -k vitaev2`` in a subprocess (about 1-2 minutes on 2 cores).
"""

import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

import rsfm.models  # registers the family
from rsfm.models.vitaev2 import VARIANTS, ViTAEv2

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = "vitaev2_tiny_test"
REPO = Path(__file__).resolve().parents[2]


def _tiny(**kwargs) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(TINY, **kwargs)


def _stage_maps(model: ViTAEv2, images: torch.Tensor) -> list:
    """What each stage outputs, by running ``model.stages`` one after the other."""
    x = images.contiguous(memory_format=torch.channels_last)
    maps = []
    for stage in model.stages:
        x = stage(x)
        maps.append(x)
    return maps


def _assert_equal_maps(got, expected) -> None:
    assert len(got) == len(expected)
    for index, (a, b) in enumerate(zip(got, expected)):
        assert a.shape == b.shape, index
        assert torch.equal(a, b), f"map {index} differs by {(a - b).abs().max():.3g}"


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    # not a multiple of the strides or of the window: the padding paths run too
    return torch.randn(2, 3, 65, 97, generator=torch.Generator().manual_seed(0))


# forward, backward, default config ------------------------------------------------------


def test_forward_and_backward_reach_every_parameter() -> None:
    """timm's test_model_backward: every parameter gets a gradient, outputs are finite."""
    model = _tiny(num_classes=42).train()
    outputs = model(torch.randn(2, 3, 64, 64))
    assert outputs.shape == (2, 42) and torch.isfinite(outputs).all()
    outputs.mean().backward()
    missing = [name for name, param in model.named_parameters() if param.grad is None]
    assert not missing


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_default_cfg_fields_match_the_model(name) -> None:
    """timm's test_model_default_cfgs, without the forward (the model is built on 'meta')."""
    cfg = timm.models.get_pretrained_cfg(name).to_dict()
    with torch.device("meta"):
        model = timm.create_model(name)
    assert model.pretrained_cfg["architecture"] == name
    assert model.num_classes == cfg["num_classes"] > 0
    assert model.num_features == model.head_hidden_size == model.feature_info[-1]["num_chs"]
    stride = model.feature_info[-1]["reduction"]
    assert cfg["pool_size"] == tuple(math.ceil(size / stride) for size in cfg["input_size"][1:])
    keys = set(model.state_dict())
    first_conv = [cfg["first_conv"]] if isinstance(cfg["first_conv"], str) else cfg["first_conv"]
    assert first_conv and all(f"{conv}.weight" in keys for conv in first_conv)
    assert f"{cfg['classifier']}.weight" in keys
    for field in ("input_size", "interpolation", "crop_pct", "mean", "std"):
        assert cfg.get(field), field


def test_forward_features_pool_size_and_classifier_reset() -> None:
    """The forward half of test_model_default_cfgs, on the tiny model at its cfg input size."""
    model = _tiny().eval()
    cfg = model.pretrained_cfg
    images = torch.randn(1, *cfg["input_size"])
    with torch.no_grad():
        features = model.forward_features(images)
        pre_logits = model.forward_head(features, pre_logits=True)
        assert features.shape[1:] == (model.num_features, *cfg["pool_size"])
        assert pre_logits.shape == (1, model.head_hidden_size)
        model.reset_classifier(0)
        assert model.num_classes == 0
        torch.testing.assert_close(model(images), pre_logits)
        model.reset_classifier(0, "")
        assert model(images).shape == features.shape
        unpooled = _tiny(num_classes=0, global_pool="").eval()
        assert unpooled(images).shape == features.shape


# features_only: timm's getter wrapper --------------------------------------------------


def test_features_only_uses_the_getter_and_keeps_feature_info(images) -> None:
    model = _tiny().eval()
    backbone = _tiny(features_only=True).eval()
    assert type(backbone).__name__ == "FeatureGetterNet" and isinstance(backbone.model, ViTAEv2)
    assert backbone.feature_info.channels() == [8, 16, 32, 64]
    assert backbone.feature_info.reduction() == [4, 8, 16, 32]
    assert backbone.feature_info.module_name() == [f"stages.{i}" for i in range(4)]
    assert not any(key.startswith("model.head") for key in backbone.state_dict())  # head pruned
    with torch.no_grad():
        maps = backbone(images)
        _assert_equal_maps(maps, _stage_maps(model, images))
    for feature, stride in zip(maps, backbone.feature_info.reduction()):
        assert feature.shape[-2:] == (math.ceil(65 / stride), math.ceil(97 / stride))


def test_features_only_out_indices_prune_later_stages(images) -> None:
    model = _tiny().eval()
    with torch.no_grad():
        expected = _stage_maps(model, images)
        early = _tiny(features_only=True, out_indices=(0, 1)).eval()
        assert len(early.model.stages) == 2  # stages 2-3 are never computed, nor stored
        assert early.feature_info.channels() == [8, 16] and early.feature_info.reduction() == [4, 8]
        _assert_equal_maps(early(images), expected[:2])
        sparse = _tiny(features_only=True, out_indices=(1, -1)).eval()
        assert sparse.feature_info.reduction() == [8, 32]
        _assert_equal_maps(sparse(images), [expected[1], expected[3]])


def test_fx_feature_extraction_matches_the_getter(images) -> None:
    """torch.fx traces the model (timm's fx tests and ``feature_cls='fx'``) to the same maps."""
    fx_backbone = _tiny(features_only=True, feature_cls="fx").eval()
    getter = _tiny(features_only=True).eval()
    with torch.no_grad():
        _assert_equal_maps(fx_backbone(images), getter(images))


def test_features_only_loads_rsfm_0_1_feature_list_keys(tmp_path, images) -> None:
    """rsfm 0.1 saved features_only models with timm's FeatureListNet names ('stages_0.')."""
    source = _tiny(features_only=True).eval()
    old_layout = {
        re.sub(r"^model\.stages\.(\d+)\.", r"stages_\1.", key): value for key, value in source.state_dict().items()
    }
    assert "stages_0.reduction.norm1.weight" in old_layout
    torch.manual_seed(1)
    target = timm.create_model(TINY, features_only=True).eval()
    target.load_state_dict(old_layout, strict=True)
    path = tmp_path / "features_0_1.pth"
    torch.save(old_layout, path)
    plain = rsfm.models.create_model(TINY, checkpoint=path, num_classes=0).eval()
    with torch.no_grad():
        _assert_equal_maps(target(images), source(images))
        torch.testing.assert_close(plain.forward_features(images), source(images)[-1])


# forward_intermediates -----------------------------------------------------------------


def test_forward_intermediates_are_the_stage_maps(images) -> None:
    model = _tiny().eval()
    with torch.no_grad():
        expected = _stage_maps(model, images)
        final, maps = model.forward_intermediates(images)
        _assert_equal_maps(maps, expected)
        assert torch.equal(final, model.forward_features(images))
        _assert_equal_maps(model.forward_intermediates(images, intermediates_only=True), expected)
        # no final norm in ViTAEv2: norm=True is accepted and changes nothing
        _assert_equal_maps(model.forward_intermediates(images, norm=True, intermediates_only=True), expected)


@pytest.mark.parametrize(
    "indices,stages",
    [(None, [0, 1, 2, 3]), (2, [2, 3]), (4, [0, 1, 2, 3]), ([0, 2], [0, 2]), ((1, -1), [1, 3]), ([-4], [0])],
)
def test_forward_intermediates_indices(images, indices, stages) -> None:
    model = _tiny().eval()
    with torch.no_grad():
        expected = _stage_maps(model, images)
        maps = model.forward_intermediates(images, indices=indices, intermediates_only=True)
    _assert_equal_maps(maps, [expected[i] for i in stages])


def test_forward_intermediates_stop_early_skips_later_stages(images) -> None:
    model = _tiny().eval()
    calls = []
    model.stages[2].register_forward_hook(lambda *args: calls.append(2))
    with torch.no_grad():
        expected = _stage_maps(model, images)
        calls.clear()
        final, maps = model.forward_intermediates(images, indices=[0, 1], stop_early=True)
    assert calls == []
    _assert_equal_maps(maps, expected[:2])
    assert torch.equal(final, expected[1])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(indices=[4]), "0..3"),
        (dict(indices=0), "last 1 to 4"),
        (dict(indices=5), "last 1 to 4"),
        (dict(output_fmt="NHWC"), "NCHW"),
    ],
)
def test_forward_intermediates_rejects_what_it_cannot_do(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        _tiny().forward_intermediates(torch.randn(1, 3, 32, 32), **kwargs)


def test_forward_intermediates_match_the_official_stage_maps(reference_dir) -> None:
    expected = torch.load(reference_dir / "vitaev2_tiny_expected.pt", weights_only=True)
    images = torch.load(reference_dir / "vitaev2_tiny_input.pt", weights_only=True)
    model = rsfm.models.create_model(
        TINY, checkpoint=reference_dir / "vitaev2_tiny_official.pt", num_classes=expected["logits"].shape[1]
    ).eval()
    with torch.no_grad():
        final, maps = model.forward_intermediates(images)
    for index, feature in enumerate(maps):
        torch.testing.assert_close(feature, expected[f"stage{index}"], atol=5e-5, rtol=1e-5)
    torch.testing.assert_close(model.forward_head(final), expected["logits"], atol=1e-5, rtol=1e-5)


# prune_intermediate_layers -------------------------------------------------------------


def test_prune_intermediate_layers_then_forward(images) -> None:
    model = _tiny(num_classes=5).eval()
    with torch.no_grad():
        expected = _stage_maps(model, images)
    assert model.prune_intermediate_layers([0, -3]) == [0, 1]
    assert len(model.stages) == 2 and isinstance(model.head, nn.Identity)
    assert model.num_classes == 0 and model.num_features == model.head_hidden_size == 16
    with torch.no_grad():
        assert torch.equal(model(images), expected[1])  # unpooled map of the last kept stage
        _assert_equal_maps(model.forward_intermediates(images, intermediates_only=True), expected[:2])


def test_prune_keeps_the_classifier_when_asked_and_nothing_is_cut(images) -> None:
    model = _tiny(num_classes=5).eval()
    with torch.no_grad():
        logits = model(images)
        assert model.prune_intermediate_layers(4, prune_norm=True, prune_head=False) == [0, 1, 2, 3]
        assert len(model.stages) == 4 and torch.equal(model(images), logits)
        model.prune_intermediate_layers(1)  # default prune_head=True: the features, unpooled
        assert model(images).shape == (2, 64, 3, 4)


# TorchScript ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning")
def test_torchscript_matches_eager(images) -> None:
    """timm's test_model_forward_torchscript, with the values checked too."""
    model = _tiny(num_classes=3).eval()
    scripted = torch.jit.script(model)
    with torch.no_grad():
        # scripted cells run BatchNorm unfolded: the same maths, not the same rounding
        torch.testing.assert_close(scripted(images), model(images), atol=1e-5, rtol=1e-4)


def test_rsfm_imports_only_public_timm_modules() -> None:
    """timm's underscore modules (``timm.models._builder``...) change between releases."""
    private = re.compile(r"\btimm(?:\.[A-Za-z]\w*)*\._\w+")
    offenders = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in sorted((REPO / "rsfm").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if private.search(line.split("#", 1)[0])
    ]
    assert not offenders, "use what timm.models / timm.layers export instead:\n" + "\n".join(offenders)


# timm's own test file -------------------------------------------------------------------

# Written next to the copy of timm's tests/test_models.py. Imports rsfm.models first (it
# registers vitaev2_* and must run before timm imports torchvision), then adds rsfm's module
# to the module list that selects timm's forward_intermediates tests (FEAT_INTER_FILTERS), as
# timm does for its own models that gain forward_intermediates.
TIMM_SUITE_CONFTEST = """\
import rsfm.models  # noqa: F401
import timm

_list_models = timm.list_models


def _list_models_with_vitaev2(*args, module="", **kwargs):
    if isinstance(module, (list, tuple)):
        module = [*module, "vitaev2"]
    return _list_models(*args, module=module, **kwargs)


timm.list_models = _list_models_with_vitaev2


def pytest_configure(config):
    for marker in ("base", "cfg", "torchscript", "features", "fxforward", "fxbackward", "timeout"):
        config.addinivalue_line("markers", f"{marker}: timm test marker")
"""

# Every timm test that selects standard CNN-like models must run (and pass) for vitaev2.
TIMM_TESTS_EXPECTED = (
    "test_model_forward",
    "test_model_backward",
    "test_model_default_cfgs",
    "test_model_forward_torchscript",
    "test_model_forward_features",
    "test_model_forward_intermediates_features",
    "test_model_forward_intermediates",
    "test_model_forward_fx",
    "test_model_backward_fx",
    "test_model_forward_fx_torchscript",
)
# timm tests that never select vitaev2, and why (in the manner of timm's *_FILTERS lists).
TIMM_TESTS_NOT_APPLICABLE = {
    "test_model_inference": "list_pretrained('test_*'): compares with timm's reference tensors on the Hugging Face Hub",
    "test_model_load_pretrained": "list_models(pretrained=True): models with downloadable weights; rsfm "
    "never downloads, local RSP files are tested in test_checkpoints.py",
    "test_model_features_pretrained": "same as test_model_load_pretrained",
    "test_model_default_cfgs_non_std": "NON_STD_FILTERS (token-output transformers); ViTAEv2 has NCHW "
    "features and runs test_model_default_cfgs",
    "test_model_forward_torchscript_with_features_fx": "parametrised with regnetx_002 only",
}


@pytest.mark.slow
def test_timm_suite(tmp_path) -> None:
    source = os.environ.get("RSFM_TIMM_TESTS")
    if not source:
        pytest.skip(
            "RSFM_TIMM_TESTS is not set: point it at timm's tests/test_models.py for the installed "
            "timm version (see this module's docstring)"
        )
    if not Path(source).is_file():
        pytest.fail(f"RSFM_TIMM_TESTS={source}: no such file")
    shutil.copy(source, tmp_path / "test_models.py")
    (tmp_path / "conftest.py").write_text(TIMM_SUITE_CONFTEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # keeps rsfm's pytest options out
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "test_models.py", "-k", "vitaev2", "-p", "no:cacheprovider", "-q", "-rfEsp"],
        cwd=tmp_path,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-6000:]
    passed = set(re.findall(r"^PASSED test_models\.py::(\w+)\[[^\]]*vitaev2_tiny_test", report, re.MULTILINE))
    missing = [name for name in TIMM_TESTS_EXPECTED if name not in passed]
    assert not missing, f"timm tests that did not pass for vitaev2_tiny_test: {missing}\n{report[-3000:]}"
