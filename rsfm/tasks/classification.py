"""Scene classification over any timm backbone (ViTAEv2 by default) with the RSP recipe.

The recipe of the RSP paper (Swin training code): AdamW, lr 5e-4 x batch/512 with linear
warm-up and per-step cosine decay, weight decay 0.05, label smoothing 0.1, mixup 0.8, cutmix
1.0, random erasing 0.25 and drop path. Class names, band count, normalisation statistics,
input size and bands may be left out: they are then taken from the datamodule when training
starts, and stored in the checkpoint so that ``load_task`` rebuilds the model from it alone.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from timm.data import Mixup
from timm.data.mixup import mixup_target
from timm.data.random_erasing import RandomErasing
from timm.loss import SoftTargetCrossEntropy
from timm.scheduler import CosineLRScheduler
from timm.utils import ModelEmaV3
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from rsfm.models.factory import create_model
from rsfm.tasks.base import BaseTask, _short, register_task
from rsfm.tasks.confusion import save_confusion_matrix
from rsfm.tasks.contract import CLASSIFICATION
from rsfm.tasks.distillation import DistillationMixin, check_distillation_arguments

__all__ = ["SceneClassificationTask"]

_REQUIRED = ("class_names", "in_chans", "mean", "std")


@register_task
class SceneClassificationTask(DistillationMixin, BaseTask):
    """Scene classification ``LightningModule``.

    ``class_names``, ``in_chans``, ``mean``, ``std``, ``image_size``, ``bands`` and
    ``pixel_range`` left ``None`` are taken from the datamodule when training starts.

    Args:
        backbone: any timm model name (``vitaev2_s``, ``vitaev2_tiny_test``, ``resnet50``, ...).
        backbone_checkpoint: pretrained weights for the backbone: an official RSP file, a file
            from ``rsfm export-backbone`` or a state dict (see ``rsfm.create_model``). The
            classifier is re-initialised when its class count differs.
        in_chans: input bands; default: from the datamodule.
        class_names: classifier output order; default: from the datamodule.
        mean, std: per-band normalisation in raw pixel units (e.g. 0-255); default: from the
            datamodule (given there or computed on the training images).
        image_size: input side in pixels used for inference on raw files; default: from the
            datamodule.
        bands: 1-based band numbers read from files for inference; default: from the datamodule.
        pixel_range: data type and value range of the training pixels
            (``{"dtype": "uint8", "min": 0, "max": 255}``); predictors warn when their input
            differs. Default: from the datamodule.
        model_kwargs: extra ``timm.create_model`` arguments (e.g. ``img_size`` for ViTs).
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth of the backbone.
        lr: peak learning rate at a batch of ``lr_batch_size`` images.
        lr_batch_size: reference batch for linear scaling: the peak, warm-up and minimum rates
            are multiplied by (batch per device x devices x gradient accumulation) /
            ``lr_batch_size``; ``None`` uses the rates as given.
        warmup_lr: learning rate at the first step (scaled like ``lr``).
        min_lr: learning rate at the end of the cosine decay (scaled like ``lr``).
        warmup_epochs: linear warm-up length in epochs (fractions allowed).
        weight_decay: AdamW weight decay (not applied to biases and norm parameters).
        layer_decay: layer-wise learning-rate decay (e.g. 0.75 for fine-tuning); each earlier
            block's rate is multiplied by it. ``None`` turns it off.
        label_smoothing: label smoothing of the training targets.
        mixup_alpha, cutmix_alpha: Beta parameters of timm's mixup and cutmix (0 turns off).
        mixup_prob: probability of mixing a batch.
        mixup_switch_prob: probability of cutmix instead of mixup when both are on.
        random_erase: probability of erasing a random box (per-pixel noise) in each image.
        ema_decay: keep an exponential moving average of the weights with this decay (e.g.
            0.9998); validation, test, prediction and ``export-backbone`` then use it.
        teacher_checkpoint: a trained ``SceneClassificationTask`` checkpoint (same classes in the
            same order, bands and pixel range) to distil from while fitting; read with
            ``load_task``, frozen, never saved into this task's checkpoints. ``None``: no
            distillation (``rsfm.tasks.distillation``, docs/howto/distill.md).
        distill_alpha: weight of the distillation loss; the label loss gets ``1 - distill_alpha``.
        distill_temperature: softmax temperature of the logit distillation (the loss is
            multiplied by its square).
        distill_feature_weight: weight of the feature distillation (1x1 adapters from the
            student's pyramid to the teacher's at each common stride, MSE of channel-normalised
            maps); 0 turns it off.
    """

    task_kind = CLASSIFICATION
    data_fields = ("class_names", "in_chans", "mean", "std", "image_size", "bands", "pixel_range")

    def __init__(
        self,
        backbone: str = "vitaev2_s",
        backbone_checkpoint: Optional[str] = None,
        in_chans: Optional[int] = None,
        class_names: Optional[List[str]] = None,
        mean: Optional[List[float]] = None,
        std: Optional[List[float]] = None,
        image_size: Optional[int] = None,
        bands: Optional[List[int]] = None,
        pixel_range: Optional[Dict[str, Any]] = None,
        model_kwargs: Optional[Dict[str, Any]] = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        lr: float = 5e-4,
        lr_batch_size: Optional[int] = 512,
        warmup_lr: float = 5e-7,
        min_lr: float = 5e-6,
        warmup_epochs: float = 5.0,
        weight_decay: float = 0.05,
        layer_decay: Optional[float] = None,
        label_smoothing: float = 0.1,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        mixup_prob: float = 1.0,
        mixup_switch_prob: float = 0.5,
        random_erase: float = 0.25,
        ema_decay: Optional[float] = None,
        teacher_checkpoint: Optional[str] = None,
        distill_alpha: float = 0.5,
        distill_temperature: float = 2.0,
        distill_feature_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_distillation_arguments(distill_alpha, distill_temperature, distill_feature_weight)
        self.model: Optional[nn.Module] = None
        self.model_ema: Optional[ModelEmaV3] = None
        self._ema_step = -1
        if all(self.hparams[name] is not None for name in _REQUIRED):
            self.configure_models()

    # building ---------------------------------------------------------------------------

    @property
    def class_names(self) -> List[str]:
        """Class names in output order."""
        return list(self.hparams.class_names or [])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def configure_model(self) -> None:
        """Lightning hook: take missing data-dependent arguments from the datamodule (see
        ``BaseTask.configure_model``), build the model and, when fitting with a
        ``teacher_checkpoint``, load the teacher."""
        super().configure_model()
        if self.model is None:
            missing = [name for name in _REQUIRED if self.hparams[name] is None]
            if missing:
                raise ValueError(
                    f"SceneClassificationTask needs {missing}: pass them as model arguments or train with a "
                    "datamodule that provides them (rsfm.data.SceneDataModule)"
                )
            self.configure_models()
        self._configure_distillation()

    def configure_models(self) -> None:
        """Create the backbone (with pretrained weights), its EMA copy, losses and metrics."""
        hparams = self.hparams
        self._register_normalization(hparams.mean, hparams.std, hparams.in_chans)
        self.model = create_model(
            hparams.backbone,
            checkpoint=hparams.backbone_checkpoint,
            num_classes=self.num_classes,
            in_chans=hparams.in_chans,
            drop_rate=hparams.drop_rate,
            drop_path_rate=hparams.drop_path_rate,
            **(hparams.model_kwargs or {}),
        )
        self.model_ema = None
        if hparams.ema_decay:
            self.model_ema = ModelEmaV3(self.model, decay=hparams.ema_decay)
            # it only runs when the task is in eval mode; train mode keeps Lightning's mode checks quiet
            self.model_ema.module.train()
        self.configure_losses()
        self.configure_metrics()

    def configure_losses(self) -> None:
        """Soft-target cross-entropy on mixed, label-smoothed targets (timm)."""
        hparams = self.hparams
        self.train_loss = SoftTargetCrossEntropy()
        self.mixup = None
        if hparams.mixup_alpha > 0 or hparams.cutmix_alpha > 0:
            self.mixup = Mixup(
                mixup_alpha=hparams.mixup_alpha,
                cutmix_alpha=hparams.cutmix_alpha,
                prob=hparams.mixup_prob,
                switch_prob=hparams.mixup_switch_prob,
                label_smoothing=hparams.label_smoothing,
                num_classes=self.num_classes,
            )

    def configure_metrics(self) -> None:
        """Top-1, top-5 and mean per-class accuracy; per-class accuracy and confusion at test."""
        num_classes = self.num_classes
        metrics = {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "acc_macro": MulticlassAccuracy(num_classes, average="macro"),
        }
        if num_classes > 5:
            metrics["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
        self.val_metrics = MetricCollection(metrics, prefix="val/")
        self.test_metrics = self.val_metrics.clone(prefix="test/")
        self.test_per_class = MulticlassAccuracy(num_classes, average=None)
        self.test_confusion = MulticlassConfusionMatrix(num_classes)

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        """Keep the checkpoint's classes and normalisation: the weights were trained with them."""
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("hyper_parameters", {})
        if saved.get("class_names") is not None and list(saved["class_names"]) != self.class_names:
            raise ValueError(
                f"the checkpoint was trained on classes {_short(saved['class_names'])}, the data has "
                f"{_short(self.class_names)}; set the data's class_names to the checkpoint's, or fine-tune "
                "from its backbone (backbone_checkpoint=...) instead"
            )
        if saved.get("mean") is not None and (saved["mean"] != self.hparams.mean or saved["std"] != self.hparams.std):
            self.hparams.mean, self.hparams.std = list(saved["mean"]), list(saved["std"])
            # in place: the buffers may already sit on the accelerator
            self.norm_mean.copy_(torch.tensor(saved["mean"]).view_as(self.norm_mean))
            self.norm_std.copy_(torch.tensor(saved["std"]).view_as(self.norm_std))

    def backbone_module(self, use_ema: bool = True) -> nn.Module:
        """The timm classifier: its EMA copy when kept and ``use_ema``, else the trained weights."""
        if self.model is None:
            raise ValueError("the model is not built yet: give class_names, in_chans, mean and std")
        return self.model_ema.module if use_ema and self.model_ema is not None else self.model

    def _pyramid_module(self) -> nn.Module:
        """The classifier ``forward`` runs now (the EMA copy outside training), for distillation."""
        return self.backbone_module(use_ema=not self.training)

    # forward and steps ------------------------------------------------------------------

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Raw pixels ``(B, in_chans, H, W)`` in the training files' units -> logits ``(B, classes)``.

        Outside training the EMA weights are used when ``ema_decay`` is set.
        """
        if self.model is None:
            raise RuntimeError(
                "the model is not built yet: give class_names, in_chans, mean and std, or fit with a datamodule"
            )
        model = self.model_ema.module if self.model_ema is not None and not self.training else self.model
        return model(self.normalize(images))

    def forward_raw(self, images: torch.Tensor) -> torch.Tensor:
        """Raw pixels -> logits: ``forward`` already normalises."""
        return self(images)

    def training_step(self, batch: Dict[str, Any], batch_idx: int) -> Optional[torch.Tensor]:
        images, labels = batch["image"], batch["label"]
        if len(images) == 0:  # every file of the batch was unreadable and skipped
            return None
        inputs = self.normalize(images)
        if self.hparams.random_erase > 0:
            inputs = RandomErasing(self.hparams.random_erase, mode="pixel", device=inputs.device)(inputs)
        if self.mixup is not None and len(inputs) % 2 == 0:  # timm mixes pairs: even batches only
            inputs, targets = self.mixup(inputs, labels)
        else:
            targets = mixup_target(labels, self.num_classes, smoothing=self.hparams.label_smoothing)
        with self._student_pyramid() as student_maps:
            logits = self.model(inputs)
        loss = self.train_loss(logits, targets)
        if self.distilling:  # the teacher sees the same augmented images, in raw pixel units
            raw = inputs * self.norm_std + self.norm_mean
            loss = self._add_distillation(loss, logits, student_maps, raw, batch_size=len(images))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        self.log(
            "train/lr", max(group["lr"] for group in self.trainer.optimizers[0].param_groups), batch_size=len(images)
        )
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.model_ema is not None and self.global_step != self._ema_step:  # once per optimizer step
            self.model_ema.update(self.model, step=self.global_step)
            self._ema_step = self.global_step

    def validation_step(self, batch: Dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val/loss")

    def test_step(self, batch: Dict[str, Any], batch_idx: int) -> None:
        logits = self._evaluate(batch, self.test_metrics, "test/loss")
        if logits is not None:
            self.test_per_class.update(logits, batch["label"])
            self.test_confusion.update(logits, batch["label"])

    def _evaluate(self, batch: Dict[str, Any], metrics: MetricCollection, loss_name: str) -> Optional[torch.Tensor]:
        images, labels = batch["image"], batch["label"]
        if len(images) == 0:
            return None
        logits = self(images)
        self.log(loss_name, F.cross_entropy(logits, labels), batch_size=len(images), prog_bar=True, sync_dist=True)
        metrics.update(logits, labels)
        self.log_dict(metrics, batch_size=len(images), prog_bar=True)
        return logits

    def on_test_epoch_end(self) -> None:
        """Log per-class accuracy; write the confusion matrix (CSV + PNG) into the log folder."""
        per_class = self.test_per_class.compute()
        for name, value in zip(self.class_names, per_class):
            self.log(f"test/acc_{name}", value, sync_dist=True)
        self.test_confusion.compute()  # a collective: every rank syncs; rank zero then reads the cached result
        log_dir = self.trainer.log_dir or self.trainer.default_root_dir  # every rank must ask
        if self.trainer.is_global_zero:
            csv_path, png_path = save_confusion_matrix(self.test_confusion, self.class_names, log_dir)
            rank_zero_info(f"confusion matrix: {csv_path}, {png_path}")
        self.test_per_class.reset()
        self.test_confusion.reset()

    def predict_step(self, batch: Dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> Dict[str, Any]:
        """Class probabilities ``(B, classes)`` with the batch's paths and labels."""
        probabilities = self(batch["image"]).softmax(dim=1) if len(batch["image"]) else torch.empty(0, self.num_classes)
        return {"path": batch.get("path", []), "label": batch.get("label"), "probabilities": probabilities}

    # optimisation -------------------------------------------------------------------------

    def configure_optimizers(self) -> Dict[str, Any]:
        """AdamW (timm, optional layer-wise decay) with per-step warm-up + cosine (timm)."""
        hparams = self.hparams
        trainer = self.trainer
        total_steps = trainer.estimated_stepping_batches  # also sets up the train dataloader
        if math.isinf(total_steps):
            raise ValueError("the training length is unknown: set trainer max_epochs or max_steps")
        steps_per_epoch = trainer.num_training_batches / trainer.accumulate_grad_batches
        if math.isinf(steps_per_epoch):
            steps_per_epoch = total_steps
        scale = 1.0
        if hparams.lr_batch_size:
            batch = self._effective_batch_size()
            scale = batch / hparams.lr_batch_size
            rank_zero_info(
                f"learning rate {hparams.lr * scale:.3g} = {hparams.lr:g} x {batch} (batch x devices x "
                f"accumulation) / {hparams.lr_batch_size}"
            )
        optimizer = self._adamw(hparams.lr * scale, hparams.weight_decay, hparams.layer_decay)
        for group in self._distillation_parameters():  # the feature adapters, before the schedule reads the groups
            optimizer.add_param_group(group)
        scheduler = CosineLRScheduler(
            optimizer,
            t_initial=max(1, int(total_steps)),
            lr_min=hparams.min_lr * scale,
            warmup_t=int(hparams.warmup_epochs * steps_per_epoch),
            warmup_lr_init=hparams.warmup_lr * scale,
            t_in_epochs=False,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def lr_scheduler_step(self, scheduler: CosineLRScheduler, metric: Any) -> None:
        scheduler.step_update(num_updates=self.global_step)

    def _effective_batch_size(self) -> int:
        loader = self.trainer.train_dataloader
        batch = getattr(loader, "batch_size", None) or getattr(
            getattr(loader, "batch_sampler", None), "batch_size", None
        )
        if batch is None:
            raise ValueError("cannot read the training batch size for lr scaling; set lr_batch_size=null and give lr")
        return batch * self.trainer.accumulate_grad_batches * self.trainer.world_size
