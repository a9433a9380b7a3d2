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

from consumers import card, figures
from pipeline.cli import main

# CT with a lesion (detection, T/L), the truncated CT (quarantine) and one cephalogram (A/D).
CARD_CASES = "Task01_DemoCT/demo_ct_02,Task01_DemoCT/demo_ct_04,Ceph/001"


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
    """(overlay RGB array cut to the slice, legend strip below it, plain slice array, row, integer scale) of
    the first overlay of `task`."""
    (path,) = sorted(glob.glob(os.path.join(output, "card", "demo", task, "*.png")))[:1]
    sample_id = os.path.basename(path).removesuffix(".png")
    row = pair_row(output, task, sample_id, ["image", "image_width_px", "image_height_px", *columns])
    overlay = np.asarray(Image.open(path).convert("RGB"))
    plain = np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])).convert("L"))
    width_px, height_px = row["image_width_px"], row["image_height_px"]
    scale = -(-512 // max(width_px, height_px))  # the smallest integer upscale to a 512 px long side
    assert overlay.shape[1] == max(width_px * scale, figures.OVERLAY_MIN_WIDTH_PX)
    assert overlay.shape[0] > height_px * scale  # the legend strip
    return overlay[: height_px * scale, : width_px * scale], overlay[height_px * scale :], plain, row, scale


def colour_mask(rgb: np.ndarray, part: str, tolerance: int = 40) -> np.ndarray:
    """Pixels within `tolerance` (per channel) of the colour of overlay `part`: no grey comes that close."""
    hex_colour = card.OVERLAY_COLOURS[part][1]
    colour = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return np.abs(rgb.astype(int) - colour).max(axis=2) <= tolerance


def segment_distances(points: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """Distance of each (x, y) point to the segment [[x0, y0], [x1, y1]]."""
    start, end = segment
    along = np.clip(((points - start) @ (end - start)) / max(np.sum((end - start) ** 2), 1e-12), 0.0, 1.0)
    return np.linalg.norm(points - (start + along[:, None] * (end - start)), axis=1)


def lies_on(mask: np.ndarray, segments_xy_px, scale: int, width_px: float) -> bool:
    """Every pixel of `mask` (its centre, in PNG px) within width/2 + 0.5 px of one of the segments given in
    slice pixels (edge frame), i.e. of their upscaled copies: a pixel of the line is mostly covered by it."""
    rows, cols = np.nonzero(mask)
    centres = np.stack([cols + 0.5, rows + 0.5], axis=1)
    nearest = np.min([segment_distances(centres, np.asarray(s, float) * scale) for s in segments_xy_px], axis=0)
    return bool(len(centres)) and float(nearest.max()) <= width_px / 2 + 0.5


def coverage(mask: np.ndarray, segment_xy_px, scale: int, width_px: float) -> float:
    """Fraction of 50 points along the upscaled segment that have a `mask` pixel within width/2 + 1 px."""
    rows, cols = np.nonzero(mask)
    centres = np.stack([cols + 0.5, rows + 0.5], axis=1)
    start, end = np.asarray(segment_xy_px, float) * scale
    samples = start + np.linspace(0.02, 0.98, 50)[:, None] * (end - start)
    near = [np.min(np.linalg.norm(centres - sample, axis=1)) <= width_px / 2 + 1.0 for sample in samples]
    return float(np.mean(near))


def assert_drawn_on(rgb, part: str, segments_xy_px, scale: int, width_px: float = figures.LINE_PX) -> None:
    """`part` is drawn along every segment and nowhere else; the same pixels do not fit the segments moved
    sideways by 3 PNG px (either way): the check tells a line a few pixels off."""
    mask = colour_mask(rgb, part)
    assert lies_on(mask, segments_xy_px, scale, width_px), part
    for segment in segments_xy_px:
        assert coverage(mask, segment, scale, width_px) >= 0.9, (part, segment)
    for side in (1, -1):
        moved = []
        for segment in np.asarray(segments_xy_px, float):
            direction = (segment[1] - segment[0]) / np.linalg.norm(segment[1] - segment[0])
            moved.append(segment + side * 3.0 / scale * np.array([-direction[1], direction[0]]))
        assert not lies_on(mask, moved, scale, width_px), (part, side)


def box_edges(box_xyxy_px) -> list:
    x0, y0, x1, y1 = box_xyxy_px
    return [[(x0, y0), (x1, y0)], [(x1, y0), (x1, y1)], [(x1, y1), (x0, y1)], [(x0, y1), (x0, y0)]]


def test_front_matter_parses_and_every_glob_matches_files(card_build):
    matter, _ = read_card(card_build)
    stats = json.load(open(os.path.join(card_build, "stats.json")))
    present = {
        tuple(re.search(r"dataset=([^/]+)/task=([^/]+)/", path).groups())
        for path in glob.glob(os.path.join(card_build, "dataset=*/task=*/split=*/*.parquet"))
    }
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
        (q["dataset"], q["stage"], q["reason"], q["rows"]) for q in stats["quarantine"]
    ]
    assert ("demo", "load", "truncated_gzip", 1) in [(d, s, r, int(n)) for d, s, r, n in quarantine]
    assert table_rows(body, "| dataset | cases listed |")[1] == [["demo", "3", "2"]]


def test_every_linked_figure_is_a_written_png(card_build):
    _, body = read_card(card_build)
    linked = set(re.findall(r"\]\((card/[^)]+\.png)\)", body))
    written = {
        os.path.relpath(p, card_build)
        for p in glob.glob(os.path.join(card_build, "card", "**", "*.png"), recursive=True)
    }
    assert linked == written
    assert {"card/pairs_per_dataset.png", "card/demo/distributions.png"} <= written
    for task in ("detection", "tumor_lesion_size", "angle_distance"):
        assert len([p for p in written if p.startswith(f"card/demo/{task}/")]) == card.OVERLAYS_PER_TASK
    for path in written:
        with Image.open(os.path.join(card_build, path)) as image:
            assert image.format == "PNG" and image.width > 100 and image.height > 100
            assert np.asarray(image.convert("L")).std() > 0  # not a blank canvas


def test_detection_overlay_draws_the_box_on_its_pixel_edges_over_the_unblurred_slice(card_build):
    slice_rgb, legend, plain, row, scale = overlay_and_slice(card_build, "detection", ["box_xyxy_px"])
    # The left edge x0 is the boundary between columns x0 - 1 and x0: PNG column x0 * scale.
    assert_drawn_on(slice_rgb, "box", box_edges(row["box_xyxy_px"]), scale)
    # Off the lines the overlay is the stored slice, each pixel a scale x scale block (nearest neighbour).
    upscaled = np.repeat(np.repeat(plain, scale, axis=0), scale, axis=1)
    grey = (slice_rgb == slice_rgb[..., :1]).all(axis=2)
    assert (slice_rgb[grey][:, 0] == upscaled[grey]).all()
    assert grey.mean() > 0.95
    assert colour_mask(legend, "box").any() and (legend == 0).all(axis=2).mean() > 0.5  # a key on black


def test_lesion_overlay_draws_ellipse_axes_and_diameters_each_in_its_colour(card_build):
    parts = {
        "major axis": "major_axis_endpoints_xy_px",
        "minor axis": "minor_axis_endpoints_xy_px",
        "longest diameter": "longest_diameter_endpoints_xy_px",
        "perpendicular diameter": "perpendicular_diameter_endpoints_xy_px",
    }
    slice_rgb, legend, _, row, scale = overlay_and_slice(
        card_build, "tumor_lesion_size", [*parts.values(), "ellipse_center_xy_px"]
    )
    for part, column in parts.items():
        width_px = figures.AXIS_BAND_PX if part.endswith("axis") else figures.LINE_PX
        assert_drawn_on(slice_rgb, part, [row[column]], scale, width_px)
    # The ellipse passes through its four axis endpoints and stays inside the circle of its major axis.
    ellipse = colour_mask(slice_rgb, "ellipse")
    ends = [end for column in ("major_axis_endpoints_xy_px", "minor_axis_endpoints_xy_px") for end in row[column]]
    for end in ends:
        assert coverage(ellipse, [end, end], scale, 3 * figures.LINE_PX) == 1.0, end
    radius_px = np.linalg.norm(np.diff(row["major_axis_endpoints_xy_px"], axis=0)) / 2 * scale
    assert lies_on(ellipse, [[row["ellipse_center_xy_px"]] * 2], scale, 2 * radius_px + figures.LINE_PX)
    for part in card.OVERLAY_PARTS["tumor_lesion_size"]:
        assert colour_mask(legend, part).any(), part


def test_landmark_overlay_marks_each_landmark_and_draws_the_measured_lines(card_build):
    slice_rgb, legend, _, row, scale = overlay_and_slice(
        card_build, "angle_distance", ["landmarks_xy_px", "metric_name"]
    )
    points = {point["name"]: (point["x"], point["y"]) for point in row["landmarks_xy_px"]}
    for xy in points.values():
        assert colour_mask(slice_rgb[int(xy[1] * scale)][None], "landmark")[0, int(xy[0] * scale)], xy
    lines = [(points[a], points[b]) for a, b in card.measured_lines(row["metric_name"])]
    assert lines
    assert_drawn_on(slice_rgb, "measured line", lines, scale)
    assert colour_mask(legend, "landmark").any() and colour_mask(legend, "measured line").any()


@pytest.mark.parametrize(
    "task, row, expected",
    [
        (
            "detection",
            {"label_name": "right kidney", "box_size_mm": [23.1, 44.8]},
            ["box of right kidney: 23.1 x 44.8 mm"],
        ),
        (
            "tumor_lesion_size",
            {
                "label_name": "liver lesion",
                "major_axis_mm": 28.24,
                "minor_axis_mm": 18.2,
                "longest_diameter_mm": 28.6,
                "perpendicular_diameter_mm": 19.0,
            },
            [
                "ellipse fitted to liver lesion",
                "ellipse major axis 28.2 mm",
                "ellipse minor axis 18.2 mm",
                "RECIST long diameter 28.6 mm",
                "RECIST short diameter 19.0 mm",
            ],
        ),
        (
            "angle_distance",
            {
                "landmarks_xy_px": [{"name": "P9"}, {"name": "P10"}],
                "metric_description": "",
                "metric_name": "L-9-10",
                "value": 25.6,
                "unit": "mm",
            },
            ["landmarks P9, P10", "L-9-10: 25.6 mm"],
        ),
    ],
)
def test_overlay_legend_names_each_part_and_its_measurement(task, row, expected):
    entries = figures.legend_entries(task, row)
    assert [part for part, _ in entries] == list(card.OVERLAY_PARTS[task])
    assert [text for _, text in entries] == expected


def test_a_narrow_slice_keeps_its_pixels_and_gets_room_for_its_legend():
    pixels = np.random.default_rng(0).integers(0, 256, (600, 40), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    row = {
        "sample_id": "narrow",
        "image_width_px": 40,
        "image_height_px": 600,
        "label_name": "spinal cord",
        "box_xyxy_px": [10.0, 100.0, 30.0, 500.0],
        "box_size_mm": [20.0, 400.0],
    }
    overlay = np.asarray(Image.open(io.BytesIO(figures.overlay_png(buffer.getvalue(), "detection", row))))
    assert overlay.shape[1] == figures.OVERLAY_MIN_WIDTH_PX and overlay.shape[0] > 600
    assert_drawn_on(overlay[:600, :40], "box", box_edges(row["box_xyxy_px"]), 1)
    assert (overlay[:600, 40:] == 0).all()  # black beside the slice, nothing drawn there
    untouched = ~colour_mask(overlay[:600, :40], "box") & (overlay[:600, :40] == overlay[:600, :40, :1]).all(axis=2)
    assert (overlay[:600, :40, 0][untouched] == pixels[untouched]).all()


def test_overlay_scale_reaches_the_long_side_with_an_integer_factor():
    assert [figures.overlay_scale(w, h) for w, h in ((80, 80), (229, 129), (320, 180), (512, 100), (600, 750))] == [
        7,
        3,
        2,
        1,
        1,
    ]


def test_report_rewrites_an_identical_card(card_build, capsys):
    before = open(os.path.join(card_build, "README.md")).read()
    figures = {
        p: open(p, "rb").read() for p in glob.glob(os.path.join(card_build, "card", "**", "*.png"), recursive=True)
    }
    os.remove(os.path.join(card_build, "README.md"))
    assert main(["report", card_build]) == 0
    assert open(os.path.join(card_build, "README.md")).read() == before
    assert {p: open(p, "rb").read() for p in figures} == figures
    assert "README.md" in capsys.readouterr().out


def test_report_refuses_an_unfinished_output(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a finished build" in capsys.readouterr().err


@pytest.mark.parametrize(
    "spdx_ids, expected",
    [
        (["CC-BY-4.0", "CC-BY-4.0"], "cc-by-4.0"),
        (["CC0-1.0"], "cc0-1.0"),
        (["CC-BY-4.0", "CC0-1.0"], "other"),
        (["LicenseRef-FLARE22-terms"], "other"),
        ([], "other"),
    ],
)
def test_hub_licence(spdx_ids, expected):
    assert card.hf_licence(spdx_ids) == expected


@pytest.mark.parametrize(
    "rows, expected", [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (2_500_000, "1M<n<10M"), (5_000_000_000, "n>1B")]
)
def test_size_category(rows, expected):
    assert card.size_category(rows) == expected


def test_configs_list_splits_in_train_validation_test_order():
    rows = [{"dataset": "amos22", "task": "detection", "split": s, "rows": 1} for s in ("test", "validation", "train")]
    assert card.hf_configs(rows) == [
        {
            "config_name": "amos22-detection",
            "data_files": [
                {"split": "train", "path": "dataset=amos22/task=detection/split=train/*.parquet"},
                {"split": "validation", "path": "dataset=amos22/task=detection/split=validation/*.parquet"},
                {"split": "test", "path": "dataset=amos22/task=detection/split=test/*.parquet"},
            ],
        }
    ]


def test_measured_lines_follow_medvision_keys():
    assert card.measured_lines("L-1-10") == [("P1", "P10")]
    assert card.measured_lines("A-L_2_5-L_2_6") == [("P2", "P5"), ("P2", "P6")]
    assert card.measured_lines("custom") == []


def test_keep_smallest_keeps_the_smallest_ids_across_batches():
    chosen = card.keep_smallest([], [("c", 0, 0), ("a", 0, 1)], 2)
    assert card.keep_smallest(chosen, [("b", 1, 0), ("d", 1, 1)], 2) == [("a", 0, 1), ("b", 1, 0)]
