"""Tiled inference on whole rasters: tile grid and blending, raster reading/writing with
resume, polygons, and the ``predict_raster`` / ``predict_change`` pipeline."""

from rsfm.data.tiling import TileGrid
from rsfm.inference.errors import InferenceIOError
from rsfm.inference.outputs import NODATA, PROBABILITY_SCALE, OutputEncoding, OutputType
from rsfm.inference.predict import PredictionResult, predict_change, predict_raster
from rsfm.inference.vectorize import write_polygons

__all__ = [
    "InferenceIOError",
    "NODATA",
    "PROBABILITY_SCALE",
    "OutputEncoding",
    "OutputType",
    "PredictionResult",
    "TileGrid",
    "predict_change",
    "predict_raster",
    "write_polygons",
]
