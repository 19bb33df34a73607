"""Change detection: a Siamese (shared-weight) encoder, per-level fusion of the two dates'
feature pyramids, and the UperNet decoder, giving change logits at the input resolution.

Each pyramid level fuses the before map ``a`` and the after map ``b`` with a learned 1x1
convolution over ``[a, b, |a - b|]``: the difference says where the dates disagree, the
concatenation keeps what each date shows (new roofs look different from demolished ones), and
the convolution learns how much of each matters at that scale. The fused pyramid has the
encoder's channels, so the decoder is the segmentation decoder unchanged.

The decoder works at stride 4; a full-resolution branch (a 3x3 convolution over the absolute
difference of the two normalised images) joins its upsampled output before the classifier, so
that a change of a few pixels keeps its outline and the model starts from what image
differencing knows (how the quickstart was tuned: ``benchmarks/README.md``, change detection).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence, Union

import torch
from timm.layers import ConvNormAct
from torch import nn

from rsfm.models.upernet import SegmentationModel, _resize

__all__ = ["ChangeModel", "DateFusion"]


class DateFusion(nn.Module):
    """Fuse the two dates' maps of one pyramid level: ``[a, b, |a - b|]`` -> 1x1 conv, norm, ReLU.

    Args:
        channels: channels of each date's map, and of the output.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.project = ConvNormAct(3 * channels, channels, 1)

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([before, after, (before - after).abs()], dim=1))


class ChangeModel(SegmentationModel):
    """A shared timm backbone (``features_only``) run on both dates, :class:`DateFusion` per
    pyramid level, the UperNet decoder, the full-resolution difference branch and a 1x1
    classifier.

    Args: as :class:`~rsfm.models.upernet.SegmentationModel`; ``in_chans`` is the band count of
    each date and ``num_classes`` the change classes (1: binary change, one logit);
    ``fine_channels`` the width of the full-resolution difference branch.

    ``forward(before, after)`` maps two normalised ``(B, in_chans, H, W)`` images of the same
    size to ``(B, num_classes, H, W)`` logits. Both dates go through the backbone as one batch
    (the same weights and, in training, the same normalisation statistics).
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
        fine_channels: int = 8,
    ) -> None:
        super().__init__(
            backbone,
            num_classes=num_classes,
            in_chans=in_chans,
            backbone_checkpoint=backbone_checkpoint,
            out_indices=out_indices,
            decoder_channels=decoder_channels,
            pool_scales=pool_scales,
            dropout=dropout,
            freeze_backbone=freeze_backbone,
            backbone_kwargs=backbone_kwargs,
        )
        self.fusions = nn.ModuleList(DateFusion(channels) for channels in self.backbone.feature_info.channels())
        self.fine = ConvNormAct(in_chans, fine_channels, 3)
        self.head = nn.Conv2d(decoder_channels + fine_channels, num_classes, kernel_size=1)

    def pyramids(self, before: torch.Tensor, after: torch.Tensor) -> Sequence[torch.Tensor]:
        """The fused pyramid, finest first (what the decoder reads)."""
        for name, image in (("before", before), ("after", after)):
            if image.ndim != 4 or image.shape[1] != self.in_chans:
                raise ValueError(
                    f"expected the {name} image as a (B, {self.in_chans}, H, W) tensor, got shape "
                    f"{tuple(image.shape)}; both dates need the model's {self.in_chans} bands"
                )
        if before.shape != after.shape:
            raise ValueError(
                f"the before image {tuple(before.shape)} and the after image {tuple(after.shape)} differ in "
                "shape; resample both dates onto one grid first (rsfm predict-change does this for rasters)"
            )
        features = self.backbone(torch.cat([before, after], dim=0))
        batch = before.shape[0]
        return [fuse(level[:batch], level[batch:]) for fuse, level in zip(self.fusions, features)]

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Two normalised ``(B, in_chans, H, W)`` images -> ``(B, num_classes, H, W)`` logits."""
        context = _resize(self.decoder(self.pyramids(before, after)), after.shape[-2:])
        fine = self.fine((before - after).abs())
        return self.head(self.dropout(torch.cat([context, fine], dim=1)))
