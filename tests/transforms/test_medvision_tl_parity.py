"""T/L under `--conventions medvision` against a reference of MedVision v1.4.0's rules written here with OpenCV.

The reference works on the canonical RAS+ array directly (no pipeline code: its own slicing, labelling and
guards), the pipeline through its whole slice derivation; they must keep the same slices and give the same
axes to 1e-6 mm, on phantoms (anisotropic, stored flipped, oblique) and on the real cases.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy import ndimage

from tests import realdata_fixtures as real
from tests.conftest import write_nifti
from transforms.caseref import CaseRef, SequenceRef
from transforms.lesions import measure_component, measure_component_medvision
from transforms.loading import load_nifti_case
from transforms.phantoms import grid_affine

SLICE_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}


def reference_axes_mm(mask_2d: np.ndarray, row_mm: float, col_mm: float) -> tuple[float, float] | None:
    """MedVision v1.4.0 on one raw slice's binary mask: (major, minor) in mm, or None where it keeps no sample."""
    if ndimage.label(mask_2d)[1] != 1:  # single-instance filter, 4-connected
        return None
    contour = cv2.findContours(mask_2d.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0][0][:, 0]
    if len(contour) < 5:
        return None
    cv2.setRNGSeed(0)  # a fresh thread's generator, which cv2 draws on for degenerate point sets
    _, axes, _ = cv2.fitEllipse((contour * (col_mm, row_mm)).astype(np.float32))
    major, minor = max(axes), min(axes)
    rows, cols = np.nonzero(mask_2d)
    diagonal_mm = math.hypot((np.ptp(cols) + 1) * col_mm, (np.ptp(rows) + 1) * row_mm)
    if (
        not np.isfinite(axes).all()
        or minor < min(row_mm, col_mm)
        or major > 1.5 * diagonal_mm
        or major < max(2.0, 2 * max(row_mm, col_mm))
    ):
        return None
    return major, minor


def reference_samples(labels_ras: np.ndarray, spacing_mm, label: int) -> dict[tuple[str, int], tuple[float, float]]:
    """(plane, slice index) -> (major, minor) of every slice MedVision keeps, slicing the RAS+ array as it does."""
    kept, binary = {}, labels_ras == label
    for plane, axis in SLICE_AXIS.items():
        row_mm, col_mm = (spacing_mm[a] for a in range(3) if a != axis)
        stack = np.moveaxis(binary, axis, 0)  # slice k: rows along the first remaining axis, as image_3d[:, k, :]
        for index in np.flatnonzero(stack.any(axis=(1, 2))):
            axes = reference_axes_mm(stack[index], row_mm, col_mm)
            if axes is not None:
                kept[(plane, int(index))] = axes
    return kept


def assert_same_samples(lesion_rows: list[dict], reference: dict) -> None:
    ours = {(row["plane"], row["slice_index"]): (row["major_axis_mm"], row["minor_axis_mm"]) for row in lesion_rows}
    assert len(ours) == len(lesion_rows)
    assert set(ours) == set(reference), (sorted(set(ours) - set(reference)), sorted(set(reference) - set(ours)))
    for key, axes in ours.items():
        assert axes == pytest.approx(reference[key], abs=1e-6), key


def blob_volume(seed: int, shape=(30, 26, 14)) -> np.ndarray:
    """Label 3: a few random ellipsoids and specks (single and multi-component slices, tiny and thin pieces)."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).transpose(1, 2, 3, 0).astype(float)
    labels = np.zeros(shape, np.uint8)
    for _ in range(3):
        centre = rng.uniform(3, np.array(shape) - 3)
        radii = rng.uniform((1.0, 1.0, 0.6), (9.0, 7.0, 4.0))
        turn = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        local = (grid - centre) @ turn
        labels[((local / radii) ** 2).sum(axis=-1) <= 1] = 3
    specks = rng.integers(0, shape, size=(6, 3))
    labels[tuple(specks.T)] = 3
    return labels


# stored orientation, spacing (mm), turn about S (degrees: an oblique grid, read to the nearest axes)
PHANTOMS = [
    ("LPS", (0.5, 1.5, 3.0), 0.0),
    ("RAS", (0.8, 0.8, 2.5), 0.0),
    ("LAS", (1.2, 0.45, 0.9), 0.0),
    ("LPS", (0.7, 0.7, 5.0), 12.0),
]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("orientation, spacing, turn_deg", PHANTOMS)
def test_phantom_lesion_rows_are_medvisions(tmp_path, seed, orientation, spacing, turn_deg):
    affine = grid_affine(orientation, spacing, rotation_z_deg=turn_deg)
    labels = blob_volume(seed)
    image = write_nifti(tmp_path / "img.nii.gz", labels.astype(np.int16) * 50, affine)
    mask = write_nifti(tmp_path / "seg.nii.gz", labels, affine)
    case = CaseRef(
        "test", "blobs", "blobs", image, mask, (SequenceRef("CT", "CT"),), ((3, "lesion"),), lesion_labels=(3,)
    )
    loaded = load_nifti_case(case, image, mask)
    lesion_rows = real.lesion_rows_of(loaded, "medvision")
    reference = reference_samples(loaded.labels.array, loaded.labels.spacing_mm, 3)
    assert reference, "the phantom must give MedVision samples"
    assert_same_samples(lesion_rows, reference)


@real.needs_realdata
@pytest.mark.parametrize("name", real.CASE_NAMES)
def test_real_case_lesion_rows_are_medvisions(real_cases, name):
    built = real_cases[name]["medvision"]
    reference = reference_samples(built.loaded.labels.array, built.loaded.labels.spacing_mm, 1)
    assert_same_samples(built.lesions, reference)


def test_rectangle_in_a_crop_has_its_analytic_centre_and_axes_directions():
    # 12 columns x 5 rows of 0.5 x 2.0 mm (col x row): 6 mm wide, 10 mm tall, so the major axis is vertical.
    row_mm, col_mm, origin = 2.0, 0.5, (7, 30)
    slice_2d = np.zeros((20, 50), bool)
    slice_2d[7:12, 30:42] = True
    size = measure_component_medvision(slice_2d[7:12, 30:42], (row_mm, col_mm), origin)
    whole = measure_component_medvision(slice_2d, (row_mm, col_mm))
    assert size == whole  # a crop placed at its origin gives the same bits
    assert size.ellipse_center_xy_px == pytest.approx((30 + 6.0, 7 + 2.5), abs=1e-5)  # edge frame
    assert size.ellipse_angle_deg == pytest.approx(90.0, abs=1e-4)
    (x1, y1), (x2, y2) = size.major_axis_endpoints_xy_px
    assert x1 == pytest.approx(36.0, abs=1e-5) and x2 == pytest.approx(36.0, abs=1e-5)
    assert abs(y1 - y2) * row_mm == pytest.approx(size.major_axis_mm)
    (x3, y3), (x4, y4) = size.minor_axis_endpoints_xy_px
    assert y3 == pytest.approx(9.5, abs=1e-5) and y4 == pytest.approx(9.5, abs=1e-5)
    assert abs(x3 - x4) * col_mm == pytest.approx(size.minor_axis_mm)
    assert (size.major_axis_mm, size.minor_axis_mm) == pytest.approx(reference_axes_mm(slice_2d, row_mm, col_mm))
    ours = measure_component(slice_2d, (row_mm, col_mm))  # our RECIST diameters stay alongside
    assert (size.longest_diameter_mm, size.perpendicular_diameter_mm) == (
        ours.longest_diameter_mm,
        ours.perpendicular_diameter_mm,
    )


def test_small_and_thin_components_follow_medvisions_rules_not_ours():
    def kept(result) -> bool:
        return not hasattr(result, "reason")

    bar = np.zeros((6, 30), bool)
    bar[2, 3:25] = True
    two_rows = bar | np.roll(bar, 1, axis=0)
    ell = np.zeros((8, 8), bool)
    ell[1:6, 2] = ell[5, 2:6] = True  # 8 pixels, one thick
    plus = np.zeros((5, 5), bool)
    plus[2, 1:4] = plus[1:4, 2] = True  # 4 contour points
    cases = [
        (bar, 0.5, False, False),  # both: one pixel thick
        (two_rows, 0.5, False, True),  # cv2's fit of two rows of centres collapses; our edge contour does not
        (ell, 0.4, True, False),  # ours under the 2 mm floor (1.95 mm), MedVision's fit is 2.56 mm
        (plus, 1.0, False, False),
    ]  # MedVision: 4 points; ours: 5 pixels
    for mask, pixel_mm, medvision_keeps, ours_keeps in cases:
        result = measure_component_medvision(mask, (pixel_mm, pixel_mm))
        expected = reference_axes_mm(mask, pixel_mm, pixel_mm)
        assert kept(result) == medvision_keeps == (expected is not None)
        assert kept(measure_component(mask, (pixel_mm, pixel_mm))) == ours_keeps
        if medvision_keeps:
            assert (result.major_axis_mm, result.minor_axis_mm) == pytest.approx(expected, abs=1e-6)
