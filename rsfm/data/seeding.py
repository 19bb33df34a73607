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

__all__ = ["AugmentationSeeds"]


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
