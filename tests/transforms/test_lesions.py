"""Tumour/lesion size on analytic ellipses and degenerate components."""

from __future__ import annotations

import math

import numpy as np
import pytest

from transforms.errors import Reason
from transforms.lesions import LesionSize, Rejection, measure_component, size_floor_mm, target_components
from transforms.phantoms import ellipse_mask

SEMI_MAJOR_MM, SEMI_MINOR_MM = 20.0, 10.0
SPACINGS = [(1.0, 1.0), (0.5, 2.0), (2.0, 0.5)]  # (row, col) mm
ANGLES = range(0, 180, 15)


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("angle_deg", ANGLES)
def test_analytic_ellipse_is_measured_in_mm(spacing, angle_deg):
    size = measure_component(ellipse_mask(SEMI_MAJOR_MM, SEMI_MINOR_MM, angle_deg, spacing), spacing)
    assert isinstance(size, LesionSize), size
    pixel_mm = max(spacing)
    tolerance = lambda truth: max(pixel_mm, 0.03 * truth)  # noqa: E731
    assert size.major_axis_mm == pytest.approx(2 * SEMI_MAJOR_MM, abs=tolerance(2 * SEMI_MAJOR_MM))
    assert size.minor_axis_mm == pytest.approx(2 * SEMI_MINOR_MM, abs=tolerance(2 * SEMI_MINOR_MM))
    assert size.longest_diameter_mm == pytest.approx(2 * SEMI_MAJOR_MM, abs=pixel_mm)
    assert size.perpendicular_diameter_mm == pytest.approx(2 * SEMI_MINOR_MM, abs=pixel_mm)
    assert (size.ellipse_angle_deg - angle_deg + 90) % 180 - 90 == pytest.approx(0, abs=2.0)
    assert size.area_mm2 == pytest.approx(math.pi * SEMI_MAJOR_MM * SEMI_MINOR_MM, rel=0.03)


def test_endpoints_are_in_displayed_pixels_of_the_right_axis():
    """On (0.5, 2.0) mm pixels a horizontal 40 mm axis spans 20 px in x; a vertical one 80 px in y."""
    spacing = (0.5, 2.0)
    horizontal = measure_component(ellipse_mask(20, 10, 0, spacing), spacing)
    (x0, y0), (x1, y1) = horizontal.major_axis_endpoints_xy_px
    assert abs(x1 - x0) == pytest.approx(20, abs=0.5) and abs(y1 - y0) < 0.5
    vertical = measure_component(ellipse_mask(20, 10, 90, spacing), spacing)
    (x0, y0), (x1, y1) = vertical.major_axis_endpoints_xy_px
    assert abs(y1 - y0) == pytest.approx(80, abs=1.0) and abs(x1 - x0) < 0.5
    cx, cy = vertical.ellipse_center_xy_px
    assert (cx, cy) == pytest.approx((20.0, 80.0), abs=0.25)  # the middle of a 40 x 160 px image


@pytest.mark.parametrize(
    "pixels, reason",
    [
        ([(5, 5)], Reason.FIT_TOO_FEW_POINTS),
        ([(5, 5), (5, 6)], Reason.TOO_FEW_PIXELS),
        ([(5, c) for c in range(3, 20)], Reason.FIT_MINOR_BELOW_PIXEL),
        ([(5, 5), (5, 6), (6, 5), (6, 6), (7, 5)], Reason.TOO_FEW_PIXELS),
    ],
)
def test_degenerate_components_are_rejected_with_their_reason(pixels, reason):
    component = np.zeros((20, 25), bool)
    for row, col in pixels:
        component[row, col] = True
    result = measure_component(component, (0.7, 0.7))
    assert isinstance(result, Rejection) and result.reason is reason, result


def test_a_fit_with_no_real_ellipse_is_rejected_not_raised():
    # Six pixels where this position and spacing give skimage's fit complex eigenvectors (found by hypothesis).
    component = np.zeros((19, 18), bool)
    for row, col in [(0, 1), (1, 0), (1, 1), (2, 0), (2, 1), (3, 1)]:
        component[5 + row, 16 + col] = True
    result = measure_component(component, (0.7, 0.5))
    assert isinstance(result, Rejection) and result.reason is Reason.FIT_DEGENERATE, result


@pytest.mark.parametrize("spacing", SPACINGS)
def test_one_pixel_thick_lines_are_never_measured(spacing):
    for component in (np.zeros((30, 30), bool), np.zeros((30, 30), bool)):
        component[10, 2:28] = True
        result = measure_component(component, spacing)
        assert isinstance(result, Rejection) and result.reason is Reason.FIT_MINOR_BELOW_PIXEL, result
        component = component.T.copy()
        result = measure_component(component, spacing)
        assert isinstance(result, Rejection) and result.reason is Reason.FIT_MINOR_BELOW_PIXEL, result


def test_touching_blobs_are_two_components_counted_before_guards():
    labels = np.zeros((40, 60), np.uint8)
    labels[5:25, 5:25] = 2
    labels[25:35, 25:45] = 2  # touches the first blob only at a corner: separate with 4-connectivity
    labels[2, 50] = 2  # a one-pixel speck (first in raster order), rejected later, still counted
    components = target_components(labels, (2,))
    assert [(label, index, count) for label, index, count, _ in components] == [(2, 0, 3), (2, 1, 3), (2, 2, 3)]
    speck, first, second = [measure_component(mask, (1.0, 1.0)) for *_, mask in components]
    assert isinstance(speck, Rejection) and isinstance(first, LesionSize) and isinstance(second, LesionSize)
    # Within a pixel: marching squares cuts each corner by half a pixel diagonally.
    assert first.longest_diameter_mm == pytest.approx(math.hypot(20, 20), abs=1.0)
    assert second.longest_diameter_mm == pytest.approx(math.hypot(20, 10), abs=1.0)


def test_small_but_well_sampled_component_is_below_the_mm_floor():
    component = np.zeros((20, 20), bool)
    component[5:9, 5:9] = True  # 16 pixels, 1.2 x 1.2 mm at 0.3 mm
    result = measure_component(component, (0.3, 0.3))
    assert isinstance(result, Rejection) and result.reason is Reason.BELOW_SIZE_FLOOR, result
    assert isinstance(measure_component(component, (1.0, 1.0)), LesionSize)  # 4 x 4 mm passes


def test_size_floor_is_in_mm_and_the_same_for_every_plane():
    assert size_floor_mm((0.5, 0.5)) == 2.0
    assert size_floor_mm((0.7, 2.5)) == 5.0
