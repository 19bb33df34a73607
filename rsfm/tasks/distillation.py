"""Knowledge distillation: train a small rsfm task with a larger trained one as teacher.

A task fitted with ``teacher_checkpoint`` (``SceneClassificationTask``,
``BuildingSegmentationTask``) reads that checkpoint with :func:`~rsfm.tasks.base.load_task`
(the safe loader: the task class comes from the registry, the file only supplies data), checks
that the teacher reads the same pixels and predicts the same classes, freezes it and adds to
its label loss

- a logit term: ``KL(softmax(t / T) || softmax(s / T)) * T**2`` per image (classification) or
  per labelled pixel (segmentation; a binary model's logit ``z`` is the two-class pair ``(z, 0)``,
  so the same formula is the Bernoulli KL of the sigmoids), weighted ``distill_alpha`` against
  ``1 - distill_alpha`` for the label loss (Hinton et al., "Distilling the Knowledge in a
  Neural Network", 2015);
- optionally a feature term (``distill_feature_weight``): at every stride both backbones
  produce, a 1x1 convolution maps the student's map to the teacher's channels, and the mean
  squared error of the two maps, each normalised over channels at every position, is averaged
  over strides (FitNets, Romero et al. 2015, with normalised targets).

The teacher sees the student's augmented batch, converted to raw pixels and normalised with its
own statistics (its contract), so teacher and student may normalise differently. It is not part
of the student's module tree: not trained, not in the student's state dict, not in its
checkpoints. The adapters are trained with the student but are kept out of the checkpoint's
``state_dict`` (a side entry lets an interrupted run resume); a distilled checkpoint is an
ordinary task checkpoint, and ``load_task`` rebuilds it without a teacher.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from rsfm.models import fuse_batchnorm
from rsfm.tasks.base import BaseTask, load_task, task_name
from rsfm.tasks.contract import InputContract

__all__ = [
    "DistillationMixin",
    "check_distillation_arguments",
    "check_teacher_contract",
    "feature_distillation_loss",
    "logit_distillation_loss",
]

#: checkpoint entry holding the adapters' weights (training-only, read back on resume)
ADAPTERS_KEY = "rsfm_distillation_adapters"
_ADAPTERS_PREFIX = "distill_adapters."

# (module to hook, index into its list output or None, channels, stride)
_Tap = Tuple[nn.Module, Optional[int], int, int]


def logit_distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    valid: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``KL(softmax(t / T) || softmax(s / T)) * T**2``, averaged over images or pixels.

    Args:
        student_logits, teacher_logits: (B, C) or (B, C, H, W); C = 1 is a binary model's
            logit ``z``, compared as the two-class logits ``(z, 0)`` (Bernoulli KL).
        temperature: ``T`` > 0; the square keeps gradient sizes comparable across ``T``.
        valid: (B, H, W) boolean mask of the pixels that count (segmentation); ``None``: all.

    Returns:
        A scalar, 0 (with its graph) when no pixel is valid. Zero, with zero gradient, when the
        student's logits equal the teacher's.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} differ"
        )
    student, teacher = student_logits.float() / temperature, teacher_logits.float() / temperature
    if student.shape[1] == 1:
        student = torch.cat([student, torch.zeros_like(student)], dim=1)
        teacher = torch.cat([teacher, torch.zeros_like(teacher)], dim=1)
    per_item = F.kl_div(
        F.log_softmax(student, dim=1), F.log_softmax(teacher, dim=1), reduction="none", log_target=True
    ).sum(dim=1)
    if valid is not None:
        per_item = per_item[valid]
    if per_item.numel() == 0:
        return student_logits.sum() * 0.0
    return per_item.mean() * temperature**2


def feature_distillation_loss(
    student_maps: Sequence[torch.Tensor], teacher_maps: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Mean over pyramid levels of the MSE between channel-normalised maps.

    Args:
        student_maps: (B, C_i, H_i, W_i) maps already mapped to the teacher's channels; resized
            (bilinear) to the teacher's size where they differ (models that round odd sizes
            differently).
        teacher_maps: the teacher's maps at the same strides.
    """
    losses = []
    for student, teacher in zip(student_maps, teacher_maps):
        if student.shape[-2:] != teacher.shape[-2:]:
            student = F.interpolate(student, size=teacher.shape[-2:], mode="bilinear", align_corners=False)
        channels = teacher.shape[1]
        # normalised over channels at each position: the teacher's scale does not set the loss's
        student = F.layer_norm(student.float().permute(0, 2, 3, 1), (channels,))
        teacher = F.layer_norm(teacher.float().permute(0, 2, 3, 1), (channels,))
        losses.append(F.mse_loss(student, teacher))
    return torch.stack(losses).mean()


def check_distillation_arguments(alpha: float, temperature: float, feature_weight: float) -> None:
    """Raises ``ValueError`` for a ``distill_alpha`` outside [0, 1], a temperature <= 0 or a
    negative feature weight."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"distill_alpha={alpha}: must lie in [0, 1] (the label loss gets 1 - distill_alpha)")
    if not temperature > 0:
        raise ValueError(f"distill_temperature={temperature}: must be positive")
    if not feature_weight >= 0:
        raise ValueError(f"distill_feature_weight={feature_weight}: must be 0 (off) or positive")


def check_teacher_contract(teacher: InputContract, student: InputContract, source: str = "teacher") -> None:
    """A teacher must take the student's pixels and predict its classes.

    Bands, band count, pixel range (when both record them), task kind, classes (in order) and
    output count must agree. Normalisation may differ: the teacher normalises raw pixels itself.

    Raises:
        ValueError: naming ``source`` and every field that differs, with both values.
    """
    differences = []
    for field in ("task", "in_chans", "class_names", "num_outputs", "bands", "pixel_range"):
        mine, theirs = getattr(student, field), getattr(teacher, field)
        if field in ("bands", "pixel_range") and (mine is None or theirs is None):
            continue  # not recorded on one side (older checkpoints, data that does not say)
        if (dict(mine) if field == "pixel_range" else mine) != (dict(theirs) if field == "pixel_range" else theirs):
            differences.append(f"{field}: teacher {_brief(theirs)}, student {_brief(mine)}")
    if differences:
        raise ValueError(
            f"{source}: the teacher's input contract differs from the student's ({'; '.join(differences)}). "
            "Distil from a teacher trained on the same bands, pixel range and classes, in the same order"
        )


def _brief(value: Any) -> str:
    if isinstance(value, (list, tuple)) and len(value) > 6:
        return f"{list(value[:3])} ... ({len(value)} in all)"
    return str(list(value) if isinstance(value, tuple) else value)


def _pyramid_taps(module: nn.Module) -> List[_Tap]:
    """Where a timm model's pyramid levels can be read: ``features_only`` models return them
    as a list; classifiers name the module of each level in ``feature_info``."""
    info = getattr(module, "feature_info", None)
    if hasattr(info, "channels") and hasattr(info, "reduction"):
        return [
            (module, index, channels, stride)
            for index, (channels, stride) in enumerate(zip(info.channels(), info.reduction()))
        ]
    if isinstance(info, list) and info:
        modules = dict(module.named_modules())
        return [(modules[entry["module"]], None, entry["num_chs"], entry["reduction"]) for entry in info]
    raise ValueError(
        f"{type(module).__name__} does not describe its feature pyramid (timm's feature_info); feature "
        "distillation needs it: set distill_feature_weight=0"
    )


@contextlib.contextmanager
def _recording(taps: Sequence[_Tap]) -> Iterator[List[Optional[torch.Tensor]]]:
    """Collect the maps of ``taps`` during the forward passes inside the block."""
    maps: List[Optional[torch.Tensor]] = [None] * len(taps)
    handles = []
    for position, (module, index, _, _) in enumerate(taps):

        def keep(module: nn.Module, args: Any, output: Any, position: int = position, index: Optional[int] = index):
            maps[position] = output if index is None else output[index]

        handles.append(module.register_forward_hook(keep))
    try:
        yield maps
    finally:
        for handle in handles:
            handle.remove()


class DistillationMixin:
    """Adds distillation from ``teacher_checkpoint`` to an rsfm task (see the module docstring).

    The task takes ``teacher_checkpoint``, ``distill_alpha``, ``distill_temperature`` and
    ``distill_feature_weight`` as arguments, calls :meth:`_configure_distillation` at the end of
    ``configure_model``, wraps the student's training forward in :meth:`_student_pyramid` and
    passes its label loss through :meth:`_add_distillation`; it implements
    :meth:`_pyramid_module`. Classes using it list it before ``BaseTask``.
    """

    _teacher: Optional[BaseTask] = None
    _teacher_path: Optional[str] = None
    _distill_pairs: Tuple[Tuple[int, int], ...] = ()

    def _pyramid_module(self) -> nn.Module:
        """The timm model whose pyramid feature distillation reads (the running weights)."""
        raise NotImplementedError

    @property
    def distilling(self) -> bool:
        """Whether a teacher is loaded (while fitting with ``teacher_checkpoint``)."""
        return self._teacher is not None

    def _configure_distillation(self) -> None:
        """Load, check and freeze the teacher, and build the feature adapters (fitting only).

        Raises:
            ValueError: the teacher file is not an rsfm task checkpoint, holds another kind of
                task, or its contract differs from the student's.
        """
        path = self.hparams.get("teacher_checkpoint")
        trainer = self._trainer
        if not path or self._teacher is not None or trainer is None or trainer.state.fn != "fit":
            return
        teacher = load_teacher(path, self)
        object.__setattr__(self, "_teacher", teacher)  # outside the module tree: not trained, not saved
        object.__setattr__(self, "_teacher_path", str(path))
        if self.hparams.get("distill_feature_weight", 0.0) > 0:
            self._build_adapters(teacher)

    def _build_adapters(self, teacher: BaseTask) -> None:
        student_taps = _pyramid_taps(self._pyramid_module())
        teacher_taps = _pyramid_taps(teacher._pyramid_module())
        teacher_by_stride = {}
        for position, (_, _, _, stride) in enumerate(teacher_taps):
            teacher_by_stride.setdefault(stride, position)
        pairs = tuple(
            (position, teacher_by_stride[stride])
            for position, (_, _, _, stride) in enumerate(student_taps)
            if stride in teacher_by_stride
        )
        if not pairs:
            raise ValueError(
                f"teacher_checkpoint={self._teacher_path}: the student's pyramid strides "
                f"{[tap[3] for tap in student_taps]} share none with the teacher's {[tap[3] for tap in teacher_taps]}; "
                "feature distillation needs one in common (or set distill_feature_weight=0)"
            )
        self._distill_pairs = pairs
        self.distill_adapters = nn.ModuleList(
            nn.Conv2d(student_taps[s][2], teacher_taps[t][2], kernel_size=1) for s, t in pairs
        )

    @contextlib.contextmanager
    def _student_pyramid(self) -> Iterator[List[Optional[torch.Tensor]]]:
        """Record the student's pyramid during the block when feature distillation is on."""
        if not (self.distilling and self._distill_pairs):
            yield []
            return
        with _recording(_pyramid_taps(self._pyramid_module())) as maps:
            yield maps

    def _add_distillation(
        self,
        label_loss: torch.Tensor,
        student_logits: torch.Tensor,
        student_maps: Sequence[Optional[torch.Tensor]],
        raw_images: torch.Tensor,
        batch_size: int,
        valid: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """``(1 - alpha) * label_loss + alpha * logit term (+ weight * feature term)``; logs
        ``train/loss_label``, ``train/loss_kd`` and ``train/loss_feature``.

        Args:
            raw_images: the student's (augmented) batch in raw pixel units, for the teacher.
            valid: (B, H, W) pixels that count in the logit term (segmentation).
        """
        hparams = self.hparams
        teacher = self._teacher
        if next(teacher.parameters()).device != raw_images.device:
            teacher.to(raw_images.device)
        taps = _pyramid_taps(teacher._pyramid_module()) if self._distill_pairs else []
        with torch.no_grad(), _recording(taps) as teacher_maps:
            teacher_logits = teacher.forward_raw(raw_images)
        kd = logit_distillation_loss(student_logits, teacher_logits, hparams.distill_temperature, valid)
        alpha = hparams.distill_alpha
        loss = (1.0 - alpha) * label_loss + alpha * kd
        self.log("train/loss_label", label_loss, batch_size=batch_size)
        self.log("train/loss_kd", kd, batch_size=batch_size)
        if self._distill_pairs:
            adapted = [adapter(student_maps[s]) for adapter, (s, _) in zip(self.distill_adapters, self._distill_pairs)]
            feature = feature_distillation_loss(adapted, [teacher_maps[t] for _, t in self._distill_pairs])
            loss = loss + hparams.distill_feature_weight * feature
            self.log("train/loss_feature", feature, batch_size=batch_size)
        return loss

    def _distillation_parameters(self) -> List[Dict[str, Any]]:
        """Optimizer parameter groups of the adapters (no weight decay), none without them."""
        adapters = getattr(self, "distill_adapters", None)
        if not self.distilling or adapters is None:
            return []
        return [{"params": list(adapters.parameters()), "weight_decay": 0.0}]

    # checkpoints: the adapters travel beside the state dict, the teacher not at all ------

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)  # type: ignore[misc]
        state = checkpoint.get("state_dict", {})
        adapters = {key: state.pop(key) for key in [key for key in state if key.startswith(_ADAPTERS_PREFIX)]}
        if adapters:
            checkpoint[ADAPTERS_KEY] = adapters

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)  # type: ignore[misc]
        adapters = getattr(self, "distill_adapters", None)
        state = checkpoint.get("state_dict")
        if adapters is None or not isinstance(state, dict):
            return
        # resuming: the saved adapters, or (a run that had none) the fresh ones
        saved = checkpoint.get(ADAPTERS_KEY)
        fresh = {_ADAPTERS_PREFIX + key: value for key, value in adapters.state_dict().items()}
        if isinstance(saved, dict) and set(saved) == set(fresh):
            state.update(saved)
        else:
            state.update(fresh)


def load_teacher(path: Union[str, os.PathLike], student: BaseTask) -> BaseTask:
    """Read a teacher task for ``student``: frozen, in eval mode, BatchNorm folded.

    Raises:
        ValueError: the file is not an rsfm task checkpoint (the message of ``load_task``),
            holds another kind of task than the student, or its contract differs.
    """
    try:
        teacher = load_task(path, map_location="cpu")
    except ValueError as error:
        raise ValueError(f"teacher_checkpoint: {error}") from error
    if not isinstance(teacher, type(student)):
        raise ValueError(
            f"teacher_checkpoint={path}: holds a {task_name(type(teacher))} task, the student is a "
            f"{task_name(type(student))}; distil from a checkpoint of the same task"
        )
    check_teacher_contract(teacher.contract, student.contract, source=f"teacher_checkpoint={path}")
    # folded BatchNorm: the same outputs for a frozen teacher, one pass less per step
    return fuse_batchnorm(teacher.eval()).requires_grad_(False)
