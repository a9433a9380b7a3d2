"""The plans' pair estimate, which sizes the write's files before any row exists."""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from pipeline import casework
from pipeline.casework import LoadSettings
from pipeline.sources import get_source
from schemas import rows as row_builders
from transforms.errors import PipelineError
from transforms.volume import label_extents

SETTINGS = LoadSettings(spacing="finest", split_salt="salt", params_hash="0123456789abcdef")


def actual_pairs(plan: casework.CasePlan, settings: LoadSettings):
    """(pairs, PNG bytes) per task that the plan's units really make; a slice's pairs of a task share one PNG."""
    pairs, png_bytes = collections.Counter[str](), collections.Counter[str]()
    for unit in plan.units:
        for record in casework.unit_records(unit, settings):
            record = dataclasses.replace(record, content=record.content.with_png())
            for task, rows in (
                ("detection", row_builders.detection_rows(record)),
                ("tumor_lesion_size", row_builders.lesion_rows(record)[0]),
                ("angle_distance", row_builders.measurement_rows(record)),
            ):
                pairs[task] += len(rows)
                png_bytes[task] += len(record.content.png or b"") if rows else 0  # stored once per slice
    return +pairs, png_bytes  # tasks with pairs only


def planned_cases(demo_root):
    for case in get_source("demo").list_cases(demo_root):
        try:
            yield casework.plan_case(case, SETTINGS)
        except PipelineError:  # the demo's broken cases
            continue


def test_estimate_is_close_to_the_pairs_made_on_every_demo_case(demo_root):
    """Measurements exactly; detection within 10 % and lesion sizes within a factor 1.7 on the demo (a lesion's
    bounding box crosses slices where the lesion is absent); PNG bytes likewise."""
    bounds = {"angle_distance": (1.0, 1.0), "detection": (0.9, 1.1), "tumor_lesion_size": (0.9, 1.7)}
    checked = collections.Counter()
    for plan in planned_cases(demo_root):
        estimate = {e.task: e for e in plan.pair_estimate}
        pairs, png_bytes = actual_pairs(plan, SETTINGS)
        assert set(estimate) == set(pairs), plan.case.case_id
        for task, (low, high) in bounds.items():
            if task in pairs:
                assert low <= estimate[task].pairs / pairs[task] <= high, (plan.case.case_id, task)
                assert low * 0.95 <= estimate[task].png_bytes / png_bytes[task] <= high * 1.05, (
                    plan.case.case_id,
                    task,
                )
                checked[task] += 1
    assert min(checked.values()) >= 2 and len(checked) == 3


def test_pointer_rows_are_estimated_without_pixels(demo_root):
    case = next(c for c in get_source("demo").list_cases(demo_root) if c.case_id.endswith("demo_ct_00"))
    pointers = dataclasses.replace(SETTINGS, publish=True)
    plan = casework.plan_case(dataclasses.replace(case, redistributable=False), pointers)
    assert plan.pair_estimate and all(e.pairs > 0 and e.png_bytes == 0 for e in plan.pair_estimate)


@pytest.mark.parametrize("max_slices", [16, 10**6])
def test_estimate_does_not_depend_on_how_the_plan_is_cut_into_units(demo_root, max_slices):
    case = next(c for c in get_source("demo").list_cases(demo_root) if c.case_id.endswith("demo_mr_00"))
    small = casework.plan_case(case, dataclasses.replace(SETTINGS, max_slices_per_unit=max_slices))
    assert small.pair_estimate == casework.plan_case(case, SETTINGS).pair_estimate


@pytest.mark.parametrize("layout", ["C", "F", "flipped", "transposed", "flipped and transposed"])
def test_label_extents_are_find_objects_on_any_memory_layout(layout):
    rng = np.random.default_rng(len(layout))
    labels = (rng.random((9, 11, 13)) < 0.05) * rng.integers(1, 6, (9, 11, 13))
    labels = np.asfortranarray(labels.astype(np.uint8)) if layout == "F" else labels.astype(np.uint8)
    if "flipped" in layout:
        labels = labels[::-1, :, ::-1]
    if "transposed" in layout:
        labels = labels.transpose(2, 0, 1)
    assert label_extents(labels, 7) == ndimage.find_objects(labels, max_label=7)
