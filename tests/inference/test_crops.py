"""Placing the model on valid data: the rectangles planned for a window."""

import numpy as np
import pytest

from rsfm.inference.crops import MAX_CROPS, plan_crops


def _coverage(valid, top, left, size, planned):
    """How many rectangles predict each pixel of the window (checks every take lies in its box)."""
    bottom, right = min(top + size, valid.shape[0]), min(left + size, valid.shape[1])
    count = np.zeros((bottom - top, right - left), dtype=int)
    for crop in planned:
        box_top, box_bottom, box_left, box_right = crop.box
        assert box_bottom - box_top <= size and box_right - box_left <= size
        assert 0 <= box_top and box_bottom <= valid.shape[0] and 0 <= box_left and box_right <= valid.shape[1]
        first_row, first_col = max(box_top, top) - top, max(box_left, left) - left
        assert first_row + crop.take.shape[0] <= min(box_bottom, bottom) - top
        assert first_col + crop.take.shape[1] <= min(box_right, right) - left
        count[first_row : first_row + crop.take.shape[0], first_col : first_col + crop.take.shape[1]] += crop.take
    return count


def _check_partition(valid, top, left, size, planned):
    count = _coverage(valid, top, left, size, planned)
    window_valid = valid[top : top + size, left : left + size]
    np.testing.assert_array_equal(count, window_valid.astype(int))  # each valid pixel once, nodata never


def test_a_fully_valid_window_is_itself():
    valid = np.ones((300, 300), dtype=bool)
    (crop,) = plan_crops(valid, 100, 100, 64)
    assert crop.box == (100, 164, 100, 164) and crop.take.all()


def test_an_isolated_region_is_taken_whole_by_every_window_touching_it():
    valid = np.zeros((400, 400), dtype=bool)
    valid[130:230, 150:250] = True  # 100 x 100 px, alone
    for top, left in [(100, 100), (150, 200), (200, 220), (90, 130)]:
        planned = plan_crops(valid, top, left, 128)
        assert [crop.box for crop in planned] == [(130, 230, 150, 250)]
        _check_partition(valid, top, left, 128, planned)


def test_at_a_border_the_window_moves_onto_valid_data():
    valid = np.zeros((400, 400), dtype=bool)
    valid[:, 100:] = True  # nodata on the left, valid data longer than a tile on the right
    (crop,) = plan_crops(valid, 50, 40, 128)
    assert crop.box == (50, 178, 100, 228)  # a full tile starting at the border
    _check_partition(valid, 50, 40, 128, [crop])


def test_at_the_raster_edge_the_window_moves_inside():
    valid = np.ones((200, 230), dtype=bool)
    (crop,) = plan_crops(valid, 150, 180, 64)  # reaches past the bottom and right edges
    assert crop.box == (136, 200, 166, 230)
    assert crop.take.shape == (50, 50) and crop.take.all()


def test_regions_touching_at_a_corner_are_separate():
    valid = np.zeros((512, 512), dtype=bool)
    valid[128:256, 128:256] = True
    valid[256:384, 256:384] = True
    planned = plan_crops(valid, 192, 192, 128)
    assert sorted(crop.box for crop in planned) == [(128, 256, 128, 256), (256, 384, 256, 384)]
    _check_partition(valid, 192, 192, 128, planned)


def test_interleaved_regions_share_one_rectangle():
    valid = np.ones((300, 300), dtype=bool)
    valid[:, 40::20] = False  # lines of nodata (swath gaps) cut the data into strips
    planned = plan_crops(valid, 64, 64, 128)
    assert len(planned) == 1
    _check_partition(valid, 64, 64, 128, planned)


def test_speckle_is_one_rectangle():
    valid = np.zeros((300, 300), dtype=bool)
    valid[::3, ::3] = True  # far more separate pixels than MAX_CROPS
    planned = plan_crops(valid, 64, 64, 128)
    assert len(planned) == 1 < MAX_CROPS
    _check_partition(valid, 64, 64, 128, planned)


@pytest.mark.parametrize("seed", range(20))
def test_random_masks_are_partitioned(seed):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    valid = ndimage.gaussian_filter(rng.standard_normal((220, 260)), rng.uniform(2, 12)) > rng.uniform(-0.3, 0.3)
    size = int(rng.integers(16, 96))
    top, left = int(rng.integers(0, 200)), int(rng.integers(0, 240))
    _check_partition(valid, top, left, size, plan_crops(valid, top, left, size))


def test_an_empty_window_has_no_rectangle():
    assert plan_crops(np.zeros((100, 100), dtype=bool), 10, 10, 64) == []


@pytest.mark.parametrize("gap,rectangles", [(10, 1), (40, 2)])
def test_regions_side_by_side_share_a_rectangle_when_close(gap, rectangles):
    valid = np.zeros((400, 400), dtype=bool)
    valid[100:200, 100:160] = True
    valid[100:200, 160 + gap : 220 + gap] = True  # merged when less than 128 // 8 = 16 px apart
    planned = plan_crops(valid, 80, 80, 128)
    assert len(planned) == rectangles
    _check_partition(valid, 80, 80, 128, planned)
