"""The batched lesion measurements give what straightforward references give, one component at a time.

The references below are plain loops: skimage's marching squares, its ellipse fit, every pair of
boundary points, and one cut at a time. Random components (blobs, rings, diagonal pieces, rectangles
of pixels), random spacings and random nearest-neighbour upsampling exercise ties and odd cases.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from scipy.spatial import ConvexHull
from skimage.measure import EllipseModel, find_contours

from transforms import lesions
from transforms.boxes import component_boxes
from transforms.lesions import (
    MEASUREMENTS,
    LesionSize,
    measure_component,
    measure_component_medvision,
    target_components,
)
from transforms.outlines import displayed, trace_outlines
from transforms.planes import DISPLAYS, PLANES, labelled_slice_indices, plane_grid
from transforms.shape_fits import (
    Segments,
    fit_ellipses,
    longest_diameters,
    perpendicular_diameters,
    run_moment_points,
)
from transforms.slice_labels import derive_plane
from transforms.slicing import lost_labels

spacings = st.sampled_from([0.5, 0.7, 0.78125, 1.0, 2.0, 2.5, 6.5])
ONE_AT_A_TIME = {"pixel_edge": measure_component, "medvision_cv2": measure_component_medvision}


def reference_contour_px(shown: np.ndarray) -> np.ndarray:
    """The outer contour of a displayed mask, (x, y) in the edge frame, in order: of marching squares'
    contours, the one enclosing the largest area (a hole's contour can be the longer one)."""
    rows_cols = max(find_contours(np.pad(shown.astype(np.uint8), 1), 0.5), key=enclosed_area)[:-1]
    return np.column_stack((rows_cols[:, 1] - 0.5, rows_cols[:, 0] - 0.5))


def enclosed_area(closed: np.ndarray) -> float:
    """Shoelace area of a closed polyline (first point repeated last)."""
    return abs(float(np.sum(closed[:-1, 0] * closed[1:, 1] - closed[1:, 0] * closed[:-1, 1]))) / 2


def reference_longest(points_mm: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Every pair of points: the farthest, ties to the pair whose first end, then second, comes first in
    (y, x) order; it runs from that end."""
    best = (-1.0, points_mm[0], points_mm[0])
    for a in sorted(map(tuple, points_mm), key=lambda p: (p[1], p[0])):
        for b in sorted(map(tuple, points_mm), key=lambda p: (p[1], p[0])):
            if (b[1], b[0]) <= (a[1], a[0]):
                continue
            distance = math.hypot(a[0] - b[0], a[1] - b[1])
            if distance > best[0] * (1 + 1e-12):
                best = (distance, np.array(a), np.array(b))
    return best


def reference_perpendicular(contour_mm, start, end, step_mm):
    """One cut at a time: an edge crosses a cut from its lower end (included) to its upper end (excluded);
    crossings sorted, paired; strictly longer chords win."""
    axis = (end - start) / np.linalg.norm(end - start)
    normal = np.array([-axis[1], axis[0]])
    along = (contour_mm - start) @ axis
    across = (contour_mm - start) @ normal
    next_along, next_across = np.roll(along, -1), np.roll(across, -1)
    best = (0.0, start, start)
    for cut in np.arange(along.min() + step_mm / 2, along.max(), step_mm):
        crossing = (np.minimum(along, next_along) <= cut) & (cut < np.maximum(along, next_along))
        if not crossing.any():
            continue
        weight = (cut - along[crossing]) / (next_along[crossing] - along[crossing])
        positions = np.sort(across[crossing] + weight * (next_across[crossing] - across[crossing]))
        lengths = positions[1::2] - positions[0:-1:2]
        if lengths.size and lengths.max() > best[0] * (1 + 1e-12):
            k = int(np.argmax(lengths))
            base = start + cut * axis
            best = (float(lengths[k]), base + positions[2 * k] * normal, base + positions[2 * k + 1] * normal)
    return best


def random_component(seed: int) -> np.ndarray:
    """The largest 4-connected piece of a random smoothed blob, ring or pixel scatter."""
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(3, 40, 2))
    kind = seed % 3
    if kind == 0:
        mask = ndimage.gaussian_filter(rng.random(shape), rng.uniform(0.5, 3)) > rng.uniform(0.45, 0.55)
    elif kind == 1:
        rows, cols = np.indices(shape)
        radius = np.hypot(rows - shape[0] / 2, cols - shape[1] / 2)
        mask = (radius < rng.uniform(3, 20)) & (radius > rng.uniform(0, 6))
    else:
        mask = rng.random(shape) < rng.uniform(0.3, 0.8)
    pieces, count = ndimage.label(mask)
    if count == 0:
        mask[shape[0] // 2, shape[1] // 2] = True
        return mask
    sizes = np.bincount(pieces.ravel())[1:]
    return pieces == int(np.argmax(sizes)) + 1


def random_repeats(seed: int, shape, most: int):
    rng = np.random.default_rng(seed)
    return tuple(None if rng.random() < 0.3 else rng.integers(1, most + 1, n) for n in shape)


def edge_set(edges_xy) -> set:
    return {frozenset(map(tuple, edge)) for edge in np.asarray(edges_xy).tolist()}


def unit_edge_set(edges_xy) -> set:
    """The edges, each split into its unit edges (an outline merges the collinear ones of a run)."""
    units: list[tuple] = []
    for (x0, y0), (x1, y1) in np.asarray(edges_xy).tolist():
        steps = max(1, round(abs(x1 - x0) + abs(y1 - y0)))
        ends = [(x0 + (x1 - x0) * k / steps, y0 + (y1 - y0) * k / steps) for k in range(steps + 1)]
        units += zip(ends[:-1], ends[1:])
    return edge_set(units)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 10**6), repeat_seed=st.integers(0, 10**6), most=st.sampled_from([1, 3, 9]))
def test_an_outline_is_the_marching_squares_contour_of_the_displayed_mask(seed, repeat_seed, most):
    """Traced on source pixels, the outline's points and edges are those of marching squares on the
    upsampled mask, holes filled; the points are on half pixels, run ends hold the hull."""
    component = random_component(seed)
    repeats = random_repeats(repeat_seed, component.shape, most)
    contour = reference_contour_px(displayed(component, repeats)) + (11, 3)
    outlines = trace_outlines(component[None].astype(np.int32), [1], (3, 11), repeats)
    points, _ = outlines.points()
    assert sorted(map(tuple, points.tolist())) == sorted(map(tuple, contour.tolist()))
    assert unit_edge_set(outlines.edges_xy) == edge_set(np.stack((contour, np.roll(contour, -1, axis=0)), axis=1))
    hull_points = set(map(tuple, outlines.run_ends()[0].tolist()))
    assert all(tuple(point) in hull_points for point in contour[ConvexHull(contour).vertices].tolist())


def test_outlines_of_components_together_are_their_outlines_alone():
    """Components side by side, touching at corners, and one inside another's hole: traced together,
    each has the outline it has alone."""
    stack = np.zeros((2, 12, 14), np.int32)
    stack[0, 1:10, 1:10] = 1
    stack[0, 3:7, 3:7] = 0  # a hole ...
    stack[0, 4:6, 4:6] = 2  # ... holding another component
    stack[0, 10, 10] = 3  # touches component 1 at a corner only
    stack[0, 10:12, 11:13] = 3
    stack[1, 2:5, 2:9] = 4
    stack[1, 5, 9] = 5
    repeats = (np.array([1, 2, 1, 3, 1, 1, 2, 1, 1, 1, 2, 1]), None)
    together = trace_outlines(stack, [1, 2, 3, 4, 5], (0, 0), repeats)
    for group, number in enumerate([1, 2, 3, 4, 5]):
        alone = trace_outlines(np.where(stack == number, 1, 0).astype(np.int32), [1], (0, 0), repeats)
        points, point_group = together.points()
        mine = point_group == group
        assert sorted(map(tuple, points[mine].tolist())) == sorted(map(tuple, alone.points()[0].tolist()))
        assert edge_set(together.edges_xy[together.edge_group == group]) == edge_set(alone.edges_xy)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10**6), row_mm=spacings, col_mm=spacings, order_seed=st.integers(0, 1000))
def test_longest_diameter_is_the_farthest_pair_with_ties_in_reading_order(seed, row_mm, col_mm, order_seed):
    component = random_component(seed)
    outlines = trace_outlines(component[None].astype(np.int32), [1])
    points_mm = outlines.points()[0] * (col_mm, row_mm)
    expected = reference_longest(points_mm)
    shuffled = np.random.default_rng(order_seed).permutation(outlines.run_ends()[0])  # any order: the same pair
    got = longest_diameters(shuffled, np.zeros(len(shuffled), np.int64), 1, (col_mm, row_mm))
    assert got.length[0] == pytest.approx(expected[0], rel=1e-12)
    np.testing.assert_array_equal(got.start_xy[0], expected[1])
    np.testing.assert_array_equal(got.end_xy[0], expected[2])


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 10**6), row_mm=spacings, col_mm=spacings, turn=st.floats(0, 2 * np.pi))
def test_perpendicular_diameter_matches_the_cut_by_cut_reference(seed, row_mm, col_mm, turn):
    component = random_component(seed)
    outlines = trace_outlines(component[None].astype(np.int32), [1])
    contour = reference_contour_px(component) * (col_mm, row_mm)
    edges = outlines.edges_xy * (col_mm, row_mm)
    longest = longest_diameters(*outlines.run_ends(), 1, (col_mm, row_mm))
    start, end = longest.start_xy[0], longest.end_xy[0]
    if np.array_equal(start, end):
        end = start + np.array([np.cos(turn), np.sin(turn)])
    for a, b in ((start, end), (end, start), (contour[0], contour[len(contour) // 2])):
        if np.array_equal(a, b):
            continue
        step = min(row_mm, col_mm) / 2
        axis = Segments(np.array([np.linalg.norm(b - a)]), a[None], b[None])
        got = perpendicular_diameters(edges, outlines.edge_group, axis, step)
        expected = reference_perpendicular(contour, a, b, step)
        assert got.length[0] == pytest.approx(expected[0], rel=1e-9, abs=1e-12)
        np.testing.assert_allclose(got.start_xy[0], expected[1], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(got.end_xy[0], expected[2], rtol=1e-9, atol=1e-9)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10**6), row_mm=spacings, col_mm=spacings)
def test_ellipse_fits_are_skimages(seed, row_mm, col_mm):
    """Several components fitted at once each get skimage's ellipse (to float rounding), failures included."""
    components = [random_component(seed + k) for k in range(3)]
    contours = [reference_contour_px(c) * (col_mm, row_mm) for c in components]
    points = np.concatenate(contours)
    group = np.repeat(np.arange(3), [len(c) for c in contours])
    got = fit_ellipses(points, group, 3)
    for k, contour in enumerate(contours):
        try:
            with np.errstate(invalid="ignore", divide="ignore"):  # a circle's angle is 0/0
                model = EllipseModel.from_estimate(contour)
        except TypeError:  # skimage cannot reduce the complex angle of a fit with no real ellipse
            model = None
        if not model:
            assert not got.fitted[k]
            continue
        half_axes = sorted(model.axis_lengths, reverse=True)
        if not np.isfinite([*model.center, *half_axes]).all():
            assert not got.fitted[k]
            continue
        assert got.fitted[k]
        np.testing.assert_allclose(got.centre_xy[k], model.center, rtol=1e-9, atol=1e-9)
        assert [got.half_major[k], got.half_minor[k]] == pytest.approx(half_axes, rel=1e-9)
        if half_axes[0] - half_axes[1] > 1e-6 * half_axes[0]:  # a circle has no angle
            assert skimage_angle_turn(contour, got.theta[k]) < 1e-6


@pytest.mark.parametrize("length", range(1, 40))
def test_a_runs_moment_points_have_its_moments_up_to_degree_five(length):
    """Up to three weighted points stand for a run of evenly spaced points in every sum a fit makes."""
    first, last = np.array([[2.5, -1.0]]), np.array([[2.5 + 0.7 * (length - 1), -1.0]])
    points, weights, group = run_moment_points(first, last, np.array([length]), np.array([0]))
    run_x = 2.5 + 0.7 * np.arange(length)
    assert np.array_equal(group, np.zeros(len(points)))
    assert weights.sum() == pytest.approx(length, rel=1e-15)
    for power in range(6):
        assert (weights * points[:, 0] ** power).sum() == pytest.approx((run_x**power).sum(), rel=1e-12)
    assert np.all(points[:, 1] == -1.0) and np.all(weights >= 0) and len(points) == (1 if length == 1 else 3)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10**6), repeat_seed=st.integers(0, 10**6), row_mm=spacings, col_mm=spacings)
def test_ellipses_fitted_to_runs_are_those_fitted_to_their_points(seed, repeat_seed, row_mm, col_mm):
    """An upsampled outline fitted from its runs' moment points is fitted as from every point."""
    components = [random_component(seed + k) for k in range(3)]
    stack = np.zeros((3, *np.max([c.shape for c in components], axis=0)), np.int32)
    for number, component in enumerate(components, 1):
        stack[number - 1, : component.shape[0], : component.shape[1]] = component * number
    outlines = trace_outlines(stack, [1, 2, 3], (0, 0), random_repeats(repeat_seed, stack.shape[1:], 9))
    points, group = outlines.points()
    every = fit_ellipses(points * (col_mm, row_mm), group, 3)
    moment_points, weights, moment_group = run_moment_points(
        outlines.run_first_xy, outlines.run_last_xy, outlines.run_length, outlines.run_group
    )
    got = fit_ellipses(moment_points * (col_mm, row_mm), moment_group, 3, weights)
    assert np.array_equal(got.fitted, every.fitted)
    for field in ("centre_xy", "half_major", "half_minor"):
        np.testing.assert_allclose(getattr(got, field)[got.fitted], getattr(every, field)[got.fitted], rtol=1e-9)
    round_ = np.isclose(every.half_major, every.half_minor, rtol=1e-6)
    turn = np.abs(got.theta - every.theta)[got.fitted & ~round_]
    assert np.all(np.minimum(turn, np.pi - turn) < 1e-7)


@pytest.mark.parametrize(
    "rows, cols, corners_cut, spacing_mm", [(6, 8, True, 0.7), (7, 9, False, 0.9765625), (8, 10, False, 0.8)]
)
def test_a_horizontal_ellipse_has_angle_zero_and_its_axis_ends_in_one_order(rows, cols, corners_cut, spacing_mm):
    """Rounding can leave a horizontal major axis just below pi (these shapes did); it is 0."""
    component = np.zeros((rows + 4, cols + 4), bool)
    component[2 : 2 + rows, 2 : 2 + cols] = True
    if corners_cut:
        component[[2, 2, 1 + rows, 1 + rows], [2, 1 + cols, 2, 1 + cols]] = False
    size = measure_component(component, (spacing_mm, spacing_mm))
    assert size.ellipse_angle_deg == 0.0
    (x0, _), (x1, _) = size.major_axis_endpoints_xy_px
    assert x0 > x1


def skimage_angle_turn(points: np.ndarray, theta: float, nudge: float = 0.0) -> float:
    """How far (rad, mod pi) skimage's major axis of `points` is from `theta`. Where skimage divides by zero
    (a shape symmetric about a diagonal) its angle can jump by 90 degrees: the points turned by a hair
    then give the angle on both sides of that point, which must be `theta`."""
    turned = points if nudge == 0.0 else (points - points.mean(axis=0)) @ rotation(nudge).T
    with np.errstate(divide="raise", invalid="ignore"):
        try:
            model = EllipseModel.from_estimate(turned)
        except FloatingPointError:
            return max(skimage_angle_turn(points, theta, side) for side in (1e-7, -1e-7))
    skimage_theta = model.theta + (np.pi / 2 if model.axis_lengths[1] > model.axis_lengths[0] else 0.0) - nudge
    turn = abs(theta - skimage_theta % np.pi)
    return min(turn, np.pi - turn)


def rotation(angle: float) -> np.ndarray:
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def assert_same_measurement(got, expected):
    """Equal rejections, or sizes equal to float rounding (a circle's angle is undefined)."""
    assert type(got) is type(expected)
    if not isinstance(got, LesionSize):
        assert got.reason == expected.reason
        return
    for field in ("major_axis_mm", "minor_axis_mm", "longest_diameter_mm", "perpendicular_diameter_mm", "area_mm2"):
        assert getattr(got, field) == pytest.approx(getattr(expected, field), rel=1e-9), field
    for field in ("ellipse_center_xy_px", "longest_diameter_endpoints_xy_px", "perpendicular_diameter_endpoints_xy_px"):
        np.testing.assert_allclose(getattr(got, field), getattr(expected, field), rtol=1e-9, atol=1e-9)
    if got.major_axis_mm - got.minor_axis_mm > 1e-6 * got.major_axis_mm:
        turn = abs(got.ellipse_angle_deg - expected.ellipse_angle_deg) % 180
        assert min(turn, 180 - turn) < 1e-6


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10**6), repeat_seed=st.integers(0, 10**6), most=st.sampled_from([1, 3, 9]))
def test_measuring_source_pixels_with_repeats_is_measuring_the_displayed_mask(seed, repeat_seed, most):
    component = random_component(seed)
    rng = np.random.default_rng(repeat_seed)
    repeats = tuple(rng.integers(0 if most == 9 else 1, most + 1, n) for n in component.shape)  # 0: shown nowhere
    shown = displayed(component, repeats)
    if not shown.any():
        return
    for measurement in sorted(MEASUREMENTS):
        measure = MEASUREMENTS[measurement]
        spacing, origin = (0.7, 2.5), (3, 11)
        stack = component[None].astype(np.int32)
        pieces, _ = ndimage.label(shown)  # a row shown nowhere can split it: measure each piece displayed
        if pieces.max() == 1:
            assert_same_measurement(
                measure(stack, [1], spacing, origin, repeats)[0],
                measure(shown[None].astype(np.int32), [1], spacing, origin)[0],
            )


def reference_slice(labels_2d, spacing, lesion_labels, measure=measure_component):
    """Boxes and lesion measurements of one displayed label slice, one label and component at a time."""
    boxes = [(b.label, b.component_index, b.n_components, b.box_xyxy_px, b.area_px) for b in component_boxes(labels_2d)]
    lesions = []
    for label, index, count, component in target_components(labels_2d, lesion_labels):
        lesions.append((label, index, count, None if component is None else measure(component, spacing)))
    return boxes, lesions


def label_volume(seed: int) -> np.ndarray:
    """Random blobs of labels 1-3 (3 drawn thin and scattered) in a small volume."""
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(4, 24, 3))
    labels = np.zeros(shape, np.uint8)
    for value in (1, 2, 3):
        field = ndimage.gaussian_filter(rng.random(shape), rng.uniform(0.6, 2.5))
        labels[field > np.quantile(field, rng.uniform(0.6, 0.97))] = value
    return labels


@settings(max_examples=120, deadline=None)
@given(
    seed=st.integers(0, 10**6),
    spacing=st.tuples(spacings, spacings, spacings),
    plane=st.sampled_from(PLANES),
    display=st.sampled_from(DISPLAYS),
    mode=st.sampled_from(["finest", "native", 1.3, 3.0]),
    measure_several=st.booleans(),
    measurement=st.sampled_from(sorted(MEASUREMENTS)),
)
def test_plane_derivation_is_that_of_each_displayed_slice(
    seed, spacing, plane, display, mode, measure_several, measurement
):
    labels = label_volume(seed)
    grid = plane_grid(labels.shape, spacing, plane, mode, display)
    indices = sorted(set(labelled_slice_indices(labels, plane).tolist()) | {0})
    derived = derive_plane(labels, grid, indices, (3, 1), measure_several, measurement)
    for index in indices:
        source = grid.cut(labels, index)
        labels_2d = grid.resample_labels(source)
        boxes, lesions = reference_slice(labels_2d, grid.spacing_mm_row_col, (3, 1), ONE_AT_A_TIME[measurement])
        got = derived[index]
        np.testing.assert_array_equal(got.labels_2d(grid.shape_rows_cols), labels_2d)
        assert got.labels_lost == (lost_labels(source, labels_2d) if grid.downsamples else ())
        assert [(b.label, b.component_index, b.n_components, b.box_xyxy_px, b.area_px) for b in got.boxes] == boxes
        assert [(e.label, e.component_index, e.n_components) for e in got.lesions] == [entry[:3] for entry in lesions]
        for entry, (_, _, count, expected) in zip(got.lesions, lesions):
            if entry.size is None:
                assert expected is None or (not measure_several and count > 1)
            else:
                assert_same_measurement(entry.size, expected)


@pytest.mark.parametrize("plane", PLANES)
@pytest.mark.parametrize("display", DISPLAYS)
def test_plane_derivation_does_not_depend_on_the_volumes_memory_order(plane, display):
    """Row-major, column-major and flipped views are read along different paths (`_gathered`, the crop)."""
    labels = label_volume(3)
    grid = plane_grid(labels.shape, (0.8, 1.1, 2.5), plane, "finest", display)
    indices = labelled_slice_indices(labels, plane)
    flipped = np.ascontiguousarray(labels[::-1, :, ::-1])[::-1, :, ::-1]
    derived = [derive_plane(layout, grid, indices, (3, 1)) for layout in (labels, np.asfortranarray(labels), flipped)]
    for index in indices.tolist():
        first, *others = (found[index] for found in derived)
        for other in others:
            assert other.boxes == first.boxes and other.lesions == first.lesions
            np.testing.assert_array_equal(other.labels_2d(grid.shape_rows_cols), first.labels_2d(grid.shape_rows_cols))


@pytest.mark.parametrize("measurement", sorted(MEASUREMENTS))
def test_a_stack_measured_in_chunks_of_slices_gives_the_same_sizes(monkeypatch, measurement):
    labels = label_volume(7)
    stack, count = ndimage.label(labels == 1, np.pad(np.ones((1, 3, 3), bool), ((1, 1), (0, 0), (0, 0))))
    numbers = np.arange(1, count + 1)[::-1]  # any order
    repeats = (np.arange(stack.shape[1]) % 3 + 1, None)
    whole = MEASUREMENTS[measurement](stack.astype(np.int32), numbers, (0.7, 0.5), (2, 5), repeats)
    monkeypatch.setattr(lesions, "CHUNK_PIXELS", stack[0].size * 2)  # two slices at a time
    chunked = MEASUREMENTS[measurement](stack.astype(np.int32), numbers, (0.7, 0.5), (2, 5), repeats)
    assert len(chunked) == count > 10
    for got, expected in zip(chunked, whole):
        assert_same_measurement(got, expected)
