"""Turning downloaded public datasets into the layouts the rsfm datamodules read.

Used by the scripts in ``datasets/<name>/prepare.py``: safe archive extraction, locating the
data inside an archive, published checksums and ``MANIFEST.sha256``, scene split lists,
image/mask pairing checks, patches from large GeoTIFFs, per-chip footprints, and
before/after/label change-detection pairs.
"""

from rsfm.data.prepare.archives import ARCHIVE_SUFFIXES, UnsafeArchiveError, extract_archive
from rsfm.data.prepare.change_pairs import EDGE_MODES, prepare_change_pairs, prepare_change_scene
from rsfm.data.prepare.checksums import (
    MANIFEST_NAME,
    PublishedChecksum,
    file_digest,
    verify_manifest,
    write_manifest,
)
from rsfm.data.prepare.chips import prepare_chips
from rsfm.data.prepare.large_tiles import prepare_large_tiles
from rsfm.data.prepare.rasters import patch_windows, rasterize_footprints, write_patches
from rsfm.data.prepare.report import PrepareError, Report
from rsfm.data.prepare.runner import build_parser, run
from rsfm.data.prepare.scene import LabelLevel, SceneDatasetSpec, prepare_scene_dataset
from rsfm.data.prepare.scene_datasets import SCENE_DATASETS, scene_dataset_main
from rsfm.data.prepare.sources import Source
from rsfm.data.prepare.splits import SplitProtocol, split_list_path, write_split_lists
from rsfm.data.prepare.tile_pairs import prepare_tile_pairs

__all__ = [
    "ARCHIVE_SUFFIXES",
    "EDGE_MODES",
    "LabelLevel",
    "MANIFEST_NAME",
    "PrepareError",
    "PublishedChecksum",
    "Report",
    "SCENE_DATASETS",
    "SceneDatasetSpec",
    "Source",
    "SplitProtocol",
    "UnsafeArchiveError",
    "build_parser",
    "extract_archive",
    "file_digest",
    "patch_windows",
    "prepare_change_pairs",
    "prepare_change_scene",
    "prepare_chips",
    "prepare_large_tiles",
    "prepare_scene_dataset",
    "prepare_tile_pairs",
    "rasterize_footprints",
    "run",
    "scene_dataset_main",
    "split_list_path",
    "verify_manifest",
    "write_manifest",
    "write_patches",
    "write_split_lists",
]
