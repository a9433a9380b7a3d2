"""Box sizes in mm on anisotropic, flipped, permuted and oblique phantoms with analytic answers."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import write_nifti
from transforms.boxes import component_boxes
from transforms.caseref import CaseRef, SequenceRef
from transforms.loading import load_nifti_case
from transforms.phantoms import Cuboid, centred_affine, rasterize, reorient
from transforms.slicing import extract_slices

# A 30 x 20 x 15 mm (x, y, z) cuboid, off-centre so flips would move it.
CUBOID = Cuboid(1, (5.0, -12.0, -3.0), (35.0, 8.0, 12.0))
TRUE_SIZE_MM = {"x": 30.0, "y": 20.0, "z": 15.0}
# Which world axes the displayed (width, height) of each plane measure.
PLANE_AXES = {"axial": ("x", "y"), "coronal": ("x", "z"), "sagittal": ("y", "z")}
FOV_MM = {"x": 90.0, "y": 70.0, "z": 60.0}
_AXIS = {"R": "x", "L": "x", "A": "y", "P": "y", "S": "z", "I": "z"}


def phantom_case(tmp_path, orientation, spacing_mm, rotation_deg=0.0):
    shape = tuple(int(round(FOV_MM[_AXIS[letter]] / s)) for letter, s in zip(orientation, spacing_mm))
    affine = centred_affine(shape, orientation, spacing_mm, rotation_deg)
    labels = rasterize(shape, affine, (CUBOID,))
    image = labels.astype(np.int16) * 100
    return save_case(tmp_path, orientation, image, labels, affine)


def save_case(tmp_path, name, image, labels, affine, label_map=((1, "cuboid"),)):
    image_path = write_nifti(tmp_path / f"{name}_img.nii.gz", image, affine)
    mask_path = write_nifti(tmp_path / f"{name}_seg.nii.gz", labels, affine)
    case = CaseRef("test", name, name, image_path, mask_path, (SequenceRef("CT", "CT"),), label_map)
    return load_nifti_case(case, image_path, mask_path)


def largest_boxes_mm(loaded, spacing="finest"):
    """Per plane, the largest (width, height) in mm over all slices, and the boxes themselves."""
    sizes, boxes = {}, {}
    for content in extract_slices(loaded, spacing):
        for box in component_boxes(content.labels_2d):
            width, height = box.size_mm(content.spacing_mm_row_col)
            best = sizes.get(content.plane, (0.0, 0.0))
            sizes[content.plane] = (max(best[0], width), max(best[1], height))
            boxes.setdefault(content.plane, []).append((content.slice_index, box.box_xyxy_px))
    return sizes, boxes


@pytest.mark.parametrize(
    "orientation, spacing_mm",
    [
        ("RAS", (0.7, 0.7, 2.5)),
        ("LPS", (0.7, 0.7, 2.5)),
        ("PSL", (0.5, 3.0, 2.0)),  # axial in-plane 0.5 x 2.0 mm, stored with permuted axes
        ("ILA", (1.5, 0.6, 1.1)),
    ],
)
def test_box_sizes_match_physical_size(tmp_path, orientation, spacing_mm):
    loaded = phantom_case(tmp_path, orientation, spacing_mm)
    sizes, _ = largest_boxes_mm(loaded)
    spacing_of_axis = {_AXIS[letter]: s for letter, s in zip(orientation, spacing_mm)}
    for plane, (width_axis, height_axis) in PLANE_AXES.items():
        width_mm, height_mm = sizes[plane]
        # Rasterising quantises each side to the source grid; finest resampling keeps that exactly.
        assert width_mm == pytest.approx(TRUE_SIZE_MM[width_axis], abs=spacing_of_axis[width_axis] + 1e-6), plane
        assert height_mm == pytest.approx(TRUE_SIZE_MM[height_axis], abs=spacing_of_axis[height_axis] + 1e-6), plane


def test_same_voxels_in_any_storage_order_give_identical_boxes(tmp_path):
    shape = (60, 50, 24)
    affine = centred_affine(shape, "RAS", (0.8, 1.1, 2.5))
    labels = rasterize(shape, affine, (CUBOID,))
    reference = None
    for orientation in ("RAS", "LPS", "PSL", "SAR", "ILP"):
        stored_labels, stored_affine = reorient(labels, affine, orientation)
        loaded = save_case(tmp_path, orientation, stored_labels.astype(np.int16), stored_labels, stored_affine)
        assert loaded.geometry.orig_orientation == orientation
        _, boxes = largest_boxes_mm(loaded)
        if reference is None:
            reference = boxes
        assert boxes == reference, orientation


def test_display_orientation_is_radiological(tmp_path):
    """An off-diagonal marker (left, anterior, superior; each offset different) lands where each plane's
    convention says."""
    shape = (40, 50, 60)
    affine = centred_affine(shape, "LPS", (1.0, 1.0, 1.0))
    marker = Cuboid(1, (-16.0, 4.0, 20.0), (-10.0, 8.0, 26.0))  # x = -13 (left), y = +6, z = +23 mm
    body = Cuboid(2, (-5.0, -5.0, -5.0), (5.0, 5.0, 5.0))
    labels = rasterize(shape, affine, (body, marker))
    loaded = save_case(tmp_path, "marker", labels.astype(np.int16), labels, affine, ((1, "marker"), (2, "body")))
    centres = {}
    for content in extract_slices(loaded, "finest"):
        for box in component_boxes(content.labels_2d):
            x0, y0, x1, y1 = box.box_xyxy_px
            rows, cols = content.shape_rows_cols
            centres.setdefault((content.plane, box.label), ((x0 + x1) / 2 / cols, (y0 + y1) / 2 / rows))
    # Field: x spans 40 mm, y 50 mm, z 60 mm, centred on 0. Expected fractions across the image:
    left_on_right = 0.5 + 13 / 40  # axial/coronal x: patient left on image right
    anterior_up = 0.5 - 6 / 50  # axial y: anterior up
    superior_up = 0.5 - 23 / 60  # coronal/sagittal y: superior up
    anterior_left = 0.5 - 6 / 50  # sagittal x: anterior on image left
    assert centres[("axial", 1)] == pytest.approx((left_on_right, anterior_up), abs=0.02)
    assert centres[("coronal", 1)] == pytest.approx((left_on_right, superior_up), abs=0.02)
    assert centres[("sagittal", 1)] == pytest.approx((anterior_left, superior_up), abs=0.02)


def test_oblique_grid_records_obliquity_and_keeps_sizes_physical(tmp_path):
    loaded = phantom_case(tmp_path, "RAS", (0.8, 0.8, 2.0), rotation_deg=8.0)
    assert loaded.geometry.obliquity_deg == pytest.approx(8.0, abs=1e-3)
    sizes, _ = largest_boxes_mm(loaded)
    # The grid is tilted 8 degrees about z, so the axial box of the cuboid bounds the rotated rectangle.
    angle = np.radians(8.0)
    expected_width = 30 * np.cos(angle) + 20 * np.sin(angle)
    assert sizes["axial"][0] == pytest.approx(expected_width, abs=2 * 0.8)
    assert sizes["coronal"][1] == pytest.approx(15.0, abs=2.0 + 1e-6)


def test_native_spacing_keeps_rectangular_pixels(tmp_path):
    loaded = phantom_case(tmp_path, "RAS", (0.7, 0.7, 2.5))
    contents = {c.plane: c for c in extract_slices(loaded, "native")}
    assert contents["coronal"].spacing_mm_row_col == pytest.approx((2.5, 0.7))
    assert contents["coronal"].square_spacing_mm is None
    assert contents["axial"].square_spacing_mm == pytest.approx(0.7)
    sizes, _ = largest_boxes_mm(loaded, "native")
    assert sizes["coronal"][1] == pytest.approx(15.0, abs=2.5 + 1e-6)


def test_fixed_spacing_gives_that_pixel_size(tmp_path):
    loaded = phantom_case(tmp_path, "LPS", (0.7, 0.7, 2.5))
    contents = list(extract_slices(loaded, 1.0))
    assert {c.spacing_mm_row_col for c in contents} == {(1.0, 1.0)}
    sizes, _ = largest_boxes_mm(loaded, 1.0)
    assert sizes["axial"][0] == pytest.approx(30.0, abs=1.0 + 0.7)
