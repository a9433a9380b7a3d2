"""Parquet output: hive partitions, deterministic shards, files that appear only when complete.

Rows arrive in `RowBundle`s (a slice's pairs of one task share one PNG) and stay bundled through the
shuffle, so each PNG crosses it once. A partition gets about one file per `target_file_mb` of rows.
For the pairs, that size is the plans' estimate (`transforms.pair_estimate`), known before any row
exists, so the rows cross one shuffle; elsewhere (the small quarantine table) it is the rows' own
size, which makes the runner materialise them once more before the shuffle. A bundle goes to shard
`hash(its first sample_id) mod n_files`, and each shard is ordered by sample_id (`file_order`), so the
same input gives byte-identical files on any runner. The rows and bytes of each partition are also counted from
the rows themselves: the exact numbers the reconciliation checks the written footers against.
"""

from __future__ import annotations

import hashlib
import math
import time

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

from pipeline import spill, storage
from pipeline.casework import CasePlan
from pipeline.progress import ProgressMarks
from schemas.rows import RowBundle
from schemas.spilled import png_length
from schemas.tables import PARTITION_KEYS, TASKS, column_paths, schema_for
from schemas.validate import file_row

ROW_OVERHEAD_BYTES = 1024  # non-image columns of a pair, roughly
QUARANTINE_PARTITION = "quarantine"
ROW_GROUP_BYTES = 64 << 20
PARQUET_OPTIONS = {"compression": "zstd", "use_dictionary": True, "write_statistics": True}
# PNG bytes are deflated already: zstd spends time on them and saves next to nothing. (The dictionary stays:
# it stores a slice's PNG once for all the pairs of that slice in a row group.)
STORED_AS_IS = "image.bytes"


def parquet_options(schema: pa.Schema) -> dict:
    """PARQUET_OPTIONS with zstd on every column except the PNG bytes."""
    return {
        **PARQUET_OPTIONS,
        "compression": {
            path: "none" if path == STORED_AS_IS else PARQUET_OPTIONS["compression"] for path in column_paths(schema)
        },
    }


def partition_of(row: dict) -> str:
    """`dataset=…/task=…/split=…` for a pair row."""
    return "/".join(f"{key}={row[key]}" for key in PARTITION_KEYS)


def planned_partition_bytes(plan: CasePlan, tasks=TASKS) -> list[tuple[str, int]]:
    """(partition, estimated bytes) of the pairs of `tasks` a case plan will make, as `row_bytes` counts them."""
    return [
        (
            partition_of({"dataset": plan.case.dataset, "task": estimate.task, "split": plan.split}),
            estimate.png_bytes + estimate.pairs * ROW_OVERHEAD_BYTES,
        )
        for estimate in plan.pair_estimate
        if estimate.task in tasks
    ]


def row_bytes(row: dict) -> int:
    return png_length((row.get("image") or {}).get("bytes")) + ROW_OVERHEAD_BYTES


def bundle_bytes(bundle: RowBundle) -> int:
    """`row_bytes` summed over the bundle's rows, which all carry its image."""
    return len(bundle) * row_bytes({"image": bundle.image})


def shard_of(sample_id: str, n_shards: int) -> int:
    return int(hashlib.sha256(sample_id.encode()).hexdigest()[:8], 16) % n_shards


def shard_count(total_bytes: int, target_file_mb: float) -> int:
    return max(1, math.ceil(total_bytes / (target_file_mb * 2**20)))


def write_parquet(uri: str, table: str, bundles: list[list[dict]], temp_dir: str) -> int:
    """Write rows, bundle after bundle (ordered by the caller, see `file_order`), to one Parquet file that
    appears only when complete; a row group never splits a bundle. Returns the rows written."""
    schema = schema_for(table)
    with storage.atomic_create(uri, temp_dir) as handle:
        with pq.ParquetWriter(handle, schema, **parquet_options(schema)) as writer:
            for group in _row_groups(bundles):
                writer.write_batch(record_batch(spill.with_pngs_read(group), schema))
    return sum(map(len, bundles))


def record_batch(rows: list[dict], schema: pa.Schema) -> pa.RecordBatch:
    """The rows (`file_row` of each) as one Arrow batch of `schema`, with the PNG bytes copied by
    `binary_array`: Arrow's row conversion of the PNGs was slow and erratic, slowest when its buffers grow
    into fresh memory, as for a worker's first file."""
    if "image" not in schema.names or not all(isinstance(row.get("image"), dict) for row in rows):
        return pa.RecordBatch.from_pylist([file_row(row, schema) for row in rows], schema=schema)
    index, field = schema.get_field_index("image"), schema.field("image")
    others = schema.remove(index)
    batch = pa.RecordBatch.from_pylist([file_row(row, others) for row in rows], schema=others)
    images = [row["image"] for row in rows]
    image = pa.StructArray.from_arrays(
        [binary_array([i.get("bytes") for i in images]), pa.array([i.get("path") for i in images], pa.string())],
        fields=list(field.type),
    )
    return batch.add_column(index, field, image).replace_schema_metadata(schema.metadata)


def binary_array(values: list) -> pa.Array:
    """`pa.array(values, pa.binary())` for bytes and None, with the bytes copied in one join (steady, unlike
    Arrow's row conversion)."""
    present = [value for value in values if value is not None]
    offsets = np.zeros(len(values) + 1, np.int64)
    np.cumsum([0 if value is None else len(value) for value in values], out=offsets[1:])
    if offsets[-1] >= 2**31:  # beyond binary's 32-bit offsets: let Arrow say so
        return pa.array(values, pa.binary())
    n_nulls = len(values) - len(present)
    validity = (
        pa.py_buffer(np.packbits([value is not None for value in values], bitorder="little")) if n_nulls else None
    )
    return pa.Array.from_buffers(
        pa.binary(),
        len(values),
        [validity, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(b"".join(present))],
        null_count=n_nulls,
    )


def _row_groups(bundles: list[list[dict]]):
    """The rows in groups of about `ROW_GROUP_BYTES` in memory, whole bundles only: a bundle's rows share
    one PNG, which the column's dictionary then stores once. (In memory each row holds its own copy of
    the PNG, in the Arrow batch, so that is what bounds a group.)"""
    group: list[dict] = []
    size = 0
    for rows in bundles:
        group += rows
        size += sum(map(row_bytes, rows))
        if size >= ROW_GROUP_BYTES:
            yield group
            group, size = [], 0
    if group:
        yield group


def _with_shard_key(partition_and_bundle: tuple, shards_per_partition: dict) -> tuple:
    partition, bundle = partition_and_bundle
    n_shards = shards_per_partition.get(partition, 1)  # unplanned: a subject moved to a shared split
    first = min(row.get("sample_id") or repr(_sort_key(row)) for row in bundle.rows)
    return (partition, shard_of(first, n_shards), n_shards), bundle


def _sort_key(row: dict) -> tuple:
    """Pairs sort by sample_id; quarantine rows (some without one) by what they concern."""
    return tuple(str(row.get(key) or "") for key in ("sample_id", "dataset", "case_id", "stage", "message"))


def file_order(bundles) -> list[list[dict]]:
    """The rows of a file's bundles, bundle by bundle: each bundle's rows sorted by `_sort_key`, bundles by
    their first row. Deterministic whatever order the runner delivers them in, and a slice's pairs stay
    together, so its PNG is stored once (pairs sorted by sample_id alone scatter a slice's pairs over the
    file's row groups, storing its PNG in each)."""
    each_sorted = (sorted(bundle.full_rows(), key=_sort_key) for bundle in bundles if len(bundle))
    return sorted(each_sorted, key=lambda rows: _sort_key(rows[0]))


class _WriteShardFn(beam.DoFn):
    def __init__(self, output: str, table_of, settings: storage.StorageSettings, progress: ProgressMarks):
        self._output, self._table_of, self._settings, self._progress = output, table_of, settings, progress
        self._temp_dir = storage.join(output, "_work", "tmp")
        self._rows_per_file = Metrics.distribution("medvision", "rows_per_file")
        self._write_ms = Metrics.distribution("medvision", "write_ms_per_file")

    def setup(self):
        storage.configure(self._settings)

    def process(self, element):
        (partition, shard, n_shards), bundles = element
        ordered = file_order(bundles)
        uri = storage.join(self._output, partition, f"part-{shard:05d}-of-{n_shards:05d}.parquet")
        started = time.monotonic()
        written = write_parquet(uri, self._table_of(ordered[0][0]), ordered, self._temp_dir)
        self._write_ms.update(int(1000 * (time.monotonic() - started)))
        self._rows_per_file.update(written)
        self._progress.rows_written(uri, written)
        yield {"partition": partition, "uri": uri, "rows": written}


class WriteTable(beam.PTransform):
    """`RowBundle`s -> Parquet files under `output/<partition>/part-SSSSS-of-NNNNN.parquet`.

    `partition_fn(row)` names a row's folder, `table_of(row)` its schema; the rows of a bundle share
    both (a slice's pairs of one task: one dataset, task and split). `planned_bytes`, a
    PCollection of (partition, estimated bytes), sizes the files (default: the rows themselves).
    Returns the per-partition counts {"partition", "rows", "bytes"} for reconciliation.
    """

    def __init__(
        self,
        output: str,
        partition_fn,
        table_of,
        target_file_mb: float,
        settings: storage.StorageSettings = storage.StorageSettings(),
        progress: ProgressMarks = ProgressMarks(),
        planned_bytes=None,
    ):
        super().__init__()
        self._output, self._partition_fn, self._table_of = output, partition_fn, table_of
        self._target_file_mb, self._settings, self._progress = target_file_mb, settings, progress
        self._planned_bytes = planned_bytes

    def expand(self, bundles):
        partition_fn, target_mb = self._partition_fn, self._target_file_mb
        keyed = bundles | "ByPartition" >> beam.Map(lambda bundle: (partition_fn(bundle.rows[0]), bundle))
        totals = (
            keyed
            | "RowsAndBytes"
            >> beam.MapTuple(lambda partition, bundle: (partition, (len(bundle), bundle_bytes(bundle))))
            | "SumPerPartition" >> beam.CombinePerKey(lambda values: tuple(map(sum, zip(*values))) or (0, 0))
        )
        if self._planned_bytes is None:
            sizes = totals | "RowBytes" >> beam.MapTuple(lambda partition, t: (partition, t[1]))
        else:
            sizes = self._planned_bytes | "PlannedPerPartition" >> beam.CombinePerKey(sum)
        shards = sizes | "ShardCount" >> beam.MapTuple(
            lambda partition, size: (partition, shard_count(size, target_mb))
        )
        _ = (
            keyed
            | "AssignShard" >> beam.Map(_with_shard_key, beam.pvalue.AsDict(shards))
            | "GroupShard" >> beam.GroupByKey()
            | "WriteShard" >> beam.ParDo(_WriteShardFn(self._output, self._table_of, self._settings, self._progress))
        )
        return totals | "AsRecords" >> beam.MapTuple(
            lambda partition, t: {"partition": partition, "rows": t[0], "bytes": t[1]}
        )


class WritePairs(beam.PTransform):
    """Pair bundles -> per-partition counts: `WriteTable` into hive partitions, files sized from the case
    plans' estimates of `tasks` (known before any row exists, so the rows cross one shuffle)."""

    def __init__(
        self,
        output: str,
        plans,
        tasks: tuple[str, ...],
        target_file_mb: float,
        settings: storage.StorageSettings,
        progress: ProgressMarks,
    ):
        super().__init__()
        self._output, self._plans, self._tasks = output, plans, tasks
        self._target_file_mb, self._settings, self._progress = target_file_mb, settings, progress

    def expand(self, pairs):
        planned = self._plans | "PlannedBytes" >> beam.FlatMap(planned_partition_bytes, self._tasks)
        return pairs | WriteTable(
            self._output,
            partition_of,
            lambda row: row["task"],
            self._target_file_mb,
            self._settings,
            self._progress,
            planned_bytes=planned,
        )


class WriteQuarantine(beam.PTransform):
    """Quarantine rows -> per-partition counts: one table in `<output>/quarantine/`, sized from its rows."""

    def __init__(self, output: str, target_file_mb: float, settings: storage.StorageSettings):
        super().__init__()
        self._output, self._target_file_mb, self._settings = output, target_file_mb, settings

    def expand(self, quarantine):
        return (
            quarantine
            | "OneRowBundles" >> beam.Map(lambda row: RowBundle((row,)))
            | WriteTable(
                self._output,
                lambda row: QUARANTINE_PARTITION,
                lambda row: QUARANTINE_PARTITION,
                self._target_file_mb,
                self._settings,
            )
        )
