"""Box conventions (pixel edges, end-exclusive, 4-connectivity) and stable ids and splits."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms import ids
from transforms.boxes import component_boxes


def test_box_is_pixel_edge_end_exclusive_in_xy_order():
    labels = np.zeros((20, 30), np.uint8)
    labels[3:8, 10:22] = 1  # rows 3..7, columns 10..21
    (box,) = component_boxes(labels)
    assert box.box_xyxy_px == (10, 3, 22, 8)
    assert (box.width_px, box.height_px, box.area_px) == (12, 5, 60)
    assert box.size_mm((2.0, 0.5)) == (6.0, 10.0)  # width scales by column spacing, height by row spacing
    assert box.normalised_xyxy((20, 30)) == (10 / 30, 3 / 20, 22 / 30, 8 / 20)


def test_diagonal_neighbours_are_separate_components():
    labels = np.zeros((4, 4), np.uint8)
    labels[0, 0] = labels[1, 1] = 2
    boxes = component_boxes(labels)
    assert [b.box_xyxy_px for b in boxes] == [(0, 0, 1, 1), (1, 1, 2, 2)]
    assert {b.n_components for b in boxes} == {2} and not any(b.single_instance for b in boxes)


def test_single_instance_needs_one_component_of_at_least_ten_pixels_a_side():
    labels = np.zeros((40, 40), np.uint8)
    labels[0:10, 0:10] = 1
    labels[20:29, 0:30] = 2
    by_label = {b.label: b for b in component_boxes(labels)}
    assert by_label[1].single_instance and not by_label[2].single_instance


def test_sample_id_is_stable_and_depends_on_every_field():
    fields = ("demo", "case", "CT", "axial", 12, "detection", "label=1/component=0", "abc")
    first = ids.sample_id(*fields)
    assert first == ids.sample_id(*fields) and len(first) == 32
    for position in range(len(fields)):
        changed = list(fields)
        changed[position] = f"{changed[position]}x"
        assert ids.sample_id(*changed) != first


def test_split_is_per_subject_and_independent_of_listing_order():
    subjects = [f"subject_{n}" for n in range(2000)]
    splits = {s: ids.subject_split("demo", s, "salt") for s in subjects}
    shuffled = subjects[:]
    random.Random(3).shuffle(shuffled)
    assert {s: ids.subject_split("demo", s, "salt") for s in shuffled} == splits
    train_fraction = sum(v == "train" for v in splits.values()) / len(splits)
    assert 0.67 < train_fraction < 0.73
    assert ids.subject_split("demo", "subject_1", "salt", official="test") == "test"


def test_split_groups_follow_chains_of_shared_volumes_and_prefer_official_splits():
    from transforms.ids import shared_split_overrides

    members = [
        ("v1", "a", "s1", "train", False),
        ("v1", "b", "s9", "test", False),  # a/s1 ~ b/s9
        ("v2", "b", "s9", "test", False),
        ("v2", "c", "s3", "test", True),  # b/s9 ~ c/s3 (official)
        ("v3", "a", "s2", "train", False),
        ("v4", "d", "s4", "test", False),
    ]  # alone
    assert shared_split_overrides(members) == {("a", "s1"): "test"}
    unofficial = [("v1", "x", "s1", "test", False), ("v1", "w", "s2", "train", False)]
    assert shared_split_overrides(unofficial) == {("x", "s1"): "train"}  # the first by (dataset, subject)


def test_volume_hash_sees_voxels_and_geometry_not_storage():
    from transforms.ids import volume_hash

    array, affine = np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.diag([0.7, 0.7, 2.5, 1.0])
    same = volume_hash(array.astype(np.float32), affine + 1e-4)  # other dtype, geometry within 0.01 mm
    assert volume_hash(array, affine) == same
    changed = array.copy()
    changed[1, 2, 3] += 1
    assert volume_hash(changed, affine) != same
    assert volume_hash(array, np.diag([0.7, 0.7, 2.6, 1.0])) != same


def reference_boxes(labels_2d: np.ndarray) -> list[tuple]:
    """The definition, label by label: 4-connected components in raster order (skimage regionprops)."""
    from skimage.measure import label, regionprops

    boxes = []
    for value in sorted(set(np.unique(labels_2d).tolist()) - {0}):
        regions = regionprops(label(labels_2d == value, connectivity=1))
        for index, region in enumerate(regions):
            r0, c0, r1, c1 = region.bbox
            boxes.append((value, index, len(regions), (c0, r0, c1, r1), int(region.area)))
    return boxes


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.floats(0.05, 0.6), st.tuples(*[st.integers(0, 9)] * 4))
def test_one_pass_labelling_equals_the_per_label_definition(seed, n_labels, density, margins):
    """Touching regions of different labels stay separate; order and areas match the definition, also
    when the labelled pixels sit inside empty margins (only their box is labelled)."""
    rng = np.random.default_rng(seed)
    labels_2d = np.where(rng.random((23, 31)) < density, rng.integers(1, n_labels + 1, (23, 31)), 0).astype(np.uint8)
    top, bottom, left, right = margins
    labels_2d = np.pad(labels_2d, ((top, bottom), (left, right)))
    got = [(b.label, b.component_index, b.n_components, b.box_xyxy_px, b.area_px) for b in component_boxes(labels_2d)]
    assert got == reference_boxes(labels_2d)
    assert all(type(v) is int for box in got for v in box[3])  # plain ints, as the rows store them


def test_a_slice_without_labels_has_no_boxes():
    assert component_boxes(np.zeros((5, 7), np.uint8)) == []
