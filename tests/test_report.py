"""The dataset card: written by `build`, rewritten by `report`; front matter, counts, figures and overlays."""
from __future__ import annotations

import glob
import io
import json
import os
import re

import numpy as np
import pyarrow.dataset as ds
import pytest
import yaml
from PIL import Image

from pipeline.cli import main
from transforms import card

# CT with a lesion (detection, T/L), the truncated CT (quarantine) and one cephalogram (A/D).
CARD_CASES = "Task01_DemoCT/demo_ct_02,Task01_DemoCT/demo_ct_04,Ceph/001"
RED = (255, 0, 0)


@pytest.fixture(scope="module")
def card_build(tmp_path_factory, demo_root):
    output = str(tmp_path_factory.mktemp("card") / "demo")
    assert main(["build", f"--source=demo={demo_root}", "--output", output, "--cases", CARD_CASES]) == 0
    return output


def read_card(output: str) -> tuple[dict, str]:
    """(front matter, Markdown body) of the card at `output`."""
    text = open(os.path.join(output, "README.md")).read()
    _, matter, body = text.split("---\n", 2)
    return yaml.safe_load(matter), body


def table_rows(body: str, header_start: str) -> tuple[list[str], list[list[str]]]:
    """(header cells, row cells) of the Markdown table whose header line starts with `header_start`."""
    lines = body.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    cells = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return cells[0], cells[2:]


def pair_row(output: str, task: str, sample_id: str, columns: list[str]) -> dict:
    files = glob.glob(os.path.join(output, f"dataset=*/task={task}/split=*/*.parquet"))
    table = ds.dataset(files, format="parquet").to_table(columns=columns, filter=ds.field("sample_id") == sample_id)
    (row,) = table.to_pylist()
    return row


def overlay_and_slice(output: str, task: str, columns: list[str]):
    """(overlay RGB array, plain slice array, row, integer scale) of the first overlay of `task`."""
    (path,) = sorted(glob.glob(os.path.join(output, "card", "demo", task, "*.png")))[:1]
    sample_id = os.path.basename(path).removesuffix(".png")
    row = pair_row(output, task, sample_id, ["image", "image_width_px", "image_height_px", *columns])
    overlay = np.asarray(Image.open(path).convert("RGB"))
    plain = np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])).convert("L"))
    scale = overlay.shape[1] // row["image_width_px"]
    assert overlay.shape[:2] == (row["image_height_px"] * scale, row["image_width_px"] * scale)
    return overlay, plain, row, scale


def test_front_matter_parses_and_every_glob_matches_files(card_build):
    matter, _ = read_card(card_build)
    stats = json.load(open(os.path.join(card_build, "stats.json")))
    present = {tuple(re.search(r"dataset=([^/]+)/task=([^/]+)/", path).groups())
               for path in glob.glob(os.path.join(card_build, "dataset=*/task=*/split=*/*.parquet"))}
    assert {c["config_name"] for c in matter["configs"]} == {f"{d}-{t}" for d, t in present}
    assert len(present) == 3
    for config in matter["configs"]:
        dataset, task = config["config_name"].rsplit("-", 1)
        splits = {r["split"] for r in stats["rows"] if (r["dataset"], r["task"]) == (dataset, task)}
        assert {f["split"] for f in config["data_files"]} == splits
        for data_files in config["data_files"]:
            assert data_files["path"].startswith(f"dataset={dataset}/task={task}/split={data_files['split']}/")
            assert glob.glob(os.path.join(card_build, data_files["path"])), data_files
    assert matter["license"] == "cc0-1.0"  # the demo is CC0 throughout
    assert stats["total_rows"] < 10_000
    assert matter["size_categories"] == ["n<1K" if stats["total_rows"] < 1000 else "1K<n<10K"]
    assert "object-detection" in matter["task_categories"]


def test_card_counts_and_quarantine_equal_stats(card_build):
    _, body = read_card(card_build)
    stats = json.load(open(os.path.join(card_build, "stats.json")))
    header, rows = table_rows(body, "| dataset | task |")
    assert header[-1] == "total" and set(header[2:-1]) <= {"train", "validation", "test"}
    counted = {(d, t, split): int(n) for d, t, *per_split, _ in rows for split, n in zip(header[2:-1], per_split)}
    expected = {(r["dataset"], r["task"], r["split"]): r["rows"] for r in stats["rows"]}
    assert {k: v for k, v in counted.items() if v} == expected
    assert sum(int(total) for *_, total in rows) == stats["total_rows"]
    _, quarantine = table_rows(body, "| dataset | stage | reason | rows |")
    assert [(d, s, r, int(n)) for d, s, r, n in quarantine] == [
        (q["dataset"], q["stage"], q["reason"], q["rows"]) for q in stats["quarantine"]]
    assert ("demo", "load", "truncated_gzip", 1) in [(d, s, r, int(n)) for d, s, r, n in quarantine]
    assert table_rows(body, "| dataset | cases listed |")[1] == [["demo", "3", "2"]]


def test_every_linked_figure_is_a_written_png(card_build):
    _, body = read_card(card_build)
    linked = set(re.findall(r"\]\((card/[^)]+\.png)\)", body))
    written = {os.path.relpath(p, card_build) for p in glob.glob(os.path.join(card_build, "card", "**", "*.png"),
                                                                  recursive=True)}
    assert linked == written
    assert {"card/pairs_per_dataset.png", "card/demo/distributions.png"} <= written
    for task in ("detection", "tumor_lesion_size", "angle_distance"):
        assert len([p for p in written if p.startswith(f"card/demo/{task}/")]) == card.OVERLAYS_PER_TASK
    for path in written:
        with Image.open(os.path.join(card_build, path)) as image:
            assert image.format == "PNG" and image.width > 100 and image.height > 100
            assert np.asarray(image.convert("L")).std() > 0  # not a blank canvas


def test_detection_overlay_draws_the_box_on_its_pixel_edges(card_build):
    overlay, plain, row, scale = overlay_and_slice(card_build, "detection", ["box_xyxy_px"])
    x0, y0, x1, y1 = row["box_xyxy_px"]
    # The left edge x0 is the boundary between columns x0 - 1 and x0: PNG column x0 * scale, at mid height.
    middle_row = int((y0 + y1) / 2 * scale)
    assert tuple(overlay[middle_row, int(x0 * scale)]) == RED
    assert tuple(overlay[int(y1 * scale) - 1, int((x0 + x1) / 2 * scale)]) == RED  # bottom edge
    grey = plain[int((y0 + y1) / 2), int(x0)]
    assert tuple(overlay[middle_row, int(x0 * scale)]) != (grey, grey, grey)
    # Away from the lines the overlay is the stored slice, pixel for pixel.
    far_row, far_col = int(y0 + y1) // 2, int(x0 + x1) // 2
    assert x1 - x0 > 4 and y1 - y0 > 4
    assert tuple(overlay[far_row * scale + scale // 2, far_col * scale + scale // 2]) == (plain[far_row, far_col],) * 3


def test_landmark_overlay_marks_each_landmark(card_build):
    overlay, _, row, scale = overlay_and_slice(card_build, "angle_distance", ["landmarks_xy_px"])
    for point in row["landmarks_xy_px"]:
        assert tuple(overlay[int(point["y"] * scale), int(point["x"] * scale)]) == RED, point


def test_report_rewrites_an_identical_card(card_build, capsys):
    before = open(os.path.join(card_build, "README.md")).read()
    figures = {p: open(p, "rb").read() for p in glob.glob(os.path.join(card_build, "card", "**", "*.png"),
                                                           recursive=True)}
    os.remove(os.path.join(card_build, "README.md"))
    assert main(["report", card_build]) == 0
    assert open(os.path.join(card_build, "README.md")).read() == before
    assert {p: open(p, "rb").read() for p in figures} == figures
    assert "README.md" in capsys.readouterr().out


def test_report_refuses_an_unfinished_output(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a finished build" in capsys.readouterr().err


@pytest.mark.parametrize("spdx_ids, expected", [
    (["CC-BY-4.0", "CC-BY-4.0"], "cc-by-4.0"), (["CC0-1.0"], "cc0-1.0"), (["CC-BY-4.0", "CC0-1.0"], "other"),
    (["LicenseRef-FLARE22-terms"], "other"), ([], "other")])
def test_hub_licence(spdx_ids, expected):
    assert card.hf_licence(spdx_ids) == expected


@pytest.mark.parametrize("rows, expected", [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"),
                                            (2_500_000, "1M<n<10M"), (5_000_000_000, "n>1B")])
def test_size_category(rows, expected):
    assert card.size_category(rows) == expected


def test_configs_list_splits_in_train_validation_test_order():
    rows = [{"dataset": "amos22", "task": "detection", "split": s, "rows": 1} for s in ("test", "validation", "train")]
    assert card.hf_configs(rows) == [{"config_name": "amos22-detection", "data_files": [
        {"split": "train", "path": "dataset=amos22/task=detection/split=train/*.parquet"},
        {"split": "validation", "path": "dataset=amos22/task=detection/split=validation/*.parquet"},
        {"split": "test", "path": "dataset=amos22/task=detection/split=test/*.parquet"}]}]


def test_measured_lines_follow_medvision_keys():
    assert card.measured_lines("L-1-10") == [("P1", "P10")]
    assert card.measured_lines("A-L_2_5-L_2_6") == [("P2", "P5"), ("P2", "P6")]
    assert card.measured_lines("custom") == []


def test_keep_smallest_keeps_the_smallest_ids_across_batches():
    chosen = card.keep_smallest([], [("c", 0, 0), ("a", 0, 1)], 2)
    assert card.keep_smallest(chosen, [("b", 1, 0), ("d", 1, 1)], 2) == [("a", 0, 1), ("b", 1, 0)]
