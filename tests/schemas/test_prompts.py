"""Prompt and answer text per task and style, on hand-built rows; answers read back by the scorer."""

from __future__ import annotations

import pytest

from consumers.scoring import parse_answer
from schemas.prompts import prompt_and_answer

COMMON = {
    "dataset": "demo",
    "split": "train",
    "modality": "CT",
    "plane": "axial",
    "sequence": "CT",
    "image_width_px": 8,
    "image_height_px": 6,
    "pixel_spacing_mm_row_col": [0.5, 0.8],
}
DETECTION = {**COMMON, "task": "detection", "label_name": "liver", "box_xyxy_px": [1.0, 1.0, 5.0, 4.0]}
LESION = {**COMMON, "task": "tumor_lesion_size", "label_name": "tumour", "major_axis_mm": 12.346, "minor_axis_mm": 6.0}
ANGLE = {
    **COMMON,
    "task": "angle_distance",
    "metric_name": "A-L_1_2-L_3_4",
    "metric_description": "SNA",
    "metric_type": "angle",
    "value": 81.004,
    "unit": "deg",
}
DISTANCE = {
    **ANGLE,
    "metric_name": "L-1-2",
    "metric_description": None,
    "metric_type": "distance",
    "value": 31.0,
    "unit": "mm",
}


def test_default_detection_states_the_pixel_edge_frame_and_answers_integer_edges():
    text = prompt_and_answer(DETECTION, "default")
    assert text["answer"] == "[1, 1, 5, 4]"
    prompt = text["prompt"]
    assert "CT axial slice (CT), 8 pixels wide and 6 pixels high" in prompt
    assert "origin at the top-left corner" in prompt and "pixel edges" in prompt
    assert "bounding box of the liver" in prompt and "end-exclusive" in prompt


def test_medvision_detection_answers_the_relative_lower_left_target_from_inclusive_indices():
    text = prompt_and_answer(DETECTION, "medvision")
    # Box columns 1..4 and rows 1..3 (inclusive) in an 8 x 6 image: x 1/8, 4/8; y (6-3)/6, (6-1)/6.
    assert text["answer"] == "<answer>0.1250, 0.5000, 0.5000, 0.8333</answer>"
    assert text["prompt"].startswith(
        "Task:\nGiven the input medical image: CT axial slice, return the coordinates of the lower-left and "
        "upper-right corners of the bounding box for the liver.\nFormat requirement:\nThe reasoning process"
    )
    assert "origin is at the lower-left corner of the image" in text["prompt"]


def test_lesion_size_prompts_carry_width_and_height_pixel_size():
    default, medvision = prompt_and_answer(LESION, "default"), prompt_and_answer(LESION, "medvision")
    assert default["answer"] == "[12.35, 6.00]"
    assert "Pixel spacing: 0.800 mm along x (width) and 0.500 mm along y (height)." in default["prompt"]
    assert medvision["answer"] == "<answer>12.35, 6.00</answer>"
    assert (
        "estimate the major and minor axis lengths of the ellipse enclosing the tumour, in millimeters.\n"
        "Additional information:\nThe image size is 8 pixels (width) x 6 pixels (height).\n"
        "The pixel size for this image is 0.800 mm (width) x 0.500 mm (height).\n"
        "Format requirement:\n"
    ) in medvision["prompt"]


def test_angle_and_distance_prompts_name_the_landmarks_in_order():
    angle = prompt_and_answer(ANGLE, "medvision", ("P1", "P2", "P3", "P4"))
    assert (
        "estimate the angle of SNA in degrees, which is the angle between 2 lines: (line 1) the line "
        "connecting P1 and P2, (line 2) the line connecting P3 and P4.\n"
    ) in angle["prompt"]
    assert angle["answer"] == "<answer>81.00</answer>"
    # MedVision's template states the pixel size in mm for every task, angles included.
    assert "The pixel size for this image is 0.800 mm (width) x 0.500 mm (height).\n" in angle["prompt"]
    assert "degrees (width)" not in angle["prompt"]
    distance = prompt_and_answer(DISTANCE, "medvision", ("P1", "P2"))
    assert (
        "estimate the distance between 2 landmark points in millimeters: (landmark 1) P1, (landmark 2) P2.\n"
        in distance["prompt"]
    )
    default = prompt_and_answer(ANGLE, "default", ("P1", "P2", "P3", "P4"))
    assert "the acute angle between the line through P1 and P2 and the line through P3 and P4" in default["prompt"]
    assert default["answer"] == "81.00"


@pytest.mark.parametrize("style", ["default", "medvision"])
@pytest.mark.parametrize(
    "row, points, expected",
    [
        (DETECTION, (), {"default": [1, 1, 5, 4], "medvision": [0.125, 0.5, 0.5, 0.8333]}),
        (LESION, (), {"default": [12.35, 6.0], "medvision": [12.35, 6.0]}),
        (ANGLE, ("P1", "P2", "P3", "P4"), {"default": [81.0], "medvision": [81.0]}),
        (DISTANCE, ("P1", "P2"), {"default": [31.0], "medvision": [31.0]}),
    ],
)
def test_answers_round_trip_through_the_parser(style, row, points, expected):
    answer = prompt_and_answer(row, style, points)["answer"]
    assert parse_answer(answer, row["task"], style) == pytest.approx(expected[style])


def test_unknown_style_is_refused():
    with pytest.raises(ValueError, match="unknown prompt style"):
        prompt_and_answer(DETECTION, "freestyle")
