"""`medvision-pipeline preview`: sampled pairs in the terminal, their overlays, the card's figures."""

from __future__ import annotations

import glob
import json
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from PIL import Image

from consumers import figures, preview
from pipeline.cli import main

# CT with a lesion (detection, T/L) and one cephalogram (A/D): every task (both cases fall in train).
PREVIEW_CASES = "Task01_DemoCT/demo_ct_02,Ceph/001"
HEADER = re.compile(r"^\[(\d+)/(\d+)\] ([0-9a-f]{32})  (\S+)  ([^/\s]+)/(\S+)$", re.MULTILINE)


@pytest.fixture(scope="module")
def build(tmp_path_factory, demo_root):
    output = str(tmp_path_factory.mktemp("preview") / "demo")
    assert main(["build", f"--source=demo={demo_root}", "--output", output, "--cases", PREVIEW_CASES]) == 0
    return output


def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["preview", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def rows_by_id(output: str, task: str) -> dict[str, dict]:
    files = glob.glob(os.path.join(output, f"dataset=*/task={task}/split=*/*.parquet"))
    table = ds.dataset(files, format="parquet", partitioning="hive", partition_base_dir=output).to_table()
    return {row["sample_id"]: row for row in table.to_pylist()}


def test_preview_prints_the_drawn_pairs_as_they_are_stored_and_writes_their_overlays(build, tmp_path, capsys):
    overlays = str(tmp_path / "qc")
    code, out, _ = run(capsys, build, "--task", "tumor_lesion_size", "-n", "3", "--seed", "7", "--overlays", overlays)
    assert code == 0
    headers = HEADER.findall(out)
    assert [(int(i), int(n)) for i, n, *_ in headers] == [(1, 3), (2, 3), (3, 3)]
    stored = rows_by_id(build, "tumor_lesion_size")
    blocks = re.split(r"^(?=\[\d+/3\] )", out, flags=re.MULTILINE)[1:]
    for (_, _, sample_id, task, dataset, split), block in zip(headers, blocks):
        row = stored[sample_id]
        assert (task, dataset, split) == ("tumor_lesion_size", row["dataset"], row["split"])
        assert f"image {row['image_width_px']} x {row['image_height_px']} px" in block
        assert f"answer: {row['answer']}" in block
        assert row["prompt"].splitlines()[0] in block
        assert f"ellipse major axis {row['major_axis_mm']:.2f} mm" in block
        assert f"RECIST long diameter {row['longest_diameter_mm']:.2f} mm" in block
        path = os.path.join(overlays, f"{sample_id}.png")
        assert f"overlay: {path}" in block
        # The card's drawing of that very row.
        assert open(path, "rb").read() == figures.overlay_png(row["image"]["bytes"], "tumor_lesion_size", row)


def test_the_same_seed_draws_the_same_pairs_and_filters_hold(build, capsys):
    argv = (build, "--task", "detection", "--split", "train", "--dataset", "demo", "-n", "4", "--seed", "3")
    first, again = run(capsys, *argv)[1], run(capsys, *argv)[1]
    assert first == again
    headers = HEADER.findall(first)
    assert len(headers) == 4 and {(t, d, s) for *_, t, d, s in headers} == {("detection", "demo", "train")}
    other = HEADER.findall(run(capsys, *argv[:-1], "4")[1])
    assert [h[2] for h in other] != [h[2] for h in headers]


def test_asking_for_more_pairs_than_there_are_prints_each_once(build, capsys):
    stats = json.load(open(os.path.join(build, "stats.json")))
    total = sum(r["rows"] for r in stats["rows"] if r["task"] == "angle_distance")
    code, out, _ = run(capsys, build, "--task", "angle_distance", "-n", str(total + 5))
    ids = [h[2] for h in HEADER.findall(out)]
    assert code == 0 and len(ids) == total == len(set(ids)) and set(ids) == set(rows_by_id(build, "angle_distance"))
    assert "landmarks (px): P" in out


def test_figures_lists_every_card_png_once_with_what_it_shows(build, capsys):
    code, out, _ = run(capsys, build, "--figures")
    lines = out.splitlines()
    written = sorted(glob.glob(os.path.join(build, "card", "**", "*.png"), recursive=True))
    assert code == 0 and sorted(line.rsplit(": ", 1)[1] for line in lines) == written
    assert lines[0] == f"pairs per dataset, stacked by task: {os.path.join(build, 'card', 'pairs_per_dataset.png')}"
    assert any(line.startswith("demo: measurement histograms") for line in lines)
    overlay = [line for line in lines if line.startswith("demo/detection: QC overlay of pair ")]
    assert len(overlay) == 4


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--task", "detections"], "no pairs match --task detections; this build has tasks angle_distance, detection"),
        (
            ["--split", "test"],
            "no pairs match --split test; this build has tasks angle_distance, detection, "
            "tumor_lesion_size; datasets demo; splits train",
        ),
        (["-n", "0"], "-n takes a positive number"),
        (["--gcs-anonymus"], "--gcs-anonymus (did you mean --gcs-anonymous?)"),
    ],
)
def test_misuse_is_one_line(build, capsys, argv, message):
    code, out, err = run(capsys, build, *argv)
    assert code == 2 and out == "" and message in err and len(err.splitlines()) == 1


def test_an_unfinished_output_is_refused(tmp_path, capsys):
    code, _, err = run(capsys, str(tmp_path), "--figures")
    assert code == 2 and "not a finished build" in err


def test_preview_reads_a_build_on_object_storage(build, tmp_path, gcs_emulator, capsys):
    from pipeline import storage
    from tests.conftest import upload_tree

    storage.gcs_filesystem().mkdir("medvision-preview")
    upload_tree(build, "gs://medvision-preview/build")
    argv = ("--task", "tumor_lesion_size", "-n", "2", "--seed", "1")
    local = run(capsys, build, *argv)[1]
    code, remote, _ = run(
        capsys,
        "gs://medvision-preview/build",
        *argv,
        "--overlays",
        "gs://medvision-preview/qc",
        "--gcs-anonymous",
        "--project",
        "medvision-test",
    )  # the project: a Beam option
    assert code == 0 and [h[2:] for h in HEADER.findall(remote)] == [h[2:] for h in HEADER.findall(local)]
    for _, _, sample_id, *_ in HEADER.findall(remote):
        assert storage.read_bytes(f"gs://medvision-preview/qc/{sample_id}.png").startswith(b"\x89PNG")
    figures_listed = run(capsys, "gs://medvision-preview/build", "--figures", "--gcs-anonymous", "--project=p")[1]
    figures_listed = figures_listed.splitlines()
    assert figures_listed[0].endswith("gs://medvision-preview/build/card/pairs_per_dataset.png")
    assert len(figures_listed) == len(run(capsys, build, "--figures")[1].splitlines())


def test_draw_is_uniform_distinct_and_within_each_part():
    drawn = preview.draw_positions([3, 0, 5], 8, seed=1)
    assert sorted(drawn) == [(0, 0), (0, 1), (0, 2), (2, 0), (2, 1), (2, 2), (2, 3), (2, 4)]
    assert preview.draw_positions([3, 0, 5], 4, seed=1) == preview.draw_positions([3, 0, 5], 4, seed=1)
    assert preview.draw_positions([10**9], 2, seed=0)[0][1] < 10**9  # no list of a billion positions


def test_rows_are_located_across_files_and_row_groups():
    located = preview.locate_rows([[2, 3], [], [4]], [0, 1, 2, 4, 5, 8])
    assert located == {0: (0, 0, 0), 1: (0, 0, 1), 2: (0, 1, 0), 4: (0, 1, 2), 5: (2, 0, 0), 8: (2, 0, 3)}


def test_sampling_reads_only_the_row_groups_holding_drawn_rows(tmp_path, monkeypatch):
    folder = tmp_path / "dataset=d/task=detection/split=train"
    folder.mkdir(parents=True)
    table = pa.table({"sample_id": [f"{i:04d}" for i in range(100)], "image": [b"png"] * 100})
    pq.write_table(table, folder / "part-0.parquet", row_group_size=10)
    read = []
    original = pq.ParquetFile.read_row_group

    def spy(self, index, columns=None, **kwargs):
        read.append((index, tuple(columns)))
        return original(self, index, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    partition = preview.Partition("d", "detection", "train", 100)
    pairs = preview.sample_pairs(str(tmp_path), [partition], 2, seed=5, with_image=False)
    expected = [f"{row:04d}" for _, row in preview.draw_positions([100], 2, seed=5)]
    assert [p["sample_id"] for p in pairs] == expected and "image" not in pairs[0]
    assert sorted(read) == sorted({(int(i) // 10, ("sample_id",)) for i in expected})


def test_geometry_in_words_names_frames_and_units():
    row = {
        "box_xyxy_px": [148.0, 54.0, 181.0, 118.0],
        "box_size_mm": [23.1, 44.8],
        "label_name": "right kidney",
        "component_index": 0,
        "n_components": 2,
    }
    assert preview.geometry_lines("detection", row) == [
        "box of right kidney: x 148 to 181, y 54 to 118 px (end-exclusive), 23.1 x 44.8 mm; component 1 of 2"
    ]
    landmarks = {
        "metric_type": "angle",
        "metric_name": "A-L_3_4-L_17_18",
        "metric_description": "",
        "value": 12.345,
        "unit": "deg",
        "landmarks_xy_px": [{"name": "P3", "x": 1.0, "y": 2.5}],
    }
    assert preview.geometry_lines("angle_distance", landmarks) == [
        "angle A-L_3_4-L_17_18: 12.35 deg",
        "landmarks (px): P3 (1.0, 2.5)",
    ]


def test_names_from_inputs_cannot_drive_the_terminal():
    assert preview.printable("liver\x1b[2J lesion\u202e") == "liver\\x1b[2J lesion\\u202e"


def test_overlay_of_a_pointer_row_is_skipped(tmp_path):
    note = preview.write_overlay(str(tmp_path), {"image_mode": "pointer", "image": {"bytes": None}})
    assert note.startswith("none") and os.listdir(tmp_path) == []


def test_written_overlay_is_the_upscaled_slice(build, tmp_path, capsys):
    code, out, _ = run(capsys, build, "--task", "detection", "-n", "1", "--overlays", str(tmp_path))
    (sample_id,) = [h[2] for h in HEADER.findall(out)]
    row = rows_by_id(build, "detection")[sample_id]
    with Image.open(tmp_path / f"{sample_id}.png") as image:
        scale = figures.overlay_scale(row["image_width_px"], row["image_height_px"])
        assert image.width == row["image_width_px"] * scale and image.height > row["image_height_px"] * scale
        assert np.asarray(image.convert("RGB")).std() > 0
