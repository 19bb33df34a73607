"""Models: the ViTAEv2 backbone family (registered in timm), heads and backbone weight loading.

Task checkpoints are the task layer's (``rsfm.tasks.load_task``); ``rsfm.load_checkpoint``
loads either kind."""

from rsfm.models.change import ChangeModel
from rsfm.models.checkpoint import load_checkpoint_file
from rsfm.models.factory import create_model, load_backbone
from rsfm.models.upernet import SegmentationModel, UperNetDecoder
from rsfm.models.vitaev2 import ViTAEv2, checkpoint_filter_fn, fuse_batchnorm

__all__ = [
    "ChangeModel",
    "SegmentationModel",
    "UperNetDecoder",
    "ViTAEv2",
    "checkpoint_filter_fn",
    "create_model",
    "fuse_batchnorm",
    "load_backbone",
    "load_checkpoint_file",
]
