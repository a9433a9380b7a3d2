"""Schema snapshots (every change deliberate) and row validation."""

from __future__ import annotations

import os

import pytest

from schemas.tables import SCHEMAS, describe
from schemas.validate import batch_problems, pair_problems
from tests.conftest import REPO

SNAPSHOTS = REPO / "schemas" / "snapshots"


@pytest.mark.parametrize("table", sorted(SCHEMAS))
def test_schema_matches_snapshot(table):
    """On purpose changes: bump SCHEMA_VERSION, then run with UPDATE_SNAPSHOTS=1 and review the diff."""
    path = SNAPSHOTS / f"{table}.txt"
    text = describe(SCHEMAS[table])
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.write_text(text)
    assert text == path.read_text()


def test_image_column_is_declared_as_a_hugging_face_image():
    metadata = SCHEMAS["detection"].metadata
    assert b'"image": {"_type": "Image"}' in metadata[b"huggingface"]
    assert "dataset" not in SCHEMAS["detection"].names  # partition keys live in paths only


def valid_row(png_bytes):
    return {
        "dataset": "demo",
        "task": "detection",
        "split": "train",
        "sample_id": "a" * 32,
        "case_id": "c",
        "subject_id": "s",
        "sequence": "CT",
        "modality": "CT",
        "image": {"bytes": png_bytes, "path": None},
        "plane": "axial",
        "slice_index": 3,
        "image_width_px": 8,
        "image_height_px": 6,
        "pixel_spacing_mm": 0.5,
        "pixel_spacing_mm_row_col": [0.5, 0.5],
        "intensity_window": {"name": "soft_tissue", "low": -160.0, "high": 240.0},
        "provenance": None,
        "label": 1,
        "label_name": "liver",
        "box_xyxy_px": [1.0, 1.0, 5.0, 4.0],
        "box_xyxy_norm": [0.125, 1 / 6, 0.625, 4 / 6],
        "box_size_mm": [2.0, 1.5],
        "area_px": 12,
        "component_index": 0,
        "n_components": 1,
        "single_instance": False,
        "prompt": "Where?",
        "answer": "[1, 1, 5, 4]",
    }


@pytest.fixture
def png_8x6():
    import numpy as np

    from transforms.intensity import encode_png

    return encode_png(np.zeros((6, 8), np.uint8))


def test_valid_row_has_no_problems(png_8x6):
    assert pair_problems(valid_row(png_8x6)) == []


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"box_xyxy_px": [1.0, 1.0, 9.0, 4.0]}, "outside"),
        ({"box_xyxy_px": [3.0, 1.0, 3.0, 4.0]}, "empty"),
        ({"box_size_mm": [4.0, 1.5]}, "box_size_mm"),
        ({"image_width_px": 9}, "PNG is 8x6"),
        ({"split": "dev"}, "split"),
        ({"label_name": None}, "no name"),
        ({"component_index": 1}, "component_index"),
        ({"slice_index": "three"}, "schema"),
        ({"extra_column": 1}, "not in the detection schema"),
        ({"answer": ""}, "answer is empty"),
        ({"box_medvision_rel": [0.125, 0.5, 0.5, 5 / 6]}, "set outside --conventions medvision"),
        ({"provenance": {"conventions": "medvision"}}, "missing under --conventions medvision"),
        ({"provenance": {"conventions": "medvision"}, "box_medvision_rel": [0.5, 0.5, 0.125, 5 / 6]}, "not a relative"),
    ],
)
def test_broken_rows_are_named(png_8x6, change, expected):
    row = {**valid_row(png_8x6), **change}
    assert any(expected in problem for problem in pair_problems(row)), pair_problems(row)


def common_part(png_bytes, task):
    row = valid_row(png_bytes)
    for key in (
        "label",
        "label_name",
        "box_xyxy_px",
        "box_xyxy_norm",
        "box_size_mm",
        "area_px",
        "component_index",
        "n_components",
        "single_instance",
    ):
        row.pop(key)
    return {**row, "task": task}


def lesion_row(png_bytes):
    return {
        **common_part(png_bytes, "tumor_lesion_size"),
        "label": 2,
        "label_name": "lesion",
        "major_axis_mm": 3.0,
        "minor_axis_mm": 2.0,
        "ellipse_center_xy_px": [4.0, 3.0],
        "ellipse_angle_deg": 10.0,
        "major_axis_endpoints_xy_px": [[1.0, 3.0], [7.0, 3.0]],
        "minor_axis_endpoints_xy_px": [[4.0, 1.0], [4.0, 5.0]],
        "longest_diameter_mm": 3.1,
        "perpendicular_diameter_mm": 2.0,
        "longest_diameter_endpoints_xy_px": [[1.0, 3.0], [7.0, 3.0]],
        "perpendicular_diameter_endpoints_xy_px": [[4.0, 1.0], [4.0, 5.0]],
        "area_mm2": 4.5,
        "component_index": 0,
        "n_components": 1,
    }


def measurement_row(png_bytes, kind="angle"):
    row = {
        **common_part(png_bytes, "angle_distance"),
        "metric_name": "A",
        "metric_description": None,
        "metric_type": kind,
        "value": 30.0,
        "unit": "deg",
        "directed_angle_deg": 150.0,
        "landmarks_xy_px": [{"name": "P1", "x": 1.0, "y": 1.0}, {"name": "P2", "x": 5.0, "y": 5.0}],
    }
    if kind == "distance":
        row.update(value=3.0, unit="mm", directed_angle_deg=None)
    return row


def test_valid_lesion_and_measurement_rows_pass(png_8x6):
    assert pair_problems(lesion_row(png_8x6)) == []
    assert pair_problems(measurement_row(png_8x6)) == []
    assert pair_problems(measurement_row(png_8x6, "distance")) == []


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"minor_axis_mm": 3.5}, "major"),
        ({"perpendicular_diameter_mm": 0.0}, "longest"),
        ({"major_axis_endpoints_xy_px": [[-1.0, 3.0], [7.0, 3.0]]}, "not inside"),
        ({"area_mm2": float("nan")}, "finite"),
    ],
)
def test_broken_lesion_rows_are_named(png_8x6, change, expected):
    row = {**lesion_row(png_8x6), **change}
    assert any(expected in problem for problem in pair_problems(row)), pair_problems(row)


@pytest.mark.parametrize(
    "kind, change, expected",
    [
        ("angle", {"value": 120.0, "directed_angle_deg": 120.0}, "unsigned acute"),
        ("angle", {"directed_angle_deg": 40.0}, "does not match"),
        ("distance", {"value": 50.0}, "image diagonal"),
        ("distance", {"value": 0.0}, "image diagonal"),
        ("distance", {"landmarks_xy_px": [{"name": "P1", "x": 9.5, "y": 1.0}]}, "not inside"),
    ],
)
def test_broken_measurement_rows_are_named(png_8x6, kind, change, expected):
    row = {**measurement_row(png_8x6, kind), **change}
    assert any(expected in problem for problem in pair_problems(row)), pair_problems(row)


def test_a_batch_names_only_its_broken_rows(png_8x6):
    """A slice's rows are converted to Arrow together; one row that does not fit must not take the others."""
    rows = [
        valid_row(png_8x6),
        {**valid_row(png_8x6), "area_px": "twelve"},
        lesion_row(png_8x6),
        {**lesion_row(png_8x6), "ellipse_angle_deg": "steep"},
        measurement_row(png_8x6),
        {**valid_row(png_8x6), "box_xyxy_px": [1.0, 1.0, 9.0, 4.0]},
    ]
    problems = batch_problems(rows)
    assert [bool(p) for p in problems] == [False, True, False, True, False, True]
    assert "does not fit the detection schema" in problems[1][0]
    assert "does not fit the tumor_lesion_size schema" in problems[3][0]
    assert "outside" in problems[5][0]
    assert problems == [pair_problems(row) for row in rows]


def test_a_row_that_breaks_a_check_is_named_not_the_batch(png_8x6):
    """A malformed value that makes a check raise (here a comparison of str and int) names its row; the
    batch's other rows are still validated."""
    rows = [valid_row(png_8x6), {**valid_row(png_8x6), "box_xyxy_px": [1.0, "one", 5.0, 4.0]}, measurement_row(png_8x6)]
    problems = batch_problems(rows)
    assert problems[0] == [] and problems[2] == []
    assert "a check failed on this row" in problems[1][0] and "TypeError" in problems[1][0]


def test_a_bundle_holds_its_rows_shared_image_once():
    """A slice's pairs travel as one bundle: the runner's coder writes the PNG once, not once per pair, and
    the rows come back whole."""
    import numpy as np
    from apache_beam.coders import FastPrimitivesCoder

    from schemas.rows import RowBundle
    from transforms.intensity import encode_png

    png = encode_png(np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8))  # ~4 kB, incompressible
    rows = [{**valid_row(png), "sample_id": f"{n:032d}", "image": {"bytes": png, "path": None}} for n in range(3)]
    bundle = RowBundle.of(rows)
    assert bundle.full_rows() == rows and len(bundle) == 3
    assert all("image" not in row for row in bundle.rows)
    coder = FastPrimitivesCoder()
    assert coder.decode(coder.encode(bundle)) == bundle
    assert len(coder.encode(bundle)) < len(png) + len(coder.encode(list(bundle.rows)))  # the rows alone: 1 PNG
    assert len(coder.encode(rows)) > 3 * len(png)
    assert bundle.keeping([2]).full_rows() == rows[2:]


def test_a_bundle_refuses_rows_with_different_images_and_keeps_imageless_rows(png_8x6):
    from schemas.rows import RowBundle

    with pytest.raises(ValueError, match="share one image"):
        RowBundle.of([valid_row(png_8x6), valid_row(png_8x6 + b"\0")])
    quarantine_row = {"dataset": "demo", "case_id": "c", "reason": "empty_case"}
    assert RowBundle((quarantine_row,)).full_rows() == [quarantine_row]
    assert RowBundle.of([quarantine_row]).image is None
