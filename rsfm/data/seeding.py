"""Training augmentations that follow ``seed_everything``.

An albumentations pipeline keeps its own random generator, seeded from the operating system
when the pipeline is built: ``seed_everything`` does not reach it, so two runs with the same seed
augmented differently (and trained to different accuracies), and every DataLoader worker got a
copy of the same generator, so the workers drew the same crops and flips in lockstep.
:class:`AugmentationSeeds` seeds the pipeline from torch's random state instead.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["AugmentationSeeds", "SeededLoaders"]


class AugmentationSeeds:
    """Seeds for one albumentations pipeline, drawn from torch's random state.

    Call :meth:`seed_from_torch` when the training DataLoader is made (a draw from torch's
    global generator: loading in the main process is then reproducible), and pass the object as
    the loader's ``worker_init_fn``: each worker then seeds its copy of the pipeline with its own
    torch seed, which differs between workers and follows the loader's base seed (itself drawn
    from the global generator).

    Args:
        transform: an albumentations pipeline (anything with ``set_random_seed``), or None.
    """

    def __init__(self, transform: Optional[Any]) -> None:
        self.transform = transform

    def seed_from_torch(self) -> "AugmentationSeeds":
        if self.transform is not None:
            self.transform.set_random_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
        return self

    def __call__(self, worker_id: int) -> None:
        info = torch.utils.data.get_worker_info()
        if self.transform is not None and info is not None:
            self.transform.set_random_seed(info.seed % 2**32)


class SeededLoaders:
    """The train/val/test DataLoaders of a datamodule whose training samples go through
    ``self.train_transform`` (seeded with :class:`AugmentationSeeds`): shuffled full training
    batches, evaluation batches in order.

    The datamodule provides ``train_transform``, ``hparams.batch_size``, ``hparams.num_workers``,
    ``val_batch_size`` and, after ``setup``, ``train_dataset``/``val_dataset``/``test_dataset``.
    """

    def _loader(self, dataset: Dataset, batch_size: int, train: bool) -> DataLoader:
        workers = self.hparams.num_workers
        seeds = AugmentationSeeds(self.train_transform).seed_from_torch() if train else None
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train,
            drop_last=train,  # batch norm needs more than one sample
            num_workers=workers,
            persistent_workers=workers > 0,
            worker_init_fn=seeds,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, self.hparams.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, self.val_batch_size, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, self.val_batch_size, train=False)
