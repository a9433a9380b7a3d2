"""Components from row runs are scipy's labelling of each value, with its boxes and displayed areas."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from transforms import runs

IN_SLICE_CROSS = np.pad(ndimage.generate_binary_structure(2, 1)[None], ((1, 1), (0, 0), (0, 0)))


def labelled_one_value_at_a_time(stack, row_counts, col_counts):
    """(value, slice, row0, row1, col0, col1, displayed area) of each component, value by value."""
    weights = np.outer(
        np.ones(stack.shape[1], np.int64) if row_counts is None else row_counts,
        np.ones(stack.shape[2], np.int64) if col_counts is None else col_counts,
    )
    found = []
    for value in np.unique(stack[stack != 0]):
        numbered, count = ndimage.label(stack == value, IN_SLICE_CROSS)
        for number, (k, rows, cols) in enumerate(ndimage.find_objects(numbered), start=1):
            area = int((weights * (numbered[k.start] == number)).sum())
            found.append((int(value), k.start, rows.start, rows.stop, cols.start, cols.stop, area))
    return found


def random_stack(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 20, 3))
    dtype, values = [(np.uint8, [1, 2, 3, 200]), (np.int16, [1, 2, 3, 200, 7000]), (np.uint32, [2, 3, 70000])][
        int(rng.integers(3))
    ]
    stack = np.zeros(shape, dtype)
    for value in rng.choice(values, size=3, replace=False):
        field = ndimage.gaussian_filter(rng.random(shape), rng.uniform(0.4, 2.5))
        stack[field > np.quantile(field, rng.uniform(0.4, 0.97))] = value
    return stack


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 10**6), repeat_seed=st.integers(0, 10**6))
def test_components_are_each_values_labelling(seed, repeat_seed):
    stack = random_stack(seed)
    rng = np.random.default_rng(repeat_seed)
    row_counts = rng.integers(0, 4, stack.shape[1]) if rng.random() < 0.5 else None
    col_counts = rng.integers(0, 4, stack.shape[2]) if rng.random() < 0.5 else None
    found = runs.components(stack, row_counts, col_counts)
    assert list(zip(*(column.tolist() for column in found))) == labelled_one_value_at_a_time(
        stack, row_counts, col_counts
    )


@pytest.mark.parametrize("chunk_voxels", [1, 50, 10**6])
def test_slices_taken_a_few_at_a_time_give_the_same_components(monkeypatch, chunk_voxels):
    stack = random_stack(11)
    whole = runs.components(stack)
    monkeypatch.setattr(runs, "CHUNK_VOXELS", chunk_voxels)
    assert all(np.array_equal(a, b) for a, b in zip(runs.components(stack), whole))


def test_components_touching_only_at_a_corner_or_across_slices_stay_apart():
    stack = np.zeros((2, 4, 4), np.uint8)
    stack[0, 0, 0] = stack[0, 1, 1] = 5  # diagonal neighbours: two components
    stack[1, 0, 0] = 5  # the same pixel one slice on: a third
    stack[0, 2:4, 2] = stack[0, 3, 3] = 5  # an L: one component
    found = runs.components(stack)
    assert found.slice_index.tolist() == [0, 0, 0, 1]
    assert list(zip(found.row0.tolist(), found.col0.tolist(), found.displayed_area.tolist())) == [
        (0, 0, 1),
        (1, 1, 1),
        (2, 2, 3),
        (0, 0, 1),
    ]


def test_a_stack_without_labels_has_no_components():
    found = runs.components(np.zeros((3, 0, 4), np.uint8))
    assert all(column.size == 0 for column in found)
    assert all(column.size == 0 for column in runs.components(np.zeros((3, 5, 4), np.uint8)))
    assert all(column.size == 0 for column in runs.components(np.zeros((0, 5, 4), np.uint8)))
