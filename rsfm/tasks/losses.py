"""Weighted sums of segmentation losses with ignored pixels: binary (BCE, Dice, focal, Lovasz) and
multi-class (cross-entropy, Dice, focal, Lovasz)."""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional, Tuple

import torch
from segmentation_models_pytorch.losses import DiceLoss, FocalLoss, LovaszLoss
from torch import nn

__all__ = ["LOSS_TERMS", "MULTICLASS_LOSS_TERMS", "BinarySegmentationLoss", "MulticlassSegmentationLoss"]

#: Loss term name -> factory. All take (1, 1, N) logits and (1, 1, N) 0/1 float targets.
LOSS_TERMS: Dict[str, Callable[[], nn.Module]] = {
    "bce": nn.BCEWithLogitsLoss,
    "dice": lambda: DiceLoss("binary", from_logits=True),
    "focal": lambda: FocalLoss("binary"),
    "lovasz": lambda: LovaszLoss("binary", per_image=False),
}
#: Multi-class loss term name -> factory. All take (1, K, N, 1) logits and (1, N, 1) class indices.
MULTICLASS_LOSS_TERMS: Dict[str, Callable[[], nn.Module]] = {
    "ce": nn.CrossEntropyLoss,
    "dice": lambda: DiceLoss("multiclass", from_logits=True),
    "focal": lambda: FocalLoss("multiclass"),
    "lovasz": lambda: LovaszLoss("multiclass", per_image=False),
}


def _check_weights(weights: Mapping[str, float], known: Mapping[str, object]) -> Dict[str, float]:
    unknown = set(weights) - set(known)
    if unknown:
        raise ValueError(f"unknown loss term(s) {sorted(unknown)}; choose from {sorted(known)}")
    if not any(weight > 0 for weight in weights.values()):
        raise ValueError(f"at least one loss weight must be positive, got {dict(weights)}")
    return {name: float(weight) for name, weight in weights.items() if weight != 0}


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
        self.weights = _check_weights(weights, LOSS_TERMS)
        self.terms = nn.ModuleDict({name: LOSS_TERMS[name]() for name in self.weights})
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """(B, 1, H, W) logits and (B, H, W) integer targets -> (total loss, {term: value}).

        A batch without labelled pixels gives a zero loss that keeps the graph.
        """
        logits = logits.float().squeeze(1)
        valid = None if self.ignore_index is None else target != self.ignore_index
        if valid is None or valid.all():  # every pixel, in the same order, without a boolean gather
            pixels, labels = logits.reshape(1, 1, -1), target.reshape(1, 1, -1).float()
        elif not valid.any():
            zero = logits.sum() * 0.0
            return zero, {name: zero for name in self.terms}
        else:
            pixels = logits[valid].view(1, 1, -1)
            labels = target[valid].view(1, 1, -1).float()
        values = {name: term(pixels, labels) for name, term in self.terms.items()}
        total = sum(self.weights[name] * value for name, value in values.items())
        return total, values


class MulticlassSegmentationLoss(nn.Module):
    """:class:`BinarySegmentationLoss` for ``num_classes`` classes (softmax): the same removal of
    ignored pixels and batch-level terms.

    Args:
        weights: term name (``'ce'``, ``'dice'``, ``'focal'``, ``'lovasz'``) -> weight.
        num_classes: classes; targets are class indices below it.
        ignore_index: target value excluded from the loss (``None``: every pixel counts).

    Raises:
        ValueError: an unknown term name or no term with a positive weight; in ``forward``, a
            target value that is no class index (naming it and the class count).
    """

    def __init__(self, weights: Mapping[str, float], num_classes: int, ignore_index: Optional[int] = 255) -> None:
        super().__init__()
        self.weights = _check_weights(weights, MULTICLASS_LOSS_TERMS)
        self.terms = nn.ModuleDict({name: MULTICLASS_LOSS_TERMS[name]() for name in self.weights})
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """(B, K, H, W) logits and (B, H, W) class indices -> (total loss, {term: value})."""
        valid = torch.ones_like(target, dtype=torch.bool) if self.ignore_index is None else target != self.ignore_index
        if not valid.any():
            zero = logits.float().sum() * 0.0
            return zero, {name: zero for name in self.terms}
        labels = target[valid]
        if labels.min() < 0 or labels.max() >= self.num_classes:
            bad = labels[(labels < 0) | (labels >= self.num_classes)].unique()[:10].tolist()
            raise ValueError(
                f"mask values {bad} are no class index of the {self.num_classes} classes (0-{self.num_classes - 1}; "
                f"{self.ignore_index} = not labelled): give class_names one name per value"
            )
        pixels = logits.float().permute(1, 0, 2, 3)[:, valid].unsqueeze(0).unsqueeze(-1)
        labels = labels.view(1, -1, 1)
        values = {name: term(pixels, labels) for name, term in self.terms.items()}
        total = sum(self.weights[name] * value for name, value in values.items())
        return total, values
