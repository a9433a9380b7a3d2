"""The real clinical cases of `../shared/reference/realdata/` (PyRadiomics' test data), read through the nnunet
adapter and built in a given conventions without Beam: their pairs and PyRadiomics' reference features.

Layout written under a temporary root: `Dataset001_CT` (lung1) and `Dataset002_MR` (brain1, breast1), each
`imagesTr/<case>_0000<ending>`, `labelsTr/<case><ending>` and a dataset.json whose label 1 is `lesion`, the
T/L target (`--lesion-labels lesion`). Ending `.nrrd` copies the files; `.nii.gz` converts them with
SimpleITK (an independent writer), so both give the same cases from different readers.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import json
import os
import pathlib
import shutil

import numpy as np
import pytest

from pipeline.sources.nnunet import NnunetSource
from pipeline.sources.user_options import LesionTargets
from schemas import rows as row_builders
from tests.conftest import REPO
from transforms.caseref import CaseRef
from transforms.loading import LoadedCase, load_case
from transforms.medvision import CONVENTIONS
from transforms.slicing import SliceRecord, extract_slices

REALDATA = REPO.parent / "shared" / "reference" / "realdata" / "pyradiomics"
needs_realdata = pytest.mark.skipif(
    not (REALDATA / "baseline_shape.csv").is_file(),
    reason="../shared/reference/realdata is absent: no real clinical cases to test on",
)
DATASETS = {"Dataset001_CT": ("CT", ("lung1",)), "Dataset002_MR": ("MRI", ("brain1", "breast1"))}
CASE_NAMES = ("lung1", "brain1", "breast1")


def write_layout(root: pathlib.Path, ending: str = ".nrrd") -> dict[str, CaseRef]:
    """The three cases in nnU-Net layout under `root`, listed by the adapter with their T/L target; by case name."""
    for folder, (channel, names) in DATASETS.items():
        task = root / folder
        (task / "imagesTr").mkdir(parents=True)
        (task / "labelsTr").mkdir()
        for name in names:
            for source, target in (
                (f"{name}_image.nrrd", f"imagesTr/{name}_0000{ending}"),
                (f"{name}_label.nrrd", f"labelsTr/{name}{ending}"),
            ):
                _copy_or_convert(REALDATA / source, task / target)
        (task / "dataset.json").write_text(
            json.dumps(
                {
                    "channel_names": {"0": channel},
                    "labels": {"background": 0, "lesion": 1},
                    "numTraining": len(names),
                    "file_ending": ending,
                }
            )
        )
    adapter = NnunetSource()
    cases = LesionTargets(names=("lesion",)).apply(adapter, adapter.list_cases(str(root)))
    return {case.case_id.rpartition("/")[2]: case for case in cases}


def _copy_or_convert(source: pathlib.Path, target: pathlib.Path) -> None:
    if target.suffix == ".nrrd":
        shutil.copy(source, target)
        return
    import SimpleITK as sitk

    sitk.WriteImage(sitk.ReadImage(str(source)), str(target))


@dataclasses.dataclass
class Built:
    """One case built in one conventions: the loaded case, its pairs, the pairs the conventions dropped or the
    guards refused, and every component box (plane, slice index, box) whether its pair was kept or not."""

    loaded: LoadedCase
    detection: list[dict]
    lesions: list[dict]
    dropped: list[tuple[str, object]]
    boxes: list[tuple[str, int, tuple[int, int, int, int]]]


def build(case: CaseRef, conventions: str) -> Built:
    """The case read as the build reads it and turned into pairs (`pairs_of`)."""
    return pairs_of(load_case(case, {case.image_uri: case.image_uri, case.mask_uri: case.mask_uri}), conventions)


def pairs_of(loaded: LoadedCase, conventions: str) -> Built:
    """Every slice of a case cut and turned into pairs as the build does (`casework` and `stages`), without Beam."""
    chosen = CONVENTIONS[conventions]
    provenance = row_builders.provenance(loaded.case, loaded.geometry, {}, "nearest", "test", "0" * 16, conventions)
    built = Built(loaded, [], [], [], [])
    for content in extract_slices(
        loaded,
        chosen.spacing or "finest",
        chosen.display,
        measure_several=not chosen.single_instance_only,
        measurement=chosen.lesion_measurement,
    ):
        record = SliceRecord(loaded.case, "train", provenance, content)
        boxes, dropped_boxes = row_builders.detection_pairs(record)
        lesions, refused = row_builders.lesion_rows(record)
        built.detection += boxes
        built.lesions += lesions
        built.dropped += dropped_boxes + refused
        built.boxes += [
            (content.plane, content.slice_index, box.box_xyxy_px) for box in row_builders.slice_labels(record).boxes
        ]
    return built


def lesion_rows_of(loaded: LoadedCase, conventions: str) -> list[dict]:
    return pairs_of(loaded, conventions).lesions


def build_real_cases(tmp_path_factory) -> dict[str, dict[str, Built]]:
    """The three NRRD cases built in both conventions: name -> conventions -> `Built` (the `real_cases`
    fixture of tests/conftest.py, once per test module)."""
    cases = write_layout(tmp_path_factory.mktemp("realdata"))
    return {
        name: {conventions: build(case, conventions) for conventions in CONVENTIONS} for name, case in cases.items()
    }


def baseline() -> dict[str, dict[str, str]]:
    """PyRadiomics' features by case name, then feature name (values as written)."""
    with open(REALDATA / "baseline_shape.csv", newline="") as handle:
        table = list(csv.reader(handle))
    names = table[0][1:]
    return {name: {row[0]: row[1 + i] for row in table[1:]} for i, name in enumerate(names)}


def stored_bounding_box(features: dict[str, str]) -> tuple[tuple[int, int], ...]:
    """The mask's 3D box from PyRadiomics, [first, end) voxel indices per stored axis."""
    x, y, z, size_x, size_y, size_z = ast.literal_eval(features["diagnostics_Mask-original_BoundingBox"])
    return (x, x + size_x), (y, y + size_y), (z, z + size_z)


def canonical_bounding_box(
    stored: tuple[tuple[int, int], ...], orientation: str, shape: tuple[int, ...]
) -> tuple[tuple[int, int], ...]:
    """A stored-index box in the canonical RAS+ array: axes stored towards L, P or I are reversed.

    The three cases are stored axis-aligned (no permutation), so this is all canonicalisation does.
    """
    return tuple(
        (n - end, n - first) if letter in "LPI" else (first, end)
        for (first, end), letter, n in zip(stored, orientation, shape)
    )


def mask_bounding_box(mask: np.ndarray) -> tuple[tuple[int, int], ...]:
    """[first, end) indices of the nonzero voxels per axis."""
    found = np.nonzero(mask)
    return tuple((int(indices.min()), int(indices.max()) + 1) for indices in found)


def write_both(root: pathlib.Path) -> tuple[dict[str, CaseRef], dict[str, CaseRef]]:
    """The NRRD layout and its NIfTI conversion, side by side under `root`."""
    os.makedirs(root, exist_ok=True)
    return write_layout(root / "nrrd"), write_layout(root / "nifti", ".nii.gz")
