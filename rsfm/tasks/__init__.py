"""Lightning tasks: scene classification and building segmentation."""

from rsfm import _compat  # noqa: F401  (must run before lightning/timm import torchvision)

# isort: split
from rsfm.tasks.base import BaseTask, load_task, register_task
from rsfm.tasks.classification import SceneClassificationTask
from rsfm.tasks.segmentation import BuildingSegmentationTask

__all__ = ["BaseTask", "BuildingSegmentationTask", "SceneClassificationTask", "load_task", "register_task"]
