"""The dataset card of a build: `README.md` at the output root, its figures under `card/`.

Reads the written pairs in two passes per dataset and task: first the few columns the card
needs (sample ids, image mode, provenance, measurements) in batches, keeping only the
overlay choice and the measurement arrays; then the image bytes of the chosen overlay rows
only. Text comes from `consumers/card.py`, drawings from `consumers/figures.py`.
"""

from __future__ import annotations

import collections
import dataclasses
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from consumers import card, figures
from pipeline import storage
from pipeline.config import UsageError
from pipeline.sources import SOURCES

SCAN_BATCH_ROWS = 65_536
OVERLAY_BATCH_ROWS = 64
MEASURE_COLUMNS = {
    "detection": ["box_size_mm"],
    "tumor_lesion_size": ["major_axis_mm", "minor_axis_mm", "longest_diameter_mm", "perpendicular_diameter_mm"],
    "angle_distance": ["metric_type", "value"],
}
SLICE_COLUMNS = [
    "sample_id",
    "case_id",
    "sequence",
    "plane",
    "slice_index",
    "image",
    "image_width_px",
    "image_height_px",
]
OVERLAY_COLUMNS = {
    "detection": ["label_name", "box_xyxy_px", "box_size_mm", "component_index", "n_components"],
    "tumor_lesion_size": [
        "label_name",
        "major_axis_mm",
        "minor_axis_mm",
        "longest_diameter_mm",
        "perpendicular_diameter_mm",
        "ellipse_center_xy_px",
        "major_axis_endpoints_xy_px",
        "minor_axis_endpoints_xy_px",
        "longest_diameter_endpoints_xy_px",
        "perpendicular_diameter_endpoints_xy_px",
    ],
    "angle_distance": ["metric_name", "metric_description", "value", "unit", "landmarks_xy_px"],
}


@dataclasses.dataclass
class TaskScan:
    """What the first pass keeps of one dataset/task: licensing facts, measurement arrays, overlay choice.

    `chosen` holds (sample_id, file index, row index in file) of the overlay rows, smallest ids first.
    """

    licences: set = dataclasses.field(default_factory=set)
    redistributable: set = dataclasses.field(default_factory=set)
    pointer_rows: int = 0
    measures: dict = dataclasses.field(default_factory=lambda: collections.defaultdict(list))
    chosen: list = dataclasses.field(default_factory=list)


def task_files(output: str, dataset: str, task: str) -> list[str]:
    return storage.glob(storage.join(output, f"dataset={dataset}/task={task}/split=*/*.parquet"))


def _keep_measures(scan: TaskScan, task: str, batch: pa.RecordBatch) -> None:
    """Append this batch's measurements (mm, deg) under their panel names, nulls dropped."""
    if task == "detection":
        sizes = batch.column("box_size_mm")
        scan.measures["box width"].append(pc.list_element(sizes, 0).drop_null().to_numpy())
        scan.measures["box height"].append(pc.list_element(sizes, 1).drop_null().to_numpy())
    elif task == "tumor_lesion_size":
        for column in MEASURE_COLUMNS[task]:
            scan.measures[column.removesuffix("_mm").replace("_", " ")].append(
                batch.column(column).drop_null().to_numpy()
            )
    else:
        for kind in ("angle", "distance"):
            values = batch.column("value").filter(pc.equal(batch.column("metric_type"), kind))
            scan.measures[kind].append(values.drop_null().to_numpy())


def _scan_batch(scan: TaskScan, task: str, batch: pa.RecordBatch, file_index: int, first_row: int) -> None:
    provenance = batch.column("provenance")
    scan.licences.update(pc.unique(provenance.field("licence")).drop_null().to_pylist())
    scan.redistributable.update(pc.unique(provenance.field("redistributable")).drop_null().to_pylist())
    with_pixels = pc.equal(batch.column("image_mode"), "pixels").to_pylist()
    scan.pointer_rows += with_pixels.count(False)
    candidates = [
        (sample_id, file_index, first_row + row)
        for row, (sample_id, usable) in enumerate(zip(batch.column("sample_id").to_pylist(), with_pixels))
        if usable
    ]
    scan.chosen = card.keep_smallest(scan.chosen, candidates, card.OVERLAYS_PER_TASK)
    _keep_measures(scan, task, batch)


def scan_task(files: list[str], task: str) -> TaskScan:
    """First pass over one dataset/task's files: no image bytes are read."""
    scan = TaskScan()
    columns = ["sample_id", "image_mode", "provenance", *MEASURE_COLUMNS[task]]
    for file_index, uri in enumerate(files):
        with storage.open_read(uri) as handle:
            first_row = 0
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=SCAN_BATCH_ROWS, columns=columns):
                _scan_batch(scan, task, batch, file_index, first_row)
                first_row += batch.num_rows
    return scan


def read_rows(uri: str, row_indices: set[int], columns: list[str]) -> dict[int, dict]:
    """The rows at `row_indices` of one file, reading batches only up to the last of them (a file's rows
    come in order of their bundle's first sample_id, so the smallest ids sit near the start)."""
    found, first_row, last = {}, 0, max(row_indices)
    with storage.open_read(uri) as handle:
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=OVERLAY_BATCH_ROWS, columns=columns):
            for offset, row in enumerate(batch.to_pylist()):
                if first_row + offset in row_indices:
                    found[first_row + offset] = row
            first_row += batch.num_rows
            if first_row > last:
                break
    return found


def overlay_rows(files: list[str], chosen: list[tuple], task: str) -> list[dict]:
    """The chosen rows with their image bytes and the task's drawing columns, in `chosen` order."""
    wanted = collections.defaultdict(set)
    for _, file_index, row in chosen:
        wanted[file_index].add(row)
    columns = SLICE_COLUMNS + OVERLAY_COLUMNS[task]
    rows = {(f, r): row for f, indices in wanted.items() for r, row in read_rows(files[f], indices, columns).items()}
    return [rows[file_index, row] for _, file_index, row in chosen]


def _write_overlays(output: str, dataset: str, task: str, files: list[str], scan: TaskScan) -> list[card.Figure]:
    drawn = []
    for row in overlay_rows(files, scan.chosen, task):
        path = f"{card.FIGURE_FOLDER}/{dataset}/{task}/{row['sample_id']}.png"
        storage.write_bytes(storage.join(output, path), figures.overlay_png(row["image"]["bytes"], task, row))
        drawn.append(card.Figure(path, card.overlay_caption(task, row)))
    return drawn


PANELS = {  # panel title -> the measures it shows
    "box size (mm)": ("box width", "box height"),
    "lesion size (mm)": ("major axis", "minor axis", "longest diameter", "perpendicular diameter"),
    "angle (deg)": ("angle",),
    "distance (mm)": ("distance",),
}


def _write_distributions(output: str, dataset: str, measures: dict) -> card.Figure | None:
    """The dataset's histogram figure; None when it has no measurement at all."""
    arrays = {name: np.concatenate(parts) for name, parts in measures.items()}
    panels = {
        title: {name: arrays[name] for name in names if len(arrays.get(name, ()))} for title, names in PANELS.items()
    }
    panels = {title: series for title, series in panels.items() if series}
    if not panels:
        return None
    path = f"{card.FIGURE_FOLDER}/{dataset}/distributions.png"
    storage.write_bytes(storage.join(output, path), figures.distributions_png(dataset, panels))
    return card.Figure(path, f"{dataset}: {', '.join(panels)} per pair")


def describe_dataset(output: str, dataset: str, tasks: list[str]):
    """(DatasetFacts, distributions figure or None, overlays per task) of one dataset; writes its figures."""
    scans, overlays, measures = {}, {}, {}
    for task in tasks:
        files = task_files(output, dataset, task)
        scans[task] = scan_task(files, task)
        measures.update(scans[task].measures)
        overlays[dataset, task] = _write_overlays(output, dataset, task, files, scans[task])
    source = SOURCES.get(dataset)
    facts = card.DatasetFacts(
        dataset=dataset,
        licences=tuple(sorted(set().union(*(s.licences for s in scans.values())))),
        redistributable=tuple(sorted(set().union(*(s.redistributable for s in scans.values())))),
        pointer_rows=sum(s.pointer_rows for s in scans.values()),
        citation=source.info.citation if source else "",
    )
    return facts, _write_distributions(output, dataset, measures), overlays


def write_card(output: str, stats: dict) -> str:
    """Write the card and its figures for a build at `output` whose stats are `stats`; returns the card text.

    Figures are overwritten in place, so a card can be regenerated; I/O errors propagate.
    """
    tasks_of = collections.defaultdict(set)
    for row in stats["rows"]:
        tasks_of[row["dataset"]].add(row["task"])
    facts, distributions, overlays = [], {}, {}
    for dataset in sorted(tasks_of):
        fact, figure, drawn = describe_dataset(output, dataset, sorted(tasks_of[dataset]))
        facts.append(fact)
        overlays.update(drawn)
        if figure:
            distributions[dataset] = figure
    pairs_path = f"{card.FIGURE_FOLDER}/pairs_per_dataset.png"
    storage.write_bytes(storage.join(output, pairs_path), figures.pairs_per_dataset_png(stats["rows"]))
    pairs = card.Figure(pairs_path, "pairs per dataset, stacked by task")
    text = card.render_card(stats, facts, card.CardFigures(pairs, distributions, overlays))
    storage.write_bytes(storage.join(output, card.CARD_FILE), text.encode())
    return text


def regenerate_card(output: str) -> str:
    """`medvision-pipeline report DIR`: the card of a finished build, rewritten from its files and stats.json.

    Raises UsageError when `output` holds no finished build (`_SUCCESS` and `stats.json`).
    """
    missing = [name for name in ("_SUCCESS", "stats.json") if not storage.exists(storage.join(output, name))]
    if missing:
        raise UsageError(f"{output} is not a finished build (no {' or '.join(missing)}); run `build` first")
    stats = json.loads(storage.read_bytes(storage.join(output, "stats.json")))
    return write_card(output, stats)
