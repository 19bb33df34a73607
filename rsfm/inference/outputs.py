"""How model probabilities are stored in output rasters: uint8 class or probability bands."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import List, Optional, Sequence

import numpy as np

NODATA = 255
"""Output value of pixels whose input was nodata/masked (in every band)."""

PROBABILITY_SCALE = 254
"""A stored probability ``p`` is ``round(p * 254)``; reading, ``value / 254`` gives it back."""


class OutputType(str, Enum):
    """What the output raster's bands hold.

    ``classes``: band 1 is the class index (0 = the first class, e.g. background), band 2 the
    probability of that class (uint8 scaled by :data:`PROBABILITY_SCALE`).
    ``probabilities``: one scaled probability band per class; a binary model (one logit) has
    one band, the probability of the positive class.
    """

    CLASSES = "classes"
    PROBABILITIES = "probabilities"


def scale_probability(probability: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] -> uint8 0-254."""
    return np.rint(np.clip(probability, 0.0, 1.0) * PROBABILITY_SCALE).astype(np.uint8)


@dataclass(frozen=True)
class OutputEncoding:
    """The bands written for a model with ``num_outputs`` logits per pixel (or per tile).

    Args:
        output_type: class or probability bands.
        num_outputs: logits of the model; 1 means binary (sigmoid), more means softmax.
        class_names: the task's class names; a binary model may name only the positive class.

    Raises:
        ValueError: more classes than a uint8 band can hold next to the nodata value.
    """

    output_type: OutputType
    num_outputs: int
    class_names: Sequence[str] = ()

    def __post_init__(self) -> None:
        if len(self.labels) > NODATA:
            raise ValueError(f"{len(self.labels)} classes do not fit a uint8 band (at most {NODATA})")

    @property
    def binary(self) -> bool:
        return self.num_outputs == 1

    @property
    def labels(self) -> List[str]:
        """Names of the predicted classes (background first for a binary model)."""
        count = 2 if self.binary else self.num_outputs
        names = list(self.class_names or [])
        if self.binary and len(names) == 1:
            names = ["background", *names]
        if len(names) != count:
            names = [f"class_{index}" for index in range(count)]
        return names

    @property
    def count(self) -> int:
        """Number of output bands."""
        return 2 if self.output_type is OutputType.CLASSES else self.num_outputs

    @property
    def descriptions(self) -> List[str]:
        if self.output_type is OutputType.CLASSES:
            return ["class", "probability of class"]
        if self.binary:
            return [f"probability of {self.labels[1]}"]
        return [f"probability of {label}" for label in self.labels]

    @property
    def scales(self) -> List[float]:
        """GDAL band scale factors, so that GIS tools show probabilities in 0-1."""
        if self.output_type is OutputType.CLASSES:
            return [1.0, 1.0 / PROBABILITY_SCALE]
        return [1.0 / PROBABILITY_SCALE] * self.count

    def encode(self, values: Optional[np.ndarray], valid: np.ndarray) -> np.ndarray:
        """Probabilities -> output bands.

        Args:
            values: (num_outputs, height, width) probabilities (sigmoid of a binary model's
                logit, softmax otherwise), or None for a region that is nodata everywhere.
            valid: (height, width) bool; False pixels become :data:`NODATA` in every band.

        Returns:
            (count, height, width) uint8.
        """
        if values is None:
            return np.full((self.count, *valid.shape), NODATA, dtype=np.uint8)
        if self.output_type is OutputType.PROBABILITIES:
            bands = scale_probability(values)
        elif self.binary:
            positive = values[0] >= 0.5
            confidence = np.where(positive, values[0], 1.0 - values[0])
            bands = np.stack([positive.astype(np.uint8), scale_probability(confidence)])
        else:
            bands = np.stack([values.argmax(axis=0).astype(np.uint8), scale_probability(values.max(axis=0))])
        bands[:, ~valid] = NODATA
        return bands
