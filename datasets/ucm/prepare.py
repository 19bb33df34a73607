"""Prepare UC Merced Land Use (UCM; Yang and Newsam, ACM SIGSPATIAL 2010) for rsfm's SceneDataModule.

What the dataset holds (classes, published counts and checksums, split protocols) and the
``--help`` text are its entry ``ucm`` in ``rsfm/data/prepare/scene_datasets.py``. See
datasets/ucm/README.md.
"""

import sys

from rsfm.data.prepare import scene_dataset_main

if __name__ == "__main__":
    sys.exit(scene_dataset_main("ucm"))
