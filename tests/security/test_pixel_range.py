"""Input that differs from the training pixels (uint16 or float into a uint8 model) is loud:
a warning by default, an error with ``strict``; matching input stays quiet."""

import warnings

import numpy as np
import pytest
import torch

import rsfm
from rsfm.data.pixel_range import PixelRangeMismatch, PixelRangeWarning, check_pixels, describe_pixels
from rsfm.tasks import load_task

UINT8 = {"dtype": "uint8", "min": 0.0, "max": 255.0}
RNG = np.random.default_rng(0)
MATCHING = RNG.integers(0, 256, (40, 48, 3), dtype=np.uint8)
REFLECTANCE = RNG.integers(0, 10000, (40, 48, 3), dtype=np.uint16)
UNIT_FLOAT = RNG.random((40, 48, 3), dtype=np.float32)


UNIT = {"dtype": "float32", "min": 0.0, "max": 1.0}
THOUSANDS = {"dtype": "float32", "min": 0.0, "max": 5000.0}


@pytest.mark.parametrize(
    ("observed", "trained", "problem"),
    [
        (REFLECTANCE, UINT8, "data type uint16"),
        (UNIT_FLOAT, UINT8, "data type float32"),
        (MATCHING.astype(np.float32), UNIT, "values 0-255 far outside the training range"),
        (UNIT_FLOAT, THOUSANDS, "a much smaller scale than the training range"),
    ],
)
def test_check_pixels_names_the_problem(observed, trained, problem):
    with pytest.warns(PixelRangeWarning, match=problem):
        check_pixels(describe_pixels(observed), trained, "scene.tif")
    with pytest.raises(PixelRangeMismatch, match=f"scene.tif: .*{problem}"):
        check_pixels(describe_pixels(observed), trained, "scene.tif", strict=True)


def test_matching_or_unknown_ranges_are_quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_pixels(describe_pixels(MATCHING), UINT8, "a")
        check_pixels(describe_pixels(MATCHING[:, :, :1] // 4), UINT8, "dark scene")  # 0-63: still uint8 imagery
        check_pixels(describe_pixels(MATCHING.astype(np.int16)), UINT8, "same values, wider type")
        check_pixels(describe_pixels(REFLECTANCE), None, "checkpoint without a record")


def test_checkpoint_records_the_range_and_predictors_check_it(building_checkpoint, scene_task_checkpoint):
    assert torch.load(building_checkpoint, weights_only=True)["hyper_parameters"]["pixel_range"] == UINT8
    assert load_task(building_checkpoint).pixel_range == UINT8
    for predictor in (
        rsfm.BuildingExtractor.load(building_checkpoint),
        rsfm.SceneClassifier.load(scene_task_checkpoint),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            predictor.predict(MATCHING)
        with pytest.warns(PixelRangeWarning, match="image 0: data type uint16"):
            predictor.predict(REFLECTANCE)
        predictor.strict = True
        with pytest.raises(PixelRangeMismatch, match="image 1: data type float32"):
            predictor.predict([MATCHING, UNIT_FLOAT])
