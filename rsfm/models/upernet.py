"""UperNet: a timm ``features_only`` encoder + pyramid pooling + FPN decoder + a 1x1 head.

The decoder is written against the encoder's channel tuple and knows nothing of which backbone
produced the maps (segmentation_models_pytorch style). ``SegmentationModel`` joins any timm
backbone (ViTAEv2 by default) to it and returns logits at the input resolution.

Reference: Xiao et al., "Unified Perceptual Parsing for Scene Understanding", ECCV 2018; the
layout follows mmsegmentation's ``UPerHead`` (PPM on the coarsest map, FPN lateral/top-down
fusion, 3x3 convs, concatenation at the finest map, 3x3 fuse conv).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Type, Union

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct
from torch import nn

from rsfm.models.factory import create_model

__all__ = ["AdaptiveAvgPool2d", "PyramidPoolingModule", "UperNetDecoder", "SegmentationModel", "adaptive_avg_pool2d"]


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    # Symbolic sizes (torch.export, ONNX export) always interpolate, an identity at equal sizes:
    # comparing them would bake the example input's size into the graph.
    if all(isinstance(value, int) for value in (*x.shape[-2:], *size)) and tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _bin_sums(size: Union[int, torch.SymInt], bins: int, like: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(bins, size) 0/1 matrix of which positions each adaptive-pooling bin covers, and the
    (bins,) bin lengths, with PyTorch's bin edges: bin i spans
    [floor(i * size / bins), ceil((i + 1) * size / bins))."""
    index = torch.arange(bins, device=like.device)
    start = torch.div(index * size, bins, rounding_mode="floor")
    end = torch.div((index + 1) * size + bins - 1, bins, rounding_mode="floor")
    position = torch.arange(size, device=like.device)
    inside = (position >= start[:, None]) & (position < end[:, None])
    return inside.to(like.dtype), (end - start).to(like.dtype)


def adaptive_avg_pool2d(x: torch.Tensor, output_size: int) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, output_size)`` as two products with 0/1 bin matrices.

    Same bins and values (to float rounding, ~1e-7 relative), and it exports with dynamic
    height and width. The native op does not: torch's decomposition of it, which torch.export
    and the ONNX exporter trace, branches on the example input's size (whether the bins divide
    it, how long the longest bin is), so the graph averages the wrong pixels, or fails, at other
    sizes. Slower than the native op in eager mode and lower precision under autocast, hence
    only used while exporting (see :class:`AdaptiveAvgPool2d`).
    """
    rows, row_lengths = _bin_sums(x.shape[-2], output_size, x)
    cols, col_lengths = _bin_sums(x.shape[-1], output_size, x)
    sums = torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))
    return sums / (row_lengths[:, None] * col_lengths[None, :])


class AdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` to a square grid that stays exact in exported graphs.

    Eager mode runs the native op; torch.export and ONNX export trace
    :func:`adaptive_avg_pool2d`, which computes the same bins for every input size.
    """

    def __init__(self, output_size: int) -> None:
        super().__init__()
        self.output_size = int(output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export():
            return adaptive_avg_pool2d(x, self.output_size)
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class PyramidPoolingModule(nn.Module):
    """PSPNet pooling: average-pool to several grid sizes, project, upsample, concatenate, fuse.

    Args:
        in_channels: channels of the input map.
        channels: channels of each pooled branch and of the output.
        pool_scales: output grid sizes of the adaptive average pools (cells per side).
        norm_layer: normalisation after each convolution.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        norm_layer: Type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(
                AdaptiveAvgPool2d(scale),
                ConvNormAct(in_channels, channels, 1, norm_layer=norm_layer),
            )
            for scale in pool_scales
        )
        self.bottleneck = ConvNormAct(in_channels + len(pool_scales) * channels, channels, 3, norm_layer=norm_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [_resize(branch(x), size) for branch in self.branches]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))


class UperNetDecoder(nn.Module):
    """UperNet decoder over a pyramid of encoder maps, finest first.

    Args:
        encoder_channels: channels of each encoder map, finest (highest resolution) first,
            e.g. ``(64, 128, 256, 512)`` for maps at strides 4/8/16/32.
        channels: width of every decoder convolution and of the output map.
        pool_scales: pyramid pooling grid sizes applied to the coarsest map.
        norm_layer: normalisation after each convolution.

    Raises:
        ValueError: fewer than two encoder maps.

    The output has ``channels`` channels at the resolution of the finest encoder map.
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        channels: int = 256,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        norm_layer: Type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.encoder_channels = tuple(int(c) for c in encoder_channels)
        if len(self.encoder_channels) < 2:
            raise ValueError(
                f"UperNetDecoder needs at least two encoder maps, got channels "
                f"{self.encoder_channels}; pass more out_indices to the backbone"
            )
        self.out_channels = channels
        *fine_channels, coarsest_channels = self.encoder_channels
        self.ppm = PyramidPoolingModule(coarsest_channels, channels, pool_scales, norm_layer)
        self.lateral_convs = nn.ModuleList(ConvNormAct(c, channels, 1, norm_layer=norm_layer) for c in fine_channels)
        self.fpn_convs = nn.ModuleList(ConvNormAct(channels, channels, 3, norm_layer=norm_layer) for _ in fine_channels)
        self.fuse = ConvNormAct(len(self.encoder_channels) * channels, channels, 3, norm_layer=norm_layer)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Encoder maps (finest first) -> (B, channels, H_finest, W_finest) fused map."""
        got = tuple(f.shape[1] for f in features)
        if got != self.encoder_channels:
            raise ValueError(
                f"UperNetDecoder was built for encoder maps with channels {self.encoder_channels}, "
                f"got {got}; build the decoder from the backbone's feature_info.channels()"
            )
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, features[:-1])]
        laterals.append(self.ppm(features[-1]))
        for i in range(len(laterals) - 1, 0, -1):  # top-down: coarse context into finer maps
            laterals[i - 1] = laterals[i - 1] + _resize(laterals[i], laterals[i - 1].shape[-2:])
        outputs = [conv(lateral) for conv, lateral in zip(self.fpn_convs, laterals[:-1])]
        outputs.append(laterals[-1])
        size = outputs[0].shape[-2:]
        return self.fuse(torch.cat([_resize(o, size) for o in outputs], dim=1))


def _stage_of_parameters(backbone: nn.Module) -> Tuple[Dict[str, int], int]:
    """Feature stage (0 = first returned map) of each backbone parameter, in forward order.

    Parameters inside the module that returns feature map ``i`` belong to stage ``i``;
    parameters registered before it (stems, earlier blocks) also belong to stage ``i``, and
    any after the last returned map belong to the last stage. Works for every timm feature
    wrapper because it only uses ``feature_info.module_name()`` and registration order.
    """
    modules = backbone.feature_info.module_name()
    # FeatureListNet flattens 'stages.0' into 'stages_0'; getter wrappers add a 'model.' prefix.
    spellings = [{name, name.replace(".", "_")} for name in modules]
    stage_of, current = {}, 0
    for name, _ in backbone.named_parameters():
        dotted = "." + name
        inside = [i for i, names in enumerate(spellings) if any(f".{spelled}." in dotted for spelled in names)]
        if inside:
            current = inside[0]
        stage_of[name] = min(current, len(modules) - 1)
        if inside:
            current = inside[0] + 1
    return stage_of, len(modules)


class SegmentationModel(nn.Module):
    """A timm backbone (``features_only``) + UperNet decoder + 1x1 classifier.

    Args:
        backbone: timm model name (``'vitaev2_s'``, ``'vitaev2_tiny_test'``, ``'resnet50'``...).
        num_classes: output channels; 1 for binary building / background (one logit).
        in_chans: input bands; pretrained RGB stems are adapted.
        backbone_checkpoint: local backbone weights (official RSP file, ``rsfm
            export-backbone`` output or any timm-compatible state dict, see
            ``rsfm.create_model``). ``None`` leaves the backbone randomly initialised.
        out_indices: which backbone stages feed the decoder (timm's default when ``None``;
            e.g. ``(1, 2, 3, 4)`` for ResNets to skip the stride-2 map).
        decoder_channels: width of the UperNet decoder.
        pool_scales: pyramid pooling grid sizes.
        dropout: channel dropout before the classifier.
        freeze_backbone: keep backbone weights and normalisation statistics fixed.
        backbone_kwargs: extra ``timm.create_model`` arguments (e.g. ``drop_path_rate``).

    ``forward`` maps (B, in_chans, H, W) normalised images of any size to (B, num_classes, H, W)
    logits.
    """

    def __init__(
        self,
        backbone: str = "vitaev2_s",
        num_classes: int = 1,
        in_chans: int = 3,
        backbone_checkpoint: Optional[Union[str, os.PathLike]] = None,
        out_indices: Optional[Sequence[int]] = None,
        decoder_channels: int = 256,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
        freeze_backbone: bool = False,
        backbone_kwargs: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        kwargs: Dict[str, Any] = dict(backbone_kwargs or {}, features_only=True, in_chans=in_chans)
        if out_indices is not None:
            kwargs["out_indices"] = tuple(out_indices)
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.backbone = create_model(backbone, checkpoint=backbone_checkpoint, **kwargs)
        self.decoder = UperNetDecoder(self.backbone.feature_info.channels(), decoder_channels, pool_scales)
        self.dropout = nn.Dropout2d(dropout)
        self.head = nn.Conv2d(decoder_channels, num_classes, kernel_size=1)
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> "SegmentationModel":
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()  # frozen means frozen normalisation statistics too
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) normalised image -> (B, num_classes, H, W) logits."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"expected a (B, {self.in_chans}, H, W) tensor, got shape {tuple(x.shape)}; "
                f"build the model with in_chans={x.shape[1] if x.ndim == 4 else '?'} "
                "or select bands to match"
            )
        features = self.backbone(x)
        logits = self.head(self.dropout(self.decoder(features)))
        return _resize(logits, x.shape[-2:])

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Callable[[str], int]:
        """Layer id of each parameter name for timm's layer-wise learning-rate decay.

        ``timm.optim.create_optimizer_v2(model, layer_decay=d)`` calls this (timm's
        ``group_matcher`` interface) and scales the rate of layer ``i`` of ``n + 1`` by
        ``d ** (n - i)``. Backbone feature stage ``i`` of ``n`` is layer ``i`` (see
        ``_stage_of_parameters``); decoder and head are layer ``n`` and keep the full rate.

        The grouping is by stage whatever ``coarse`` says (a ViTAEv2 classifier's own matcher
        decays per block): the timm feature wrapper (``features_only``) drops the backbone's
        ``group_matcher`` and renames its modules, so the stages are found from
        ``feature_info``, which every timm backbone has.
        """
        stage_of, num_stages = _stage_of_parameters(self.backbone)
        prefix = "backbone."

        def layer_of(name: str) -> int:
            return stage_of[name[len(prefix) :]] if name.startswith(prefix) else num_stages

        return layer_of
