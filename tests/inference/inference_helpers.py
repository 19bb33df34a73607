"""Small real tasks and rasters for the tiled-inference tests.

The tasks are genuine :class:`rsfm.tasks.BaseTask` subclasses saved by a Lightning ``Trainer``
and read back through ``load_task``, so the tests exercise the same checkpoint path as users.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from rsfm import _compat  # noqa: F401  (before lightning imports torchvision)

# isort: split

import lightning.pytorch as pl
import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rsfm.tasks.base import BaseTask, register_task
from rsfm.tasks.contract import CLASSIFICATION


@register_task
class ConvSegmentationTask(BaseTask):
    """Two 3x3 convolutions: receptive field 5x5 pixels (radius 2). ``pixel_range`` describes
    the training pixels, as rsfm's own tasks record it (None: a checkpoint from before)."""

    def __init__(
        self,
        in_chans: int = 3,
        mean: Sequence[float] = (100.0, 100.0, 100.0),
        std: Sequence[float] = (50.0, 50.0, 50.0),
        class_names: Sequence[str] = ("building",),
        num_outputs: int = 1,
        hidden: int = 6,
        seed: int = 0,
        learning_rate: float = 0.01,
        backbone_checkpoint: Optional[str] = None,
        pixel_range: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._register_normalization(mean, std, in_chans)
        torch.manual_seed(seed)
        self.net = nn.Sequential(
            nn.Conv2d(in_chans, hidden, 3, padding=1), nn.Tanh(), nn.Conv2d(hidden, num_outputs, 3, padding=1)
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)

    def training_step(self, batch, batch_index):
        images, targets = batch
        logits = self(self.normalize(images))
        return nn.functional.binary_cross_entropy_with_logits(logits[:, :1], targets)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.learning_rate)


@register_task
class BrightnessTask(BaseTask):
    """'Buildings' are pixels whose 3x3 mean (all bands, normalised) exceeds 0: a fixed,
    interpretable model for polygon tests. ``learning_rate`` 0 keeps it fixed under training."""

    def __init__(
        self,
        in_chans: int = 1,
        mean: Sequence[float] = (500.0,),
        std: Sequence[float] = (100.0,),
        class_names: Sequence[str] = ("building",),
        gain: float = 4.0,
        learning_rate: float = 0.0,
        backbone_checkpoint: Optional[str] = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._register_normalization(mean, std, in_chans)
        self.smooth = nn.Conv2d(in_chans, 1, 3, padding=1, padding_mode="replicate")
        with torch.no_grad():
            self.smooth.weight.fill_(gain / (9 * in_chans))
            self.smooth.bias.zero_()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.smooth(inputs)

    def training_step(self, batch, batch_index):
        images, targets = batch
        return nn.functional.binary_cross_entropy_with_logits(self(self.normalize(images)), targets)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.learning_rate)


@register_task
class ScenePoolTask(BaseTask):
    """Scene classifier: global average of a 1x1 convolution -> (B, K) logits, for images
    resized to ``image_size`` pixels."""

    task_kind = CLASSIFICATION

    def __init__(
        self,
        in_chans: int = 3,
        mean: Sequence[float] = (100.0, 100.0, 100.0),
        std: Sequence[float] = (50.0, 50.0, 50.0),
        class_names: Sequence[str] = ("dark", "medium", "bright"),
        image_size: int = 32,
        backbone_checkpoint: Optional[str] = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._register_normalization(mean, std, in_chans)
        self.head = nn.Conv2d(in_chans, len(class_names), 1)
        with torch.no_grad():  # brightness -> class: dark < -0.5 < medium < 0.5 < bright
            self.head.weight.copy_(torch.tensor([-4.0, 0.0, 4.0]).view(3, 1, 1, 1).repeat(1, in_chans, 1, 1) / in_chans)
            self.head.bias.copy_(torch.tensor([-2.0, 0.0, -2.0]))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(inputs).mean(dim=(2, 3))

    def training_step(self, batch, batch_index):
        images, labels = batch
        return nn.functional.cross_entropy(self(self.normalize(images)), labels)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def save_with_trainer(task: BaseTask, path: Path, scene: bool = False) -> Path:
    """One real training step (``fast_dev_run``) on random data, then the checkpoint."""
    in_chans = task.hparams["in_chans"]
    images = torch.rand(2, in_chans, 16, 16) * 255
    targets = torch.randint(0, 3, (2,)) if scene else (torch.rand(2, 1, 16, 16) > 0.5).float()
    trainer = pl.Trainer(
        fast_dev_run=1, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(task, DataLoader(TensorDataset(images, targets), batch_size=2))
    trainer.save_checkpoint(path)
    return path


def write_raster(
    path: Path,
    data: np.ndarray,
    crs: Optional[str] = "EPSG:32616",
    transform: Affine = Affine(0.5, 0, 733600.0, 0, -0.5, 3725000.0),  # noqa: B008  (immutable)
    nodata: Optional[float] = None,
    tiled: bool = True,
    photometric: Optional[str] = "minisblack",
) -> Path:
    """A (bands, height, width) array as a GeoTIFF. By default without colour interpretation,
    so that GDAL does not take a 4th uint8 band for alpha; ``photometric=None`` lets GDAL
    choose (RGBA for four uint8 bands)."""
    profile = dict(
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype.name,
        crs=CRS.from_user_input(crs) if crs else None,
        transform=transform,
        nodata=nodata,
        compress="deflate",
    )
    if photometric is not None:
        profile["photometric"] = photometric
    if tiled:
        profile.update(tiled=True, blockxsize=64, blockysize=64)
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(data)
    return path


def smooth_image(
    bands: int, height: int, width: int, seed: int = 0, dtype: str = "uint8", scale: float = 255.0
) -> np.ndarray:
    """Blobby test imagery: a few Gaussian bumps per band plus noise."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.zeros((bands, height, width))
    for band in range(bands):
        for _ in range(8):
            centre_row, centre_col = rng.uniform(0, height), rng.uniform(0, width)
            radius = rng.uniform(5, 20)
            image[band] += np.exp(-((rows - centre_row) ** 2 + (cols - centre_col) ** 2) / (2 * radius**2))
    image = image / max(image.max(), 1e-6) * 0.8 + rng.uniform(0, 0.2, image.shape)
    return (image * scale).astype(dtype)
