"""The readers people open the output with, on one small demo build: Hugging Face `datasets`,
DuckDB, Polars and pyarrow.dataset.

Tasks have different columns, so every reader is asked for one task at a time (the way a
dataset card declares one config per task); reading across tasks is shown separately. Counts
are checked against the run's stats.json, values against what pyarrow reads from each file.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections import Counter

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.cli import main
from schemas.tables import COMMON_FIELDS, PARTITION_KEYS, TASKS, schema_for

# Two MSD-like cases (test and train split), the truncated case (quarantine) and both
# cephalograms (angle/distance pairs in train and test): every task has two splits.
READER_DEMO = "Task02_DemoMR/demo_mr_00,Task01_DemoCT/demo_ct_02,Task01_DemoCT/demo_ct_04,Ceph/001,Ceph/151"
EXPECTED_PARTITIONS = {("demo", task, split) for task in TASKS for split in ("train", "test")}

# Polars dtypes of the columns a model trainer reads first, per task.
POLARS_DTYPES = {
    "detection": {"box_xyxy_px": pl.List(pl.Float64), "area_px": pl.Int64, "single_instance": pl.Boolean},
    "tumor_lesion_size": {"major_axis_mm": pl.Float64, "major_axis_endpoints_xy_px": pl.List(pl.List(pl.Float64))},
    "angle_distance": {
        "value": pl.Float64,
        "landmarks_xy_px": pl.List(pl.Struct({"name": pl.String, "x": pl.Float64, "y": pl.Float64})),
    },
}
POLARS_COMMON_DTYPES = {
    "pixel_spacing_mm": pl.Float64,
    "pixel_spacing_mm_row_col": pl.List(pl.Float64),
    "slice_index": pl.Int32,
    "image": pl.Struct({"bytes": pl.Binary, "path": pl.String}),
    "dataset": pl.String,
    "task": pl.String,
    "split": pl.String,
}


@pytest.fixture(scope="module")
def build(tmp_path_factory, demo_root) -> str:
    output = str(tmp_path_factory.mktemp("readers") / "out")
    assert main(["build", f"--source=demo={demo_root}", "--output", output, "--cases", READER_DEMO]) == 0
    return output


@pytest.fixture(scope="module")
def stats(build) -> dict:
    with open(os.path.join(build, "stats.json")) as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def written(stats) -> dict[tuple[str, str, str], int]:
    """Rows per (dataset, task, split) as the run reports them."""
    counts = {(r["dataset"], r["task"], r["split"]): r["rows"] for r in stats["rows"]}
    assert set(counts) == EXPECTED_PARTITIONS  # otherwise the per-task checks below could pass on nothing
    return counts


@pytest.fixture(scope="module")
def hf_datasets(tmp_path_factory):
    """`datasets`, imported with its caches in a temporary folder and the Hub switched off."""
    home = tmp_path_factory.mktemp("hf")
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "HF_HOME": home,
            "HF_DATASETS_CACHE": home / "datasets",
            "HF_DATASETS_OFFLINE": "1",
            "HF_HUB_OFFLINE": "1",
        }.items():
            env.setenv(name, str(value))
        import datasets

        yield datasets, str(home / "datasets")


def task_glob(root: str, task: str, split: str = "*", dataset: str = "*") -> str:
    return f"{root}/dataset={dataset}/task={task}/split={split}/*.parquet"


def files_as_written(pattern: str) -> pa.Table:
    """The rows of the matching files, each file read on its own (no partition discovery)."""
    return pa.concat_tables([pq.ParquetFile(path).read() for path in sorted(glob.glob(pattern))])


def of_task(written: dict, task: str) -> dict:
    return {key: rows for key, rows in written.items() if key[1] == task}


def test_files_do_not_repeat_the_partition_keys(build):
    pair_files = glob.glob(task_glob(build, "*"))
    assert len(pair_files) == len(EXPECTED_PARTITIONS)
    for path in pair_files:
        assert not set(pq.read_schema(path).names) & set(PARTITION_KEYS), path


def test_datasets_features_keep_every_column_type_and_decode_the_image(hf_datasets):
    """`datasets` honours a declared feature only where its Arrow type equals the file's field,
    nullability and child order included; otherwise `image` silently loads as a plain struct."""
    datasets, _ = hf_datasets
    for task in TASKS:
        schema = schema_for(task)
        features = datasets.Features.from_arrow_schema(schema)
        assert features["image"] == datasets.Image()
        assert list(features) == schema.names
        assert [field.type for field in features.arrow_schema] == [field.type for field in schema]


@pytest.mark.parametrize("task", TASKS)
def test_hugging_face_datasets_loads_a_task_with_pil_images(build, written, hf_datasets, task):
    """One config per dataset and task, data_files by split, as the dataset card declares them."""
    datasets, cache_dir = hf_datasets
    splits = sorted({split for _, _, split in of_task(written, task)})
    data_files = {split: task_glob(build, task, split, dataset="demo") for split in splits}
    loaded = datasets.load_dataset("parquet", data_files=data_files, cache_dir=cache_dir)
    assert sorted(loaded) == splits
    for split in splits:
        pairs, on_disk = loaded[split], files_as_written(data_files[split])
        assert pairs.num_rows == written[("demo", task, split)]
        assert pairs.column_names == schema_for(task).names  # no partition column, none twice
        assert pairs.features["image"] == datasets.Image()
        as_arrow = pairs.with_format("arrow")[:]
        for name in on_disk.column_names:
            assert as_arrow.column(name).equals(on_disk.column(name)), name  # same type, same values
        expected_rows = on_disk.drop_columns(["image"]).to_pylist()
        for index in (0, pairs.num_rows // 2, pairs.num_rows - 1):
            row = pairs[index]
            image = row.pop("image")
            assert isinstance(image, Image.Image) and image.mode == "L"
            assert image.size == (row["image_width_px"], row["image_height_px"])
            assert row == expected_rows[index]
            assert isinstance(row["pixel_spacing_mm"], float) and isinstance(row["slice_index"], int)


@pytest.mark.parametrize("task", TASKS)
def test_duckdb_reads_a_task_with_hive_partitioning(build, written, task):
    source = f"read_parquet('{task_glob(build, task)}', hive_partitioning = true)"
    columns = duckdb.sql(f"SELECT * FROM {source}").columns
    assert Counter(columns) == Counter(schema_for(task).names + list(PARTITION_KEYS))
    counts = duckdb.sql(f"SELECT dataset, task, split, count(*) FROM {source} GROUP BY ALL").fetchall()
    assert {(d, t, s): n for d, t, s, n in counts} == of_task(written, task)
    structs = duckdb.sql(
        f"SELECT sample_id, provenance.source_uri, provenance.source_sha256, octet_length(image.bytes) FROM {source}"
    ).fetchall()
    on_disk = files_as_written(task_glob(build, task)).to_pylist()
    assert {r[0]: r[3] for r in structs} == {r["sample_id"]: len(r["image"]["bytes"]) for r in on_disk}
    for uri, sha256 in {(r[1], r[2]) for r in structs}:
        with open(uri, "rb") as handle:
            assert hashlib.sha256(handle.read()).hexdigest() == sha256


@pytest.mark.parametrize("task", TASKS)
def test_polars_scans_a_task_with_hive_partitioning(build, written, task):
    pairs = pl.scan_parquet(task_glob(build, task), hive_partitioning=True)
    schema = pairs.collect_schema()
    assert schema.names() == schema_for(task).names + list(PARTITION_KEYS)
    for name, dtype in {**POLARS_COMMON_DTYPES, **POLARS_DTYPES[task]}.items():
        assert schema[name] == dtype, name
    counts = pairs.group_by(*PARTITION_KEYS).len().collect().rows()
    assert {(d, t, s): n for d, t, s, n in counts} == of_task(written, task)
    list_column = next(iter(POLARS_DTYPES[task]))
    read = pairs.select("sample_id", list_column).collect().sort("sample_id")
    on_disk = files_as_written(task_glob(build, task)).select(["sample_id", list_column]).sort_by("sample_id")
    assert read.rows() == [tuple(row.values()) for row in on_disk.to_pylist()]


@pytest.mark.parametrize("task", TASKS)
def test_pyarrow_dataset_reads_a_task_with_hive_partitioning(build, written, task):
    pairs = ds.dataset(
        sorted(glob.glob(task_glob(build, task))), format="parquet", partitioning="hive", partition_base_dir=build
    )
    assert pairs.schema.names == schema_for(task).names + list(PARTITION_KEYS)
    counts = pairs.to_table(columns=list(PARTITION_KEYS)).group_by(list(PARTITION_KEYS)).aggregate([([], "count_all")])
    assert {(r["dataset"], r["task"], r["split"]): r["count_all"] for r in counts.to_pylist()} == of_task(written, task)


def test_pyarrow_dataset_reads_the_quarantine_table(build, stats):
    quarantine = ds.dataset(os.path.join(build, "quarantine"), format="parquet", partitioning="hive")
    assert quarantine.schema.names == schema_for("quarantine").names  # the folder adds no column
    rows = quarantine.to_table().to_pylist()
    assert ("demo", "Task01_DemoCT/demo_ct_04", "load", "truncated_gzip") in {
        (r["dataset"], r["case_id"], r["stage"], r["reason"]) for r in rows
    }
    per_reason = Counter((r["dataset"], r["stage"], r["reason"]) for r in rows)
    assert per_reason == {(q["dataset"], q["stage"], q["reason"]): q["rows"] for q in stats["quarantine"]}
    assert len(rows) == stats["total_quarantined"]


def test_readers_combine_tasks_on_their_common_columns(build, written):
    per_task = duckdb.sql(
        f"SELECT task, count(*), count(label), count(metric_name) FROM read_parquet("
        f"'{task_glob(build, '*')}', hive_partitioning = true, union_by_name = true) "
        f"GROUP BY task"
    ).fetchall()
    rows_of = {task: sum(of_task(written, task).values()) for task in TASKS}
    assert {task: (n, labels, metrics) for task, n, labels, metrics in per_task} == {
        "detection": (rows_of["detection"], rows_of["detection"], 0),
        "tumor_lesion_size": (rows_of["tumor_lesion_size"], rows_of["tumor_lesion_size"], 0),
        "angle_distance": (rows_of["angle_distance"], 0, rows_of["angle_distance"]),
    }
    common = [field.name for field in COMMON_FIELDS] + list(PARTITION_KEYS)
    combined = (
        pl.concat([pl.scan_parquet(task_glob(build, task), hive_partitioning=True).select(common) for task in TASKS])
        .group_by("task")
        .len()
        .collect()
        .rows()
    )
    assert dict(combined) == rows_of
    every_pair = ds.dataset(
        sorted(glob.glob(task_glob(build, "*"))), format="parquet", partitioning="hive", partition_base_dir=build
    )
    tasks = every_pair.to_table(columns=common).column("task").to_pylist()
    assert Counter(tasks) == rows_of
