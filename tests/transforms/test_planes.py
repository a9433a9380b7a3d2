"""Property tests of orientation and resampling invariants."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from transforms.phantoms import grid_affine, reorient
from transforms.planes import (
    PLANES,
    display_slice,
    grid_positions,
    interpolate_linear,
    labelled_slice_indices,
    labelled_slices,
    plane_grid,
    planes_of,
)
from transforms.volume import Volume, to_canonical

ORIENTATIONS = [
    "".join(p)
    for p in (("R", "A", "S"), ("L", "P", "S"), ("P", "S", "L"), ("S", "A", "R"), ("I", "L", "P"), ("A", "I", "R"))
]
spacings = st.floats(min_value=0.3, max_value=4.0, allow_nan=False)
label_maps = arrays(np.uint8, st.tuples(*[st.integers(1, 9)] * 3), elements=st.integers(0, 4))


@settings(max_examples=60, deadline=None)
@given(labels=label_maps, orientation=st.sampled_from(ORIENTATIONS), spacing=st.tuples(spacings, spacings, spacings))
def test_canonical_form_does_not_depend_on_storage_order(labels, orientation, spacing):
    affine = grid_affine("RAS", spacing, origin_mm=(3.0, -7.0, 11.0))
    stored, stored_affine = reorient(labels, affine, orientation)
    canonical = to_canonical(Volume(stored, stored_affine))
    np.testing.assert_array_equal(canonical.array, labels)
    np.testing.assert_allclose(canonical.affine_ras, affine, atol=1e-9)


@settings(max_examples=80, deadline=None)
@given(labels=label_maps, spacing=st.tuples(spacings, spacings, spacings), plane=st.sampled_from(PLANES))
def test_finest_label_resampling_never_creates_or_loses_a_label(labels, spacing, plane):
    grid = plane_grid(labels.shape, spacing, plane, "finest")
    for index in range(grid.n_slices):
        source = display_slice(labels, plane, index)
        resampled = grid.resample_labels(source)
        assert set(np.unique(resampled)) == set(np.unique(source))
        assert resampled.shape == grid.shape_rows_cols


@settings(max_examples=80, deadline=None)
@given(n_src=st.integers(1, 300), src_mm=spacings, dst_mm=spacings)
def test_output_grid_covers_the_source_extent(n_src, src_mm, dst_mm):
    positions = grid_positions(n_src, src_mm, dst_mm)
    if positions is None:
        assert abs(src_mm - dst_mm) <= 1e-6 * dst_mm
        return
    extent_out_mm = len(positions) * dst_mm
    assert n_src * src_mm <= extent_out_mm + 1e-6 < n_src * src_mm + dst_mm + 1e-6
    assert positions.min() >= 0 and positions.max() <= n_src - 1


@settings(max_examples=60, deadline=None)
@given(n_src=st.integers(2, 100), src_mm=spacings, dst_mm=spacings, slope=st.floats(-5, 5), offset=st.floats(-100, 100))
def test_linear_interpolation_is_exact_on_a_ramp(n_src, src_mm, dst_mm, slope, offset):
    """Inside the source extent, a linear ramp in mm is reproduced at every output pixel centre."""
    ramp = (offset + slope * (np.arange(n_src) + 0.5) * src_mm).astype(np.float32)[None, :]
    positions = grid_positions(n_src, src_mm, dst_mm)
    out = interpolate_linear(ramp, 1, positions)[0]
    centres_mm = (np.arange(out.size) + 0.5) * dst_mm
    inside = (centres_mm >= 0.5 * src_mm) & (centres_mm <= (n_src - 0.5) * src_mm)
    expected = offset + slope * centres_mm
    np.testing.assert_allclose(out[inside], expected[inside], atol=1e-3 * (1 + abs(offset) + abs(slope) * 500))


def test_finest_never_downsamples():
    grid = plane_grid((100, 80, 20), (0.7, 0.7, 2.5), "coronal", "finest")
    assert grid.spacing_mm_row_col == (0.7, 0.7)
    assert grid.shape_rows_cols == (72, 100)  # 20 x 2.5 mm / 0.7 mm = 71.4 -> 72 rows; 100 columns unchanged
    assert grid.col_positions is None


def test_two_dimensional_images_have_one_plane():
    assert planes_of((512, 400, 1)) == ("axial",)
    assert planes_of((1, 64, 64)) == ("sagittal",)
    assert planes_of((8, 8, 8)) == PLANES


@settings(max_examples=80, deadline=None)
@given(labels=label_maps, orientation=st.sampled_from(ORIENTATIONS), density=st.floats(0, 1))
def test_labelled_slices_of_all_planes_are_those_of_each_plane(labels, orientation, density):
    """One pass in memory order finds the labelled slices of every plane of a flipped, transposed view."""
    labels = np.where(labels > 4 * density, labels, 0).astype(np.uint8)
    stored, affine = reorient(labels, grid_affine("RAS", (1.0, 1.0, 1.0)), orientation)
    canonical = to_canonical(Volume(stored, affine)).array
    found = labelled_slices(canonical)
    for plane in PLANES:
        np.testing.assert_array_equal(found[plane], labelled_slice_indices(canonical, plane))
