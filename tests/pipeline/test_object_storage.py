"""Builds that read from and write to object storage, against real local servers (GCS emulator, moto S3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq

from pipeline import storage
from tests.conftest import make_msd_task, s3_client, upload_tree

TWO_WORKERS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def build(argv: list[str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pipeline.cli", "build", *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=dict(os.environ))


def check_output(output: str) -> dict:
    """The remote output is complete: _SUCCESS, stats that match the quarantine, readable files."""
    assert storage.exists(f"{output}/_SUCCESS")
    stats = json.loads(storage.read_bytes(f"{output}/stats.json"))
    parts = storage.glob(f"{output}/dataset=msd/task=detection/split=*/*.parquet")
    with storage.open_read(parts[0]) as handle:
        assert pq.read_table(handle).num_rows > 0
    quarantine = storage.glob(f"{output}/quarantine/*.parquet")
    with storage.open_read(quarantine[0]) as handle:
        rows = pq.read_table(handle).to_pylist()
    assert [(q["case_id"], q["reason"]) for q in rows] == [("Task01_BrainTumour/BRATS_003", "unknown_label")]
    return stats


def parquet_bytes(output: str) -> dict[str, bytes]:
    """Every Parquet file of a run by its path relative to the run."""
    return {uri[len(output) :]: storage.read_bytes(uri) for uri in storage.glob(f"{output}/**/*.parquet")}


def test_gcs_to_gcs_with_two_worker_processes(tmp_path, gcs_emulator):
    task = make_msd_task(tmp_path / "msd", broken="unknown_label")
    storage.gcs_filesystem().mkdir("medvision-test")
    upload_tree(task, "gs://medvision-test/raw/Task01_BrainTumour")
    result = build(
        [
            "--source",
            "msd=gs://medvision-test/raw/Task01_BrainTumour",
            "--output",
            "gs://medvision-test/out/run1",
            "--gcs-anonymous",
            *TWO_WORKERS,
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    stats = check_output("gs://medvision-test/out/run1")
    assert stats["cases"]["msd"] == {"listed": 3, "with_pairs": 2}
    assert storage.glob("gs://medvision-test/out/run1/_work/**") == []  # spilled PNGs and counts removed
    again = build(
        [
            "--source",
            "msd=gs://medvision-test/raw/Task01_BrainTumour",
            "--output",
            "gs://medvision-test/out/run1",
            "--gcs-anonymous",
        ]
    )
    assert again.returncode == 2 and "not empty" in again.stderr  # never over an earlier run
    one_process = build(
        [
            "--source",
            "msd=gs://medvision-test/raw/Task01_BrainTumour",
            "--output",
            "gs://medvision-test/out/run2",
            "--gcs-anonymous",
        ]
    )
    assert one_process.returncode == 0, one_process.stderr[-3000:]
    two_workers_files = parquet_bytes("gs://medvision-test/out/run1")
    assert len(two_workers_files) >= 2 and two_workers_files == parquet_bytes("gs://medvision-test/out/run2")


def test_s3_to_s3_with_two_worker_processes(tmp_path, s3_server):
    s3_client(s3_server).create_bucket(Bucket="medvision-test")
    task = make_msd_task(tmp_path / "msd", broken="unknown_label")
    upload_tree(task, "s3://medvision-test/raw/Task01_BrainTumour")
    result = build(
        [
            "--source",
            "msd=s3://medvision-test/raw/Task01_BrainTumour",
            "--output",
            "s3://medvision-test/out/run1",
            *s3_server,
            *TWO_WORKERS,
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    stats = check_output("s3://medvision-test/out/run1")
    assert stats["total_rows"] > 0
    assert not [
        path
        for path in s3_client(s3_server)
        .list_objects_v2(Bucket="medvision-test", Prefix="out/run1/")
        .get("Contents", [])
        if "/_work/" in path["Key"]
    ]  # spilled PNGs and counts removed


def test_a_write_that_fails_half_way_publishes_nothing(gcs_emulator):
    import pyarrow as pa

    storage.gcs_filesystem().mkdir("medvision-partial")
    uri = "gs://medvision-partial/out/part-00000-of-00001.parquet"
    schema = pa.schema([("sample_id", pa.string())])
    try:
        with storage.atomic_create(uri, "gs://medvision-partial/out/_work/tmp") as handle:
            with pq.ParquetWriter(handle, schema) as writer:
                writer.write_batch(pa.RecordBatch.from_pylist([{"sample_id": "a"}], schema=schema))
                raise RuntimeError("the worker dies here")
    except RuntimeError:
        pass
    storage.gcs_filesystem().invalidate_cache()
    assert not storage.exists(uri)
