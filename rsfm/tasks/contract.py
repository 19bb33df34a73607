"""The input/output contract of a trained model: what it takes and what it returns.

One description crosses the layers. A task writes it into every checkpoint (``rsfm_contract``)
from its arguments and from its datamodule; every consumer (the predictors, tiled inference,
export) reads it instead of guessing, so that the same checkpoint prepares pixels the same way
everywhere.

Where the values come from: a task's constructor arguments, and for those left unset, the
datamodule it is trained with. A datamodule describes its data through read-only attributes
of these names (any subset): ``class_names``, ``in_chans``, ``mean``, ``std``, ``image_size``,
``bands``, ``pixel_range``, ``mask_values``, ``pixel_size``. :meth:`BaseTask.configure_model`
(Lightning's hook, called after the datamodule's ``setup``) takes the ones the task needs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

__all__ = [
    "CHANGE",
    "CLASSIFICATION",
    "CONTRACT_KEY",
    "CONTRACT_VERSION",
    "SEGMENTATION",
    "TASK_KINDS",
    "InputContract",
]

CONTRACT_VERSION = 1
CONTRACT_KEY = "rsfm_contract"
CLASSIFICATION = "classification"
SEGMENTATION = "segmentation"
CHANGE = "change"
TASK_KINDS = (CLASSIFICATION, SEGMENTATION, CHANGE)


@dataclass(frozen=True)
class InputContract:
    """What a trained model takes and returns.

    Attributes:
        task: ``"classification"`` (one label per image), ``"segmentation"`` (per pixel) or
            ``"change"`` (per pixel, from two co-registered images of two dates).
        in_chans: input bands (of each date, for change models).
        mean, std: per-band normalisation in raw pixel units; for change models the before
            date's bands, then the after date's (each date has its own).
        class_names: output classes in order; for binary segmentation the names of label 0 and 1.
        num_outputs: logits per image or pixel: the class count, or 1 for binary segmentation
            (sigmoid; softmax otherwise).
        bands: 1-based band numbers read from files, in model order (``None``: all bands).
        pixel_range: data type and value range of the training pixels
            (``{"dtype", "min", "max"}``), ``None`` when unknown.
        image_size: side in pixels of the training images (classification: what every image is
            resized to; segmentation: the training patch, the natural tile size).
        mask_values: the training masks' convention (segmentation), e.g. ``"0/1"``.
        pixel_size: ground sampling distance of the training data in metres, when known.
        version: the contract format; files of a newer format are refused.
    """

    task: str
    in_chans: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    class_names: Tuple[str, ...]
    num_outputs: int
    bands: Optional[Tuple[int, ...]] = None
    pixel_range: Optional[Mapping[str, Any]] = None
    image_size: Optional[int] = None
    mask_values: Optional[str] = None
    pixel_size: Optional[float] = None
    version: int = CONTRACT_VERSION

    def __post_init__(self) -> None:
        if self.task not in TASK_KINDS:
            raise ValueError(f"task must be one of {TASK_KINDS}, got {self.task!r}")
        if len(self.mean) != self.input_channels or len(self.std) != self.input_channels:
            dates = " of each date" if self.dates > 1 else ""
            raise ValueError(f"mean and std need one value per band{dates} ({self.input_channels} values)")
        if self.bands is not None and len(self.bands) != self.in_chans:
            raise ValueError(f"bands {list(self.bands)} must name in_chans={self.in_chans} bands")

    @property
    def dates(self) -> int:
        """Images per sample: 2 for change models (before, after), 1 otherwise."""
        return 2 if self.task == CHANGE else 1

    @property
    def input_channels(self) -> int:
        """Channels of the model's input tensor: the dates' bands stacked, earlier date first."""
        return self.in_chans * self.dates

    @property
    def dense(self) -> bool:
        """One prediction per pixel (segmentation, change) rather than per image."""
        return self.task != CLASSIFICATION

    @property
    def binary(self) -> bool:
        """One logit per pixel (sigmoid) instead of one per class (softmax)."""
        return self.num_outputs == 1

    def to_dict(self) -> Dict[str, Any]:
        """Plain data for a checkpoint or file metadata (lists, not tuples)."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        if data["pixel_range"] is not None:
            data["pixel_range"] = dict(data["pixel_range"])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "checkpoint") -> "InputContract":
        """Read a contract written by :meth:`to_dict`.

        Raises:
            ValueError: naming ``source``, when the format is newer than this rsfm or a field is
                missing, unknown or malformed.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: '{CONTRACT_KEY}' is a {type(data).__name__}, not a dict")
        version = data.get("version")
        if not isinstance(version, int) or version < 1:
            raise ValueError(f"{source}: '{CONTRACT_KEY}' has no valid version")
        if version > CONTRACT_VERSION:
            raise ValueError(
                f"{source}: written by a newer rsfm (contract version {version}, this rsfm reads up to "
                f"{CONTRACT_VERSION}); upgrade rsfm"
            )
        fields = set(cls.__dataclass_fields__)
        unknown = sorted(set(map(str, data)) - fields)
        if unknown:
            raise ValueError(f"{source}: '{CONTRACT_KEY}' has unknown fields {unknown}")
        try:
            values = dict(data)
            for key in ("mean", "std"):
                values[key] = tuple(float(value) for value in values[key])
            values["class_names"] = tuple(str(name) for name in values["class_names"])
            if values.get("bands") is not None:
                values["bands"] = tuple(int(band) for band in values["bands"])
            if values.get("pixel_range") is not None:
                values["pixel_range"] = dict(values["pixel_range"])
            return cls(**values)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{source}: malformed '{CONTRACT_KEY}' ({error})") from error
