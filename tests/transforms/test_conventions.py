"""`--conventions medvision`: MedVision's ground-truth conventions, checked on phantoms with analytic answers."""

from __future__ import annotations

import glob
import json
import os

import apache_beam as beam
import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.cli import main
from pipeline.stages import DeriveBoxes
from schemas import rows as row_builders
from tests.conftest import write_nifti
from transforms.boxes import component_boxes
from transforms.caseref import CaseRef, SequenceRef
from transforms.loading import load_nifti_case
from transforms.medvision import benchmark_box_target
from transforms.phantoms import grid_affine
from transforms.slicing import SliceRecord, extract_slices

# Stored LPS (both in-plane axes flipped against RAS+), anisotropic: 0.5 x 1.5 mm in plane, 3 mm slices.
STORED_SHAPE = (24, 16, 5)
SPACING_MM = (0.5, 1.5, 3.0)
SMALL_DEMO = "Task02_DemoMR/demo_mr_00,Task01_DemoCT/demo_ct_02"


def stored_labels() -> np.ndarray:
    """Label map in stored (L, P, S) voxel indices.

    Axial slice 1: label 1, a 12 x 12 voxel block at i in [2, 14), j in [3, 15).
    Axial slice 2: label 2, two 2 x 2 squares touching only at a corner (i, j) = (1, 1) / (2, 2).
    Axial slice 3: label 3, two separate 8 x 8 blocks.
    """
    labels = np.zeros(STORED_SHAPE, np.uint8)
    labels[2:14, 3:15, 1] = 1
    labels[0:2, 0:2, 2] = 2
    labels[2:4, 2:4, 2] = 2
    labels[0:8, 0:8, 3] = 3
    labels[14:22, 8:16, 3] = 3
    return labels


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("conventions")
    affine = grid_affine("LPS", SPACING_MM)
    labels = stored_labels()
    image_path = write_nifti(folder / "img.nii.gz", labels.astype(np.int16) * 100, affine)
    mask_path = write_nifti(folder / "seg.nii.gz", labels, affine)
    case = CaseRef(
        "test",
        "lps",
        "lps",
        image_path,
        mask_path,
        (SequenceRef("CT", "CT"),),
        ((1, "organ"), (2, "diagonal"), (3, "lesion")),
        lesion_labels=(3,),
    )
    return load_nifti_case(case, image_path, mask_path)


def axial(loaded, spacing, display, index):
    (content,) = [c for c in extract_slices(loaded, spacing, display) if c.plane == "axial" and c.slice_index == index]
    return content


def record(loaded, content, conventions) -> SliceRecord:
    provenance = row_builders.provenance(loaded.case, loaded.geometry, {}, "native", "test", "0" * 16, conventions)
    return SliceRecord(loaded.case, "train", provenance, content)


def test_benchmark_box_target_matches_medvision_formula_by_hand():
    # An 8 x 10 px image; the object covers rows 3..4 and columns 2..6 (inclusive).
    mask = np.zeros((8, 10), np.uint8)
    mask[3:5, 2:7] = 1
    (box,) = component_boxes(mask)
    assert box.box_xyxy_px == (2, 3, 7, 5)
    # MedVision: [col_first / W, (H - row_last) / H, col_last / W, (H - row_first) / H]
    assert benchmark_box_target(box.box_xyxy_px, 10, 8) == pytest.approx([2 / 10, (8 - 4) / 8, 6 / 10, (8 - 3) / 8])
    # One pixel short: the true right edge is 7 / 10 and the true bottom edge is (8 - 5) / 8 from the bottom.
    assert benchmark_box_target((0, 0, 10, 8), 10, 8) == pytest.approx([0.0, 1 / 8, 9 / 10, 1.0])
    with pytest.raises(ValueError):
        benchmark_box_target((3, 3, 3, 5), 10, 8)


def test_raw_display_keeps_the_native_grid_and_the_unflipped_ras_array(loaded):
    raw = axial(loaded, "native", "raw", 1)
    # Raw axial: rows along R (canonical i, 24 voxels of 0.5 mm), columns along A (canonical j, 16 of 1.5 mm).
    assert raw.shape_rows_cols == (24, 16)
    assert raw.spacing_mm_row_col == pytest.approx((0.5, 1.5))
    assert raw.square_spacing_mm is None
    # Stored LPS i in [2, 14) is canonical RAS i in [24 - 14, 24 - 2); stored j in [3, 15) is j in [1, 13).
    expected = np.zeros((24, 16), bool)
    expected[10:22, 1:13] = True
    np.testing.assert_array_equal(raw.labels_2d == 1, expected)
    # The default display of the same slice is radiological, on the finest square grid.
    default = axial(loaded, "finest", "radiological", 1)
    assert default.shape_rows_cols == (16 * 3, 24) and default.spacing_mm_row_col == pytest.approx((0.5, 0.5))


def test_compat_detection_row_carries_the_benchmark_target(loaded):
    (row,) = row_builders.detection_rows(record(loaded, axial(loaded, "native", "raw", 1), "medvision"))
    assert row["box_xyxy_px"] == [1.0, 10.0, 13.0, 22.0]
    assert (row["image_width_px"], row["image_height_px"]) == (16, 24)
    assert row["box_medvision_rel"] == pytest.approx([1 / 16, (24 - 21) / 24, 12 / 16, (24 - 10) / 24])
    assert row["box_size_mm"] == pytest.approx([12 * 1.5, 12 * 0.5])
    assert row["provenance"]["conventions"] == "medvision"
    (default_row,) = row_builders.detection_rows(record(loaded, axial(loaded, "finest", "radiological", 1), "default"))
    assert default_row["box_medvision_rel"] is None


def test_diagonal_squares_are_two_components_and_the_filter_drops_and_counts_them(loaded):
    content = axial(loaded, "native", "raw", 2)
    pairs, dropped = row_builders.detection_pairs(record(loaded, content, "medvision"))
    assert pairs == [] and len(dropped) == 2
    assert {rejection.reason.value for _, rejection in dropped} == {"not_single_instance"}
    default_pairs = row_builders.detection_rows(record(loaded, content, "default"))
    assert [(r["component_index"], r["n_components"]) for r in default_pairs] == [(0, 2), (1, 2)]
    with BeamPipeline() as pipeline:
        kept, quarantine = pipeline | beam.Create([record(loaded, content, "medvision")]) | DeriveBoxes()
        assert_that(kept, equal_to([]), label="NothingKept")
        assert_that(
            quarantine | beam.Map(lambda q: (q["stage"], q["reason"], q["sample_id"])),
            equal_to([("detection", "not_single_instance", sample_id) for sample_id, _ in dropped]),
            label="DroppedPairsInQuarantine",
        )


def test_compat_lesion_size_keeps_only_single_component_slices(loaded):
    content = axial(loaded, "native", "raw", 3)
    default_pairs, _ = row_builders.lesion_rows(record(loaded, content, "default"))
    assert [r["n_components"] for r in default_pairs] == [2, 2]
    pairs, rejected = row_builders.lesion_rows(record(loaded, content, "medvision"))
    assert pairs == [] and [r.reason.value for _, r in rejected] == ["not_single_instance"] * 2


@pytest.fixture(scope="module")
def compat_build(tmp_path_factory, demo_root):
    output = str(tmp_path_factory.mktemp("compat") / "out")
    assert (
        main(
            [
                "build",
                f"--source=demo={demo_root}",
                "--output",
                output,
                "--cases",
                SMALL_DEMO,
                "--conventions",
                "medvision",
            ]
        )
        == 0
    )
    return output


def test_compat_build_through_the_cli(compat_build):
    stats = json.load(open(os.path.join(compat_build, "stats.json")))
    assert stats["params"]["conventions"] == "medvision" and stats["params"]["display"] == "raw"
    assert stats["params"]["spacing"] == "native"
    files = glob.glob(os.path.join(compat_build, "dataset=*/task=detection/split=*/*.parquet"))
    detection = (
        ds.dataset(files, format="parquet")
        .to_table(
            columns=[
                "single_instance",
                "box_medvision_rel",
                "box_xyxy_px",
                "image_width_px",
                "image_height_px",
                "provenance",
            ]
        )
        .to_pylist()
    )
    assert detection and all(r["single_instance"] for r in detection)
    assert {r["provenance"]["conventions"] for r in detection} == {"medvision"}
    for r in detection:
        x0, y0, x1, y1 = r["box_xyxy_px"]
        width, height = r["image_width_px"], r["image_height_px"]
        assert r["box_medvision_rel"] == pytest.approx(
            [x0 / width, (height - y1 + 1) / height, (x1 - 1) / width, (height - y0) / height]
        )
    dropped = sum(q["rows"] for q in stats["quarantine"] if q["reason"] == "not_single_instance")
    quarantine = pq.read_table(os.path.join(compat_build, "quarantine")).to_pylist()
    assert dropped > 0 and dropped == sum(q["reason"] == "not_single_instance" for q in quarantine)


def test_compat_refuses_another_spacing(tmp_path, demo_root, capsys):
    assert (
        main(
            [
                "build",
                f"--source=demo={demo_root}",
                "--output",
                str(tmp_path / "x"),
                "--conventions",
                "medvision",
                "--spacing",
                "finest",
            ]
        )
        == 2
    )
    assert "native" in capsys.readouterr().err
