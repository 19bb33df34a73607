"""ViTAEv2: a hierarchical vision transformer with convolutional inductive bias.

Each of the four stages starts with a :class:`ReductionCell` (multi-dilation convolutions
that shrink the map, attention, and a parallel convolution branch) followed by
:class:`NormalCell` blocks (attention beside a parallel convolution branch). Stages 0-1 use
non-shifted window attention, stages 2-3 global attention. Output strides are 4/8/16/32.

This implementation follows the remote-sensing pretrained (RSP) ViTAEv2 of Wang et al.,
"An Empirical Study of Remote Sensing Pretraining" (IEEE TGRS 2022), and loads its published
checkpoints through :func:`checkpoint_filter_fn`. Unlike the reference code it accepts any
input size and band count: stage inputs are zero-padded to a multiple of the stage stride and
window-attention maps to a multiple of the window (bottom/right, after the first LayerNorm,
without an attention mask, as the official dense-prediction code does), then cropped back.

Internally token maps are kept as ``(B, H, W, C)`` tensors so that LayerNorm and Linear act on
the last dimension and the convolution branches see the same memory as a channels-last
``(B, C, H, W)`` view, with no copies between the two.
"""

# No ``from __future__ import annotations`` here: torch.fx copies the annotations of
# ``forward`` into the code it generates, and TorchScript cannot resolve them as strings.
import math
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from timm.models import (
    adapt_input_conv,
    build_model_with_cfg,
    generate_default_cfgs,
    register_model,
    register_notrace_function,
    resolve_pretrained_cfg,
)
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.utils.checkpoint import checkpoint

__all__ = [
    "ViTAEv2",
    "ReductionCell",
    "NormalCell",
    "VARIANTS",
    "checkpoint_filter_fn",
    "convert_state_dict",
    "fuse_batchnorm",
    "infer_variant",
    "weights_dir",
]

_NORMAL_CELL_LN_EPS = 1e-6
_REDUCTION_CELL_LN_EPS = 1e-5


# Shape-dependent helpers are leaves for torch.fx (timm's fx feature extraction): symbolic
# tracing cannot branch on sizes, so the traced graph calls them like any function. fx only
# wraps names without a leading underscore; they stay out of ``__all__``.


@register_notrace_function
def pad_bottom_right(x: torch.Tensor, multiple: int, channels_last: bool) -> torch.Tensor:
    """Zero-pad the spatial dims of ``x`` at the bottom/right up to a multiple of ``multiple``."""
    if channels_last:
        height, width = x.shape[1], x.shape[2]
    else:
        height, width = x.shape[2], x.shape[3]
    # ceil(size / multiple) * multiple - size rather than (-size) % multiple: the same integers,
    # but symbolic sizes stay in a form that the exporter's simplifier can reduce after the
    # strided convolutions of the next stages (modulo terms made exports take minutes).
    pad_h = (height + multiple - 1) // multiple * multiple - height
    pad_w = (width + multiple - 1) // multiple * multiple - width
    # Symbolic sizes (torch.export, ONNX export) always pad, by zero rows when nothing is
    # missing: testing for zero would bake the example input's size into the graph.
    if isinstance(pad_h, int) and isinstance(pad_w, int) and pad_h == 0 and pad_w == 0:
        return x
    if channels_last:
        return F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    return F.pad(x, (0, pad_w, 0, pad_h))


@register_notrace_function
def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C) map -> (B * windows, window_size ** 2, C) tokens of non-overlapping windows.

    The map is zero-padded at the bottom/right to a multiple of the window first.
    """
    x = pad_bottom_right(x, window_size, channels_last=True)
    batch, height, width, channels = x.shape
    rows, cols = height // window_size, width // window_size
    return (
        x.reshape(batch, rows, window_size, cols, window_size, channels)
        .transpose(2, 3)
        .reshape(batch * rows * cols, window_size * window_size, channels)
    )


@register_notrace_function
def window_merge(windows: torch.Tensor, window_size: int, batch: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: window tokens -> (batch, height, width, C) map."""
    rows, cols = (height + window_size - 1) // window_size, (width + window_size - 1) // window_size
    out = (
        windows.reshape(batch, rows, cols, window_size, window_size, windows.shape[-1])
        .transpose(2, 3)
        .reshape(batch, rows * window_size, cols * window_size, windows.shape[-1])
    )
    # Symbolic sizes always crop (a no-op crop when nothing was padded), as in pad_bottom_right.
    if not (isinstance(height, int) and isinstance(width, int)) or (rows * window_size, cols * window_size) != (
        height,
        width,
    ):
        out = out[:, :height, :width].contiguous()
    return out


@register_notrace_function
def check_image_batch(x: torch.Tensor, in_chans: int) -> torch.Tensor:
    """``x`` unchanged if it is a (B, in_chans, H, W) batch, else a ``ValueError`` saying why."""
    if x.dim() != 4 or x.shape[1] != in_chans:
        bands = str(x.shape[1]) if x.dim() == 4 else "?"
        shape = "(" + ", ".join([str(size) for size in x.shape]) + ")"  # tuple() is not scriptable
        raise ValueError(
            f"expected a (B, {in_chans}, H, W) tensor, got shape {shape}; "
            f"build the model with in_chans={bands} or select bands to match"
        )
    return x


class Attention(nn.Module):
    """Multi-head self-attention over a (B, H, W, C) map, globally or in windows.

    The token width may change (``in_dim`` -> ``out_dim``). With ``value_residual`` the value
    tokens are added to the projected output, which lets a width-changing attention be used
    without an outer residual (global reduction cells). With a ``window_size`` the map is
    zero-padded at the bottom/right to a multiple of the window, attended per non-overlapping
    window and cropped back; padded tokens take part unmasked, as in the official dense code.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        value_residual: bool = False,
        window_size: Optional[int] = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if out_dim % num_heads:
            raise ValueError(f"out_dim={out_dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = out_dim // num_heads
        self.out_dim = out_dim
        self.value_residual = value_residual
        self.window_size = window_size
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(in_dim, out_dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(out_dim, out_dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, H, W, in_dim) map -> (B, H, W, out_dim)."""
        batch, height, width, channels = x.shape
        window_size = self.window_size
        if window_size is None:
            tokens = self._attend(x.reshape(batch, height * width, channels))
            return tokens.reshape(batch, height, width, self.out_dim)
        return window_merge(self._attend(window_partition(x, window_size)), window_size, batch, height, width)

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, N, in_dim) tokens -> (B, N, out_dim)."""
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(batch, tokens, self.out_dim)))
        if self.value_residual:
            out = out + v.transpose(1, 2).reshape(batch, tokens, self.out_dim)
        return out


class ParallelConvModule(nn.Module):
    """The convolution branch beside attention: conv-BN-SiLU-conv-BN-SiLU-conv, 3x3, grouped.

    ``chans`` are the widths (input, after conv1, after conv2, output).
    """

    def __init__(self, chans: Sequence[int], groups: int, strides: Sequence[int] = (1, 1, 1)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(chans[0], chans[1], 3, strides[0], 1, groups=groups)
        self.bn1 = nn.BatchNorm2d(chans[1])
        self.conv2 = nn.Conv2d(chans[1], chans[2], 3, strides[1], 1, groups=groups)
        self.bn2 = nn.BatchNorm2d(chans[2])
        self.conv3 = nn.Conv2d(chans[2], chans[3], 3, strides[2], 1, groups=groups)
        self.act = nn.SiLU(inplace=True)

    def fuse_batchnorm(self) -> None:
        """Fold ``bn1``/``bn2`` into ``conv1``/``conv2`` (eval mode; see :func:`fuse_batchnorm`)."""
        for conv_name, norm_name in (("conv1", "bn1"), ("conv2", "bn2")):
            norm = getattr(self, norm_name)
            if isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats:
                setattr(self, conv_name, fuse_conv_bn_eval(getattr(self, conv_name), norm))
                setattr(self, norm_name, nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.conv1(x)))
        x = self.act(self.bn2(self.conv2(x)))
        return self.conv3(x)


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """Fold the BatchNorm layers of every ViTAEv2 convolution branch inside ``model`` into the
    convolutions before them, once, for inference (``torch.nn.utils.fusion``): the same outputs
    (to float rounding) with one pass less over the activations. The model cannot be trained
    afterwards; rsfm's predictors call this on their own copy of a task.

    Raises:
        ValueError: ``model`` is in training mode.
    """
    if model.training:
        raise ValueError("fuse_batchnorm folds running statistics: call model.eval() first")
    for module in model.modules():
        if isinstance(module, ParallelConvModule):
            module.fuse_batchnorm()
    return model


class PyramidReduction(nn.Module):
    """Strided convolutions with several dilations, each followed by GELU, concatenated.

    Output channel ``branch * branch_chans + c`` is channel ``c`` of dilation branch ``branch``.
    """

    def __init__(
        self,
        in_chans: int,
        branch_chans: int,
        kernel_size: int,
        stride: int,
        dilations: Sequence[int],
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(
                in_chans,
                branch_chans,
                kernel_size,
                stride,
                # centres the dilated kernel on the strided grid
                padding=math.ceil(((kernel_size - 1) * dilation + 1 - stride) / 2),
                dilation=dilation,
            )
            for dilation in dilations
        )
        self.out_chans = branch_chans * len(dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = []
        for conv in self.convs:
            branches.append(conv(x))
        # GELU is elementwise: one call on the concatenation equals one per branch
        return F.gelu(torch.cat(branches, dim=1))


class ReductionCell(nn.Module):
    """Downsamples a map by ``stride`` and widens it to ``out_dim``.

    ``y = Attn(LN(PRM(x))) + PCM(x)`` then ``y = y + MLP(LN(y))``. The window variant has a
    biased qkv; the global variant an unbiased qkv with the value tokens as residual.
    """

    def __init__(
        self,
        in_chans: int,
        out_dim: int,
        branch_chans: int,
        num_heads: int,
        stride: int,
        kernel_size: int,
        dilations: Sequence[int],
        conv_strides: Sequence[int],
        conv_groups: int,
        window_size: Optional[int],
        mlp_ratio: float = 1.0,
        drop_path: float = 0.0,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if math.prod(conv_strides) != stride:
            raise ValueError(f"conv_strides {tuple(conv_strides)} must multiply to stride {stride}")
        self.stride = stride
        self.pyramid = PyramidReduction(in_chans, branch_chans, kernel_size, stride, dilations)
        windowed = window_size is not None
        self.norm1 = nn.LayerNorm(self.pyramid.out_chans, eps=_REDUCTION_CELL_LN_EPS)
        self.attn = Attention(
            self.pyramid.out_chans,
            out_dim,
            num_heads,
            qkv_bias=windowed,
            value_residual=not windowed,
            window_size=window_size,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
        )
        self.conv_branch = ParallelConvModule(
            (in_chans, branch_chans, branch_chans, out_dim), conv_groups, conv_strides
        )
        self.norm2 = nn.LayerNorm(out_dim, eps=_REDUCTION_CELL_LN_EPS)
        self.mlp = Mlp(out_dim, int(out_dim * mlp_ratio), drop=proj_drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, C, H, W) map -> (B, ceil(H/stride), ceil(W/stride), out_dim) tokens."""
        # Without this the pyramid and conv branch round odd sizes differently.
        x = pad_bottom_right(x, self.stride, channels_last=False)
        tokens = self.norm1(self.pyramid(x).permute(0, 2, 3, 1))
        y = self.attn(tokens)
        y = y + self.drop_path(self.conv_branch(x).permute(0, 2, 3, 1))
        return y + self.drop_path(self.mlp(self.norm2(y)))


class NormalCell(nn.Module):
    """``z = x + Attn(LN(x)) + PCM(x)``, then ``z + MLP(LN(z))``, on a (B, H, W, C) map."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        conv_groups: int,
        window_size: Optional[int],
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=_NORMAL_CELL_LN_EPS)
        self.attn = Attention(
            dim,
            dim,
            num_heads,
            qkv_bias,
            window_size=window_size,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
        )
        hidden = int(dim * mlp_ratio)
        self.conv_branch = ParallelConvModule((dim, hidden, dim, dim), conv_groups)
        self.norm2 = nn.LayerNorm(dim, eps=_NORMAL_CELL_LN_EPS)
        self.mlp = Mlp(dim, hidden, drop=proj_drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attended = self.attn(self.norm1(x))
        convolved = self.conv_branch(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = x + self.drop_path(attended) + self.drop_path(convolved)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ViTAEv2Stage(nn.Module):
    """One reduction cell then ``depth`` normal cells; (B, C, H, W) in and out."""

    def __init__(self, reduction: ReductionCell, blocks: List[NormalCell]) -> None:
        super().__init__()
        self.reduction = reduction
        self.blocks = nn.Sequential(*blocks)
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and self.grad_checkpointing and torch.is_grad_enabled():
            x = checkpoint(self.reduction, x, use_reentrant=False)
            for block in self.blocks:
                x = checkpoint(block, x, use_reentrant=False)
        else:
            x = self.blocks(self.reduction(x))
        # A permuted view: the result is a channels-last (B, C, H, W) tensor.
        return x.permute(0, 3, 1, 2)


def _stage_indices(num_stages: int, indices: Optional[Union[int, Sequence[int]]]) -> Tuple[List[int], int]:
    """Stages selected by timm's ``indices`` argument, and the last one of them.

    ``None`` selects every stage, an int ``n`` the last ``n``, a sequence those stages
    (negative ones count from the end). The same rule as timm's ``feature_take_indices``,
    which timm does not export publicly.

    Raises:
        ValueError: an index outside the model's stages.
    """
    if indices is None:
        indices = num_stages
    if isinstance(indices, int):
        if not 0 < indices <= num_stages:
            raise ValueError(f"indices={indices}: can take the last 1 to {num_stages} stages")
        taken = list(range(num_stages - indices, num_stages))
    else:
        taken = [index + num_stages if index < 0 else index for index in indices]
        if not taken or not all(0 <= index < num_stages for index in taken):
            raise ValueError(
                f"indices={list(indices)}: stage indices must lie in 0..{num_stages - 1} "
                f"(or -{num_stages}..-1), at least one"
            )
    return taken, max(taken)


def _per_stage(value: Any, num_stages: int, name: str) -> List[Any]:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * num_stages
    if len(values) != num_stages:
        raise ValueError(f"{name} has {len(values)} entries, expected one per stage ({num_stages})")
    return values


class ViTAEv2(nn.Module):
    """ViTAEv2 backbone with an optional average-pool + linear classifier.

    Args:
        in_chans: number of input bands (any; pretrained RGB stems are adapted on load).
        num_classes: classifier outputs; 0 removes the classifier.
        global_pool: ``'avg'`` (token mean) or ``''`` (no pooling in ``forward_head``).
        embed_dims: output width of each stage (official name: ``token_dims``).
        rc_embed_dims: width of each dilation branch of the reduction cell and hidden width of
            its convolution branch (official name: ``embed_dims``).
        depths: normal cells per stage.
        num_heads / rc_num_heads: attention heads of normal / reduction cells.
        window_sizes: window per stage, ``None`` for global attention. Any map size works.
        downsample_ratios, rc_kernel_sizes, rc_dilations, rc_conv_strides: reduction geometry.
        rc_conv_groups / conv_groups: groups of the reduction / normal cells' conv branches.
        drop_path_rate: stochastic depth, linearly increasing over all cells (reduction cells
            included), from 0 for the first cell to ``drop_path_rate`` for the last.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        embed_dims: Sequence[int] = (64, 128, 256, 512),
        rc_embed_dims: Sequence[int] = (64, 64, 128, 256),
        depths: Sequence[int] = (2, 2, 8, 2),
        num_heads: Sequence[int] = (1, 2, 4, 8),
        rc_num_heads: Sequence[int] = (1, 1, 2, 4),
        window_sizes: Sequence[Optional[int]] = (7, 7, None, None),
        downsample_ratios: Sequence[int] = (4, 2, 2, 2),
        rc_kernel_sizes: Sequence[int] = (7, 3, 3, 3),
        rc_dilations: Sequence[Sequence[int]] = ((1, 2, 3, 4), (1, 2, 3), (1, 2), (1, 2)),
        rc_conv_strides: Sequence[Sequence[int]] = ((2, 2, 1), (2, 1, 1), (2, 1, 1), (2, 1, 1)),
        rc_conv_groups: Sequence[int] = (1, 16, 32, 64),
        conv_groups: Sequence[int] = (1, 32, 64, 128),
        mlp_ratio: float = 4.0,
        rc_mlp_ratio: float = 1.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if global_pool not in ("avg", ""):
            raise ValueError(f"global_pool={global_pool!r}: only 'avg' or '' are supported")
        num_stages = len(embed_dims)
        per_stage = {
            name: _per_stage(value, num_stages, name)
            for name, value in dict(
                rc_embed_dims=rc_embed_dims,
                depths=depths,
                num_heads=num_heads,
                rc_num_heads=rc_num_heads,
                window_sizes=window_sizes,
                downsample_ratios=downsample_ratios,
                rc_kernel_sizes=rc_kernel_sizes,
                rc_dilations=rc_dilations,
                rc_conv_strides=rc_conv_strides,
                rc_conv_groups=rc_conv_groups,
                conv_groups=conv_groups,
            ).items()
        }
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.embed_dims = list(embed_dims)
        self.num_features = self.head_hidden_size = self.embed_dims[-1]
        self.drop_rate = drop_rate

        total_cells = sum(per_stage["depths"]) + num_stages
        cell_drop_path = torch.linspace(0, drop_path_rate, total_cells, device="cpu").tolist()
        stages, self.feature_info = [], []
        stage_in, reduction = in_chans, 1
        for i in range(num_stages):
            rates = cell_drop_path[: per_stage["depths"][i] + 1]
            cell_drop_path = cell_drop_path[per_stage["depths"][i] + 1 :]
            window = per_stage["window_sizes"][i]
            cell = ReductionCell(
                stage_in,
                embed_dims[i],
                per_stage["rc_embed_dims"][i],
                per_stage["rc_num_heads"][i],
                per_stage["downsample_ratios"][i],
                per_stage["rc_kernel_sizes"][i],
                per_stage["rc_dilations"][i],
                per_stage["rc_conv_strides"][i],
                per_stage["rc_conv_groups"][i],
                window,
                mlp_ratio=rc_mlp_ratio,
                drop_path=rates[0],
                attn_drop=attn_drop_rate,
                proj_drop=proj_drop_rate,
            )
            blocks = [
                NormalCell(
                    embed_dims[i],
                    per_stage["num_heads"][i],
                    per_stage["conv_groups"][i],
                    window,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    drop_path=rate,
                    attn_drop=attn_drop_rate,
                    proj_drop=proj_drop_rate,
                )
                for rate in rates[1:]
            ]
            stages.append(ViTAEv2Stage(cell, blocks))
            reduction *= per_stage["downsample_ratios"][i]
            self.feature_info.append(dict(num_chs=embed_dims[i], reduction=reduction, module=f"stages.{i}"))
            stage_in = embed_dims[i]
        self.stages = nn.Sequential(*stages)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
            nn.init.normal_(module.weight, 0, math.sqrt(2.0 / (fan_out // module.groups)))
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    # timm model interface -------------------------------------------------------------

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        """Parameter groups for layer-wise learning-rate decay (timm convention)."""
        if coarse:
            return dict(stem=r"^stages\.0\.reduction", blocks=r"^stages\.(\d+)")
        return dict(
            stem=r"^stages\.0\.reduction",
            blocks=[
                (r"^stages\.(\d+)\.blocks\.(\d+)", None),
                (r"^stages\.(\d+)\.reduction", (0,)),
            ],
        )

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return set()

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Replace the classifier with a fresh one for ``num_classes`` (0 removes it)."""
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(f"global_pool={global_pool!r}: only 'avg' or '' are supported")
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            self._init_weights(self.head)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, List[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Stage output maps, and optionally the final features (timm's feature API).

        Used by ``features_only=True`` (timm's getter wrapper) and by dense heads.

        Args:
            x: (B, in_chans, H, W) images, any H and W.
            indices: stages to return: ``None`` all, an int ``n`` the last ``n``, a list those
                stages (negative from the end).
            norm: accepted for timm compatibility and ignored: ViTAEv2 has no final norm (the
                official segmentation copy's ``norm0..3`` are never applied either).
            stop_early: stop after the last requested stage; the returned final features are
                then that stage's map.
            output_fmt: only ``'NCHW'``.
            intermediates_only: return only the list of maps.

        Returns:
            The maps, (B, C_i, ceil(H/s_i), ceil(W/s_i)) at the strides ``s_i`` of
            ``feature_info`` (channels-last memory), or ``(final features, maps)``.

        Raises:
            ValueError: another ``output_fmt``, an index outside the stages, or an input that
                is not a (B, in_chans, H, W) batch.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt={output_fmt!r}: ViTAEv2 returns (B, C, H, W) maps, use 'NCHW'")
        take_indices, max_index = _stage_indices(len(self.stages), indices)
        stages = self.stages[: max_index + 1] if stop_early else self.stages
        x = self._prepare_input(x)
        intermediates = []
        for index, stage in enumerate(stages):
            x = stage(x)
            if index in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self,
        indices: Union[int, List[int]] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> List[int]:
        """Drop the stages after the last of ``indices`` (and the classifier) in place.

        Args:
            indices: the stages that must stay available, as in :meth:`forward_intermediates`.
            prune_norm: accepted for timm compatibility; there is no final norm to drop.
            prune_head: remove the classifier and pooling (always done when stages are
                dropped: the classifier is sized for the last stage).

        Returns:
            The kept stage indices, counted from the first stage.
        """
        take_indices, max_index = _stage_indices(len(self.stages), indices)
        if max_index < len(self.stages) - 1:
            self.stages = self.stages[: max_index + 1]
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
            prune_head = True
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def _prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last: the stages work on (B, H, W, C) views of the same memory
        return check_image_batch(x, self.in_chans).contiguous(memory_format=torch.channels_last)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) image -> (B, C, ceil(H/32), ceil(W/32)) last-stage map."""
        return self.stages(self._prepare_input(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "avg":
            x = x.mean(dim=(2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # checkpoint loading --------------------------------------------------------------

    def load_pretrained(self, path: Union[str, os.PathLike], strict: bool = True) -> None:
        """Load an rsfm or official (RSP) ViTAEv2 checkpoint file into this model.

        Used by timm for ``pretrained=True`` (``custom_load``). The classifier is kept when its
        shape matches ``num_classes`` and dropped otherwise; RGB stems are adapted to
        ``in_chans``. Raises ``RuntimeError`` naming the file when keys do not match.
        """
        from rsfm.models.checkpoint import load_checkpoint_file

        state_dict = checkpoint_filter_fn(load_checkpoint_file(path), self)
        target = self.state_dict()
        # a dropped classifier is expected; everything else must match
        missing = [k for k in target if k not in state_dict and not k.startswith("head.")]
        unexpected = [k for k in state_dict if k not in target]
        mismatched = [
            f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}"
            for k, v in state_dict.items()
            if k in target and v.shape != target[k].shape
        ]
        if strict and (missing or unexpected or mismatched):
            raise RuntimeError(
                f"{path}: checkpoint does not fit this {type(self).__name__} "
                f"({len(mismatched)} shape mismatches, e.g. {mismatched[:2]}; "
                f"{len(missing)} missing keys, e.g. {missing[:2]}; "
                f"{len(unexpected)} unexpected, e.g. {unexpected[:2]}). "
                "Check that the model variant matches the checkpoint (vitaev2_s for RSP ViTAEv2-S)."
            )
        self.load_state_dict(state_dict, strict=False)


# checkpoint conversion --------------------------------------------------------------

_OFFICIAL_KEY_RULES: List[Tuple[re.Pattern, str]] = [
    (re.compile(p), r)
    for p, r in [
        (r"^layers\.(\d+)\.RC\.PRM\.convs\.(\d+)\.0\.", r"stages.\1.reduction.pyramid.convs.\2."),
        (r"^layers\.(\d+)\.RC\.attn\.attn\.", r"stages.\1.reduction.attn."),
        (r"^layers\.(\d+)\.RC\.attn\.", r"stages.\1.reduction."),
        (r"^layers\.(\d+)\.RC\.PCM\.", r"stages.\1.reduction.conv_branch."),
        (r"^layers\.(\d+)\.NC\.(\d+)\.PCM\.", r"stages.\1.blocks.\2.conv_branch."),
        (r"^layers\.(\d+)\.NC\.(\d+)\.", r"stages.\1.blocks.\2."),
        # official PCMs are nn.Sequential(conv, BN, SiLU, conv, BN, SiLU, conv)
        (r"\.conv_branch\.0\.", ".conv_branch.conv1."),
        (r"\.conv_branch\.1\.", ".conv_branch.bn1."),
        (r"\.conv_branch\.3\.", ".conv_branch.conv2."),
        (r"\.conv_branch\.4\.", ".conv_branch.bn2."),
        (r"\.conv_branch\.6\.", ".conv_branch.conv3."),
    ]
]
# Entries the official forward never reads: relative-position tables (relative_pos=False),
# the mmseg copy's norm0..3, and attention masks of other window sizes.
_UNUSED_OFFICIAL_KEY = re.compile(r"relative_position|relative_coords_table|attn_mask|^norm\d\.")
# Wrappers around backbone keys: DDP, mmseg/mmdet, Lightning tasks, torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "backbone.", "encoder.", "model.", "net.")
_BACKBONE_ROOTS = ("stages.", "layers.", "head.", "norm")
# rsfm 0.1 wrapped features_only models in timm's FeatureListNet, which names stage i 'stages_i'.
_FEATURE_LIST_STAGE = re.compile(r"^stages_(\d+)\.")
STEM_CONVS = (
    "stages.0.reduction.pyramid.convs.0",
    "stages.0.reduction.pyramid.convs.1",
    "stages.0.reduction.pyramid.convs.2",
    "stages.0.reduction.pyramid.convs.3",
    "stages.0.reduction.conv_branch.conv1",
)


def _strip_wrappers(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def convert_state_dict(state_dict: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """Rename an official RSP or rsfm ViTAEv2 state dict to rsfm's keys, shapes unchanged.

    Accepts the tensors at the top level or under ``model`` / ``state_dict`` /
    ``state_dict_ema`` / ``model_ema``; strips ``module.``, ``backbone.`` and similar prefixes;
    reads the ``stages_0.`` keys of rsfm 0.1 ``features_only`` models; drops keys of other
    heads (decoders) and the unused relative-position entries.
    """
    for container in ("model", "state_dict", "state_dict_ema", "model_ema"):
        if isinstance(state_dict.get(container), dict):
            state_dict = state_dict[container]
            break
    converted: Dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            continue
        key = _FEATURE_LIST_STAGE.sub(r"stages.\1.", _strip_wrappers(key))
        if not key.startswith(_BACKBONE_ROOTS) or _UNUSED_OFFICIAL_KEY.search(key):
            continue
        for pattern, replacement in _OFFICIAL_KEY_RULES:
            key = pattern.sub(replacement, key)
        converted[key] = value
    return converted


def checkpoint_filter_fn(state_dict: Dict[str, Any], model: ViTAEv2) -> Dict[str, torch.Tensor]:
    """Convert an official RSP or rsfm ViTAEv2 state dict to ``model``'s keys and shapes.

    :func:`convert_state_dict`, then the stem is adapted to ``model.in_chans`` bands (timm's
    ``adapt_input_conv``) and the classifier dropped when its shape differs from the model's.
    """
    converted = convert_state_dict(state_dict)
    target = model.state_dict()
    for conv in STEM_CONVS:
        key = conv + ".weight"
        if key in converted and key in target and converted[key].shape[1] != target[key].shape[1]:
            converted[key] = adapt_input_conv(target[key].shape[1], converted[key])

    for key in ("head.weight", "head.bias"):
        if key in converted and (key not in target or converted[key].shape != target[key].shape):
            del converted[key]
    return converted


# factories ---------------------------------------------------------------------------


def weights_dir() -> Path:
    """Folder searched for pretrained files: ``$RSFM_HOME/weights`` (default ``~/.cache/rsfm``)."""
    return Path(os.environ.get("RSFM_HOME", Path.home() / ".cache" / "rsfm")) / "weights"


_RSP_HOWTO = (
    "Download the RSP checkpoint (e.g. 'rsp-vitaev2-s-ckpt.pth', MillionAID, 100 epochs) from the "
    "links in the README of the ViTAE-Transformer/RSP repository on GitHub"
)


def _cfg(**kwargs: Any) -> Dict[str, Any]:
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "first_conv": list(STEM_CONVS),
        "classifier": "head",
        # weights come from local files only; ViTAEv2.load_pretrained reads them
        "custom_load": True,
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        "vitaev2_s.rsp_millionaid": _cfg(
            num_classes=51,
            license="mit",
            paper_ids="arXiv:2204.02825",
            origin_url="https://github.com/ViTAE-Transformer/RSP",
        ),
        "vitaev2_48m.untrained": _cfg(),
        "vitaev2_b.untrained": _cfg(),
        "vitaev2_xs.untrained": _cfg(),
        "vitaev2_tiny_test.untrained": _cfg(input_size=(3, 64, 64), pool_size=(2, 2)),
    }
)


def _create_vitaev2(variant: str, pretrained: bool = False, **kwargs: Any) -> ViTAEv2:
    if pretrained:
        cfg = resolve_pretrained_cfg(
            variant,
            pretrained_cfg=kwargs.get("pretrained_cfg"),
            pretrained_cfg_overlay=kwargs.get("pretrained_cfg_overlay"),
        ).to_dict()
        path = cfg.get("file")
        default_path = weights_dir() / f"{cfg['architecture']}.{cfg['tag']}.pth"
        if not path and default_path.is_file():
            path = str(default_path)
        if not path or not Path(path).is_file():
            where = f"{path} does not exist. " if path else ""
            raise FileNotFoundError(
                f"{where}No local weights for '{variant}' (rsfm never downloads). "
                f"{_RSP_HOWTO}, then either save it as {default_path} (set RSFM_HOME to move the "
                "folder) or pass it explicitly: timm.create_model(..., pretrained=True, "
                "pretrained_cfg_overlay=dict(file=PATH)) or rsfm.create_model(..., checkpoint=PATH)."
            )
        # timm resets custom_load when a file is given; our loader must read every file
        overlay = dict(kwargs.get("pretrained_cfg_overlay") or {}, file=path, custom_load=True)
        kwargs["pretrained_cfg_overlay"] = overlay
    out_indices = kwargs.pop("out_indices", (0, 1, 2, 3))
    # features_only: timm's getter wrapper calls forward_intermediates (no forward hooks) and
    # prunes the stages after the last of out_indices.
    model = build_model_with_cfg(
        ViTAEv2,
        variant,
        pretrained,
        feature_cfg=dict(feature_cls="getter", out_indices=out_indices),
        **kwargs,
    )
    if isinstance(getattr(model, "model", None), ViTAEv2):  # the getter wrapper
        model.register_load_state_dict_pre_hook(_read_feature_list_keys)
    return model


def _read_feature_list_keys(module: nn.Module, state_dict: Dict[str, Any], prefix: str, *args: Any) -> None:
    """Let a ``features_only`` model load state dicts saved by rsfm 0.1.

    rsfm 0.1 wrapped the backbone in timm's FeatureListNet (``stages_0.``...); the getter
    wrapper keeps it as ``model`` (``model.stages.0.``...). Renaming on load keeps 0.1 task
    checkpoints (a segmentation task's ``model.backbone.stages_0...``) loadable.
    """
    for key in [key for key in state_dict if key.startswith(prefix)]:
        local = key[len(prefix) :]
        renamed = _FEATURE_LIST_STAGE.sub(r"model.stages.\1.", local)
        if renamed != local:
            state_dict[prefix + renamed] = state_dict.pop(key)


VARIANTS: Dict[str, Dict[str, Any]] = {
    "vitaev2_s": dict(
        embed_dims=(64, 128, 256, 512),
        rc_embed_dims=(64, 64, 128, 256),
        depths=(2, 2, 8, 2),
        num_heads=(1, 2, 4, 8),
        rc_num_heads=(1, 1, 2, 4),
        rc_conv_groups=(1, 16, 32, 64),
        conv_groups=(1, 32, 64, 128),
    ),
    "vitaev2_48m": dict(
        embed_dims=(96, 192, 384, 768),
        rc_embed_dims=(64, 64, 192, 384),
        depths=(2, 2, 11, 2),
        num_heads=(1, 2, 4, 8),
        rc_num_heads=(1, 1, 2, 4),
        rc_conv_groups=(1, 16, 32, 64),
        conv_groups=(1, 32, 64, 128),
    ),
    "vitaev2_b": dict(
        embed_dims=(128, 256, 512, 1024),
        rc_embed_dims=(96, 96, 256, 512),
        depths=(2, 2, 12, 2),
        num_heads=(1, 4, 8, 16),
        rc_num_heads=(1, 1, 4, 8),
        rc_conv_groups=(1, 16, 32, 64),
        conv_groups=(1, 32, 64, 128),
    ),
    # half the widths of S (normal cells' heads 32 wide), one normal cell in the two
    # high-resolution stages, where most of a CPU's time goes, half of S's in stage 2
    "vitaev2_xs": dict(
        embed_dims=(32, 64, 128, 256),
        rc_embed_dims=(32, 32, 64, 128),
        depths=(1, 1, 4, 2),
        num_heads=(1, 2, 4, 8),
        rc_num_heads=(1, 1, 2, 4),
        rc_conv_groups=(1, 16, 32, 64),
        conv_groups=(1, 32, 64, 128),
    ),
    # the layout of the official reference model in tests; window 4 fits its 64 px input
    "vitaev2_tiny_test": dict(
        embed_dims=(8, 16, 32, 64),
        rc_embed_dims=(8, 8, 16, 32),
        depths=(1, 1, 2, 1),
        num_heads=(1, 2, 4, 8),
        rc_num_heads=(1, 1, 2, 4),
        window_sizes=(4, 4, None, None),
        rc_conv_groups=(1, 2, 4, 8),
        conv_groups=(1, 4, 8, 16),
    ),
}
"""Architecture arguments of each registered variant."""


def infer_variant(state_dict: Dict[str, Any]) -> str:
    """The registered variant whose widths and depths match a (possibly official) state dict.

    Raises ``ValueError`` when no variant matches.
    """
    converted = convert_state_dict(state_dict)
    widths, depths = [], []
    for stage in range(4):
        norm = converted.get(f"stages.{stage}.reduction.norm2.weight")
        widths.append(None if norm is None else norm.shape[0])
        depths.append(len({k.split(".")[3] for k in converted if k.startswith(f"stages.{stage}.blocks.")}))
    for name, args in VARIANTS.items():
        if tuple(widths) == tuple(args["embed_dims"]) and tuple(depths) == tuple(args["depths"]):
            return name
    raise ValueError(
        f"no registered ViTAEv2 variant has stage widths {widths} and depths {depths}; known: {', '.join(VARIANTS)}"
    )


@register_model
def vitaev2_s(pretrained: bool = False, **kwargs: Any) -> ViTAEv2:
    """ViTAEv2-S (19M parameters), the RSP configuration (window 7 in stages 0-1)."""
    return _create_vitaev2("vitaev2_s", pretrained, **dict(VARIANTS["vitaev2_s"], **kwargs))


@register_model
def vitaev2_48m(pretrained: bool = False, **kwargs: Any) -> ViTAEv2:
    """ViTAEv2-48M."""
    return _create_vitaev2("vitaev2_48m", pretrained, **dict(VARIANTS["vitaev2_48m"], **kwargs))


@register_model
def vitaev2_b(pretrained: bool = False, **kwargs: Any) -> ViTAEv2:
    """ViTAEv2-B."""
    return _create_vitaev2("vitaev2_b", pretrained, **dict(VARIANTS["vitaev2_b"], **kwargs))


@register_model
def vitaev2_xs(pretrained: bool = False, **kwargs: Any) -> ViTAEv2:
    """ViTAEv2-XS (3.7M parameters, 0.9 G multiply-adds at 224 px): a small variant for CPUs, no pretrained weights."""
    return _create_vitaev2("vitaev2_xs", pretrained, **dict(VARIANTS["vitaev2_xs"], **kwargs))


@register_model
def vitaev2_tiny_test(pretrained: bool = False, **kwargs: Any) -> ViTAEv2:
    """A tiny ViTAEv2 (0.2M parameters) for tests; same layout as the official reference model."""
    return _create_vitaev2("vitaev2_tiny_test", pretrained, **dict(VARIANTS["vitaev2_tiny_test"], **kwargs))
