"""The CLI end to end on the DirectRunner: demo and MSD builds, quarantine, usage errors, determinism."""

from __future__ import annotations

import collections
import glob
import hashlib
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipeline import casework
from pipeline.cli import main
from pipeline.sources import get_source
from pipeline.sources.demo import LESION_MM
from tests.conftest import make_msd_task
from transforms import ids

SMALL_DEMO = "Task02_DemoMR/demo_mr_00,Task01_DemoCT/demo_ct_02,Task01_DemoCT/demo_ct_04"


def pairs_table(output, columns=None, task="*"):
    """Pairs of one task (tasks have different schemas), or the common columns of all tasks."""
    dataset = ds.dataset(
        glob.glob(os.path.join(output, f"dataset=*/task={task}/split=*/*.parquet")),
        format="parquet",
        partitioning=ds.partitioning(flavor="hive"),
        partition_base_dir=output,
    )
    return dataset.to_table(columns=columns)


def part_file_digests(output):
    files = sorted(glob.glob(os.path.join(output, "**", "*.parquet"), recursive=True))
    return {os.path.relpath(f, output): hashlib.sha256(open(f, "rb").read()).hexdigest() for f in files}


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory, demo_root):
    output = str(tmp_path_factory.mktemp("run") / "demo")
    assert main(["build", f"--source=demo={demo_root}", "--output", output]) == 0
    return output


def test_demo_build_writes_reconciled_partitions(demo_build):
    stats = json.load(open(os.path.join(demo_build, "stats.json")))
    assert os.path.exists(os.path.join(demo_build, "_SUCCESS"))
    table = pairs_table(demo_build, ["dataset", "task", "split", "sample_id", "case_id"])
    assert table.num_rows == stats["total_rows"] > 1000
    assert len(set(table.column("sample_id").to_pylist())) == table.num_rows
    assert stats["cases"]["demo"] == {"listed": 10, "with_pairs": 9}
    per_split = {(r["task"], r["split"]): r["rows"] for r in stats["rows"]}
    assert set(per_split) == {
        (task, split) for task in ("detection", "tumor_lesion_size", "angle_distance") for split in ("train", "test")
    }
    assert sum(per_split.values()) == table.num_rows
    # One subject never straddles the split.
    case_splits = {}
    for case_id, split in zip(table.column("case_id").to_pylist(), table.column("split").to_pylist()):
        case_splits.setdefault(case_id, set()).add(split)
    assert all(len(splits) == 1 for splits in case_splits.values())


def test_demo_quarantine_holds_the_truncated_case_and_refused_lesion_fits(demo_build):
    quarantine = pq.read_table(glob.glob(os.path.join(demo_build, "quarantine", "*.parquet"))[0]).to_pylist()
    loads = [(q["dataset"], q["case_id"], q["stage"], q["reason"]) for q in quarantine if q["stage"] == "load"]
    assert loads == [("demo", "Task01_DemoCT/demo_ct_04", "load", "truncated_gzip")]
    fits = [q for q in quarantine if q["stage"] == "tumor_lesion_size"]
    assert fits and {q["reason"] for q in fits} <= {
        "fit_too_few_points",
        "too_few_pixels",
        "below_size_floor",
        "fit_minor_below_pixel",
    }
    assert all(q["sample_id"] for q in fits)
    stats = json.load(open(os.path.join(demo_build, "stats.json")))
    assert sum(q["rows"] for q in stats["quarantine"]) == stats["total_quarantined"] == len(quarantine)


def test_demo_writes_lesion_sizes_in_mm(demo_build):
    sizes = pairs_table(
        demo_build,
        ["case_id", "plane", "label_name", "major_axis_mm", "minor_axis_mm", "longest_diameter_mm"],
        task="tumor_lesion_size",
    ).to_pylist()
    assert {r["label_name"] for r in sizes} == {"liver lesion", "tumour core", "edema"}
    assert all(r["major_axis_mm"] >= r["minor_axis_mm"] > 0 for r in sizes)
    # The 20 x 16 mm lesion cuboid seen axially: its longest diameter is close to the 25.6 mm diagonal.
    axial = [r["longest_diameter_mm"] for r in sizes if r["case_id"].endswith("demo_ct_00") and r["plane"] == "axial"]
    assert max(axial) == pytest.approx(math.hypot(20, 16), abs=1.0)


def spacing_along(provenance, world_axis):
    """Stored voxel size along a world axis (x, y or z), from the orientation code and spacings."""
    letters = {"x": "RL", "y": "AP", "z": "SI"}[world_axis]
    for letter, spacing in zip(provenance["orig_orientation"], provenance["orig_spacing_mm"]):
        if letter in letters:
            return spacing
    raise AssertionError(provenance)


def test_demo_lesion_has_its_physical_size_in_every_storage_order(demo_build):
    """The lesion cuboid is 20 x 16 mm axially, whatever the case's orientation or voxel size."""
    table = pairs_table(
        demo_build,
        ["case_id", "plane", "label_name", "box_size_mm", "pixel_spacing_mm", "provenance"],
        task="detection",
    ).to_pylist()
    true_w, true_h = (LESION_MM.high_mm[i] - LESION_MM.low_mm[i] for i in (0, 1))
    for case in ("demo_ct_00", "demo_ct_01", "demo_ct_02"):
        sizes = [
            r["box_size_mm"]
            for r in table
            if r["case_id"].endswith(case) and r["plane"] == "axial" and r["label_name"] == "liver lesion"
        ]
        provenance = next(r["provenance"] for r in table if r["case_id"].endswith(case))
        # Rasterising quantises each side to the stored grid: one voxel along that world axis.
        x_mm, y_mm = (spacing_along(provenance, axis) for axis in "xy")
        assert max(s[0] for s in sizes) == pytest.approx(true_w, abs=x_mm + 1e-6)
        assert max(s[1] for s in sizes) == pytest.approx(true_h, abs=y_mm + 1e-6)
    orientations = {r["case_id"].split("/")[-1]: r["provenance"]["orig_orientation"] for r in table}
    assert orientations["demo_ct_01"] == "LPS" and orientations["demo_ct_02"] == "PSL"


def test_msd_build_uses_dataset_json_and_splits_4d_channels(tmp_path, msd_task):
    output = str(tmp_path / "out")
    assert main(["build", "--source", f"msd={os.path.dirname(msd_task)}", "--output", output]) == 0
    table = pairs_table(output, ["case_id", "sequence", "modality", "label_name"], task="detection").to_pylist()
    assert {r["sequence"] for r in table} == {"FLAIR", "T1w", "t1gd", "T2w"}
    assert {r["modality"] for r in table} == {"MRI"}
    assert {r["label_name"] for r in table} == {"edema", "non-enhancing tumor", "enhancing tumour"}
    assert {r["case_id"] for r in table} == {"Task01_BrainTumour/BRATS_001", "Task01_BrainTumour/BRATS_002"}
    quarantine = pq.read_table(glob.glob(os.path.join(output, "quarantine", "*.parquet"))[0]).to_pylist()
    assert [(q["case_id"], q["reason"]) for q in quarantine] == [("Task01_BrainTumour/BRATS_003", "unknown_label")]
    assert "[7]" in quarantine[0]["message"]


def test_existing_output_is_never_overwritten(demo_build, capsys):
    before = part_file_digests(demo_build)
    assert main(["build", "--source", "demo", "--output", demo_build]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "exists and is not empty" in error
    assert part_file_digests(demo_build) == before


@pytest.mark.parametrize(
    "argv, message",
    [
        (["build", "--source", "nosuch", "--output", "x"], "unknown source 'nosuch'"),
        (["build", "--source", "demo", "--output", "x", "--spacing", "-1"], "spacing must be"),
        (["build", "--source", "demo", "--output", "x", "--cut-here-below-mvoxels", "-1"], "expected a number >= 0"),
        (["build", "--source", "demo"], "--output"),
        (["build", "--source", "msd", "--output", "x"], "needs a root"),
        (["frobnicate"], "invalid choice"),
        (["build", "--source", "demo", "--output", "x", "--tasks", "boxes"], "unknown task boxes: the tasks are"),
        (
            ["build", "--source", "demo", "--output", "x", "--cases", "Task01_DemoCT/nope"],
            "no source lists: Task01_DemoCT/nope",
        ),
    ],
)
def test_misuse_is_one_line_and_exit_code_2(tmp_path, capsys, demo_root, argv, message):
    argv = [a if a != "x" else str(tmp_path / "new") for a in argv]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("medvision-pipeline: error:") and error.count("\n") == 0 and message in error


def test_dry_run_lists_cases_and_writes_nothing(tmp_path, demo_root, capsys):
    output = str(tmp_path / "dry")
    assert main(["build", "--source", f"demo={demo_root}", "--output", output, "--dry-run", "--max-cases", "3"]) == 0
    *lines, summary = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["case_id"] for line in lines] == ["Ceph/001", "Ceph/151", "FeTA/sub-001_rec-mial"]
    assert [line["estimated_slices"] for line in lines] == [1, 1, 80 + 96 + 80]
    # every group is sampled: each cephalogram (8 angles + 2 distances) and the FeTA volume (its boxes)
    assert summary == {
        "summary": "demo",
        "cases": 3,
        "subjects": 3,
        "listing_errors": 0,
        "estimated_slices": 258,
        "cases_without_estimate": 0,
        "sampled_cases": 3,
        "estimated_pairs": {"angle_distance": 20, "detection": 900},
    }
    assert not os.path.exists(output)


def test_dry_run_of_a_source_estimates_pairs_per_task_from_sampled_cases(tmp_path, capsys):
    from tests.source_fixtures import FIXTURES

    FIXTURES["kits23"](str(tmp_path / "kits"))
    assert (
        main(
            [
                "build",
                "--source",
                f"kits23={tmp_path / 'kits'}",
                "--output",
                str(tmp_path / "dry"),
                "--dry-run",
                "--dry-run-sample",
                "1",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (summary["cases"], summary["subjects"], summary["sampled_cases"]) == (3, 3, 1)
    assert summary["estimated_slices"] == 3 * (32 + 32 + 8)
    assert summary["estimated_pairs"]["detection"] > 0 and summary["estimated_pairs"]["tumor_lesion_size"] > 0


def test_direct_runner_never_tries_prism(tmp_path, demo_root, caplog):
    caplog.set_level(logging.INFO)
    output = str(tmp_path / "out")
    assert (
        main(["build", "--source", f"demo={demo_root}", "--output", output, "--cases", "Task01_DemoCT/demo_ct_04"]) == 0
    )
    assert not [r for r in caplog.records if "Prism" in r.getMessage()]


def test_two_worker_processes_give_byte_identical_output(tmp_path, demo_root):
    """Same input, another execution mode: the same files, byte for byte (ids, splits, shards, order)."""
    outputs = {}
    for mode, extra in (("one", []), ("two", ["--direct_num_workers=2", "--direct_running_mode=multi_processing"])):
        outputs[mode] = str(tmp_path / mode)
        command = [
            sys.executable,
            "-m",
            "pipeline.cli",
            "build",
            "--source",
            f"demo={demo_root}",
            "--output",
            outputs[mode],
            "--cases",
            SMALL_DEMO,
            *extra,
        ]
        result = subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
        cases = len(SMALL_DEMO.split(","))  # worker processes report progress to the driver's line too
        rows = json.load(open(os.path.join(outputs[mode], "stats.json")))["rows"]
        final = rf"progress: {cases}/{cases} cases loaded, ([1-9]\d*)/\1 units cut, {sum(r['rows'] for r in rows)} rows"
        assert re.search(final, result.stderr), result.stderr[-500:]
    assert part_file_digests(outputs["one"]) == part_file_digests(outputs["two"])
    assert len(part_file_digests(outputs["one"])) >= 2


def test_listing_order_does_not_change_any_output_byte(tmp_path, msd_task):
    first = str(tmp_path / "first")
    assert main(["build", "--source", f"msd={msd_task}", "--output", first]) == 0
    meta_path = os.path.join(msd_task, "dataset.json")
    meta = json.load(open(meta_path))
    meta["training"].reverse()
    json.dump(meta, open(meta_path, "w"))
    second = str(tmp_path / "second")
    assert main(["build", "--source", f"msd={msd_task}", "--output", second]) == 0
    assert part_file_digests(first) == part_file_digests(second)


def test_cases_cut_where_planned_or_spread_give_the_same_bytes_and_scans_share_a_split(tmp_path, monkeypatch):
    """On the DirectRunner a small case is cut in the step that planned it, from that decode; spread, its
    units decode it again. Either way the files are the same, and two subjects with one scan share a
    split, which is applied to their pairs once every case is planned."""
    task = make_msd_task(tmp_path / "msd", n_cases=3)
    shutil.copy(os.path.join(task, "imagesTr", "BRATS_001.nii.gz"), os.path.join(task, "imagesTr", "BRATS_002.nii.gz"))
    first, second, _ = get_source("msd").list_cases(task)
    salt = next(
        f"salt{n}"
        for n in range(1000)
        if len({ids.subject_split(case.dataset, case.subject_id, f"salt{n}") for case in (first, second)}) == 2
    )
    decodes, load_case = [], casework.load_case
    monkeypatch.setattr(
        casework, "load_case", lambda case, *args: decodes.append(case.case_id) or load_case(case, *args)
    )
    outputs, decoded = {}, {}
    for name, extra in (("here", []), ("spread", ["--cut-here-below-mvoxels", "0"])):
        outputs[name], decodes[:] = str(tmp_path / name), []
        assert main(["build", "--source", f"msd={task}", "--output", outputs[name], "--split-salt", salt, *extra]) == 0
        decoded[name] = collections.Counter(decodes)
    assert set(decoded["here"].values()) == {1}
    assert all(decoded["spread"][case] >= 2 for case in decoded["here"])
    assert part_file_digests(outputs["here"]) == part_file_digests(outputs["spread"])
    table = pairs_table(outputs["here"], ["case_id", "split"])
    splits = {(case_id, split) for case_id, split in zip(*table.to_pydict().values())}
    expected = ids.subject_split(first.dataset, first.subject_id, salt)  # the first subject of the group
    assert {(first.case_id, expected), (second.case_id, expected)} <= splits and len(splits) == 3


def test_tasks_option_writes_those_tasks_rows_byte_for_byte(tmp_path, demo_build, demo_root):
    """--tasks makes a subset of a full build: the chosen tasks' files are the full build's, byte for byte."""
    output = str(tmp_path / "tl")
    assert main(["build", f"--source=demo={demo_root}", "--output", output, "--tasks", "tumor_lesion_size"]) == 0
    mine = part_file_digests(output)
    lesion_files = {
        path: digest for path, digest in part_file_digests(demo_build).items() if "task=tumor_lesion_size" in path
    }
    assert lesion_files and {p: d for p, d in mine.items() if "task=" in p} == lesion_files
