"""What every rsfm task shares: input normalisation carried in the checkpoint, and rebuilding
a task from its checkpoint file alone."""

from __future__ import annotations

import collections.abc
import inspect
import os
import types
import typing
from typing import Any, Dict, Optional, Sequence, Type, Union

import torch
from lightning.pytorch import LightningModule

from rsfm.models.checkpoint import load_checkpoint_file

_TASK_KEY = "rsfm_task"


class BaseTask(LightningModule):
    """Base class of rsfm tasks.

    Subclasses call ``self.save_hyperparameters()`` and must accept ``in_chans``, ``mean``,
    ``std`` (per band, in raw pixel units, e.g. 0-255 for uint8 imagery) and ``class_names``,
    so that a checkpoint alone says how to prepare raw pixels for the model. Their
    constructor argument for pretrained backbone weights is called ``backbone_checkpoint``;
    it is not needed again when a trained task is rebuilt from its own checkpoint.
    """

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

    @property
    def pixel_range(self) -> Optional[Dict[str, Any]]:
        """Data type and value range of the training pixels (``{"dtype", "min", "max"}``), or
        ``None`` when unknown (checkpoints written before rsfm recorded it)."""
        value = self.hparams.get("pixel_range")
        return dict(value) if value is not None else None

    def configure_model(self) -> None:
        """Lightning hook (after the datamodule's ``setup``): record the training pixels'
        ``pixel_range`` from the datamodule unless it was given."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if "pixel_range" in self.hparams and self.hparams["pixel_range"] is None:
            self.hparams["pixel_range"] = getattr(datamodule, "pixel_range", None)

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint[_TASK_KEY] = task_name(type(self))


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
    import rsfm.tasks  # noqa: F401  (registers rsfm's own tasks)

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
    ``overrides`` replace hyperparameters. The pretrained-backbone file used for training is not
    read again.

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
    if "backbone_checkpoint" in hparams:
        hparams["backbone_checkpoint"] = None  # weights come from the state dict below
    hparams.update(overrides)
    task = task_class(**hparams)
    task.load_state_dict(checkpoint["state_dict"])
    return task.eval().to(map_location)
