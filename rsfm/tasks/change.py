"""Change detection between two dates: binary (change / no change) or semantic (kinds of change)
segmentation with a Siamese UperNet model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassF1Score,
    MulticlassJaccardIndex,
    MulticlassPrecision,
    MulticlassRecall,
)

from rsfm.data.change import CLASS_INDICES
from rsfm.models.change import ChangeModel
from rsfm.tasks.base import register_task
from rsfm.tasks.contract import CHANGE
from rsfm.tasks.losses import MulticlassSegmentationLoss
from rsfm.tasks.overlays import class_colors, display_image, overlay_grid, save_overlay_grid
from rsfm.tasks.segmentation import IMAGENET_MEAN, IMAGENET_STD, BuildingSegmentationTask

__all__ = ["ChangeDetectionTask"]


@register_task
class ChangeDetectionTask(BuildingSegmentationTask):
    """Change between a before and an after image of the same place: a
    :class:`~rsfm.models.change.ChangeModel` (shared backbone, per-level fusion, UperNet).

    Binary by default (two ``class_names``: one logit per pixel, BCE + Dice, F1/IoU/precision/
    recall of the change class). With more class names the change is semantic (what the place
    became, e.g. ``[no change, new building, demolished, new road]``): one logit per class,
    softmax, cross-entropy + Dice, and the same metrics averaged over the classes (macro); masks
    then hold class indices (``ChangeDetectionDataModule(mask_values="classes")``).

    Batches hold ``image``: ``(B, 2 * in_chans, H, W)`` raw pixels, the before date's bands
    then the after date's (``rsfm.data.ChangeDetectionDataModule`` stacks them), and ``mask``:
    ``(B, H, W)`` with 0 no change, 1 change, ``ignore_index`` not labelled.

    Args:
        in_chans: bands of each date.
        mean, std: per-band normalisation of the after date, in raw pixel units.
        before_mean, before_std: the before date's, when it comes from another sensor or
            processing (default: ``mean``/``std``).
        class_names: names of label 0 and 1, default ``('no change', 'change')``; more names
            for semantic change (label 0 is no change).
        losses: binary: as for building segmentation (default ``{'bce': 1, 'dice': 1}``);
            semantic: terms ``ce``, ``dice``, ``focal``, ``lovasz`` (default ``{'ce': 1, 'dice': 1}``).
        teacher_checkpoint: a trained ``ChangeDetectionTask`` checkpoint to distil from.
        Everything else: as :class:`~rsfm.tasks.segmentation.BuildingSegmentationTask` (backbone
        and its pretrained weights, e.g. an RSP ViTAEv2 file, decoder, losses, schedule, ...).

    ``forward(task.normalize(raw))`` gives (B, 1, H, W) change logits at input resolution.
    """

    task_kind = CHANGE

    def _check_class_names(self, class_names: Sequence[str]) -> None:
        if len(class_names) < 2:
            raise ValueError(
                f"change detection needs at least two class names (no change, change), got {list(class_names)}"
            )

    @property
    def semantic(self) -> bool:
        """Several kinds of change (softmax over the classes) rather than change / no change."""
        return len(self.hparams.class_names) > 2

    @property
    def num_outputs(self) -> int:
        return len(self.hparams.class_names) if self.semantic else 1

    def __init__(
        self,
        backbone: str = "vitaev2_s",
        backbone_checkpoint: Optional[Union[str, os.PathLike]] = None,
        backbone_kwargs: Optional[Dict[str, Any]] = None,
        in_chans: int = 3,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        before_mean: Optional[Sequence[float]] = None,
        before_std: Optional[Sequence[float]] = None,
        class_names: Sequence[str] = ("no change", "change"),
        bands: Optional[List[int]] = None,
        image_size: Optional[int] = None,
        mask_values: Optional[str] = None,
        pixel_range: Optional[Dict[str, Any]] = None,
        pixel_size: Optional[float] = None,
        out_indices: Optional[Sequence[int]] = None,
        decoder_channels: int = 256,
        dropout: float = 0.1,
        freeze_backbone: bool = False,
        losses: Optional[Dict[str, float]] = None,
        ignore_index: Optional[int] = 255,
        threshold: float = 0.5,
        lr: float = 1e-4,
        weight_decay: float = 0.01,
        layer_decay: float = 1.0,
        schedule: str = "poly",
        warmup_steps: int = 0,
        poly_power: float = 1.0,
        min_lr_ratio: float = 0.0,
        num_overlays: int = 4,
        teacher_checkpoint: Optional[Union[str, os.PathLike]] = None,
        distill_alpha: float = 0.5,
        distill_temperature: float = 2.0,
        distill_feature_weight: float = 0.0,
    ) -> None:
        for name, values in (("before_mean", before_mean), ("before_std", before_std)):
            if values is not None and len(values) != in_chans:
                raise ValueError(f"{name} needs one value per band of the before date (in_chans={in_chans})")
        # the parent records every argument of this constructor (Lightning reads the caller's frame)
        super().__init__(
            backbone=backbone,
            backbone_checkpoint=backbone_checkpoint,
            backbone_kwargs=backbone_kwargs,
            in_chans=in_chans,
            mean=mean,
            std=std,
            class_names=class_names,
            bands=bands,
            image_size=image_size,
            mask_values=mask_values,
            pixel_range=pixel_range,
            pixel_size=pixel_size,
            out_indices=out_indices,
            decoder_channels=decoder_channels,
            dropout=dropout,
            freeze_backbone=freeze_backbone,
            losses=losses,
            ignore_index=ignore_index,
            threshold=threshold,
            lr=lr,
            weight_decay=weight_decay,
            layer_decay=layer_decay,
            schedule=schedule,
            warmup_steps=warmup_steps,
            poly_power=poly_power,
            min_lr_ratio=min_lr_ratio,
            num_overlays=num_overlays,
            teacher_checkpoint=teacher_checkpoint,
            distill_alpha=distill_alpha,
            distill_temperature=distill_temperature,
            distill_feature_weight=distill_feature_weight,
        )
        mean, std = self.input_normalization()
        self._register_normalization(mean, std, 2 * in_chans)

    def input_normalization(self) -> Tuple[Sequence[float], Sequence[float]]:
        """(mean, std) of the stacked input: the before date's bands, then the after date's."""
        hp = self.hparams
        before_mean = hp.get("before_mean") if hp.get("before_mean") is not None else hp["mean"]
        before_std = hp.get("before_std") if hp.get("before_std") is not None else hp["std"]
        return [*before_mean, *hp["mean"]], [*before_std, *hp["std"]]

    def configure_models(self) -> None:
        hp = self.hparams
        self.model = ChangeModel(
            hp.backbone,
            num_classes=self.num_outputs,
            in_chans=hp.in_chans,
            backbone_checkpoint=hp.backbone_checkpoint,
            out_indices=hp.out_indices,
            decoder_channels=hp.decoder_channels,
            dropout=hp.dropout,
            freeze_backbone=hp.freeze_backbone,
            backbone_kwargs=hp.backbone_kwargs,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2 * in_chans, H, W) normalised pair (before bands first) -> (B, 1, H, W) logits."""
        bands = self.hparams.in_chans
        if x.ndim != 4 or x.shape[1] != 2 * bands:
            raise ValueError(
                f"expected a (B, {2 * bands}, H, W) tensor (the before date's {bands} bands, then the after "
                f"date's), got shape {tuple(x.shape)}"
            )
        return self.model(x[:, :bands], x[:, bands:])

    def configure_losses(self) -> None:
        if not self.semantic:
            return super().configure_losses()
        weights = self.hparams.losses if self.hparams.losses is not None else {"ce": 1.0, "dice": 1.0}
        self.criterion = MulticlassSegmentationLoss(weights, self.num_outputs, self.hparams.ignore_index)

    def configure_metrics(self) -> None:
        if not self.semantic:
            return super().configure_metrics()
        kwargs = dict(num_classes=self.num_outputs, ignore_index=self.hparams.ignore_index, average="macro")
        metrics = MetricCollection(
            {
                "iou": MulticlassJaccardIndex(**kwargs),
                "f1": MulticlassF1Score(**kwargs),
                "precision": MulticlassPrecision(**kwargs),
                "recall": MulticlassRecall(**kwargs),
            }
        )
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def configure_model(self) -> None:
        """Lightning hook: the datamodule's fields (``BaseTask``), then a check that its masks fit
        the classes (class indices for semantic change, a binary convention otherwise)."""
        super().configure_model()
        mask_values = self.hparams.get("mask_values")
        if mask_values is not None and (mask_values == CLASS_INDICES) != self.semantic:
            kinds = f"{len(self.hparams.class_names)} class_names"
            wanted = "mask_values='classes'" if self.semantic else "a binary mask_values ('0/255', '0/1', ...)"
            raise ValueError(f"the model has {kinds} and the data mask_values='{mask_values}': set {wanted}")

    def on_validation_epoch_start(self) -> None:
        # states left by an earlier trainer.validate() are inference tensors, which the
        # validation of a later fit cannot update in place (multi-class confusion matrices):
        # start every epoch from fresh ones
        self.val_metrics.reset()

    def _evaluation_step(self, batch: Dict[str, torch.Tensor], stage: str, metrics: MetricCollection) -> torch.Tensor:
        if not self.semantic:
            return super()._evaluation_step(batch, stage, metrics)
        out = self._shared_step(batch, stage)
        probabilities = out["logits"].float().softmax(dim=1)
        metrics.update(probabilities, batch["mask"])
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=batch["image"].shape[0])
        return probabilities

    def predict_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Change probabilities for a batch of raw pairs: (B, 1, H, W), or (B, K, H, W) per class
        for semantic change."""
        logits = self(self.normalize(batch["image"])).float()
        return logits.softmax(dim=1) if self.semantic else logits.sigmoid()

    def _save_overlays(self, batch: Dict[str, torch.Tensor], probabilities: torch.Tensor) -> None:
        log_dir = self.trainer.log_dir or self.trainer.default_root_dir  # a collective: every rank asks
        if not self.trainer.is_global_zero:
            return
        count = self.hparams.num_overlays
        if self.semantic:
            grid = semantic_change_grid(
                batch["image"][:count],
                batch["mask"][:count],
                probabilities[:count].argmax(dim=1),
                self.hparams.in_chans,
                self.num_outputs,
                self.hparams.ignore_index,
            )
            save_overlay_grid(grid, Path(log_dir) / "overlays" / f"epoch{self.current_epoch:03d}.png")
            return
        grid = change_overlay_grid(
            batch["image"][:count],
            batch["mask"][:count],
            probabilities[:count] > self.hparams.threshold,
            self.hparams.in_chans,
            self.hparams.ignore_index,
        )
        save_overlay_grid(grid, Path(log_dir) / "overlays" / f"epoch{self.current_epoch:03d}.png")


def change_overlay_grid(
    pairs: torch.Tensor,
    targets: torch.Tensor,
    predictions: torch.Tensor,
    in_chans: int,
    ignore_index: Optional[int] = 255,
) -> np.ndarray:
    """One row per sample: before | after | after with found (green), false (red) and missed
    (blue) change.

    Args:
        pairs: (B, 2 * in_chans, H, W) raw pixels, before bands first.
        targets: (B, H, W) 0/1 change labels (``ignore_index`` left uncoloured).
        predictions: (B, H, W) 0/1 predicted change.
        in_chans: bands per date.

    Returns:
        (B * H, 3 * W, 3) uint8 RGB array.
    """
    errors = overlay_grid(pairs[:, in_chans:], targets, predictions, ignore_index)
    before = np.concatenate([display_image(pair[:in_chans]) for pair in pairs], axis=0)
    return np.concatenate([before, errors], axis=1)


def semantic_change_grid(
    pairs: torch.Tensor,
    targets: torch.Tensor,
    predictions: torch.Tensor,
    in_chans: int,
    num_classes: int,
    ignore_index: Optional[int] = 255,
) -> np.ndarray:
    """One row per sample: before | after | predicted classes | reference classes, each class in
    its colour (``rsfm.tasks.overlays.class_colors``: no change black; not labelled grey).

    Returns:
        (B * H, 4 * W, 3) uint8 RGB array.
    """
    colors = class_colors(num_classes)
    rows = []
    for pair, target, prediction in zip(pairs, targets, predictions):
        target = target.cpu().numpy()
        unlabelled = target == ignore_index if ignore_index is not None else np.zeros(target.shape, bool)
        reference = colors[np.where(unlabelled, 0, target).clip(0, num_classes - 1)]
        reference[unlabelled] = 128
        panels = [display_image(pair[:in_chans]), display_image(pair[in_chans:]), colors[prediction.cpu().numpy()]]
        rows.append(np.concatenate([*panels, reference], axis=1))
    return np.concatenate(rows, axis=0)
