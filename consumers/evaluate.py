"""`medvision-pipeline evaluate`: score a model's predictions against a built output (I/O only;
parsing and metrics are `consumers/scoring.py`, MedVision's summary tables `consumers/medvision_summary.py`).

Predictions: JSONL (one object per line) or Parquet, each with `sample_id` and either `answer`
(model text) or numbers (`box`; `major_axis_mm` and `minor_axis_mm`; `value`), e.g.
`{"sample_id": "...", "answer": "<answer>0.2100, 0.3500, 0.4800, 0.6200</answer>"}`.
"""

from __future__ import annotations

import collections
import json

import pyarrow as pa
import pyarrow.parquet as pq

from consumers import medvision_summary, scoring
from pipeline import storage
from pipeline.config import UsageError
from schemas.tables import TASKS

_GROUPING = ["modality", "plane"]  # MedVision's regions and labels
PAIR_COLUMNS = {
    "detection": [
        "sample_id",
        "box_xyxy_px",
        "image_width_px",
        "image_height_px",
        "label_name",
        *_GROUPING,
        "provenance",
    ],
    "tumor_lesion_size": ["sample_id", "major_axis_mm", "minor_axis_mm", "label_name", *_GROUPING, "provenance"],
    "angle_distance": ["sample_id", "value", "unit", "metric_name", "metric_type", *_GROUPING, "provenance"],
}
EXAMPLES_LISTED = 10
EXAMPLE_PREDICTION = (
    '{"sample_id": "<a sample_id of the pairs>", "answer": "<answer>0.2100, 0.3500, 0.4800, 0.6200</answer>"}'
)


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
        raise UsageError(
            f"{root} is not a finished build (no _SUCCESS): a build that failed, was stopped or is "
            "still running, whose pairs may be incomplete; score a finished build"
        )


def read_pairs(root: str) -> dict[str, dict]:
    """Every pair of a built output by sample_id: its task's truth and grouping columns, dataset, task,
    split and prompt style."""
    pairs = {}
    for task in TASKS:
        for uri in storage.glob(storage.join(root, f"dataset=*/task={task}/split=*/*.parquet")):
            split_dir = storage.dirname(uri)
            dataset = storage.dirname(storage.dirname(split_dir)).rsplit("dataset=", 1)[1]
            split = split_dir.rsplit("split=", 1)[1]
            rows = read_parquet(uri, PAIR_COLUMNS[task]).to_pylist()
            for row in rows:
                style = row.pop("provenance")["prompt_style"]
                pairs[row["sample_id"]] = {
                    **row,
                    "dataset": dataset,
                    "task": task,
                    "split": split,
                    "prompt_style": style,
                }
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
    if not records:
        raise UsageError(f"{path} holds no predictions; one line per answer, e.g. {EXAMPLE_PREDICTION}")
    if any(not isinstance(r, dict) or not r.get("sample_id") for r in records):
        raise UsageError(f"every prediction in {path} needs a sample_id")
    if not any(r.get(field) is not None for r in records for field in scoring.ANSWER_FIELDS):
        fields = ", ".join(sorted({str(field) for r in records for field in r})[:EXAMPLES_LISTED])
        raise UsageError(
            f"no answer field found in {path} (its predictions carry {fields}): give the model's text "
            f"as 'answer', e.g. {EXAMPLE_PREDICTION}, or numbers as box / major_axis_mm and "
            "minor_axis_mm / value"
        )
    if any(r.get("answer") is not None and not isinstance(r["answer"], str) for r in records):
        raise UsageError(f"'answer' in {path} must be text; give numbers as box / major_axis_mm, minor_axis_mm / value")
    repeated = [sample_id for sample_id, n in collections.Counter(r["sample_id"] for r in records).items() if n > 1]
    if repeated:
        raise UsageError(f"{len(repeated)} sample_ids have several predictions in {path}, e.g. {repeated[:3]}")
    return records


def _examples(items: list) -> dict:
    return {"count": len(items), "examples": items[:EXAMPLES_LISTED]}


def select_split(pairs: dict[str, dict], split: str | None) -> dict[str, dict]:
    """The pairs of one split (all when None); UsageError naming the splits there are when it has none."""
    if split is None:
        return pairs
    selected = {sample_id: pair for sample_id, pair in pairs.items() if pair["split"] == split}
    if not selected:
        splits = ", ".join(sorted({pair["split"] for pair in pairs.values()}))
        raise UsageError(f"no pairs in split {split!r}; this build has {splits}")
    return selected


def evaluate(pairs_root: str, predictions_path: str, split: str | None = None) -> dict:
    """The evaluation report: MedVision's summary tables, this pipeline's summary (one line per
    dataset, task and unit), parse failures, pairs of the split without a prediction, and predictions
    for pairs of another split or for no pair (counted and listed, never scored)."""
    check_finished(pairs_root)
    all_pairs, predictions = read_pairs(pairs_root), read_predictions(predictions_path)
    pairs = select_split(all_pairs, split)
    pairs_per_group = collections.Counter(scoring.group_key(pair) for pair in pairs.values())
    per_group: dict[tuple, list] = collections.defaultdict(list)
    answers: list[dict] = []
    failures: list[dict] = []
    unknown: list[str] = []
    other_split: list[str] = []
    for prediction in predictions:
        sample_id = prediction["sample_id"]
        pair = pairs.get(sample_id)
        if pair is None:
            (other_split if sample_id in all_pairs else unknown).append(sample_id)
            continue
        metrics = scoring.sample_metrics(pair, prediction)
        per_group[scoring.group_key(pair)].append(metrics)
        answers.append(medvision_summary.score_answer(pair, prediction))
        if metrics is None:
            failures.append({"sample_id": sample_id, "answer": prediction.get("answer")})
    answered = {p["sample_id"] for p in predictions}
    unanswered = [sample_id for sample_id in pairs if sample_id not in answered]
    groups = [scoring.summarize_group(key, pairs_per_group[key], per_group[key]) for key in sorted(pairs_per_group)]
    return {
        "pairs": pairs_root,
        "predictions": predictions_path,
        "split": split,
        "medvision": medvision_summary.summarize(answers),
        "groups": groups,
        "parse_failures": _examples(failures),
        "pairs_without_prediction": _examples(unanswered),
        "other_split_sample_ids": _examples(other_split),
        "unknown_sample_ids": _examples(unknown),
    }


TABLE_COLUMNS = (
    "dataset",
    "task",
    "unit",
    "pairs",
    "predictions",
    "parsed",
    "parse_success_rate",
    "iou",
    "f1",
    "precision",
    "recall",
    "mae",
    "mre",
)
OURS_HEADING = (
    "This pipeline's summary, which differs from MedVision's: means over parsed answers with finite "
    "numbers only, pooled per dataset, task and unit (pairs: {split})"
)


def _count_line(text: str, counted: dict) -> str:
    examples = [str(e) for e in counted["examples"][:3]]
    return f"{text}: {counted['count']}" + (f" (e.g. {', '.join(examples)})" if counted["count"] else "")


def format_table(report: dict) -> str:
    """MedVision's summary tables, then this pipeline's summary as an aligned table, then the counts of
    failures, unanswered pairs and predictions not scored."""
    split = f"split {report['split']}" if report["split"] else "every split"
    lines = medvision_summary.format_tables(report["medvision"]) + ["", OURS_HEADING.format(split=split)]
    lines += medvision_summary.aligned(
        [TABLE_COLUMNS] + [tuple(g.get(c) for c in TABLE_COLUMNS) for g in report["groups"]]
    )
    lines += [
        f"parse failures: {report['parse_failures']['count']}",
        _count_line(f"pairs ({split}) without a prediction", report["pairs_without_prediction"]),
    ]
    if report["split"]:
        lines.append(
            _count_line(
                f"predictions for pairs outside split {report['split']}, not scored", report["other_split_sample_ids"]
            )
        )
    lines.append(_count_line("predictions for sample_ids not in the pairs", report["unknown_sample_ids"]))
    return "\n".join(lines)
