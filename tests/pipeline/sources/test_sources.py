"""Every MedVision source adapter, built end to end from a tiny fixture in its real raw layout."""

from __future__ import annotations

import collections
import glob
import os

import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.sources import MEDVISION_SOURCES
from schemas.tables import TASKS
from tests.source_fixtures import FIXTURES


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """All 22 fixtures in one build (one --source each): (output, expected by source, exit code)."""
    root = tmp_path_factory.mktemp("sources")
    expected, arguments = {}, ["build"]
    for name, write in FIXTURES.items():
        folder = root / name
        folder.mkdir()
        expected[name] = write(str(folder))
        arguments += ["--source", f"{name}={folder}"]
    output = str(root / "out")
    return output, expected, main(arguments + ["--output", output])


def read_rows(output: str, pattern: str, columns: list[str]) -> list[dict]:
    return [
        row
        for path in sorted(glob.glob(os.path.join(output, pattern)))
        for row in pq.read_table(path, columns=columns).to_pylist()
    ]


def test_there_is_one_fixture_per_medvision_source():
    assert sorted(FIXTURES) == sorted(source.info.name for source in MEDVISION_SOURCES)
    assert len(FIXTURES) == 22


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_source_builds_its_tasks_labels_subjects_and_splits(built, name):
    output, expected, exit_code = built
    assert exit_code == 0
    want = expected[name]
    tasks = {task for task in TASKS if glob.glob(os.path.join(output, f"dataset={name}/task={task}/split=*/*.parquet"))}
    assert tasks == want.tasks
    rows = {
        task: read_rows(
            output,
            f"dataset={name}/task={task}/split=*/*.parquet",
            ["subject_id", "label_name"] if task != "angle_distance" else ["subject_id"],
        )
        for task in tasks
    }
    if "detection" in tasks:
        assert want.labels <= {row["label_name"] for row in rows["detection"]}
    if want.lesion_labels:
        assert want.lesion_labels <= {row["label_name"] for row in rows["tumor_lesion_size"]}
    assert {row["subject_id"] for task_rows in rows.values() for row in task_rows} == want.subjects
    splits = collections.defaultdict(set)
    for path in glob.glob(os.path.join(output, f"dataset={name}/task=*/split=*/*.parquet")):
        split = path.split("split=")[1].split("/")[0]
        for row in pq.read_table(path, columns=["subject_id"]).to_pylist():
            splits[row["subject_id"]].add(split)
    assert all(len(found) == 1 for found in splits.values())  # a subject never straddles splits
    assert {subject: splits[subject].pop() for subject in want.splits} == want.splits


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_source_quarantines_its_broken_case_with_the_reason(built, name):
    output, expected, _ = built
    rows = read_rows(output, "quarantine/*.parquet", ["dataset", "case_id", "stage", "reason"])
    got = {row["case_id"]: row["reason"] for row in rows if row["dataset"] == name and row["stage"] == "load"}
    assert got == expected[name].quarantined


def test_publish_writes_pointer_rows_for_sources_that_may_not_be_redistributed(tmp_path):
    """kipa22 (CC BY-NC-ND) loses its pixels under --publish, kits23 keeps them; ids match a full build."""
    roots = {name: tmp_path / name for name in ("kipa22", "kits23")}
    for name, root in roots.items():
        FIXTURES[name](str(root))
    sources = [argument for name, root in roots.items() for argument in ("--source", f"{name}={root}")]
    columns = ["sample_id", "image", "image_mode", "provenance"]
    builds = {}
    for mode in ("full", "publish"):
        output = str(tmp_path / mode)
        assert main(["build", *sources, "--output", output] + (["--publish"] if mode == "publish" else [])) == 0
        builds[mode] = {name: read_rows(output, f"dataset={name}/task=*/split=*/*.parquet", columns) for name in roots}
    pointers, kept = builds["publish"]["kipa22"], builds["publish"]["kits23"]
    assert pointers and all(r["image"]["bytes"] is None and r["image_mode"] == "pointer" for r in pointers)
    assert all(
        r["provenance"]["source_uri"].endswith(".nii.gz")
        and len(r["provenance"]["source_sha256"]) == 64
        and r["provenance"]["redistributable"] is False
        for r in pointers
    )
    assert kept and all(r["image"]["bytes"][:4] == b"\x89PNG" and r["image_mode"] == "pixels" for r in kept)
    for name in roots:
        assert sorted(r["sample_id"] for r in builds["publish"][name]) == sorted(
            r["sample_id"] for r in builds["full"][name]
        )
    assert all(r["image_mode"] == "pixels" for r in builds["full"]["kipa22"])


def test_subjects_sharing_a_scan_across_datasets_share_a_split(tmp_path):
    """MSD Task01 re-uses BraTS cases: a BraTS24 t1c equal to an MSD 4D channel puts both subjects in one split."""
    import nibabel as nib
    import numpy as np

    from tests.conftest import make_msd_task, write_nifti
    from transforms.ids import subject_split

    task = make_msd_task(tmp_path / "msd")
    msd_image = nib.load(os.path.join(task, "imagesTr", "BRATS_001.nii.gz"))
    case = "BraTS-GLI-00001-000"
    folder = tmp_path / "brats" / case
    write_nifti(folder / f"{case}-t1c.nii.gz", np.asanyarray(msd_image.dataobj)[..., 2], msd_image.affine)
    write_nifti(
        folder / f"{case}-seg.nii.gz",
        np.asanyarray(nib.load(os.path.join(task, "labelsTr", "BRATS_001.nii.gz")).dataobj),
        msd_image.affine,
    )
    keys = (("brats24", "BraTS-GLI-00001"), ("msd", "Task01_BrainTumour/BRATS_001"))
    salt = next(f"salt-{n}" for n in range(100) if len({subject_split(*key, f"salt-{n}") for key in keys}) == 2)
    output = str(tmp_path / "out")
    assert (
        main(
            [
                "build",
                "--source",
                f"msd={task}",
                "--source",
                f"brats24={tmp_path / 'brats'}",
                "--output",
                output,
                "--split-salt",
                salt,
            ]
        )
        == 0
    )
    hashes, splits = collections.defaultdict(set), collections.defaultdict(set)
    for path in glob.glob(os.path.join(output, "dataset=*/task=detection/split=*/*.parquet")):
        dataset, split = path.split("dataset=")[1].split("/")[0], path.split("split=")[1].split("/")[0]
        for row in pq.read_table(path, columns=["subject_id", "sequence", "volume_hash"]).to_pylist():
            hashes[(dataset, row["subject_id"], row["sequence"])].add(row["volume_hash"])
            splits[(dataset, row["subject_id"])].add(split)
    assert hashes[("msd", keys[1][1], "t1gd")] == hashes[("brats24", keys[0][1], "t1c")]
    assert len(hashes[("msd", keys[1][1], "t1gd")]) == 1
    assert splits[keys[1]] == splits[keys[0]] == {subject_split(*keys[0], salt)}  # the first subject's split
    assert len({h for key, found in hashes.items() for h in found}) == len(hashes) - 1  # no other collisions


def test_masks_on_another_grid_are_placed_only_where_the_source_declares_it(built):
    """autoPET's PET is on a coarser grid than its mask: resampled (nearest) and flagged; CT is not."""
    output, _, _ = built
    rows = read_rows(output, "dataset=autopet_iii/task=detection/split=*/*.parquet", ["sequence", "provenance"])
    flags = {(row["sequence"], row["provenance"]["mask_resampled"]) for row in rows}
    assert flags == {("CT", False), ("PET", True)}


def test_negative_controls_are_recorded_but_not_counted_as_failures():
    from pipeline.run import failed_case_fractions

    stats = {
        "cases": {"autopet_iii": {"listed": 4}},
        "quarantine": [
            {"dataset": "autopet_iii", "stage": "load", "reason": "negative_case", "rows": 3},
            {"dataset": "autopet_iii", "stage": "load", "reason": "truncated_gzip", "rows": 1},
        ],
    }
    assert failed_case_fractions(stats) == {"autopet_iii": 0.25}
