"""Prepare Million-AID (Long et al., JSTARS 2021) for rsfm's SceneDataModule.

What the dataset holds (classes, published counts and checksums, split protocols) and the
``--help`` text are its entry ``millionaid`` in ``rsfm/data/prepare/scene_datasets.py``. See
datasets/millionaid/README.md.
"""

import sys

from rsfm.data.prepare import scene_dataset_main

if __name__ == "__main__":
    sys.exit(scene_dataset_main("millionaid"))
