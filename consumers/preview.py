"""`medvision-pipeline preview`: a few pairs of a finished build in the terminal, their QC overlays, and
the dataset card's figures, one line each.

Sampling reads no more than it needs, whatever the build's size: the partitions' row counts come from
`stats.json`, a seeded draw picks row positions, then only the Parquet footers of the partitions drawn
from are read, and only the row groups holding a drawn row, without the image column unless overlays
are asked for. Files are read through `pipeline/storage.py` (local, gs://, s3://). The text is made by
pure functions (`pair_lines`, `geometry_lines`, `figure_line`); overlays are the card's drawing
(`consumers.figures.overlay_png`).
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import dataclasses
import itertools
import json
import random
import textwrap
import unicodedata

import pyarrow.parquet as pq

from pipeline import storage
from pipeline.config import UsageError

INDENT = "    "
TEXT_WIDTH = 100
# Characters a terminal would act on or hide (controls such as ESC, bidi and zero-width format characters,
# line separators): printed as escapes, so names from the inputs show what they hold.
_INVISIBLE = {"Cc", "Cf", "Cs", "Zl", "Zp"}


@dataclasses.dataclass(frozen=True, order=True)
class Partition:
    """One `dataset=/task=/split=` folder of a build and its row count (stats.json)."""

    dataset: str
    task: str
    split: str
    rows: int

    def files_glob(self, output: str) -> str:
        return storage.join(output, f"dataset={self.dataset}/task={self.task}/split={self.split}/*.parquet")


def finished_stats(output: str) -> dict:
    """The build's stats.json; UsageError when `output` holds no finished build."""
    missing = [name for name in ("_SUCCESS", "stats.json") if not storage.exists(storage.join(output, name))]
    if missing:
        raise UsageError(f"{output} is not a finished build (no {' or '.join(missing)}); run `build` first")
    return json.loads(storage.read_bytes(storage.join(output, "stats.json")))


def select_partitions(stats: dict, task: str | None, dataset: str | None, split: str | None) -> list[Partition]:
    """The build's non-empty partitions that match the filters (None: any), sorted; UsageError naming the
    values there are when none match."""
    every = [Partition(r["dataset"], r["task"], r["split"], r["rows"]) for r in stats["rows"] if r["rows"]]
    chosen = sorted(
        p for p in every if (task in (None, p.task)) and (dataset in (None, p.dataset)) and (split in (None, p.split))
    )
    if not chosen:
        asked = ", ".join(
            f"--{name} {value}" for name, value in (("task", task), ("dataset", dataset), ("split", split)) if value
        )
        there = "; ".join(
            f"{name}s {', '.join(sorted({getattr(p, name) for p in every})) or 'none'}"
            for name in ("task", "dataset", "split")
        )
        raise UsageError(f"no pairs match {asked}; this build has {there}")
    return chosen


def draw_positions(counts: list[int], n: int, seed: int) -> list[tuple[int, int]]:
    """`n` distinct (part index, row index in part) drawn uniformly over all rows of parts with `counts`
    rows (every row when there are fewer), in draw order; the same seed gives the same draw."""
    total = sum(counts)
    starts = list(itertools.accumulate(counts, initial=0))
    drawn = random.Random(seed).sample(range(total), min(n, total))
    parts = [bisect.bisect_right(starts, position) - 1 for position in drawn]
    return [(part, position - starts[part]) for part, position in zip(parts, drawn)]


def locate_rows(group_rows: list[list[int]], wanted: list[int]) -> dict[int, tuple[int, int, int]]:
    """Each wanted row index of a partition -> (file index, row group index, row in the group), given the
    row counts of each file's row groups (files in order)."""
    flat = [(f, g, rows) for f, groups in enumerate(group_rows) for g, rows in enumerate(groups)]
    starts = list(itertools.accumulate((rows for *_, rows in flat), initial=0))
    located = {}
    for row in wanted:
        index = bisect.bisect_right(starts, row) - 1
        file_index, group, _ = flat[index]
        located[row] = (file_index, group, row - starts[index])
    return located


def _read_partition(output: str, partition: Partition, wanted: list[int], with_image: bool) -> dict[int, dict]:
    """The wanted rows (index in partition -> row dict) of one partition: footers of its files, then only
    the row groups holding them; every column but `image` unless `with_image`."""
    with contextlib.ExitStack() as files:
        readers = [files.enter_context(_parquet(uri)) for uri in storage.glob(partition.files_glob(output))]
        group_rows = [
            [reader.metadata.row_group(g).num_rows for g in range(reader.num_row_groups)] for reader in readers
        ]
        by_group = collections.defaultdict(list)
        for row, (file_index, group, offset) in locate_rows(group_rows, wanted).items():
            by_group[file_index, group].append((row, offset))
        found = {}
        for (file_index, group), rows in sorted(by_group.items()):
            reader = readers[file_index]
            columns = [name for name in reader.schema_arrow.names if with_image or name != "image"]
            table = reader.read_row_group(group, columns=columns, use_threads=False)
            for row, offset in rows:
                found[row] = {
                    **table.slice(offset, 1).to_pylist()[0],
                    "dataset": partition.dataset,
                    "task": partition.task,
                    "split": partition.split,
                }
        return found


@contextlib.contextmanager
def _parquet(uri: str):
    """A ParquetFile reading on this thread only (see `consumers.evaluate.read_parquet` for why): a local
    file by path, an object through its Python handle without pre-buffering."""
    if not storage.is_remote(uri):
        with pq.ParquetFile(uri) as parquet:
            yield parquet
        return
    with storage.open_read(uri) as handle, pq.ParquetFile(handle, pre_buffer=False) as parquet:
        yield parquet


def sample_pairs(output: str, partitions: list[Partition], n: int, seed: int, with_image: bool) -> list[dict]:
    """`n` pairs drawn uniformly from `partitions` with `seed`, in draw order, each with its dataset, task
    and split."""
    drawn = draw_positions([p.rows for p in partitions], n, seed)
    wanted = collections.defaultdict(list)
    for part, row in drawn:
        wanted[part].append(row)
    rows = {
        (part, row): pair
        for part, indices in wanted.items()
        for row, pair in _read_partition(output, partitions[part], indices, with_image).items()
    }
    return [rows[key] for key in drawn]


def _xy(point) -> str:
    x, y = point
    return f"({x:.1f}, {y:.1f})"


def geometry_lines(task: str, row: dict) -> list[str]:
    """The pair's geometry in words: displayed pixels in the edge frame (origin at the image's top-left
    corner, x right, y down), lengths in mm, angles in degrees."""
    if task == "detection":
        x0, y0, x1, y1 = row["box_xyxy_px"]
        width_mm, height_mm = row["box_size_mm"]
        return [
            f"box of {row['label_name']}: x {x0:g} to {x1:g}, y {y0:g} to {y1:g} px (end-exclusive), "
            f"{width_mm:.1f} x {height_mm:.1f} mm; component {row['component_index'] + 1} of "
            f"{row['n_components']}"
        ]
    if task == "tumor_lesion_size":

        def segment(name: str) -> str:
            start, end = row[f"{name}_endpoints_xy_px"]
            return f"{row[f'{name}_mm']:.2f} mm from {_xy(start)} to {_xy(end)} px"

        return [
            f"ellipse fitted to {row['label_name']}: centre {_xy(row['ellipse_center_xy_px'])} px",
            f"ellipse major axis {segment('major_axis')}",
            f"ellipse minor axis {segment('minor_axis')}",
            f"RECIST long diameter {segment('longest_diameter')}",
            f"RECIST short (perpendicular) diameter {segment('perpendicular_diameter')}",
        ]
    named = f"{row['metric_description']} ({row['metric_name']})" if row["metric_description"] else row["metric_name"]
    points = ", ".join(f"{p['name']} {_xy((p['x'], p['y']))}" for p in row["landmarks_xy_px"])
    return [f"{row['metric_type']} {named}: {row['value']:.2f} {row['unit']}", f"landmarks (px): {points}"]


def _spacing(row: dict) -> str:
    spacing = row.get("pixel_spacing_mm_row_col")
    if not spacing:
        return "spacing not resampled (native grid)"
    along_y, along_x = spacing
    return f"spacing {along_x:.3f} mm along x, {along_y:.3f} mm along y"


def _wrapped(label: str, text: str) -> list[str]:
    """`label: text`, each line of `text` wrapped at TEXT_WIDTH and indented under the first."""
    lines = []
    for paragraph in str(text).splitlines() or [""]:
        lines += textwrap.wrap(paragraph, TEXT_WIDTH, break_on_hyphens=False) or [""]
    head = f"{INDENT}{label}: "
    return [head + lines[0], *(" " * len(head) + line for line in lines[1:])]


def printable(text: str) -> str:
    """`text` as it may reach a terminal: each control or format character as its Python escape."""
    return "".join(ascii(char)[1:-1] if unicodedata.category(char) in _INVISIBLE else char for char in text)


def pair_lines(index: int, count: int, row: dict) -> list[str]:
    """A pair as terminal lines: ids, image, prompt, answer, geometry; text from the inputs `printable`."""
    return [printable(line) for line in _pair_text(index, count, row)]


def _pair_text(index: int, count: int, row: dict) -> list[str]:
    return [
        f"[{index}/{count}] {row['sample_id']}  {row['task']}  {row['dataset']}/{row['split']}",
        f"{INDENT}case {row['case_id']}, {row['sequence']} {row['plane']} slice {row['slice_index']}; "
        f"image {row['image_width_px']} x {row['image_height_px']} px, {_spacing(row)}",
        *_wrapped("prompt", row["prompt"]),
        *_wrapped("answer", row["answer"]),
        *(f"{INDENT}{line}" for line in geometry_lines(row["task"], row)),
    ]


def write_overlay(folder: str, row: dict) -> str:
    """The pair's QC overlay (the card's drawing) as `folder/<sample_id>.png`; returns its location, or
    a note when the row carries no pixels (`--publish` pointer rows)."""
    if row["image_mode"] != "pixels" or not (row.get("image") or {}).get("bytes"):
        return "none (a pointer row: no pixels in this build)"
    from consumers import figures  # matplotlib: only when overlays are asked for

    uri = storage.join(folder, f"{row['sample_id']}.png")
    storage.write_bytes(uri, figures.overlay_png(row["image"]["bytes"], row["task"], row))
    return uri


def figure_line(output: str, relative: str) -> str:
    """One card figure (path relative to `card/`) as `what it shows: location`."""
    parts = relative.split("/")
    if parts == ["pairs_per_dataset.png"]:
        what = "pairs per dataset, stacked by task"
    elif len(parts) == 2 and parts[1] == "distributions.png":
        what = f"{parts[0]}: measurement histograms (mm, deg)"
    elif len(parts) == 3:
        what = f"{parts[0]}/{parts[1]}: QC overlay of pair {parts[2].removesuffix('.png')}"
    else:
        what = "card figure"
    return printable(f"{what}: {storage.join(output, 'card', relative)}")


def figure_lines(output: str) -> list[str]:
    """Every PNG under the build's `card/`, one line each; UsageError when there is none."""
    from consumers.card import FIGURE_FOLDER

    pngs = [path for path in storage.list_tree(storage.join(output, FIGURE_FOLDER)) if path.endswith(".png")]
    if not pngs:
        raise UsageError(
            f"{output} has no card figures under {FIGURE_FOLDER}/; write them with `medvision-pipeline report OUTPUT`"
        )
    # The overview first, then each dataset's distributions, then the overlays by dataset and task.
    return [figure_line(output, path) for path in sorted(pngs, key=lambda p: (p.count("/"), p))]
