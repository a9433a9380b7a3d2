"""The card's reading of written pairs, on tiny Parquet files in the build layout: the first pass's
licences, measurements and overlay choice, the rows read back for overlays, and the figures' paths and
captions. `test_report.py` checks the card of a demo build."""

from __future__ import annotations

import io
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from consumers import report
from pipeline.config import UsageError
from pipeline.sources import SOURCES


def grey_png(width_px: int, height_px: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height_px, width_px), 90, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_pairs(root, dataset: str, task: str, split: str, rows: list[dict], name: str = "part-0.parquet") -> str:
    folder = os.path.join(str(root), f"dataset={dataset}", f"task={task}", f"split={split}")
    os.makedirs(folder, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), os.path.join(folder, name))
    return os.path.join(folder, name)


def detection_row(sample_id: str, mode: str = "pixels", licence: str | None = "CC0", **fields) -> dict:
    row = {
        "sample_id": sample_id,
        "case_id": "Task01/c1",
        "sequence": "CT",
        "plane": "axial",
        "slice_index": 3,
        "image_mode": mode,
        "image": {"bytes": grey_png(8, 4) if mode == "pixels" else None, "path": None},
        "image_width_px": 8,
        "image_height_px": 4,
        "provenance": {"licence": licence, "redistributable": True},
        "label_name": "liver",
        "box_xyxy_px": [2.0, 1.0, 6.0, 3.0],
        "box_size_mm": [4.0, 2.0],
        "component_index": 0,
        "n_components": 1,
    }
    return {**row, **fields}


def test_task_files_are_one_dataset_and_task_across_splits(tmp_path):
    train = write_pairs(tmp_path, "demo", "detection", "train", [detection_row("a")])
    test = write_pairs(tmp_path, "demo", "detection", "test", [detection_row("b")])
    write_pairs(tmp_path, "demo", "tumor_lesion_size", "train", [detection_row("c")])
    write_pairs(tmp_path, "other", "detection", "train", [detection_row("d")])
    assert report.task_files(str(tmp_path), "demo", "detection") == sorted([train, test])


def test_first_pass_keeps_licences_sizes_and_the_smallest_pixel_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "SCAN_BATCH_ROWS", 2)  # row numbers carry across batches
    first = write_pairs(
        tmp_path,
        "demo",
        "detection",
        "train",
        [detection_row(s) for s in ("f", "b", "d")] + [detection_row("a", mode="pointer", licence="CC-BY")],
    )
    second = write_pairs(
        tmp_path,
        "demo",
        "detection",
        "test",
        [detection_row("e", licence=None, box_size_mm=None), detection_row("c", box_size_mm=[1.5, 0.5])],
    )
    scan = report.scan_task([first, second], "detection")
    assert scan.chosen == [("b", 0, 1), ("c", 1, 1), ("d", 0, 2), ("e", 1, 0)]  # "a" has no pixels
    assert (scan.licences, scan.redistributable, scan.pointer_rows) == ({"CC0", "CC-BY"}, {True}, 1)
    widths, heights = (np.concatenate(scan.measures[name]) for name in ("box width", "box height"))
    assert sorted(widths) == [1.5, 4.0, 4.0, 4.0, 4.0] and sorted(heights) == [0.5, 2.0, 2.0, 2.0, 2.0]


def test_lesion_and_landmark_measures_go_to_their_panels(tmp_path):
    provenance = {"licence": "CC0", "redistributable": True}
    lesions = [
        {"sample_id": s, "image_mode": "pixels", "provenance": provenance, "major_axis_mm": 9.0}
        | {"minor_axis_mm": 4.0, "longest_diameter_mm": 8.5, "perpendicular_diameter_mm": perpendicular_mm}
        for s, perpendicular_mm in (("a", None), ("b", 3.0))
    ]
    lesion_scan = report.scan_task(
        [write_pairs(tmp_path, "d", "tumor_lesion_size", "train", lesions)], "tumor_lesion_size"
    )
    assert {name: list(np.concatenate(parts)) for name, parts in lesion_scan.measures.items()} == {
        "major axis": [9.0, 9.0],
        "minor axis": [4.0, 4.0],
        "longest diameter": [8.5, 8.5],
        "perpendicular diameter": [3.0],
    }
    metrics = [
        {"sample_id": s, "image_mode": "pixels", "provenance": provenance, "metric_type": kind, "value": value}
        for s, kind, value in (("a", "angle", 30.0), ("b", "distance", 12.0), ("c", "angle", 45.0))
    ]
    metric_scan = report.scan_task([write_pairs(tmp_path, "d", "angle_distance", "train", metrics)], "angle_distance")
    assert {name: list(np.concatenate(parts)) for name, parts in metric_scan.measures.items()} == {
        "angle": [30.0, 45.0],
        "distance": [12.0],
    }


def test_read_rows_returns_the_asked_rows_across_batches(tmp_path):
    rows = [{"sample_id": f"s{i:03d}", "n": i} for i in range(150)]  # three batches of OVERLAY_BATCH_ROWS
    path = write_pairs(tmp_path, "d", "detection", "train", rows)
    found = report.read_rows(path, {0, 70, 149}, ["n"])
    assert found == {0: {"n": 0}, 70: {"n": 70}, 149: {"n": 149}}


def test_overlay_rows_come_back_in_the_chosen_order(tmp_path):
    first = write_pairs(tmp_path, "d", "detection", "train", [detection_row("b"), detection_row("d")])
    second = write_pairs(tmp_path, "d", "detection", "test", [detection_row("a"), detection_row("c")])
    rows = report.overlay_rows([first, second], [("a", 1, 0), ("b", 0, 0), ("c", 1, 1)], "detection")
    assert [row["sample_id"] for row in rows] == ["a", "b", "c"]
    assert set(rows[0]) == set(report.SLICE_COLUMNS + report.OVERLAY_COLUMNS["detection"])


def test_overlays_are_written_under_the_card_folder_with_their_captions(tmp_path):
    path = write_pairs(tmp_path, "demo", "detection", "train", [detection_row("s1")])
    scan = report.scan_task([path], "detection")
    (figure,) = report._write_overlays(str(tmp_path), "demo", "detection", [path], scan)
    assert figure.path == "card/demo/detection/s1.png"
    assert figure.caption == "`s1` Task01/c1 CT, axial slice 3; liver: box 4.0 x 2.0 mm, component 1 of 1"
    assert Image.open(tmp_path / figure.path).size[0] == 8 * 64


def test_distributions_name_the_panels_with_values(tmp_path):
    measures = {"box width": [np.array([1.0, 2.0])], "box height": [np.array([])], "angle": [np.array([30.0])]}
    figure = report._write_distributions(str(tmp_path), "demo", measures)
    assert figure is not None
    assert (figure.path, figure.caption) == ("card/demo/distributions.png", "demo: box size (mm), angle (deg) per pair")
    assert os.path.isfile(tmp_path / figure.path)
    assert report._write_distributions(str(tmp_path), "demo", {"distance": [np.array([])]}) is None


def test_dataset_facts_join_the_tasks_and_cite_the_source(tmp_path):
    metric = {"metric_type": "distance", "value": 3.0}
    for dataset in ("demo", "unlisted"):
        write_pairs(tmp_path, dataset, "detection", "train", [detection_row("a", mode="pointer")])
        write_pairs(tmp_path, dataset, "angle_distance", "test", [detection_row("b", "pointer", "X", **metric)])
    facts, distributions, overlays = report.describe_dataset(str(tmp_path), "demo", ["angle_distance", "detection"])
    assert (facts.licences, facts.redistributable, facts.pointer_rows) == (("CC0", "X"), (True,), 2)
    assert facts.citation == SOURCES["demo"].info.citation != ""
    assert overlays == {("demo", "angle_distance"): [], ("demo", "detection"): []}  # pointer rows: none drawn
    assert distributions is not None and distributions.caption == "demo: box size (mm), distance (mm) per pair"
    assert report.describe_dataset(str(tmp_path), "unlisted", ["detection"])[0].citation == ""


def test_regenerating_needs_a_finished_build(tmp_path):
    with pytest.raises(UsageError, match=r"no _SUCCESS or stats.json"):
        report.regenerate_card(str(tmp_path))
    (tmp_path / "_SUCCESS").write_text("")
    with pytest.raises(UsageError, match=r"no stats.json\)"):
        report.regenerate_card(str(tmp_path))
