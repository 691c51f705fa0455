import numpy as np
import pytest

from qwen_dataset import geometry as g


def test_qwen_round_trip_on_non_square_frame():
    box = [96.0, 54.0, 192.0, 108.0]
    encoded = g.to_qwen_1000(box, width=1920, height=1080)
    assert encoded == [50, 50, 100, 100]
    assert g.from_qwen_1000(encoded, 1920, 1080) == box


def test_qwen_encoding_is_relative_per_axis_and_within_one_unit():
    box = [13.7, 250.2, 1000.9, 700.0]
    width, height = 1366, 768
    decoded = g.from_qwen_1000(g.to_qwen_1000(box, width, height), width, height)
    # One 0-1000 unit is width/1000 px horizontally and height/1000 px vertically.
    assert abs(decoded[0] - box[0]) <= width / 2000 + 1e-9
    assert abs(decoded[1] - box[1]) <= height / 2000 + 1e-9
    assert abs(decoded[3] - box[3]) <= height / 2000 + 1e-9


def test_qwen_encoding_clamps_outside_values():
    assert g.to_qwen_1000([-10, -5, 2000, 900], 1000, 800) == [0, 0, 1000, 1000]


def test_points():
    assert g.point_to_qwen_1000([640, 200], 1280, 800) == [500, 250]
    assert g.point_from_qwen_1000([500, 250], 1280, 800) == [640.0, 200.0]


def test_coco_and_label_studio_round_trips():
    box = [10.0, 20.0, 110.0, 70.0]
    assert g.to_coco(box) == [10.0, 20.0, 100.0, 50.0]
    assert g.from_coco(g.to_coco(box)) == box
    ls = g.to_label_studio(box, 200, 100)
    assert ls == pytest.approx({"x": 5.0, "y": 20.0, "width": 50.0, "height": 50.0})
    assert g.from_label_studio(ls, 200, 100) == pytest.approx(box)


def test_validity_and_clipping():
    assert g.is_valid_box([0, 0, 10, 10], 10, 10)
    assert not g.is_valid_box([5, 0, 5, 10], 10, 10)
    assert not g.is_valid_box([0, 0, 11, 10], 10, 10)
    assert g.clip_box([-3, 2, 15, 8], 10, 10) == [0.0, 2.0, 10.0, 8.0]


def test_quad_to_box():
    assert g.quad_to_box([[10, 5], [50, 7], [49, 30], [9, 28]]) == [9.0, 5.0, 50.0, 30.0]


def test_iou_matrix_matches_hand_computation():
    a = np.array([[0, 0, 10, 10], [0, 0, 2, 2]])
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    iou = g.iou_matrix(a, b)
    assert iou.shape == (2, 3)
    assert iou[0, 0] == pytest.approx(50 / 150)
    assert iou[0, 1] == pytest.approx(1.0)
    assert iou[0, 2] == 0.0
    assert iou[1, 1] == pytest.approx(4 / 100)
    assert g.iou_matrix(np.zeros((0, 4)), b).shape == (0, 3)
