"""`medvision-pipeline mix`: a training mixture from one or more finished builds, with bounded memory.

Two passes, so the PNG bytes are read once and only for the pairs chosen:
1. select: each input file's metadata columns (`sample_id`, `subject_id`, `volume_hash`, `image_mode`; no
   image) go, one row group at a time, into a DuckDB database in a scratch folder, which spills to disk
   beyond `DUCKDB_MEMORY_LIMIT`. Subject groups, the validation carve (`consumers/mixture.py`), the caps
   (window ranks over seeded md5 keys) and the seeded shuffle are SQL over that table.
2. fetch: the chosen (file, row) pairs stream back sorted by file; each input row group holding one is read
   once, its chosen rows go to spill files per (split, bucket of shuffled positions, ~`BUCKET_BYTES`), and
   each bucket is then sorted and appended to the split's Parquet shards (~`--shard-mb` each).
Peak memory: a row group of the input, the spill buffer and one bucket, whatever the input size.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import os
import shutil
import struct
import tempfile

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from consumers import mixture
from consumers.card import CARD_FILE
from consumers.mixture import MESSAGES_TYPE, MIX_SPLITS
from pipeline import storage
from pipeline.config import UsageError
from schemas.tables import IMAGE_TYPE, TASKS, column_paths, schema_for

NO_CAP = 1 << 62
SCAN_COLUMNS = ["sample_id", "subject_id", "volume_hash", "image_mode"]
ROW_COLUMNS = [
    "sample_id",
    "case_id",
    "subject_id",
    "sequence",
    "modality",
    "image",
    "plane",
    "slice_index",
    "image_width_px",
    "image_height_px",
    "pixel_spacing_mm",
    "provenance",
    "prompt",
    "answer",
]
ROW_OVERHEAD_BYTES = 1024  # non-image columns of a pair, roughly
BUCKET_BYTES = 64 << 20  # shuffled positions spilled together, then sorted in memory
SPILL_BUFFER_BYTES = 128 << 20  # chosen rows held before they are appended to their buckets' files
DUCKDB_MEMORY_LIMIT = "512MB"
FETCH_ROWS = 65_536
STORED_AS_IS = ("image.bytes", "images.list.element.bytes")  # PNG is deflated already
SUMMARY_FILE = "mix.json"
HF_FEATURES = {
    b"huggingface": json.dumps(
        {"info": {"features": {"image": {"_type": "Image"}, "images": [{"_type": "Image"}]}}}
    ).encode()
}


@dataclasses.dataclass(frozen=True)
class MixCaps:
    """Caps on pairs, each within every split; `total` caps the whole mixture by trimming train."""

    per_dataset: int | None = None
    per_task: int | None = None  # per (dataset, task)
    per_split: dict = dataclasses.field(default_factory=dict)
    total: int | None = None


@dataclasses.dataclass(frozen=True)
class MixRequest:
    pairs: tuple[str, ...]
    output: str
    validation_size: int
    seed: int
    caps: MixCaps = MixCaps()
    shard_mb: float = 500.0
    command: str = ""


@dataclasses.dataclass(frozen=True)
class InputFile:
    uri: str
    dataset: str
    task: str
    split: str
    row_group_rows: tuple[int, ...]
    bytes_per_row: float  # PNG and other columns, from the footer's uncompressed sizes


# --- inputs -------------------------------------------------------------------------------------


@contextlib.contextmanager
def open_parquet(uri: str):
    """A ParquetFile: local files by path; object-store files through their Python handle, read on this
    thread only (see `consumers.evaluate.read_parquet` for why)."""
    if not storage.is_remote(uri):
        with pq.ParquetFile(uri) as parquet:
            yield parquet
        return
    with storage.open_read(uri) as handle, pq.ParquetFile(handle, pre_buffer=False) as parquet:
        yield parquet


def hive_values(root: str, uri: str) -> dict[str, str]:
    parts = uri[len(root.rstrip("/")) + 1 :].split("/")[:-1]
    return dict(part.split("=", 1) for part in parts)


def footer_facts(uri: str) -> tuple[tuple[int, ...], float]:
    """(rows per row group, estimated bytes per row) from a file's footer."""
    with open_parquet(uri) as parquet:
        meta = parquet.metadata
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    image_bytes = sum(
        group.column(c).total_uncompressed_size
        for group in groups
        for c in range(group.num_columns)
        if group.column(c).path_in_schema == "image.bytes"
    )
    rows = tuple(group.num_rows for group in groups)
    return rows, image_bytes / max(1, sum(rows)) + ROW_OVERHEAD_BYTES


def list_inputs(roots: tuple[str, ...]) -> list[InputFile]:
    """Every pair file of the finished builds, in the order given; UsageError for an unfinished build."""
    files = []
    for root in roots:
        if not storage.exists(storage.join(root, "_SUCCESS")):
            raise UsageError(f"{root} is not a finished build (no _SUCCESS); mix finished builds only")
        uris = [
            uri
            for task in TASKS
            for uri in storage.glob(storage.join(root, f"dataset=*/task={task}/split=*/*.parquet"))
        ]
        if not uris:
            raise UsageError(f"no pairs under {root} (expected dataset=*/task=*/split=*/*.parquet)")
        for uri in uris:
            keys = hive_values(root, uri)
            rows, bytes_per_row = footer_facts(uri)
            files.append(InputFile(uri, keys["dataset"], keys["task"], keys["split"], rows, bytes_per_row))
    return files


# --- pass 1: selection ----------------------------------------------------------------------------


def connect(folder: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(os.path.join(folder, "select.duckdb"))
    con.execute(f"SET memory_limit = '{DUCKDB_MEMORY_LIMIT}'")
    con.execute(f"SET temp_directory = '{os.path.join(folder, 'duckdb-tmp')}'")
    con.execute("SET threads = 2")
    con.execute(
        "CREATE TABLE pairs (file INTEGER, row BIGINT, dataset VARCHAR, task VARCHAR, split VARCHAR, "
        "sample_id VARCHAR, subject_id VARCHAR, volume_hash VARCHAR, image_mode VARCHAR)"
    )
    return con


def scan(con: duckdb.DuckDBPyConnection, files: list[InputFile]) -> None:
    """Every file's metadata columns into `pairs`, one row group at a time."""
    for index, file in enumerate(files):
        with open_parquet(file.uri) as parquet:
            missing = set(SCAN_COLUMNS) - set(parquet.schema_arrow.names)
            if missing:
                raise UsageError(f"{file.uri} lacks {sorted(missing)}: rebuild it with this version")
            first = 0
            for group, n_rows in enumerate(file.row_group_rows):
                batch = parquet.read_row_group(group, columns=SCAN_COLUMNS, use_threads=False)
                batch = batch.add_column(0, "row", pa.array(np.arange(first, first + n_rows), pa.int64()))
                con.register("batch", batch)
                con.execute(
                    "INSERT INTO pairs SELECT ?, row, ?, ?, ?, sample_id, subject_id, volume_hash, "
                    "image_mode FROM batch",
                    [index, file.dataset, file.task, file.split],
                )
                con.unregister("batch")
                first += n_rows


def count(con, sql: str) -> int:
    return con.execute(f"SELECT count(*) FROM ({sql})").fetchone()[0]


def group_subjects(con, seed: int) -> dict[str, int]:
    """`cand`: pixel rows, one per sample_id, in their subject group's split with a seeded key; returns
    the rows left out, by reason."""
    con.execute(
        "CREATE TABLE dedup AS SELECT * FROM pairs WHERE image_mode IS DISTINCT FROM 'pointer' "
        "QUALIFY row_number() OVER (PARTITION BY sample_id ORDER BY file, row) = 1"
    )
    volumes = con.execute("SELECT DISTINCT dataset, subject_id, volume_hash FROM dedup").fetchall()
    splits = con.execute("SELECT DISTINCT dataset, subject_id, split FROM dedup").fetchall()
    groups = pa.Table.from_pylist(mixture.subject_groups(volumes, splits, seed))
    con.register("subject_groups", groups)
    con.execute(
        f"CREATE TABLE cand AS SELECT d.file, d.row, d.dataset, d.task, d.sample_id, g.group AS grp, "
        f"g.group_split AS msplit, md5('{seed}/' || d.sample_id) AS key FROM dedup d "
        "JOIN subject_groups g USING (dataset, subject_id) WHERE d.split = g.group_split"
    )
    con.unregister("subject_groups")
    n_pairs, n_dedup = count(con, "SELECT 1 FROM pairs"), count(con, "SELECT 1 FROM dedup")
    pointers = count(con, "SELECT 1 FROM pairs WHERE image_mode = 'pointer'")
    return {
        "pointer rows (no pixels, --publish)": pointers,
        "sample_id already taken from an earlier input": n_pairs - n_dedup - pointers,
        "subject (or a subject sharing its volume) in another split of another input": n_dedup
        - count(con, "SELECT 1 FROM cand"),
    }


def capped_sql(where: str, caps: MixCaps, split_caps: dict[str, int]) -> str:
    """The rows of `cand` matching `where` that the caps keep. Ranks: by seeded key within (split, dataset,
    task); by that rank then key within (split, dataset), taking the tasks in turn; likewise the datasets
    in turn within the split. So a cap keeps a balanced sample of what lies below it. `dataset_caps`
    (msplit, dataset, cap) overrides the per-dataset cap."""
    per_task, per_dataset = caps.per_task or NO_CAP, caps.per_dataset or NO_CAP
    split_cap = " ".join(f"WHEN '{split}' THEN {split_caps.get(split, NO_CAP)}" for split in MIX_SPLITS)
    return f"""
        WITH t AS (SELECT *, row_number() OVER (PARTITION BY msplit, dataset, task ORDER BY key) - 1 AS r_task
                   FROM cand WHERE {where}),
        d AS (SELECT *, row_number() OVER (PARTITION BY msplit, dataset ORDER BY r_task, key) - 1 AS r_dataset
              FROM t WHERE r_task < {per_task}),
        s AS (SELECT d.*, row_number() OVER (PARTITION BY msplit ORDER BY r_dataset, key) - 1 AS r_split
              FROM d LEFT JOIN dataset_caps c USING (msplit, dataset)
              WHERE r_dataset < coalesce(c.cap, {per_dataset}))
        SELECT file, row, dataset, task, msplit, sample_id, grp FROM s
        WHERE r_split < CASE msplit {split_cap} END"""


def set_dataset_caps(con, caps: dict[tuple[str, str], int]) -> None:
    table = pa.table(
        {
            "msplit": [k[0] for k in caps],
            "dataset": [k[1] for k in caps],
            "cap": pa.array(list(caps.values()), pa.int64()),
        }
    )
    con.execute("DROP TABLE IF EXISTS dataset_caps")
    con.register("new_caps", table)
    con.execute("CREATE TABLE dataset_caps AS SELECT * FROM new_caps")
    con.unregister("new_caps")


def carve(con, request: MixRequest) -> dict[str, int]:
    """Move whole train groups to validation, stratified by dataset (quotas in proportion to what the caps
    would keep of each dataset's train pairs); returns the validation quota per dataset."""
    set_dataset_caps(con, {})
    train_caps = {"train": request.caps.per_split.get("train", NO_CAP)}
    train_sql = capped_sql("msplit = 'train'", request.caps, train_caps)
    kept = dict(con.execute(f"SELECT dataset, count(*) FROM ({train_sql}) GROUP BY dataset").fetchall())
    quotas = mixture.apportion(request.validation_size, kept)
    official = dict(
        con.execute("SELECT dataset, count(*) FROM cand WHERE msplit = 'validation' GROUP BY dataset").fetchall()
    )
    counts = con.execute(
        "SELECT grp, dataset, count(*) FROM cand WHERE msplit = 'train' GROUP BY grp, dataset ORDER BY grp, dataset"
    ).fetchall()
    carved = mixture.carve_validation(counts, {d: max(0, q - official.get(d, 0)) for d, q in quotas.items()})
    con.register("carved", pa.table({"grp": pa.array(sorted(carved), pa.int32())}))
    con.execute("UPDATE cand SET msplit = 'validation' WHERE msplit = 'train' AND grp IN (SELECT grp FROM carved)")
    con.unregister("carved")
    return quotas


def select(con, request: MixRequest) -> None:
    """`chosen`: the mixture's rows with their split and shuffled position."""
    quotas = carve(con, request)
    caps, per_split = request.caps, request.caps.per_split
    set_dataset_caps(con, {("validation", d): min(q, caps.per_dataset or NO_CAP) for d, q in quotas.items()})
    held_out = {"validation": request.validation_size, "test": per_split.get("test", NO_CAP)}
    con.execute("CREATE TABLE picked AS " + capped_sql("msplit <> 'train'", caps, held_out))
    train_cap = per_split.get("train", NO_CAP)
    if caps.total is not None:
        n_held_out = count(con, "SELECT 1 FROM picked")
        if caps.total < n_held_out:
            raise UsageError(
                f"--max-total {caps.total} is below the validation and test pairs ({n_held_out}); "
                "raise it or cap test with --max-per-split test=N"
            )
        train_cap = min(train_cap, caps.total - n_held_out)
    con.execute("INSERT INTO picked " + capped_sql("msplit = 'train'", caps, {"train": train_cap}))
    con.execute(
        f"CREATE TABLE chosen AS SELECT *, row_number() OVER (PARTITION BY msplit ORDER BY "
        f"md5('{request.seed}/order/' || sample_id)) - 1 AS position FROM picked"
    )


# --- pass 2: fetch, spill by shuffled position, write shards ---------------------------------------


def spill_schema() -> pa.Schema:
    common = schema_for("detection")
    return pa.schema(
        [common.field(name) for name in ROW_COLUMNS]
        + [pa.field("dataset", pa.string()), pa.field("task", pa.string()), pa.field("position", pa.int64())]
    )


def mixture_schema() -> pa.Schema:
    """The shards' columns: the pair's common columns, its dataset and task, then `messages` and `images`."""
    fields = [field for field in spill_schema() if field.name != "position"]
    fields += [pa.field("messages", MESSAGES_TYPE), pa.field("images", pa.list_(IMAGE_TYPE))]
    return pa.schema(fields, metadata=HF_FEATURES)


class Spill:
    """Chosen rows by (split, bucket): buffered up to SPILL_BUFFER_BYTES, then appended to one file per
    bucket as length-prefixed Arrow IPC batches (each message a multiple of 8 bytes, so reads stay aligned)."""

    def __init__(self, folder: str, schema: pa.Schema):
        self._folder, self.schema = folder, schema
        self._buffers: dict = collections.defaultdict(list)
        self._bytes = 0

    def _path(self, split: str, bucket: int) -> str:
        return os.path.join(self._folder, f"{split}-{bucket:07d}.arrows")

    def add(self, split: str, bucket: int, table: pa.Table) -> None:
        self._buffers[split, bucket].append(table)
        self._bytes += table.nbytes
        if self._bytes > SPILL_BUFFER_BYTES:
            self.flush()

    def flush(self) -> None:
        for (split, bucket), tables in sorted(self._buffers.items()):
            with open(self._path(split, bucket), "ab") as handle:
                for batch in pa.concat_tables(tables).combine_chunks().to_batches():
                    message = batch.serialize()
                    handle.write(struct.pack("<q", message.size))
                    handle.write(message)
        self._buffers.clear()
        self._bytes = 0

    def read(self, split: str, bucket: int) -> pa.Table | None:
        path = self._path(split, bucket)
        if not os.path.exists(path):
            return None
        with open(path, "rb") as handle:
            data = pa.py_buffer(handle.read())
        batches, offset = [], 0
        while offset < data.size:
            (size,) = struct.unpack("<q", data[offset : offset + 8].to_pybytes())
            batches.append(pa.ipc.read_record_batch(data.slice(offset + 8, size), self.schema))
            offset += 8 + size
        return pa.Table.from_batches(batches, self.schema)


def bucket_rows(con, files: list[InputFile]) -> dict[str, int]:
    """Shuffled positions per bucket, per split: about BUCKET_BYTES of the chosen rows' estimated bytes."""
    con.register(
        "file_bytes",
        pa.table({"file": pa.array(range(len(files)), pa.int32()), "bytes_per_row": [f.bytes_per_row for f in files]}),
    )
    mean = dict(
        con.execute(
            "SELECT msplit, avg(bytes_per_row) FROM chosen JOIN file_bytes USING (file) GROUP BY msplit"
        ).fetchall()
    )
    con.unregister("file_bytes")
    return {split: max(1, int(BUCKET_BYTES // mean.get(split, BUCKET_BYTES))) for split in MIX_SPLITS}


def chosen_by_file(con):
    """(file index, rows, splits, positions) of the chosen rows, file by file, rows ascending."""
    relation = con.sql("SELECT file, row, msplit, position FROM chosen ORDER BY file, row")
    reader = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader  # DuckDB 2 renamed it
    reader = reader(FETCH_ROWS)
    pending = []
    for batch in reader:
        files = batch.column("file").to_numpy()
        for file in np.unique(files):
            part = batch.filter(pa.array(files == file))
            if pending and pending[0].column("file")[0].as_py() != file:
                yield _file_rows(pending)
                pending = []
            pending.append(part)
    if pending:
        yield _file_rows(pending)


def _file_rows(parts: list[pa.RecordBatch]):
    table = pa.Table.from_batches(parts)
    return (
        table.column("file")[0].as_py(),
        table.column("row").to_numpy(),
        table.column("msplit").to_numpy(zero_copy_only=False),
        table.column("position").to_numpy(),
    )


def fetch(files: list[InputFile], chosen, spill: Spill, rows_per_bucket: dict[str, int]) -> set:
    """Each chosen row into its bucket; every row group read once, PNGs only of the groups that hold a
    chosen row. Returns the (dataset, licence) pairs seen."""
    schema, licences = spill.schema, set[tuple[str, str]]()
    for index, rows, splits, positions in chosen:
        file = files[index]
        starts = np.cumsum((0,) + file.row_group_rows)
        groups = np.searchsorted(starts, rows, side="right") - 1
        with open_parquet(file.uri) as parquet:
            for group in np.unique(groups):
                here = groups == group
                table = parquet.read_row_group(int(group), columns=ROW_COLUMNS, use_threads=False)
                table = table.take(pa.array(rows[here] - starts[group]))
                n = table.num_rows
                table = (
                    table.append_column("dataset", pa.array([file.dataset] * n, pa.string()))
                    .append_column("task", pa.array([file.task] * n, pa.string()))
                    .append_column("position", pa.array(positions[here], pa.int64()))
                    .cast(schema)
                )
                licences.update(
                    (file.dataset, licence)
                    for licence in pc.unique(pc.struct_field(table.column("provenance"), "licence")).to_pylist()
                )
                _spill_rows(spill, table, splits[here], rows_per_bucket)
    spill.flush()
    return licences


def _spill_rows(spill: Spill, table: pa.Table, splits: np.ndarray, rows_per_bucket: dict[str, int]) -> None:
    for split in np.unique(splits):
        part = table.filter(pa.array(splits == split))
        buckets = part.column("position").to_numpy() // rows_per_bucket[split]
        for bucket in np.unique(buckets):
            spill.add(str(split), int(bucket), part.filter(pa.array(buckets == bucket)))


def with_conversation(table: pa.Table) -> pa.Table:
    """The spilled rows in position order as the shards hold them: `messages` and `images` added."""
    table = table.sort_by("position").drop_columns(["position"]).combine_chunks()
    image = table.column("image").chunk(0) if table.num_rows else pa.array([], IMAGE_TYPE)
    images = pa.ListArray.from_arrays(pa.array(np.arange(table.num_rows + 1), pa.int32()), image)
    messages = mixture.messages_array(table.column("prompt"), table.column("answer"))
    return table.append_column("messages", messages).append_column("images", images)


def parquet_options(schema: pa.Schema) -> dict:
    """zstd and dictionaries on every column except the PNG bytes, which are deflated and rarely repeat
    in a shuffled mixture."""

    paths = column_paths(schema)
    return {
        "compression": {p: "none" if p in STORED_AS_IS else "zstd" for p in paths},
        "use_dictionary": [p for p in paths if p not in STORED_AS_IS],
        "write_statistics": True,
    }


class ShardWriter:
    """A split's shards `SPLIT/SPLIT-NNNNN.parquet`, each closed once it holds `shard_bytes` of PNG
    (whole buckets, one row group each); each appears only when complete. An empty split gets one
    empty shard, so every split is there for readers."""

    def __init__(self, output: str, split: str, shard_bytes: int, temp_dir: str):
        self._output, self._split, self._shard_bytes, self._temp_dir = output, split, shard_bytes, temp_dir
        self._schema = mixture_schema()
        self._stack: contextlib.ExitStack | None = None
        self._writer: pq.ParquetWriter | None = None
        self._bytes = 0
        self.shards = 0

    def _open(self) -> None:
        uri = storage.join(self._output, self._split, f"{self._split}-{self.shards:05d}.parquet")
        self._stack = contextlib.ExitStack()
        handle = self._stack.enter_context(storage.atomic_create(uri, self._temp_dir))
        self._writer = self._stack.enter_context(
            pq.ParquetWriter(handle, self._schema, **parquet_options(self._schema))
        )
        self.shards, self._bytes = self.shards + 1, 0

    def _close(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack, self._writer = None, None

    def write(self, table: pa.Table) -> None:
        if self._stack is None or self._bytes >= self._shard_bytes:
            self._close()
            self._open()
        assert self._writer is not None  # opened with the stack
        self._writer.write_table(table.cast(self._schema), row_group_size=max(1, table.num_rows))
        png_bytes = pc.sum(pc.binary_length(pc.struct_field(table.column("image"), "bytes"))).as_py() or 0
        self._bytes += 2 * png_bytes  # `image` and `images` each hold it

    def close(self) -> None:
        if self.shards == 0:
            self._open()
        self._close()


def write_split(spill: Spill, split: str, n_buckets: int, writer: ShardWriter) -> None:
    for bucket in range(n_buckets):
        table = spill.read(split, bucket)
        if table is not None:
            writer.write(with_conversation(table))
    writer.close()


# --- the command --------------------------------------------------------------------------------


def check_request(request: MixRequest) -> None:
    numbers = {
        "--validation-size": request.validation_size,
        "--max-per-dataset": request.caps.per_dataset,
        "--max-per-task": request.caps.per_task,
        "--max-total": request.caps.total,
        **{f"--max-per-split {s}": n for s, n in request.caps.per_split.items()},
    }
    for name, value in numbers.items():
        if value is not None and value < 0:
            raise UsageError(f"{name} must be 0 or more, got {value}")
    unknown = set(request.caps.per_split) - set(MIX_SPLITS)
    if unknown:
        raise UsageError(f"--max-per-split takes SPLIT=N with SPLIT in {', '.join(MIX_SPLITS)}; got {sorted(unknown)}")
    if request.shard_mb <= 0:
        raise UsageError(f"--shard-mb must be positive, got {request.shard_mb}")
    if not storage.is_empty_location(request.output):
        raise UsageError(f"{request.output} is not empty: give mix a new or empty location")


def summarize(con, request: MixRequest, dropped: dict, shards: dict, licences: set) -> dict:
    rows = con.execute("SELECT msplit, dataset, task, count(*) FROM chosen GROUP BY ALL ORDER BY ALL").fetchall()
    counts = [{"split": s, "dataset": d, "task": t, "pairs": n} for s, d, t, n in rows]
    counts.sort(key=lambda r: (MIX_SPLITS.index(r["split"]), r["dataset"], r["task"]))
    subjects = dict(
        con.execute(
            "SELECT msplit, count(DISTINCT (p.dataset, p.subject_id)) FROM chosen c "
            "JOIN pairs p USING (file, row) GROUP BY msplit"
        ).fetchall()
    )
    candidates = count(con, "SELECT 1 FROM cand")
    return {
        "command": request.command,
        "seed": request.seed,
        "inputs": list(request.pairs),
        "output": request.output,
        "counts": counts,
        "pairs": {s: sum(r["pairs"] for r in counts if r["split"] == s) for s in MIX_SPLITS},
        "subjects": {s: subjects.get(s, 0) for s in MIX_SPLITS},
        "shards": shards,
        "dropped": {**dropped, "over the caps or carved past a quota": candidates - sum(r["pairs"] for r in counts)},
        "licences": sorted({f"{d}: {licence}" for d, licence in licences if licence}),
    }


def mix(request: MixRequest) -> dict:
    """Write the mixture of `request` and return its summary (also in SUMMARY_FILE, written last)."""
    check_request(request)
    files = list_inputs(request.pairs)
    scratch = tempfile.mkdtemp(prefix="medvision-mix-")
    temp_dir = storage.join(request.output, "_tmp")
    try:
        con = connect(scratch)
        scan(con, files)
        dropped = group_subjects(con, request.seed)
        select(con, request)
        rows_per_bucket = bucket_rows(con, files)
        spill = Spill(scratch, spill_schema())
        licences = fetch(files, chosen_by_file(con), spill, rows_per_bucket)
        sizes = dict(con.execute("SELECT msplit, count(*) FROM chosen GROUP BY msplit").fetchall())
        shards = {}
        for split in MIX_SPLITS:
            writer = ShardWriter(request.output, split, int(request.shard_mb * 2**20), temp_dir)
            write_split(spill, split, -(-sizes.get(split, 0) // rows_per_bucket[split]), writer)
            shards[split] = writer.shards
        summary = summarize(con, request, dropped, shards, licences)
        con.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if not storage.is_remote(temp_dir):
            shutil.rmtree(temp_dir, ignore_errors=True)
    storage.write_bytes(storage.join(request.output, CARD_FILE), mixture.mixture_card(summary).encode())
    storage.write_bytes(storage.join(request.output, SUMMARY_FILE), json.dumps(summary, indent=1).encode())
    return summary
