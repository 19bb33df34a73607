"""Building extraction: binary semantic segmentation with a UperNet model."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from timm.scheduler import CosineLRScheduler, PolyLRScheduler
from timm.scheduler.scheduler import Scheduler
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryF1Score, BinaryJaccardIndex, BinaryPrecision, BinaryRecall

from rsfm.models.upernet import SegmentationModel
from rsfm.tasks.base import BaseTask, register_task
from rsfm.tasks.distillation import DistillationMixin, check_distillation_arguments
from rsfm.tasks.losses import BinarySegmentationLoss
from rsfm.tasks.overlays import overlay_grid, save_overlay_grid

__all__ = ["BuildingSegmentationTask"]

# ImageNet statistics in 0-255 pixel units, the usual choice for 8-bit RGB imagery.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
SCHEDULES = ("poly", "cosine")


@register_task
class BuildingSegmentationTask(DistillationMixin, BaseTask):
    """Building / background segmentation: ``SegmentationModel`` (one logit per pixel).

    Args:
        backbone: timm backbone name (``'vitaev2_s'``, ``'vitaev2_tiny_test'``, any timm model
            with ``features_only``).
        backbone_checkpoint: pretrained backbone weights for initialisation (RSP checkpoint,
            ``rsfm export-backbone`` output); not needed to rebuild a trained task.
        backbone_kwargs: extra ``timm.create_model`` arguments (e.g. ``drop_path_rate``).
        in_chans: input bands.
        mean, std: per-band normalisation in raw pixel units (e.g. 0-255 for 8-bit imagery).
        class_names: names of label 0 and label 1, e.g. ``('background', 'building')``.
        bands: 1-based band numbers read from files, in model order (``None``: all).
        image_size: training patch side in pixels: the default tile size of tiled inference.
        mask_values: the training masks' convention (e.g. ``"0/1"``), recorded for reference.
        pixel_range: data type and value range of the training pixels
            (``{"dtype": "uint8", "min": 0, "max": 255}``); predictors warn when their input
            differs.
        pixel_size: ground sampling distance of the training data in metres, when known.
        out_indices, decoder_channels, dropout, freeze_backbone: see ``SegmentationModel``.
        losses: loss term -> weight; terms ``bce``, ``dice``, ``focal``, ``lovasz``.
            Default ``{'bce': 1.0, 'dice': 1.0}``.
        ignore_index: mask value excluded from loss and metrics (padding, nodata).
        threshold: probability above which a pixel counts as building in the metrics.
        lr: peak AdamW learning rate of the decoder (backbone stages get ``layer_decay`` less).
        weight_decay: AdamW weight decay (not applied to biases and norms).
        layer_decay: per-stage learning-rate factor for the backbone (1 = none).
        schedule: ``'poly'`` or ``'cosine'`` decay over the run, stepped every batch.
        warmup_steps: linear warmup steps.
        poly_power: exponent of the poly decay.
        min_lr_ratio: final learning rate as a fraction of ``lr``.
        num_overlays: validation samples drawn as PNG each epoch (0 disables), saved under
            ``<log dir>/overlays/`` (not during ``fast_dev_run``).
        teacher_checkpoint: a trained ``BuildingSegmentationTask`` checkpoint (same bands, pixel
            range and classes) to distil from while fitting; read with ``load_task``, frozen,
            never saved into this task's checkpoints. ``None``: no distillation
            (``rsfm.tasks.distillation``, docs/howto/distill.md).
        distill_alpha: weight of the distillation loss; the label loss gets ``1 - distill_alpha``.
        distill_temperature: temperature of the per-pixel logit distillation (the loss is
            multiplied by its square); ``ignore_index`` pixels are left out.
        distill_feature_weight: weight of the feature distillation (1x1 adapters from the
            student's backbone pyramid to the teacher's at each common stride, MSE of
            channel-normalised maps); 0 turns it off.

    ``bands``, ``image_size``, ``mask_values``, ``pixel_range`` and ``pixel_size`` left ``None``
    are taken from the datamodule when training starts (see ``BaseTask.configure_model``).
    ``forward(task.normalize(raw))`` gives (B, 1, H, W) logits at input resolution.
    """

    data_fields = ("bands", "image_size", "mask_values", "pixel_range", "pixel_size")

    def __init__(
        self,
        backbone: str = "vitaev2_s",
        backbone_checkpoint: Optional[Union[str, os.PathLike]] = None,
        backbone_kwargs: Optional[Dict[str, Any]] = None,
        in_chans: int = 3,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        class_names: Sequence[str] = ("background", "building"),
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
        super().__init__()
        self.save_hyperparameters()
        check_distillation_arguments(distill_alpha, distill_temperature, distill_feature_weight)
        self._check_class_names(class_names)
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule={schedule!r}: choose one of {SCHEDULES}")
        self._register_normalization(mean, std, in_chans)
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()

    def _check_class_names(self, class_names: Sequence[str]) -> None:
        if len(class_names) != 2:
            raise ValueError(
                f"building segmentation is binary: class_names needs two names (label 0, label 1), "
                f"got {list(class_names)}"
            )

    def configure_models(self) -> None:
        hp = self.hparams
        self.model = SegmentationModel(
            hp.backbone,
            num_classes=1,
            in_chans=hp.in_chans,
            backbone_checkpoint=hp.backbone_checkpoint,
            out_indices=hp.out_indices,
            decoder_channels=hp.decoder_channels,
            dropout=hp.dropout,
            freeze_backbone=hp.freeze_backbone,
            backbone_kwargs=hp.backbone_kwargs,
        )

    def configure_model(self) -> None:
        """Lightning hook: data-dependent arguments from the datamodule (``BaseTask``), then the
        teacher when fitting with a ``teacher_checkpoint``."""
        super().configure_model()
        self._configure_distillation()

    def _pyramid_module(self) -> nn.Module:
        """The backbone whose pyramid feature distillation reads."""
        return self.model.backbone

    def configure_losses(self) -> None:
        weights = self.hparams.losses if self.hparams.losses is not None else {"bce": 1.0, "dice": 1.0}
        self.criterion = BinarySegmentationLoss(weights, self.hparams.ignore_index)

    def configure_metrics(self) -> None:
        kwargs = dict(threshold=self.hparams.threshold, ignore_index=self.hparams.ignore_index)
        metrics = MetricCollection(
            {
                "iou": BinaryJaccardIndex(**kwargs),
                "f1": BinaryF1Score(**kwargs),
                "precision": BinaryPrecision(**kwargs),
                "recall": BinaryRecall(**kwargs),
            }
        )
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) normalised image -> (B, 1, H, W) building logits."""
        return self.model(x)

    def _shared_step(self, batch: Dict[str, torch.Tensor], stage: str) -> Dict[str, torch.Tensor]:
        distilling = stage == "train" and self.distilling
        with self._student_pyramid() if distilling else contextlib.nullcontext([]) as student_maps:
            logits = self(self.normalize(batch["image"]))
        loss, terms = self.criterion(logits, batch["mask"])
        batch_size = batch["image"].shape[0]
        if distilling:
            ignore_index = self.hparams.ignore_index
            valid = None if ignore_index is None else batch["mask"] != ignore_index
            loss = self._add_distillation(loss, logits, student_maps, batch["image"], batch_size, valid=valid)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=batch_size, sync_dist=stage != "train")
        for name, value in terms.items():
            self.log(f"{stage}/loss_{name}", value, batch_size=batch_size, sync_dist=stage != "train")
        return {"loss": loss, "logits": logits}

    def training_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")["loss"]

    def _evaluation_step(self, batch: Dict[str, torch.Tensor], stage: str, metrics: MetricCollection) -> torch.Tensor:
        out = self._shared_step(batch, stage)
        probabilities = out["logits"].float().sigmoid().squeeze(1)
        metrics.update(probabilities, batch["mask"])
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=batch["image"].shape[0])
        return probabilities

    def validation_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> None:
        probabilities = self._evaluation_step(batch, "val", self.val_metrics)
        # fast_dev_run suppresses logging; the sanity check's untrained predictions say nothing
        if (
            batch_idx == 0
            and self.hparams.num_overlays > 0
            and not (self.trainer.sanity_checking or self.trainer.fast_dev_run)
        ):
            self._save_overlays(batch, probabilities)

    def test_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluation_step(batch, "test", self.test_metrics)

    def predict_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Building probabilities (B, 1, H, W) for a batch of raw images."""
        return self(self.normalize(batch["image"])).float().sigmoid()

    def _save_overlays(self, batch: Dict[str, torch.Tensor], probabilities: torch.Tensor) -> None:
        log_dir = self.trainer.log_dir or self.trainer.default_root_dir  # a collective: every rank asks
        if not self.trainer.is_global_zero:
            return
        count = self.hparams.num_overlays
        grid = overlay_grid(
            batch["image"][:count],
            batch["mask"][:count],
            probabilities[:count] > self.hparams.threshold,
            self.hparams.ignore_index,
        )
        save_overlay_grid(grid, Path(log_dir) / "overlays" / f"epoch{self.current_epoch:03d}.png")

    def configure_optimizers(self) -> Dict[str, Any]:
        """AdamW with stage-wise rates (timm ``create_optimizer_v2``) and a per-step
        schedule (timm ``PolyLRScheduler`` / ``CosineLRScheduler``).

        Decoder and head train at ``lr``; backbone stage ``i`` of ``n`` at
        ``lr * layer_decay ** (n - i)`` (``SegmentationModel.group_matcher``). Biases and norms
        get no weight decay. At optimizer step ``t`` of ``T`` (``W = min(warmup_steps, T)``) the
        rate rises linearly from ``lr / W`` at ``t = 0`` to ``lr`` at ``t = W``, then decays over
        the remaining ``T - W`` steps: ``poly`` as ``(1 - p) ** poly_power``, ``cosine`` as
        ``(1 + cos(pi p)) / 2`` of the way from ``lr`` to ``lr * min_lr_ratio``
        (``p = (t - W) / (T - W)``). Unlike the hand-written schedule this replaced, the warm-up
        reaches ``lr`` at step ``W`` instead of ``W - 1`` (timm's warm-up), and a resumed run
        keeps the schedule saved in its checkpoint, length included, rather than stretching it
        to a new ``max_epochs``.

        Raises:
            ValueError: ``layer_decay`` outside (0, 1], or the run length is unknown.
        """
        hp = self.hparams
        if not 0 < hp.layer_decay <= 1:
            raise ValueError(f"layer_decay must be in (0, 1], got {hp.layer_decay}")
        total_steps = self.trainer.estimated_stepping_batches  # also sets up the train dataloader
        if math.isinf(total_steps):
            raise ValueError("the training length is unknown: set trainer max_epochs or max_steps")
        total_steps = max(1, int(total_steps))
        warmup_steps = min(hp.warmup_steps, total_steps)
        optimizer = self._adamw(hp.lr, hp.weight_decay, hp.layer_decay)
        for group in self._distillation_parameters():  # the feature adapters, before the schedule reads the groups
            optimizer.add_param_group(group)
        common = dict(
            t_initial=max(1, total_steps - warmup_steps),
            lr_min=hp.lr * hp.min_lr_ratio,
            warmup_t=warmup_steps,
            warmup_lr_init=hp.lr / max(1, warmup_steps),
            warmup_prefix=True,
            t_in_epochs=False,
        )
        if hp.schedule == "poly":
            scheduler = PolyLRScheduler(optimizer, power=hp.poly_power, **common)
        else:
            scheduler = CosineLRScheduler(optimizer, **common)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def lr_scheduler_step(self, scheduler: Scheduler, metric: Any) -> None:
        scheduler.step_update(num_updates=self.global_step)
