"""`medvision-pipeline evaluate`: score a model's predictions against a built output (I/O only;
parsing and metrics are `transforms/scoring.py`).

Predictions: JSONL (one object per line) or Parquet, each with `sample_id` and either `answer`
(model text) or numbers (`box`; `major_axis_mm` and `minor_axis_mm`; `value`).
"""
from __future__ import annotations

import collections
import json

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.config import UsageError
from schemas.tables import TASKS
from transforms import scoring

PAIR_COLUMNS = {
    "detection": ["sample_id", "box_xyxy_px", "image_width_px", "image_height_px", "provenance"],
    "tumor_lesion_size": ["sample_id", "major_axis_mm", "minor_axis_mm", "provenance"],
    "angle_distance": ["sample_id", "value", "unit", "provenance"],
}
EXAMPLES_LISTED = 10


def read_parquet(uri: str, columns: list[str] | None = None) -> pa.Table:
    """The rows of one Parquet object.

    Arrow must not hold Python objects on its own threads: a pool thread that drops the last reference
    to a Python file, or to bytes read from it, after the interpreter began to exit is killed while
    unwinding C++, and the process aborts (exit 134, "terminate called without an active exception").
    `pq.read_table` on a file object did so in about one run in three; `ParquetFile.read` with its
    default pre-buffering (reads on Arrow's IO pool), once in a few hundred runs under load. So a local
    file is opened by Arrow itself, by path, and an object-store file is read through its Python handle
    on this thread only (no pre-buffering, no decoding threads).
    """
    if not storage.is_remote(uri):
        with pq.ParquetFile(uri) as parquet:
            return parquet.read(columns=columns)
    with storage.open_read(uri) as handle, pq.ParquetFile(handle, pre_buffer=False) as parquet:
        return parquet.read(columns=columns, use_threads=False)


def check_finished(root: str) -> None:
    """Refuse (UsageError) an output without `_SUCCESS`: its pairs may be missing or partly written."""
    if not storage.exists(storage.join(root, "_SUCCESS")):
        raise UsageError(f"{root} is not a finished build (no _SUCCESS): a build that failed, was stopped or is "
                         "still running, whose pairs may be incomplete; score a finished build")


def read_pairs(root: str) -> dict[str, dict]:
    """Every pair of a built output by sample_id: its task's truth columns, dataset, task and prompt style."""
    pairs = {}
    for task in TASKS:
        for uri in storage.glob(storage.join(root, f"dataset=*/task={task}/split=*/*.parquet")):
            dataset = storage.dirname(storage.dirname(storage.dirname(uri))).rsplit("dataset=", 1)[1]
            rows = read_parquet(uri, PAIR_COLUMNS[task]).to_pylist()
            for row in rows:
                style = row.pop("provenance")["prompt_style"]
                pairs[row["sample_id"]] = {**row, "dataset": dataset, "task": task, "prompt_style": style}
    if not pairs:
        raise UsageError(f"no pairs under {root} (expected dataset=*/task=*/split=*/*.parquet)")
    return pairs


def read_predictions(path: str) -> list[dict]:
    """Prediction records from a .jsonl or .parquet file; each must carry a sample_id."""
    if not storage.exists(path):
        raise UsageError(f"predictions file {path} does not exist")
    if path.endswith(".parquet"):
        records = read_parquet(path).to_pylist()
    elif path.endswith((".jsonl", ".json")):
        lines = storage.read_bytes(path).decode().splitlines()
        try:
            records = [json.loads(line) for line in lines if line.strip()]
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path} is not JSON lines: {exc}") from None
    else:
        raise UsageError(f"predictions must be .jsonl or .parquet, got {path}")
    if any(not isinstance(r, dict) or not r.get("sample_id") for r in records):
        raise UsageError(f"every prediction in {path} needs a sample_id")
    if any(r.get("answer") is not None and not isinstance(r["answer"], str) for r in records):
        raise UsageError(f"'answer' in {path} must be text; give numbers as box / major_axis_mm, minor_axis_mm / value")
    repeated = [sample_id for sample_id, n in collections.Counter(r["sample_id"] for r in records).items() if n > 1]
    if repeated:
        raise UsageError(f"{len(repeated)} sample_ids have several predictions in {path}, e.g. {repeated[:3]}")
    return records


def evaluate(pairs_root: str, predictions_path: str) -> dict:
    """The evaluation report: one line per (dataset, task, unit), parse failures, and the predictions
    whose sample_id is not among the pairs (counted and listed, never scored)."""
    check_finished(pairs_root)
    pairs, predictions = read_pairs(pairs_root), read_predictions(predictions_path)
    pairs_per_group = collections.Counter(scoring.group_key(pair) for pair in pairs.values())
    per_group, failures, unknown = collections.defaultdict(list), [], []
    for prediction in predictions:
        pair = pairs.get(prediction["sample_id"])
        if pair is None:
            unknown.append(prediction["sample_id"])
            continue
        metrics = scoring.sample_metrics(pair, prediction)
        per_group[scoring.group_key(pair)].append(metrics)
        if metrics is None:
            failures.append({"sample_id": prediction["sample_id"], "answer": prediction.get("answer")})
    groups = [scoring.summarize_group(key, pairs_per_group[key], per_group[key]) for key in sorted(pairs_per_group)]
    return {"pairs": pairs_root, "predictions": predictions_path, "groups": groups,
            "parse_failures": {"count": len(failures), "examples": failures[:EXAMPLES_LISTED]},
            "unknown_sample_ids": {"count": len(unknown), "examples": unknown[:EXAMPLES_LISTED]}}


TABLE_COLUMNS = ("dataset", "task", "unit", "pairs", "predictions", "parsed", "parse_success_rate", "iou", "f1",
                 "precision", "recall", "iou_above_0_5_rate", "mae", "mre")


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def format_table(report: dict) -> str:
    """The report's groups as an aligned text table, then the counts of failures and unknown ids."""
    table = [TABLE_COLUMNS] + [tuple(_cell(group.get(c)) for c in TABLE_COLUMNS) for group in report["groups"]]
    widths = [max(len(row[c]) for row in table) for c in range(len(TABLE_COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in table]
    lines.append(f"parse failures: {report['parse_failures']['count']}")
    unknown = report["unknown_sample_ids"]
    lines.append(f"predictions for sample_ids not in the pairs: {unknown['count']}"
                 + (f" (e.g. {', '.join(unknown['examples'][:3])})" if unknown["count"] else ""))
    return "\n".join(lines)
