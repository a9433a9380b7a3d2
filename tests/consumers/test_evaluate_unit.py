"""`evaluate` on tiny hand-written pairs and predictions: reading predictions (JSONL, Parquet) and what
they are refused for, reading pairs from the build layout, split selection, the report's sorting of
predictions and the printed table. `test_evaluate.py` scores predictions against a demo build."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consumers import evaluate
from pipeline.config import UsageError


def write_pairs(root, task: str, split: str, rows: list[dict], dataset: str = "demo") -> None:
    folder = os.path.join(str(root), f"dataset={dataset}", f"task={task}", f"split={split}")
    os.makedirs(folder, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), os.path.join(folder, "part-0.parquet"))


def lesion_pair(sample_id: str, major_mm: float = 10.0, minor_mm: float = 5.0) -> dict:
    return {
        "sample_id": sample_id,
        "major_axis_mm": major_mm,
        "minor_axis_mm": minor_mm,
        "label_name": "tumour",
        "modality": "CT",
        "plane": "axial",
        "provenance": {"prompt_style": "default", "licence": "CC0"},
        "not_read": 1,
    }


def write_jsonl(path, records: list) -> str:
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return str(path)


@pytest.fixture
def built(tmp_path) -> str:
    """A finished output: lesion pairs t1, t2 in train and t3 in test."""
    write_pairs(tmp_path / "out", "tumor_lesion_size", "train", [lesion_pair("t1"), lesion_pair("t2", 8.0, 4.0)])
    write_pairs(tmp_path / "out", "tumor_lesion_size", "test", [lesion_pair("t3")])
    (tmp_path / "out" / "_SUCCESS").write_text("")
    return str(tmp_path / "out")


# --- predictions --------------------------------------------------------------------------------


def test_jsonl_and_parquet_predictions_read_alike(tmp_path):
    records = [{"sample_id": "a", "answer": "10 by 5", "value": None}, {"sample_id": "b", "answer": None, "value": 3.0}]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("\n" + json.dumps(records[0]) + "\n\n" + json.dumps(records[1]) + "\n")  # blank lines skipped
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "p.parquet")
    assert evaluate.read_predictions(str(jsonl)) == records
    assert evaluate.read_predictions(str(tmp_path / "p.parquet")) == records


@pytest.mark.parametrize(
    "records, message",
    [
        ([], r"holds no predictions; one line per answer, e\.g\. \{\"sample_id\""),
        ([{"answer": "1"}], r"every prediction in .* needs a sample_id"),
        ([["a", "1"]], r"needs a sample_id"),
        (
            [{"sample_id": "a", "text": "1", "id": 2}],
            r"no answer field found in .* \(its predictions carry id, sample_id, text\)",
        ),
        ([{"sample_id": "a", "answer": 3.5}], r"'answer' in .* must be text"),
        ([{"sample_id": s, "value": 1.0} for s in "aab"], r"1 sample_ids have several predictions .* \['a'\]"),
    ],
)
def test_predictions_are_refused_with_what_to_fix(tmp_path, records, message):
    with pytest.raises(UsageError, match=message):
        evaluate.read_predictions(write_jsonl(tmp_path / "p.jsonl", records))


def test_a_missing_wrong_kind_or_broken_file_is_refused(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        evaluate.read_predictions(str(tmp_path / "absent.jsonl"))
    (tmp_path / "p.csv").write_text("sample_id,answer\n")
    with pytest.raises(UsageError, match=r"must be \.jsonl or \.parquet, got .*p\.csv"):
        evaluate.read_predictions(str(tmp_path / "p.csv"))
    (tmp_path / "p.jsonl").write_text('{"sample_id": "a"\n')
    with pytest.raises(UsageError, match="is not JSON lines"):
        evaluate.read_predictions(str(tmp_path / "p.jsonl"))


# --- pairs and splits ---------------------------------------------------------------------------


def test_pairs_carry_their_place_in_the_layout_and_prompt_style(built):
    pairs = evaluate.read_pairs(built)
    assert sorted(pairs) == ["t1", "t2", "t3"]
    assert pairs["t3"] == {
        **{k: v for k, v in lesion_pair("t3").items() if k not in ("provenance", "not_read")},
        "dataset": "demo",
        "task": "tumor_lesion_size",
        "split": "test",
        "prompt_style": "default",
    }


def test_an_output_without_pairs_or_success_is_refused(tmp_path):
    with pytest.raises(UsageError, match=r"no pairs under .*dataset=\*/task=\*/split=\*/\*\.parquet"):
        evaluate.read_pairs(str(tmp_path))
    with pytest.raises(UsageError, match="not a finished build"):
        evaluate.check_finished(str(tmp_path))


def test_a_split_selects_its_pairs_and_an_absent_one_names_those_there_are():
    pairs = {"a": {"split": "train"}, "b": {"split": "test"}, "c": {"split": "train"}}
    assert evaluate.select_split(pairs, None) is pairs
    assert list(evaluate.select_split(pairs, "train")) == ["a", "c"]
    with pytest.raises(UsageError, match=r"no pairs in split 'validation'; this build has test, train"):
        evaluate.select_split(pairs, "validation")


# --- the report ---------------------------------------------------------------------------------


def test_predictions_are_scored_or_counted_by_where_their_pair_is(built, tmp_path):
    predictions = [
        {"sample_id": "t1", "answer": "major 11 mm, minor 5 mm"},
        {"sample_id": "t2", "answer": "no idea"},
        {"sample_id": "t3", "answer": "10, 5"},
        {"sample_id": "zz", "answer": "1, 2"},
    ]
    result = evaluate.evaluate(built, write_jsonl(tmp_path / "p.jsonl", predictions), split="train")
    (group,) = result["groups"]
    assert (group["pairs"], group["predictions"], group["parsed"], group["unit"]) == (2, 2, 1, "mm")
    assert group["mae"] == pytest.approx(0.5)  # |11 - 10| and |5 - 5|, averaged
    assert result["parse_failures"] == {"count": 1, "examples": [{"sample_id": "t2", "answer": "no idea"}]}
    assert result["pairs_without_prediction"] == {"count": 0, "examples": []}
    assert result["other_split_sample_ids"]["examples"] == ["t3"]
    assert result["unknown_sample_ids"]["examples"] == ["zz"]


def report_of(split: str | None, unknown: list[str]) -> dict:
    group = {"dataset": "demo", "task": "tumor_lesion_size", "unit": "mm", "pairs": 2, "predictions": 1}
    return {
        "split": split,
        "medvision": {},
        "groups": [group | {"parsed": 1, "parse_success_rate": 1.0, "mae": 0.25, "mre": None}],
        "parse_failures": {"count": 0, "examples": []},
        "pairs_without_prediction": {"count": 1, "examples": ["t2"]},
        "other_split_sample_ids": {"count": 0, "examples": []},
        "unknown_sample_ids": {"count": len(unknown), "examples": unknown},
    }


def test_table_aligns_our_summary_and_lists_counts_with_examples():
    lines = evaluate.format_table(report_of("train", ["x1", "x2", "x3", "x4"])).splitlines()
    header = lines.index(evaluate.OURS_HEADING.format(split="split train"))
    columns, values = lines[header + 1], lines[header + 2]
    assert columns.split() == list(evaluate.TABLE_COLUMNS)
    assert values.split() == ["demo", "tumor_lesion_size", "mm", "2", "1", "1", "1.0000"] + ["-"] * 4 + ["0.2500", "-"]
    assert values.index("0.2500") == columns.index("mae")
    assert lines[header + 3 :] == [
        "parse failures: 0",
        "pairs (split train) without a prediction: 1 (e.g. t2)",
        "predictions for pairs outside split train, not scored: 0",
        "predictions for sample_ids not in the pairs: 4 (e.g. x1, x2, x3)",
    ]


def test_table_of_every_split_has_no_outside_split_line():
    text = evaluate.format_table(report_of(None, []))
    assert "pairs: every split" in text and "outside split" not in text
    assert text.endswith(
        "pairs (every split) without a prediction: 1 (e.g. t2)\npredictions for sample_ids not in the pairs: 0"
    )
