"""What every rsfm task shares: the input contract written into every checkpoint, input
normalisation, and rebuilding a task from its checkpoint file alone."""

from __future__ import annotations

import collections.abc
import inspect
import os
import types
import typing
from typing import Any, Dict, Optional, Sequence, Tuple, Type, Union

import torch
from lightning.pytorch import LightningModule
from timm.optim import create_optimizer_v2

from rsfm.models.checkpoint import load_checkpoint_file
from rsfm.tasks.contract import CLASSIFICATION, CONTRACT_KEY, SEGMENTATION, InputContract

_TASK_KEY = "rsfm_task"
# datamodule attributes that must equal the task's when both are set
_MUST_AGREE = ("class_names", "in_chans")


class BaseTask(LightningModule):
    """Base class of rsfm tasks.

    Subclasses set ``task_kind`` (``"classification"``, ``"segmentation"`` or ``"change"``), call
    ``self.save_hyperparameters()`` and accept ``in_chans``, ``mean``, ``std`` (per band, in raw
    pixel units, e.g. 0-255 for uint8 imagery) and ``class_names``, and optionally the other
    fields of :class:`~rsfm.tasks.contract.InputContract` (``bands``, ``pixel_range``,
    ``image_size``, ``mask_values``, ``pixel_size``). Those named in ``data_fields`` default to
    ``None`` and are taken from the datamodule when training starts (:meth:`configure_model`).
    Every checkpoint then carries the task's :attr:`contract`. The constructor argument for
    pretrained backbone weights is called ``backbone_checkpoint``; it is not needed again when
    a trained task is rebuilt from its own checkpoint.
    """

    task_kind: str = SEGMENTATION
    #: constructor arguments that, left ``None``, come from the datamodule's attribute of that name
    data_fields: Tuple[str, ...] = ("pixel_range",)

    def _register_normalization(self, mean: Sequence[float], std: Sequence[float], in_chans: int) -> None:
        if len(mean) != in_chans or len(std) != in_chans:
            raise ValueError(
                f"mean ({len(mean)} values) and std ({len(std)} values) must have one value per "
                f"input band (in_chans={in_chans})"
            )
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {list(std)}")
        self.register_buffer("norm_mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("norm_std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Raw pixels (B, in_chans, H, W), any numeric dtype -> normalised float32."""
        return (x.float() - self.norm_mean) / self.norm_std

    def forward_raw(self, x: torch.Tensor) -> torch.Tensor:
        """Raw pixels (B, in_chans, H, W) in the training data's units -> logits: what every
        predictor calls. Tasks whose ``forward`` takes normalised input (the default) are
        normalised here; a task whose ``forward`` normalises itself overrides this."""
        return self(self.normalize(x))

    @property
    def pixel_range(self) -> Optional[Dict[str, Any]]:
        """Data type and value range of the training pixels (``{"dtype", "min", "max"}``), or
        ``None`` when unknown (checkpoints written before rsfm recorded it)."""
        value = self.hparams.get("pixel_range")
        return dict(value) if value is not None else None

    def configure_model(self) -> None:
        """Lightning hook, called after the datamodule's ``setup``: every argument named in
        ``data_fields`` that was left ``None`` is taken from the datamodule's attribute of that
        name; ``class_names`` and ``in_chans`` given on both sides must agree.

        Raises:
            ValueError: the task's and the data's ``class_names`` or ``in_chans`` differ.
        """
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None:
            return
        for name in self.data_fields:
            offered = getattr(datamodule, name, None)
            if offered is None:
                continue
            if self.hparams.get(name) is None:
                self.hparams[name] = offered
            elif name in _MUST_AGREE and _plain(offered) != _plain(self.hparams[name]):
                raise ValueError(
                    f"the model's {name} ({_short(self.hparams[name])}) differ from the data's "
                    f"({_short(offered)}); make them equal or leave the model's unset"
                )

    @property
    def num_outputs(self) -> int:
        """Logits per image (classification) or pixel (segmentation; 1 = binary, sigmoid)."""
        if "num_outputs" in self.hparams:
            return int(self.hparams["num_outputs"])
        return len(self.hparams["class_names"]) if self.task_kind == CLASSIFICATION else 1

    def input_normalization(self) -> Tuple[Sequence[float], Sequence[float]]:
        """Per-channel (mean, std) of the model's input tensor in raw pixel units: the task's
        ``mean`` and ``std``; tasks taking several images per sample override it."""
        return self.hparams["mean"], self.hparams["std"]

    @property
    def contract(self) -> InputContract:
        """What this model takes and returns, from its (possibly datamodule-filled) arguments."""
        hparams = self.hparams

        def optional(name: str, convert: Any = None) -> Any:
            value = hparams.get(name)
            return None if value is None or convert is None else convert(value)

        mean, std = self.input_normalization()
        return InputContract(
            task=self.task_kind,
            in_chans=int(hparams["in_chans"]),
            mean=tuple(float(value) for value in mean),
            std=tuple(float(value) for value in std),
            class_names=tuple(str(name) for name in hparams["class_names"]),
            num_outputs=self.num_outputs,
            bands=optional("bands", lambda bands: tuple(int(band) for band in bands)),
            pixel_range=optional("pixel_range", dict),
            image_size=optional("image_size", int),
            mask_values=optional("mask_values", str),
            pixel_size=optional("pixel_size", float),
        )

    def _adamw(self, lr: float, weight_decay: float, layer_decay: Optional[float]) -> torch.optim.Optimizer:
        """timm's AdamW over ``self.model``: no weight decay on biases and norms, stage-wise rates
        with ``layer_decay``.

        Not torch's fused AdamW, although its CPU step is 3-4x faster (ViTAEv2-S 44 -> 12 ms): in
        torch 2.13 it updates a parameter wrongly when its gradient has another memory format
        (a channels-last convolution weight with a contiguous gradient, or the reverse), which
        training these models produces (the change quickstart fell from F1 0.53 to 0.39).
        """
        return create_optimizer_v2(self.model, opt="adamw", lr=lr, weight_decay=weight_decay, layer_decay=layer_decay)

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint[_TASK_KEY] = task_name(type(self))
        checkpoint[CONTRACT_KEY] = self.contract.to_dict()

    def backbone_module(self, use_ema: bool = True) -> torch.nn.Module:
        """The timm backbone inside the task, as ``rsfm export-backbone`` writes it: a model that
        ``rsfm.create_model(name, checkpoint=...)`` rebuilds. Tasks that keep one override this.

        Args:
            use_ema: the exponential-moving-average copy, when the task keeps one.

        Raises:
            ValueError: the task keeps no backbone of that form.
        """
        raise ValueError(
            f"{type(self).__name__} keeps no stand-alone backbone to export; export-backbone reads "
            "checkpoints of tasks whose backbone is a timm classifier (SceneClassificationTask)"
        )


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _short(values: Any) -> str:
    values = list(values) if isinstance(values, (list, tuple)) else values
    if isinstance(values, list) and len(values) > 6:
        return f"{values[:3]} ... {values[-2:]} ({len(values)} in all)"
    return str(values)


_TASKS: Dict[str, Type[BaseTask]] = {}


def register_task(task_class: Type[BaseTask]) -> Type[BaseTask]:
    """Make a task class loadable from checkpoints (usable as a class decorator).

    A checkpoint names its task; :func:`load_task` looks that name up here and never imports
    code named by a file. rsfm's own tasks are registered on import; register your own
    ``BaseTask`` subclasses in your code before loading their checkpoints, or declare them in
    your package's ``rsfm.tasks`` entry-point group so that the command line finds them too.

    Raises:
        TypeError: ``task_class`` is not a ``BaseTask`` subclass.
        ValueError: another class is registered under the same name.
    """
    if not (isinstance(task_class, type) and issubclass(task_class, BaseTask)):
        raise TypeError(f"register_task takes a BaseTask subclass, got {task_class!r}")
    name = task_name(task_class)
    if _TASKS.setdefault(name, task_class) is not task_class:
        raise ValueError(f"a different task class is already registered as {name!r}")
    return task_class


def task_name(task_class: type) -> str:
    """The name under which checkpoints record ``task_class``: ``module:qualname``."""
    return f"{task_class.__module__}:{task_class.__qualname__}"


def is_task_checkpoint(checkpoint: Any) -> bool:
    """Whether loaded checkpoint contents were written by an rsfm task (they name their task)."""
    return isinstance(checkpoint, dict) and _TASK_KEY in checkpoint


def _load_task_plugins() -> None:
    """Register the tasks that installed packages declare in the ``rsfm.tasks`` entry-point
    group (``[project.entry-points."rsfm.tasks"] my_task = "my_package.tasks:MyTask"``): a
    choice made by installing a package, never by a checkpoint."""
    from importlib.metadata import entry_points

    for entry_point in entry_points(group="rsfm.tasks"):
        task_class = entry_point.load()
        if task_name(task_class) not in _TASKS:
            register_task(task_class)


def _registered_task(path: Union[str, os.PathLike], name: Any) -> Type[BaseTask]:
    import rsfm.tasks.change  # noqa: F401  (registers rsfm's own tasks)
    import rsfm.tasks.classification  # noqa: F401
    import rsfm.tasks.segmentation  # noqa: F401

    if isinstance(name, str) and name not in _TASKS:
        _load_task_plugins()
    task_class = _TASKS.get(name) if isinstance(name, str) else None
    if task_class is None:
        known = ", ".join(sorted(_TASKS))
        raise ValueError(
            f"{path}: names task {str(name)[:200]!r}, which is not a registered rsfm task (known: {known}). "
            "Tasks of your own must be registered with rsfm.tasks.register_task(YourTask) before loading"
        )
    return task_class


_PLAIN_TYPES = (type(None), bool, int, float, str)


def _check_plain(path: Union[str, os.PathLike], name: str, value: Any, depth: int = 0) -> None:
    """Hyperparameters are data: numbers, strings, and lists/tuples/dicts of them."""
    if depth > 8:
        raise ValueError(f"{path}: hyperparameter {name!r} is nested too deeply")
    if type(value) in _PLAIN_TYPES:
        return
    if type(value) in (list, tuple):
        for item in value:
            _check_plain(path, name, item, depth + 1)
        return
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise ValueError(f"{path}: hyperparameter {name!r} has a non-string key {key!r}")
            _check_plain(path, name, item, depth + 1)
        return
    raise ValueError(
        f"{path}: hyperparameter {name!r} holds a {type(value).__name__}; task checkpoints hold only "
        "numbers, strings, lists and dicts. The file was not written by rsfm or was altered"
    )


def _matches(value: Any, annotation: Any) -> bool:
    """Whether plain data ``value`` fits a constructor annotation (containers checked by kind)."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return any(_matches(value, option) for option in typing.get_args(annotation))
    if value is None:
        return annotation is type(None)
    if origin in (list, tuple, collections.abc.Sequence):
        return isinstance(value, (list, tuple))
    if origin in (dict, collections.abc.Mapping):
        return isinstance(value, dict)
    if annotation is float:
        return type(value) in (int, float)
    if annotation is int:
        return type(value) is int
    if annotation in (str, bool):
        return type(value) is annotation
    if annotation is os.PathLike:
        return isinstance(value, str)
    return True  # an annotation this check does not know; the value is plain data anyway


def _checked_hyperparameters(path: Union[str, os.PathLike], task_class: Type[BaseTask], saved: Any) -> Dict[str, Any]:
    if not isinstance(saved, dict):
        raise ValueError(f"{path}: 'hyper_parameters' is a {type(saved).__name__}, not a dict")
    # LightningCLI adds private entries ('_class_path', '_instantiator') that are no arguments
    hparams = {key: value for key, value in saved.items() if not (isinstance(key, str) and key.startswith("_"))}
    parameters = inspect.signature(task_class.__init__).parameters
    hints = typing.get_type_hints(task_class.__init__)
    unknown = sorted(str(key) for key in hparams if key not in parameters or key == "self")
    if unknown:
        raise ValueError(
            f"{path}: hyperparameters {unknown} are not arguments of {task_class.__name__}; the file was "
            "written by another version or altered"
        )
    for name, value in hparams.items():
        _check_plain(path, name, value)
        if not _matches(value, hints.get(name, Any)):
            raise ValueError(
                f"{path}: hyperparameter {name}={str(value)[:80]!r} does not fit {task_class.__name__}'s "
                f"argument ({hints.get(name)})"
            )
    return hparams


def load_task(
    path: Union[str, os.PathLike],
    map_location: Union[str, torch.device] = "cpu",
    trust_remote_code: bool = False,
    **overrides: Any,
) -> BaseTask:
    """Rebuild an rsfm task from a Lightning checkpoint written by ``rsfm fit``.

    The task class is looked up by the name the file records among registered tasks (see
    :func:`register_task`); nothing named in the file is imported. Its hyperparameters are
    checked against the class's constructor (names, plain data, types) before it is built;
    ``overrides`` replace hyperparameters. The pretrained-backbone and teacher files used for
    training are not read again.

    Args:
        path: the ``.ckpt`` file.
        map_location: device for the weights and the returned task.
        trust_remote_code: passed to :func:`rsfm.models.load_checkpoint_file` (legacy-format
            files from a trusted source only).

    Returns:
        The task in eval mode.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: naming the file, when it is not an rsfm task checkpoint, names an
            unregistered task, or holds hyperparameters the task does not take.
    """
    checkpoint = load_checkpoint_file(path, map_location=map_location, trust_remote_code=trust_remote_code)
    target = checkpoint.get(_TASK_KEY) if isinstance(checkpoint, dict) else None
    if target is None or not isinstance(checkpoint.get("state_dict"), dict):
        raise ValueError(
            f"{path}: not an rsfm task checkpoint (no '{_TASK_KEY}' entry). Pass a .ckpt written "
            "by 'rsfm fit'; backbone weights (RSP .pth files) go to rsfm.create_model(..., checkpoint=...)"
        )
    task_class = _registered_task(path, target)
    hparams = _checked_hyperparameters(path, task_class, checkpoint.get("hyper_parameters", {}))
    for name in ("backbone_checkpoint", "teacher_checkpoint"):  # inputs of training only
        if name in hparams:
            hparams[name] = None  # weights come from the state dict below; no teacher is read
    hparams.update(overrides)
    task = task_class(**hparams)
    if CONTRACT_KEY in checkpoint:  # files of rsfm 0.1 have none: their contract comes from the hyperparameters
        stored = InputContract.from_dict(checkpoint[CONTRACT_KEY], source=str(path))
        if not overrides and stored != task.contract:
            raise ValueError(f"{path}: its '{CONTRACT_KEY}' disagrees with its hyperparameters; the file was altered")
    task.load_state_dict(checkpoint["state_dict"])
    return task.eval().to(map_location)
