"""`--dry-run` without a build: slices estimated from NIfTI headers, per-case lines, and the dataset
summary's counts and pair estimates scaled from sampled groups (the in-memory build faked)."""

from __future__ import annotations

import collections
import gzip
import os

import nibabel as nib
import numpy as np
import pytest

from pipeline import casework, dryrun
from pipeline.config import BuildConfig
from transforms.caseref import CaseRef, PlanarGeometry, RealignSpec, SequenceRef
from transforms.errors import PipelineError, Reason

T1, T2 = SequenceRef("t1", "MRI"), SequenceRef("t2", "MRI")


def write_header_only(path: str, shape: tuple[int, ...]) -> str:
    """A gzipped NIfTI-1 header declaring `shape`, with no voxels after it: only a header read can size it."""
    header = nib.Nifti1Header()
    header.set_data_dtype(np.int16)
    header.set_data_shape(shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header.binaryblock + b"\x00" * 4)  # the 4-byte extension flag, then no data
    return path


def make_case(image_uri: str = "", case_id: str = "x", **fields) -> CaseRef:
    defaults: dict = {"dataset": "d", "subject_id": case_id, "mask_uri": "", "sequences": (T1,), "labels": ()}
    return CaseRef(case_id=case_id, image_uri=image_uri, **{**defaults, **fields})


def test_header_shape_is_read_without_voxels(tmp_path):
    path = write_header_only(str(tmp_path / "big.nii.gz"), (512, 400, 300))
    assert os.path.getsize(path) < 1000
    assert dryrun.nifti_header_shape(path) == (512, 400, 300)


def test_slices_are_every_plane_of_every_sequence(tmp_path):
    path = write_header_only(str(tmp_path / "v.nii.gz"), (5, 6, 7, 2))  # channels do not count
    assert dryrun.estimated_slices(make_case(path, sequences=(T1, T2))) == 2 * (5 + 6 + 7)
    assert dryrun.estimated_slices(make_case(path, planes=("axial",))) == 7
    assert dryrun.estimated_slices(make_case(path, planes=("coronal", "sagittal"))) == 6 + 5


def test_a_2d_nifti_is_one_slice_and_a_planar_image_one_per_sequence(tmp_path):
    flat = write_header_only(str(tmp_path / "flat.nii.gz"), (5, 6))
    assert dryrun.estimated_slices(make_case(flat)) == 1
    planar = PlanarGeometry("AIR", (0.1, 0.1))
    assert dryrun.estimated_slices(make_case("never-read.bmp", planar=planar, sequences=(T1, T2))) == 2


def test_a_realigned_case_is_sized_by_its_reference_grid(tmp_path):
    image = write_header_only(str(tmp_path / "image.nii.gz"), (3, 3, 3))
    reference = write_header_only(str(tmp_path / "reference.nii.gz"), (10, 20, 30))
    case = make_case(image, realign=RealignSpec(reference, str(tmp_path / "t.tfm")))
    assert dryrun.estimated_slices(case) == 60


def test_case_line_carries_ids_sequences_and_estimate(tmp_path):
    path = write_header_only(str(tmp_path / "v.nii.gz"), (4, 4, 2))
    line = dryrun.case_line(make_case(path, case_id="Task01/c1", subject_id="s1", sequences=(T1, T2)))
    assert line == {
        "dataset": "d",
        "case_id": "Task01/c1",
        "subject_id": "s1",
        "sequences": ["t1", "t2"],
        "estimated_slices": 20,
    }


def test_case_line_reports_a_listing_error_without_reading(tmp_path):
    line = dryrun.case_line(make_case(str(tmp_path / "absent.nii.gz"), listing_error=("bad_listing", "no mask")))
    assert line["error"] == "bad_listing: no mask"
    assert "estimated_slices" not in line


def test_case_line_reports_unreadable_headers_instead_of_raising(tmp_path):
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(b"not gzip at all")
    assert dryrun.case_line(make_case(str(garbage)))["error"] == "header not readable (BadGzipFile)"
    missing = dryrun.case_line(make_case(str(tmp_path / "absent.nii.gz")))
    assert missing["error"] == "missing_file: the image file is not there"


def test_case_line_quotes_a_pipeline_error_as_is(tmp_path):
    path = write_header_only(str(tmp_path / "v.nii.gz"), (4, 4, 2))
    line = dryrun.case_line(make_case(path, source_root=str(tmp_path / "elsewhere")))
    assert line["error"].startswith("unsafe_path: ")


def test_sample_groups_split_by_folder_and_target_kinds():
    assert dryrun.sample_group(make_case(case_id="Task01/a")) == ("Task01", False, False)
    assert dryrun.sample_group(make_case(case_id="plain")) == ("", False, False)
    assert dryrun.sample_group(make_case(case_id="Task01/b", lesion_labels=(1,))) == ("Task01", True, False)


# --- pair estimates, with the in-memory build replaced by per-case counts ---------------------------

PAIRS_OF: dict[str, dict[str, int]] = {
    "A/1": {"detection": 10},
    "A/2": {"detection": 20, "angle_distance": 2},
    "A/3": {"detection": 999},  # beyond the sample of 2: never built
    "A/4": {"detection": 999},
    "B/1": {"tumor_lesion_size": 4},
    "B/2": {"tumor_lesion_size": 8},
    "C/1": {},  # C's only case fails to build
}


@pytest.fixture
def fake_build(monkeypatch) -> list[str]:
    """Cases built, in order; C/* raise as a bad case would."""
    built: list[str] = []

    def slice_records(case, settings):
        built.append(case.case_id)
        if case.case_id.startswith("C/"):
            raise PipelineError(Reason.UNREADABLE, "broken", case.image_uri)
        return [case.case_id], ()

    monkeypatch.setattr(casework, "slice_records", slice_records)
    monkeypatch.setattr(casework, "pair_counts", lambda records: collections.Counter(PAIRS_OF[records[0]]))
    return built


def test_each_group_mean_is_scaled_to_its_size(fake_build):
    cases = [make_case(case_id=c) for c in ("A/1", "A/2", "A/3", "A/4", "B/1", "B/2")]
    built, pairs = dryrun.sampled_pairs(cases, BuildConfig(dry_run_sample=2))
    assert fake_build == ["A/1", "A/2", "B/1", "B/2"]
    assert built == 4
    assert pairs == {"detection": 15 * 4, "angle_distance": 1 * 4, "tumor_lesion_size": 6 * 2}


def test_a_group_that_never_builds_takes_the_mean_of_the_others(fake_build):
    cases = [make_case(case_id=c) for c in ("A/1", "A/2", "C/1")]
    built, pairs = dryrun.sampled_pairs(cases, BuildConfig(dry_run_sample=2))
    assert built == 2
    assert pairs == {"detection": 30 * 3 / 2, "angle_distance": 2 * 3 / 2}


def test_listing_errors_are_neither_built_nor_counted(fake_build):
    cases = [make_case(case_id="A/1"), make_case(case_id="A/2", listing_error=("bad_listing", "x"))]
    assert dryrun.sampled_pairs(cases, BuildConfig(dry_run_sample=2)) == (1, {"detection": 10})
    assert fake_build == ["A/1"]


def test_dataset_summary_counts_and_keeps_the_chosen_tasks(fake_build, tmp_path):
    path = write_header_only(str(tmp_path / "v.nii.gz"), (2, 3, 4))
    cases = [
        make_case(path, case_id="A/1", subject_id="s1"),
        make_case(path, case_id="A/2", subject_id="s1"),
        make_case(str(tmp_path / "absent.nii.gz"), case_id="B/1", subject_id="s2"),
        make_case(case_id="B/2", subject_id="s3", listing_error=("bad_listing", "x")),
    ]
    lines = [dryrun.case_line(case) for case in cases]
    summary = dryrun.dataset_summary("d", cases, lines, BuildConfig(dry_run_sample=1, tasks=("detection",)))
    assert summary == {
        "summary": "d",
        "cases": 4,
        "subjects": 3,
        "listing_errors": 1,
        "estimated_slices": 2 * 9,
        "cases_without_estimate": 2,
        "sampled_cases": 2,  # A/1 and B/1, one per group (the fake build reads no file)
        "estimated_pairs": {"detection": 20},  # A's mean of 10 for its 2 cases; B's lesions not asked for
    }


def test_report_lists_cases_then_one_summary_per_dataset(fake_build):
    cases = [make_case(case_id=c, dataset=d, listing_error=("bad_listing", "x")) for c, d in (("1", "p"), ("2", "q"))]
    report = dryrun.dry_run_report(cases, BuildConfig())
    assert [line.get("case_id") for line in report] == ["1", "2", None, None]
    assert [line.get("summary") for line in report[2:]] == ["p", "q"]
