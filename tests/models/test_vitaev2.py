"""ViTAEv2 through timm: every variant, any size and band count, the timm model interface."""

import math

import pytest
import timm
import torch

import rsfm.models  # noqa: F401  (registers the family)
from rsfm.models.vitaev2 import NormalCell, ReductionCell, infer_variant

VARIANTS = ["vitaev2_tiny_test", "vitaev2_xs", "vitaev2_s", "vitaev2_48m", "vitaev2_b"]


def _tiny(**kwargs):
    torch.manual_seed(0)
    return timm.create_model("vitaev2_tiny_test", **kwargs)


def test_all_variants_registered():
    assert set(VARIANTS) <= set(timm.list_models("vitaev2*"))


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_forward_backward(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=7)
    images = torch.randn(2, 3, 64, 64)
    logits = model(images)
    assert logits.shape == (2, 7)
    logits.square().mean().backward()
    params = dict(model.named_parameters())
    # every cell type of every stage receives gradient
    for key in ("stages.0.reduction.pyramid.convs.0.weight", "stages.3.blocks.0.attn.qkv.weight", "head.weight"):
        assert params[key].grad is not None and params[key].grad.abs().sum() > 0, key


def test_vitaev2_s_matches_official_size():
    model = timm.create_model("vitaev2_s", num_classes=51)
    # official 18,870,203 includes 1,352 never-used relative-position table entries
    assert sum(p.numel() for p in model.parameters()) == 18_870_203 - 1_352
    assert model.feature_info[-1]["num_chs"] == 512
    maps = timm.create_model("vitaev2_s", features_only=True)(torch.randn(1, 3, 224, 224))
    assert [tuple(m.shape[1:]) for m in maps] == [(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]


def test_vitaev2_xs_is_a_small_s():
    """The CPU variant: S's cells at half the widths, under 6 M parameters with or without a head."""
    backbone = timm.create_model("vitaev2_xs", num_classes=0)
    assert sum(p.numel() for p in backbone.parameters()) <= 6_000_000
    assert sum(p.numel() for p in timm.create_model("vitaev2_xs").parameters()) <= 6_000_000  # 1000 classes
    assert backbone.embed_dims == [32, 64, 128, 256]
    cells = [type(module).__name__ for module in backbone.modules()]
    assert cells.count("ReductionCell") == 4 and cells.count("NormalCell") == 8
    # normal cells attend with 32-wide heads (S: 64 at twice the width)
    assert {module.attn.head_dim for module in backbone.modules() if isinstance(module, NormalCell)} == {32}
    assert infer_variant(backbone.state_dict()) == "vitaev2_xs"
    maps = timm.create_model("vitaev2_xs", features_only=True).eval()(torch.randn(1, 3, 50, 70))
    assert [tuple(m.shape[1:]) for m in maps] == [(32, 13, 18), (64, 7, 9), (128, 4, 5), (256, 2, 3)]


@pytest.mark.parametrize("height,width", [(64, 96), (65, 97), (33, 50), (17, 17), (7, 130)])
def test_any_input_size(height, width):
    model = _tiny(features_only=True).eval()
    maps = model(torch.randn(1, 3, height, width))
    for feature, stride in zip(maps, model.feature_info.reduction()):
        assert feature.shape[-2:] == (math.ceil(height / stride), math.ceil(width / stride))


def test_padding_matches_official_rounding_where_official_works():
    """A 4k+3 input needs no padding in the official code; our pad must not change the result."""
    model = _tiny(num_classes=0).eval()
    images = torch.randn(1, 3, 67, 67)
    cell = model.stages[0].reduction
    with torch.no_grad():
        direct = cell.conv_branch(images)
        via_cell_pad = cell.conv_branch(torch.nn.functional.pad(images, (0, 1, 0, 1)))
    torch.testing.assert_close(direct, via_cell_pad)


@pytest.mark.parametrize("in_chans", [1, 4, 13])
def test_any_band_count(in_chans):
    model = _tiny(in_chans=in_chans, num_classes=3)
    assert model(torch.randn(2, in_chans, 48, 40)).shape == (2, 3)


def test_wrong_band_count_is_a_clear_error():
    model = _tiny()
    with pytest.raises(ValueError, match="in_chans=4"):
        model(torch.randn(1, 4, 64, 64))


def test_batch_size_one_and_eval_is_deterministic():
    model = _tiny().eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(images), model(images))


def test_features_only_matches_feature_info():
    backbone = _tiny(features_only=True, out_indices=(1, 2, 3))
    maps = backbone(torch.randn(2, 3, 64, 96))
    assert backbone.feature_info.channels() == [m.shape[1] for m in maps] == [16, 32, 64]
    assert backbone.feature_info.reduction() == [8, 16, 32]
    for feature, stride in zip(maps, backbone.feature_info.reduction()):
        assert feature.shape[-2:] == (64 // stride, 96 // stride)


def test_forward_features_and_head():
    model = _tiny(num_classes=5).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(images)
        assert features.shape == (2, 64, 2, 2)
        pooled = model.forward_head(features, pre_logits=True)
        torch.testing.assert_close(pooled, features.mean(dim=(2, 3)))
        torch.testing.assert_close(model.forward_head(features), model(images))


def test_reset_classifier():
    model = _tiny(num_classes=5)
    model.reset_classifier(11)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 11)
    assert model.get_classifier().out_features == 11
    model.reset_classifier(0)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 64)


def test_drop_path_reaches_every_cell():
    model = _tiny(drop_path_rate=0.3)
    cells = [cell for stage in model.stages for cell in (stage.reduction, *stage.blocks)]
    rates = [cell.drop_path.drop_prob if hasattr(cell.drop_path, "drop_prob") else 0.0 for cell in cells]
    expected = torch.linspace(0, 0.3, len(cells)).tolist()
    assert rates == pytest.approx(expected)
    assert isinstance(cells[0], ReductionCell) and isinstance(cells[1], NormalCell)
    # stochastic depth really acts in training: two passes differ, eval passes agree
    model.train()
    images = torch.randn(4, 3, 32, 32)
    assert not torch.allclose(model(images), model(images))


def test_grad_checkpointing_same_gradients():
    images = torch.randn(2, 3, 64, 64)
    grads = []
    for enable in (False, True):
        model = _tiny(num_classes=4)
        model.set_grad_checkpointing(enable)
        model(images).square().sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, msg=name)


def test_group_matcher_covers_every_parameter():
    model = _tiny()
    from timm.models import group_parameters

    groups = group_parameters(model, model.group_matcher(coarse=False))
    grouped = {name for names in groups.values() for name in names}
    assert grouped == {name for name, _ in model.named_parameters()}
    assert len(groups) > 4


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore:.*torch.jit.trace.*:DeprecationWarning")
def test_jit_trace_matches_eager():
    model = _tiny().eval()
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        traced = torch.jit.trace(model, images)
        torch.testing.assert_close(traced(images), model(images))


def test_torch_compile_matches_eager():
    model = _tiny().eval()
    images = torch.randn(2, 3, 64, 64)
    compiled = torch.compile(model)
    # compile in this process: inductor's pool of compile workers has deadlocked when forked
    # from a pytest process that already ran Lightning's multi-process tests
    from torch._inductor import config as inductor_config

    with torch.no_grad(), inductor_config.patch(compile_threads=1):
        torch.testing.assert_close(compiled(images), model(images), atol=1e-5, rtol=1e-4)


def test_exported_stage_sizes_are_plain_ceilings():
    """torch.export with dynamic height/width: every stage's size must stay a nest of ceiling
    divisions of the input size. Padding written as ``(-size) % multiple`` gave modulo terms
    that compounded stage after stage (exports of this tiny model took 3 minutes)."""
    model = _tiny().eval()
    model.reset_classifier(0, "")  # the last stage's map
    dynamic = torch.export.Dim.DYNAMIC
    with torch.no_grad():
        program = torch.export.export(
            model, (torch.rand(2, 3, 64, 80),), dynamic_shapes=({0: dynamic, 2: dynamic, 3: dynamic},)
        )
    (output,) = [node for node in program.graph.nodes if node.op == "output"][0].args[0]
    height, width = (str(size) for size in output.meta["val"].shape[2:])
    assert "Mod" not in height + width
    assert height.count("//") == 4 and width.count("//") == 4  # one ceiling per stage
    # (the ONNX files of such programs match PyTorch at sizes unlike the example's: test_onnx_export)


def test_fuse_batchnorm_once_keeps_the_outputs():
    model = timm.create_model("vitaev2_tiny_test", num_classes=4)
    with torch.no_grad():  # running statistics that are not the identity
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
    images = torch.randn(2, 3, 64, 80)
    with pytest.raises(ValueError, match="model.eval"):
        rsfm.models.fuse_batchnorm(model)
    model.eval()
    with torch.no_grad():
        before = model(images)
        rsfm.models.fuse_batchnorm(model)
        after = model(images)
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in model.modules())
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
