"""Weighted sums of binary segmentation losses (BCE, Dice, focal, Lovasz) with ignored pixels."""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional, Tuple

import torch
from segmentation_models_pytorch.losses import DiceLoss, FocalLoss, LovaszLoss
from torch import nn

__all__ = ["LOSS_TERMS", "BinarySegmentationLoss"]

#: Loss term name -> factory. All take (1, 1, N) logits and (1, 1, N) 0/1 float targets.
LOSS_TERMS: Dict[str, Callable[[], nn.Module]] = {
    "bce": nn.BCEWithLogitsLoss,
    "dice": lambda: DiceLoss("binary", from_logits=True),
    "focal": lambda: FocalLoss("binary"),
    "lovasz": lambda: LovaszLoss("binary", per_image=False),
}


class BinarySegmentationLoss(nn.Module):
    """``sum(weight * term(logits, target))`` over the labelled pixels of a batch.

    Ignored pixels are removed once, before any term sees them, and every term is computed
    over all remaining pixels of the batch together (Dice and Lovasz are batch-level, as in
    mmsegmentation), so no term has to implement ignoring itself.

    Args:
        weights: term name (``'bce'``, ``'dice'``, ``'focal'``, ``'lovasz'``) -> weight.
        ignore_index: target value excluded from the loss (``None``: every pixel counts).

    Raises:
        ValueError: an unknown term name or no term with a positive weight.
    """

    def __init__(self, weights: Mapping[str, float], ignore_index: Optional[int] = 255) -> None:
        super().__init__()
        unknown = set(weights) - set(LOSS_TERMS)
        if unknown:
            raise ValueError(f"unknown loss term(s) {sorted(unknown)}; choose from {sorted(LOSS_TERMS)}")
        if not any(weight > 0 for weight in weights.values()):
            raise ValueError(f"at least one loss weight must be positive, got {dict(weights)}")
        self.weights = {name: float(weight) for name, weight in weights.items() if weight != 0}
        self.terms = nn.ModuleDict({name: LOSS_TERMS[name]() for name in self.weights})
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """(B, 1, H, W) logits and (B, H, W) integer targets -> (total loss, {term: value}).

        A batch without labelled pixels gives a zero loss that keeps the graph.
        """
        logits = logits.float().squeeze(1)
        valid = torch.ones_like(target, dtype=torch.bool) if self.ignore_index is None else target != self.ignore_index
        if not valid.any():
            zero = logits.sum() * 0.0
            return zero, {name: zero for name in self.terms}
        pixels = logits[valid].view(1, 1, -1)
        labels = target[valid].view(1, 1, -1).float()
        values = {name: term(pixels, labels) for name, term in self.terms.items()}
        total = sum(self.weights[name] * value for name, value in values.items())
        return total, values
