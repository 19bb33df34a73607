"""Prepare AID (Aerial Image Dataset; Xia et al., TGRS 2017) for rsfm's SceneDataModule.

What the dataset holds (classes, published counts and checksums, split protocols) and the
``--help`` text are its entry ``aid`` in ``rsfm/data/prepare/scene_datasets.py``. See
datasets/aid/README.md.
"""

import sys

from rsfm.data.prepare import scene_dataset_main

if __name__ == "__main__":
    sys.exit(scene_dataset_main("aid"))
