"""Schema snapshots (every change deliberate) and row validation."""
from __future__ import annotations

import os
import pathlib

import pytest

from schemas.tables import SCHEMAS, describe
from schemas.validate import pair_problems

SNAPSHOTS = pathlib.Path(__file__).resolve().parents[1] / "schemas" / "snapshots"


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
        "dataset": "demo", "task": "detection", "split": "train", "sample_id": "a" * 32, "case_id": "c",
        "subject_id": "s", "sequence": "CT", "modality": "CT", "image": {"bytes": png_bytes, "path": None},
        "plane": "axial", "slice_index": 3, "image_width_px": 8, "image_height_px": 6, "pixel_spacing_mm": 0.5,
        "pixel_spacing_mm_row_col": [0.5, 0.5], "intensity_window": {"name": "soft_tissue", "low": -160.0,
                                                                     "high": 240.0},
        "provenance": None, "label": 1, "label_name": "liver", "box_xyxy_px": [1.0, 1.0, 5.0, 4.0],
        "box_xyxy_norm": [0.125, 1 / 6, 0.625, 4 / 6], "box_size_mm": [2.0, 1.5], "area_px": 12,
        "component_index": 0, "n_components": 1, "single_instance": False,
    }


@pytest.fixture
def png_8x6():
    import numpy as np

    from transforms.intensity import encode_png
    return encode_png(np.zeros((6, 8), np.uint8))


def test_valid_row_has_no_problems(png_8x6):
    assert pair_problems(valid_row(png_8x6)) == []


@pytest.mark.parametrize("change, expected", [
    ({"box_xyxy_px": [1.0, 1.0, 9.0, 4.0]}, "outside"),
    ({"box_xyxy_px": [3.0, 1.0, 3.0, 4.0]}, "empty"),
    ({"box_size_mm": [4.0, 1.5]}, "box_size_mm"),
    ({"image_width_px": 9}, "PNG is 8x6"),
    ({"split": "validation"}, "split"),
    ({"label_name": None}, "no name"),
    ({"component_index": 1}, "component_index"),
    ({"slice_index": "three"}, "schema"),
    ({"extra_column": 1}, "not in the detection schema"),
])
def test_broken_rows_are_named(png_8x6, change, expected):
    row = {**valid_row(png_8x6), **change}
    assert any(expected in problem for problem in pair_problems(row)), pair_problems(row)
