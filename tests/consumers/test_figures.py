"""The card's figures drawn directly: overlay scale and canvas, where a box lands in PNG pixels, legend
entries and layout, literal text, and the size of the histogram and bar figures."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytest
from PIL import Image

from consumers import figures
from consumers.card import OVERLAY_COLOURS, OVERLAY_PARTS

GREY = 100


def png_of(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def rgb_of(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def colour_of(part: str) -> tuple[int, ...]:
    hex_colour = OVERLAY_COLOURS[part][1]
    return tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))


def pixels_of(rgb: np.ndarray, part: str) -> int:
    return int(np.all(rgb == colour_of(part), axis=2).sum())


def box_row(width_px: int = 8, height_px: int = 4, **fields) -> dict:
    row = {
        "sample_id": "s1",
        "image_width_px": width_px,
        "image_height_px": height_px,
        "box_xyxy_px": [2.0, 1.0, 6.0, 3.0],
        "box_size_mm": [4.0, 2.5],
        "label_name": "liver",
    }
    return {**row, **fields}


LESION_ROW = {
    "label_name": "tumour",
    "major_axis_mm": 6.0,
    "minor_axis_mm": 3.0,
    "longest_diameter_mm": 5.94,
    "perpendicular_diameter_mm": 2.96,
    "ellipse_center_xy_px": [4.0, 2.0],
    "major_axis_endpoints_xy_px": [[1.0, 2.0], [7.0, 2.0]],
    "minor_axis_endpoints_xy_px": [[4.0, 0.5], [4.0, 3.5]],
    "longest_diameter_endpoints_xy_px": [[2.0, 1.0], [6.0, 3.0]],
    "perpendicular_diameter_endpoints_xy_px": [[5.0, 1.0], [3.0, 3.0]],
}
LANDMARK_ROW = {
    "metric_name": "L-1-2",
    "metric_description": "",
    "value": 12.345,
    "unit": "mm",
    "landmarks_xy_px": [{"name": "P1", "x": 1.0, "y": 1.0}, {"name": "P2", "x": 7.0, "y": 3.0}],
}


@pytest.mark.parametrize(
    "width_px, height_px, scale", [(8, 4, 64), (100, 30, 6), (4, 600, 1), (512, 512, 1), (511, 2, 2)]
)
def test_scale_is_the_smallest_integer_reaching_512_px(width_px, height_px, scale):
    assert figures.overlay_scale(width_px, height_px) == scale


def test_a_box_edge_lands_on_its_upscaled_pixel_edge():
    rgb = rgb_of(figures.overlay_png(png_of(np.full((4, 8), GREY, np.uint8)), "detection", box_row()))
    assert rgb.shape == (4 * 64 + 22 + 2 * 10, 8 * 64, 3)  # the slice at scale 64, then a one-line legend
    red = colour_of("box")
    # x = 2 at scale 64 is the edge between PNG columns 127 and 128: a 2 px line covers both, exactly
    assert [tuple(rgb[128, col]) for col in (126, 127, 128, 129)] == [(GREY,) * 3, red, red, (GREY,) * 3]
    assert [tuple(rgb[row, 300]) for row in (62, 63, 64, 65)] == [(GREY,) * 3, red, red, (GREY,) * 3]
    assert tuple(rgb[10, 10]) == (GREY,) * 3  # outside the box: the slice's own grey, unblended
    assert tuple(rgb[-1, -1]) == (0, 0, 0)  # the legend strip is black


def test_a_tall_narrow_slice_keeps_its_scale_on_a_wider_black_canvas():
    rgb = rgb_of(figures.overlay_png(png_of(np.full((600, 4), GREY, np.uint8)), "detection", box_row(4, 600)))
    assert rgb.shape[1] == figures.OVERLAY_MIN_WIDTH_PX
    assert tuple(rgb[300, 2]) == (GREY,) * 3 and tuple(rgb[300, 200]) == (0, 0, 0)


def test_every_lesion_part_is_drawn_on_the_slice():
    row = {**box_row(), **LESION_ROW}
    rgb = rgb_of(figures.overlay_png(png_of(np.full((4, 8), GREY, np.uint8)), "tumor_lesion_size", row))
    on_slice = rgb[: 4 * 64]
    assert {part: pixels_of(on_slice, part) > 50 for part in OVERLAY_PARTS["tumor_lesion_size"]} == dict.fromkeys(
        OVERLAY_PARTS["tumor_lesion_size"], True
    )


def test_a_measured_line_joins_the_landmarks_its_key_names():
    row = {**box_row(), **LANDMARK_ROW}
    rgb = rgb_of(figures.overlay_png(png_of(np.full((4, 8), GREY, np.uint8)), "angle_distance", row))
    assert tuple(rgb[128, 256]) == colour_of("measured line")  # (4, 2): the middle of P1-P2


def test_an_image_of_another_size_than_its_row_is_refused():
    with pytest.raises(ValueError, match=r"pair s1: PNG is 8x4 px, the row says 9x4"):
        figures.overlay_png(png_of(np.zeros((4, 8), np.uint8)), "detection", box_row(9, 4))


def test_legend_entries_follow_the_parts_of_each_task():
    rows = {"detection": box_row(), "tumor_lesion_size": LESION_ROW, "angle_distance": LANDMARK_ROW}
    for task, row in rows.items():
        assert [part for part, _ in figures.legend_entries(task, row)] == list(OVERLAY_PARTS[task])


def test_legend_texts_give_measurements_to_a_tenth():
    assert figures.legend_entries("detection", box_row()) == [("box", "box of liver: 4.0 x 2.5 mm")]
    lesion = dict(figures.legend_entries("tumor_lesion_size", LESION_ROW))
    assert lesion["longest diameter"] == "RECIST long diameter 5.9 mm"
    assert lesion["ellipse"] == "ellipse fitted to tumour"
    landmarks = dict(figures.legend_entries("angle_distance", LANDMARK_ROW))
    assert landmarks == {"landmark": "landmarks P1, P2", "measured line": "L-1-2: 12.3 mm"}  # no description


def test_names_from_the_data_are_flattened_and_cut():
    (_, text), *_ = figures.legend_entries("detection", box_row(label_name="left\n  kidney " + "x" * 60))
    name = text.removeprefix("box of ").split(":")[0]
    assert name.startswith("left kidney x") and name.endswith("…")
    assert len(name) == figures.LEGEND_NAME_CHARS


@pytest.mark.parametrize(
    "entries, width_px, layout",
    [(5, 720, (2, 3 * 22 + 20)), (5, 719, (1, 5 * 22 + 20)), (2, 1024, (1, 2 * 22 + 20)), (1, 512, (1, 42))],
)
def test_legend_takes_two_columns_only_when_wide_and_long(entries, width_px, layout):
    assert figures._legend_layout(entries, width_px) == layout


def test_text_is_drawn_literally_and_the_setting_restored():
    seen = []
    figures._plain_text(lambda: seen.append(matplotlib.rcParams["text.parse_math"]))()
    assert seen == [False]
    assert matplotlib.rcParams["text.parse_math"] is True


def test_distributions_have_one_512_px_panel_per_kind():
    panels = {"box size (mm)": {"box width": np.arange(5.0)}, "angle (deg)": {"angle": np.array([30.0, 40.0])}}
    width, height = Image.open(io.BytesIO(figures.distributions_png("$demo$", panels))).size
    assert (width, height) == (2 * 512, int(3.2 * figures.DPI))  # a fraction of a pixel is cut


def test_pairs_per_dataset_grows_with_datasets_and_draws_without_rows():
    rows = [{"dataset": d, "task": "detection", "rows": 3} for d in ("a", "b", "c")]
    assert Image.open(io.BytesIO(figures.pairs_per_dataset_png(rows))).size == (7 * 128, int(2.4 * 128))
    assert Image.open(io.BytesIO(figures.pairs_per_dataset_png([]))).size == (7 * 128, int(1.2 * 128))
