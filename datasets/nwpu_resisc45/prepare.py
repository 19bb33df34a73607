"""Prepare NWPU-RESISC45 (Cheng et al., Proc. IEEE 2017) for rsfm's SceneDataModule.

What the dataset holds (classes, published counts and checksums, split protocols) and the
``--help`` text are its entry ``nwpu_resisc45`` in ``rsfm/data/prepare/scene_datasets.py``. See
datasets/nwpu_resisc45/README.md.
"""

import sys

from rsfm.data.prepare import scene_dataset_main

if __name__ == "__main__":
    sys.exit(scene_dataset_main("nwpu_resisc45"))
