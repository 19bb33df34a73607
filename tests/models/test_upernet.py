"""UperNet decoder and SegmentationModel: shapes, any size/bands, any timm backbone, freezing,
stage-wise learning-rate decay, backbone initialisation from a checkpoint file, and pyramid
pooling that stays exact in exported graphs."""

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.models import group_parameters
from timm.optim import create_optimizer_v2
from torch import nn

from rsfm.models.upernet import (
    AdaptiveAvgPool2d,
    PyramidPoolingModule,
    SegmentationModel,
    UperNetDecoder,
    _stage_of_parameters,
    adaptive_avg_pool2d,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def _tiny(**kwargs) -> SegmentationModel:
    return SegmentationModel("vitaev2_tiny_test", decoder_channels=8, **kwargs)


def test_decoder_fuses_at_finest_resolution() -> None:
    decoder = UperNetDecoder((4, 8, 16), channels=6).eval()
    maps = [torch.randn(2, 4, 20, 13), torch.randn(2, 8, 10, 7), torch.randn(2, 16, 5, 4)]
    assert decoder(maps).shape == (2, 6, 20, 13)


def test_decoder_names_the_expected_channels() -> None:
    decoder = UperNetDecoder((4, 8))
    with pytest.raises(ValueError, match=r"channels \(4, 8\), got \(4, 9\)"):
        decoder([torch.randn(1, 4, 8, 8), torch.randn(1, 9, 4, 4)])
    with pytest.raises(ValueError, match="at least two encoder maps"):
        UperNetDecoder((4,))


@pytest.mark.parametrize("size", [(64, 64), (50, 77), (33, 40)])
def test_logits_at_input_resolution_for_any_size(size) -> None:
    model = _tiny().eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, *size)).shape == (2, 1, *size)


def test_any_band_count_and_a_clear_error_for_the_wrong_one() -> None:
    model = _tiny(in_chans=5, num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 5, 40, 40)).shape == (1, 3, 40, 40)
    with pytest.raises(ValueError, match=r"expected a \(B, 5, H, W\) tensor.*in_chans=3"):
        model(torch.randn(1, 3, 40, 40))


def test_any_timm_backbone() -> None:
    model = SegmentationModel("resnet18", decoder_channels=8, out_indices=(1, 2, 3, 4)).eval()
    assert model.decoder.encoder_channels == (64, 128, 256, 512)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 70, 45)).shape == (1, 1, 70, 45)


def test_gradients_reach_the_first_backbone_stage() -> None:
    model = _tiny()
    model(torch.randn(2, 3, 32, 32)).mean().backward()
    first = next(model.backbone.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0


def test_frozen_backbone_does_not_change() -> None:
    model = _tiny(freeze_backbone=True).train()
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert not model.backbone.training and model.decoder.training
    backbone_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = model.head.weight.clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.randn(2, 3, 32, 32)).mean().backward()
    optimizer.step()
    for key, value in model.backbone.state_dict().items():  # weights and norm statistics
        assert torch.equal(value, backbone_before[key]), key
    assert not torch.equal(model.head.weight, head_before)


def test_stage_wise_learning_rate_decay() -> None:
    model = _tiny()
    groups = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.5).param_groups
    grouped = [p for g in groups for p in g["params"]]
    assert len(grouped) == len(list(model.parameters())) == len({id(p) for p in grouped})
    scale_of = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert len(model.backbone.feature_info.module_name()) == 4
    stage_in_name = re.compile(r"backbone\.(?:model\.)?stages[._](\d)\.")  # FeatureListNet or getter spelling
    seen = set()
    for name, param in model.named_parameters():
        stage = stage_in_name.match(name)
        if stage:  # stage i of 4 gets 0.5 ** (4 - i): the decoder/head rate over the earliest stage's is 0.5 ** 4
            seen.add(int(stage.group(1)))
            assert scale_of[id(param)] == 0.5 ** (4 - int(stage.group(1))), name
        else:
            assert name.startswith(("decoder.", "head.")) and scale_of[id(param)] == 1.0, name
        assert decay_of[id(param)] == (0.05 if param.ndim > 1 else 0.0), name
    assert seen == {0, 1, 2, 3}
    frozen = create_optimizer_v2(_tiny(freeze_backbone=True), "adamw", weight_decay=0.05, layer_decay=0.5)
    assert {g["lr_scale"] for g in frozen.param_groups} == {1.0}  # only decoder and head train


def test_stage_ids_follow_feature_modules_of_a_getter_wrapper() -> None:
    model = SegmentationModel(
        "vit_tiny_patch16_224",
        decoder_channels=8,
        out_indices=(2, 5, 8, 11),
        backbone_kwargs=dict(dynamic_img_size=True),
    )
    stage_of, num_stages = _stage_of_parameters(model.backbone)
    assert num_stages == 4
    layer_of = group_parameters(model, model.group_matcher(), reverse=True)  # what timm's layer decay uses
    assert layer_of["backbone.model.patch_embed.proj.weight"] == 0 and layer_of["head.weight"] == 4
    assert stage_of["model.patch_embed.proj.weight"] == 0
    assert stage_of["model.blocks.2.mlp.fc2.weight"] == 0
    assert stage_of["model.blocks.3.attn.qkv.weight"] == 1
    assert stage_of["model.blocks.11.mlp.fc2.weight"] == 3
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 48, 64)).shape == (1, 1, 48, 64)


def test_backbone_initialised_from_an_exported_checkpoint(tmp_path) -> None:
    source = _tiny()
    nn.init.constant_(next(source.backbone.parameters()), 0.25)
    state = {f"backbone.{k.replace('stages_', 'stages.')}": v for k, v in source.backbone.state_dict().items()}
    path = tmp_path / "backbone.pt"
    torch.save(state, path)
    model = _tiny(backbone_checkpoint=path)
    for (key, value), expected in zip(model.backbone.state_dict().items(), source.backbone.state_dict().values()):
        assert torch.equal(value, expected), key
    assert torch.all(next(model.backbone.parameters()) == 0.25)


# Sizes whose pooling bins divide them or not, in either direction, and grids finer than the map.
POOLED_SIZES = [(1, 1), (2, 3), (5, 7), (16, 16), (16, 22), (13, 17), (7, 9)]


@pytest.mark.parametrize("bins", [1, 2, 3, 6])
def test_exportable_pooling_has_the_native_bins(bins) -> None:
    for height, width in POOLED_SIZES:
        x = (torch.randn(2, 4, height, width) * 3).contiguous(memory_format=torch.channels_last)
        expected = F.adaptive_avg_pool2d(x, bins)
        torch.testing.assert_close(adaptive_avg_pool2d(x, bins), expected, rtol=0, atol=2e-6)
        assert torch.equal(AdaptiveAvgPool2d(bins)(x), expected)  # eager mode runs the native op


def test_pyramid_pooling_exports_exactly_at_sizes_unlike_the_example(tmp_path) -> None:
    # torch's decomposition of adaptive_avg_pool2d branches on the example's size: the exported
    # graph then averaged the wrong pixels (or failed) at other sizes.
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    module = PyramidPoolingModule(8, 4, pool_scales=(1, 2, 3, 6)).eval()
    dynamic = torch.export.Dim.DYNAMIC
    with torch.no_grad():
        program = torch.onnx.export(
            module,
            (torch.randn(2, 8, 5, 7),),
            dynamo=True,
            input_names=["x"],
            dynamic_shapes={"x": {0: dynamic, 2: dynamic, 3: dynamic}},
            verbose=False,
        )
    program.save(str(tmp_path / "ppm.onnx"))
    session = ort.InferenceSession(str(tmp_path / "ppm.onnx"), providers=["CPUExecutionProvider"])
    for height, width in POOLED_SIZES:
        x = torch.randn(1, 8, height, width)
        with torch.no_grad():
            expected = module(x).numpy()
        (got,) = session.run(None, {"x": x.numpy()})
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= 1e-5, (height, width)
