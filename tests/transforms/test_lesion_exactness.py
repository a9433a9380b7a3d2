"""The vectorised lesion measurements give exactly what straightforward references give, bit for bit.

The references below are the plain loops the measurements were first written as; random components
(blobs, rings, diagonal pieces, rectangles of pixels) and random spacings exercise ties and odd cases.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from transforms.boxes import component_boxes
from transforms.lesions import (
    MEASUREMENTS,
    longest_diameter_mm,
    measure_component,
    outer_contour_mm,
    perpendicular_diameter_mm,
    target_components,
)
from transforms.planes import DISPLAYS, PLANES, labelled_slice_indices, plane_grid
from transforms.slice_labels import derive_plane
from transforms.slicing import lost_labels

spacings = st.sampled_from([0.5, 0.7, 0.78125, 1.0, 2.0, 2.5, 6.5])


def reference_perpendicular(contour_mm, start, end, step_mm):
    """One cut at a time: crossings by sign change, sorted, paired; strictly longer chords win."""
    axis = (end - start) / np.linalg.norm(end - start)
    normal = np.array([-axis[1], axis[0]])
    along = (contour_mm - start) @ axis
    across = (contour_mm - start) @ normal
    next_along, next_across = np.roll(along, -1), np.roll(across, -1)
    best = (0.0, start, start)
    for cut in np.arange(along.min() + step_mm / 2, along.max(), step_mm):
        crossing = (along - cut) * (next_along - cut) < 0
        if not crossing.any():
            continue
        weight = (cut - along[crossing]) / (next_along[crossing] - along[crossing])
        positions = np.sort(across[crossing] + weight * (next_across[crossing] - across[crossing]))
        lengths = positions[1::2] - positions[0:-1:2]
        if lengths.size and lengths.max() > best[0]:
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


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 10**6), row_mm=spacings, col_mm=spacings, turn=st.floats(0, 2 * np.pi))
def test_perpendicular_diameter_matches_the_cut_by_cut_reference(seed, row_mm, col_mm, turn):
    component = random_component(seed)
    contour = outer_contour_mm(component, (row_mm, col_mm))
    if len(contour) < 4:
        return
    _, start, end = longest_diameter_mm(contour)
    if np.array_equal(start, end):
        end = start + np.array([np.cos(turn), np.sin(turn)])
    for a, b in ((start, end), (end, start), (contour[0], contour[len(contour) // 2])):
        if np.array_equal(a, b):
            continue
        step = min(row_mm, col_mm) / 2
        got, expected = perpendicular_diameter_mm(contour, a, b, step), reference_perpendicular(contour, a, b, step)
        assert got[0] == expected[0]
        np.testing.assert_array_equal(got[1], expected[1])
        np.testing.assert_array_equal(got[2], expected[2])


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
        boxes, lesions = reference_slice(labels_2d, grid.spacing_mm_row_col, (3, 1), MEASUREMENTS[measurement])
        got = derived[index]
        np.testing.assert_array_equal(got.labels_2d(grid.shape_rows_cols), labels_2d)
        assert got.labels_lost == (lost_labels(source, labels_2d) if grid.downsamples else ())
        assert [(b.label, b.component_index, b.n_components, b.box_xyxy_px, b.area_px) for b in got.boxes] == boxes
        assert [(e.label, e.component_index, e.n_components) for e in got.lesions] == [entry[:3] for entry in lesions]
        for entry, (_, _, count, expected) in zip(got.lesions, lesions):
            if entry.size is None:
                assert expected is None or (not measure_several and count > 1)
            else:
                assert entry.size == expected
