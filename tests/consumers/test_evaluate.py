"""Scoring: box overlap and answer parsing by hand, `evaluate` on hand-made pairs, and a demo build's own
answers scored back."""

from __future__ import annotations

import glob
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consumers import evaluate
from consumers.scoring import box_overlap, parse_answer
from pipeline import cli
from pipeline.cli import main


def test_box_overlap_of_boxes_sharing_half_their_area():
    # [0,2]x[0,2] and [1,3]x[0,2]: overlap 2, areas 4 and 4, union 6.
    overlap = box_overlap([0, 0, 2, 2], [1, 0, 3, 2])
    assert (overlap.iou, overlap.f1, overlap.precision, overlap.recall) == pytest.approx((1 / 3, 0.5, 0.5, 0.5))


def test_box_overlap_of_a_prediction_inside_the_truth_and_of_disjoint_boxes():
    inside = box_overlap([0, 0, 1, 1], [0, 0, 2, 2])  # overlap 1, areas 1 and 4
    assert (inside.iou, inside.f1, inside.precision, inside.recall) == pytest.approx((0.25, 0.4, 1.0, 0.25))
    swapped = box_overlap([1, 1, 0, 0], [0, 0, 2, 2])  # corners given in the wrong order count the same
    assert swapped == inside
    disjoint = box_overlap([5, 5, 6, 6], [0, 0, 2, 2])
    assert (disjoint.iou, disjoint.f1, disjoint.precision, disjoint.recall) == (0, 0, 0, 0)


def test_parser_keeps_the_last_numbers_and_medvision_reads_only_the_answer_tag():
    assert parse_answer("I think the box is [1, 2, 3, 4] px", "detection", "default") == [1, 2, 3, 4]
    assert parse_answer("width 10 then 0.1, 0.2, 0.3, 0.4", "detection", "default") == pytest.approx(
        [0.1, 0.2, 0.3, 0.4], rel=1e-7
    )  # read as float32, as MedVision reads them
    assert parse_answer("<think>about 10 mm</think> <answer>12.5, -3</answer>", "tumor_lesion_size", "medvision") == [
        12.5,
        -3.0,
    ]
    assert parse_answer("12.5, 3", "tumor_lesion_size", "medvision") is None  # no tags
    assert parse_answer("[1, 2, 3]", "detection", "default") is None  # too few numbers


def _write(root, dataset, task, rows):
    folder = os.path.join(root, f"dataset={dataset}", f"task={task}", "split=test")
    os.makedirs(folder)
    pq.write_table(pa.Table.from_pylist(rows), os.path.join(folder, "part-00000-of-00001.parquet"))


def _provenance(style):
    return {"prompt_style": style, "params_hash": "h"}


@pytest.fixture()
def hand_made(tmp_path):
    """Pairs with known truths and a prediction file with known errors (expected values in the tests)."""
    pairs = str(tmp_path / "pairs")
    where = {"modality": "CT", "plane": "axial"}
    box = {
        "image_width_px": 10,
        "image_height_px": 10,
        "label_name": "liver",
        **where,
        "provenance": _provenance("default"),
    }
    _write(
        pairs,
        "a",
        "detection",
        [{"sample_id": f"d{i}", "box_xyxy_px": [0.0, 0.0, 2.0, 2.0], **box} for i in (1, 2, 3, 4)],
    )
    _write(
        pairs,
        "b",
        "detection",
        [{"sample_id": "m1", "box_xyxy_px": [2.0, 4.0, 6.0, 10.0], **box, "provenance": _provenance("medvision")}],
    )
    _write(
        pairs,
        "a",
        "tumor_lesion_size",
        [
            {
                "sample_id": "t1",
                "major_axis_mm": 10.0,
                "minor_axis_mm": 5.0,
                "label_name": "tumour",
                **where,
                "provenance": _provenance("default"),
            }
        ],
    )
    measure = {
        "metric_name": "L-1-2",
        "metric_type": "distance",
        "modality": "XR",
        "plane": "axial",
        "provenance": _provenance("default"),
    }
    _write(
        pairs,
        "a",
        "angle_distance",
        [
            {"sample_id": "a1", "value": 20.0, "unit": "mm", **measure},
            {
                "sample_id": "a2",
                "value": 30.0,
                "unit": "deg",
                **measure,
                "metric_name": "A-L_1_2-L_3_4",
                "metric_type": "angle",
            },
        ],
    )
    predictions = [
        {"sample_id": "d1", "answer": "[1, 0, 3, 2]"},  # IoU 1/3, F1 1/2, precision 1/2, recall 1/2
        {"sample_id": "d2", "box": [0, 0, 1, 1]},  # IoU 1/4, F1 2/5, precision 1, recall 1/4
        {"sample_id": "d3", "answer": "no idea"},  # parse failure; d4 has no prediction
        # columns 2..5, rows 4..9 of 10 x 10: x 0.2, 0.5; y (10-9)/10, (10-4)/10
        {"sample_id": "m1", "answer": "<think>box</think><answer>0.2, 0.1, 0.5, 0.6</answer>"},
        {"sample_id": "t1", "answer": "[12.00, 4.00]"},  # errors 2 and 1 mm: MAE 1.5, MRE (0.2 + 0.2) / 2
        {"sample_id": "a1", "value": 25.0},  # 5 mm, relative 0.25
        {"sample_id": "a2", "answer": "35.00"},  # 5 degrees, relative 1/6
        {"sample_id": "zzz", "answer": "1"},  # not a pair
    ]
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in predictions))
    open(os.path.join(pairs, "_SUCCESS"), "w").close()  # evaluate scores finished builds only
    return pairs, str(path), predictions


def _groups(report):
    return {(g["dataset"], g["task"], g["unit"]): g for g in report["groups"]}


def test_evaluate_reports_hand_computed_metrics_per_dataset_task_and_unit(hand_made, tmp_path, capsys):
    pairs, predictions, _ = hand_made
    out = str(tmp_path / "report.json")
    assert main(["evaluate", "--pairs", pairs, "--predictions", predictions, "--json", out]) == 0
    groups = _groups(json.load(open(out)))
    detection = groups[("a", "detection", None)]
    assert (detection["pairs"], detection["predictions"], detection["parsed"]) == (4, 3, 2)
    assert detection["parse_success_rate"] == pytest.approx(2 / 3)
    assert detection["iou"] == pytest.approx((1 / 3 + 1 / 4) / 2)
    assert (detection["f1"], detection["precision"], detection["recall"]) == pytest.approx((0.45, 0.75, 0.375))
    assert groups[("b", "detection", None)]["iou"] == pytest.approx(1.0)
    lesion = groups[("a", "tumor_lesion_size", "mm")]
    assert (lesion["mae"], lesion["mre"]) == pytest.approx((1.5, 0.2))
    assert (
        groups[("a", "angle_distance", "mm")]["mae"],
        groups[("a", "angle_distance", "mm")]["mre"],
    ) == pytest.approx((5.0, 0.25))
    assert groups[("a", "angle_distance", "deg")]["mre"] == pytest.approx(5 / 30)
    report = json.load(open(out))
    assert report["unknown_sample_ids"] == {"count": 1, "examples": ["zzz"]}
    assert report["parse_failures"] == {"count": 1, "examples": [{"sample_id": "d3", "answer": "no idea"}]}
    printed = capsys.readouterr().out
    assert "predictions for sample_ids not in the pairs: 1 (e.g. zzz)" in printed
    assert "pairs (every split) without a prediction: 1 (e.g. d4)" in printed
    assert printed.splitlines()[0].startswith("MedVision's summary tables, as computed by MedVision commit ae6e130")
    ours = printed.splitlines().index(next(line for line in printed.splitlines() if "This pipeline's summary" in line))
    assert printed.splitlines()[ours + 1].split()[:4] == ["dataset", "task", "unit", "pairs"]


def test_evaluate_gives_medvision_summary_tables_beside_ours(hand_made, tmp_path, capsys):
    pairs, predictions, _ = hand_made
    out = str(tmp_path / "report.json")
    assert main(["evaluate", "--pairs", pairs, "--predictions", predictions, "--json", out]) == 0
    medvision = json.load(open(out))["medvision"]
    assert "ae6e130" in medvision["reference"]
    # One region for both datasets' liver boxes: d1, d2, d3 (unparsed: 0 for every overlap) and m1 (IoU 1 but
    # for float32 rounding); 4 answers < 50, so no group takes it.
    liver = medvision["detection"]["regions"]["liver @ CT (A)"]
    assert liver["num_samples"] == 4 and liver["SuccessRate"] == 0.75
    assert liver["IoU"] == pytest.approx((1 / 3 + 1 / 4 + 0 + 1) / 4, abs=1e-6)
    assert liver["Recall"] == pytest.approx((1 / 2 + 1 / 4 + 0 + 1) / 4, abs=1e-6)
    assert (liver["IoU>0.5"], liver["F1>0.5"], liver["F1>0.6"]) == (0.25, 0.5, 0.25)  # F1 of d1 is 0.5: >= counts
    assert liver["group"] == "left out: fewer than 50 answers"
    assert medvision["detection"]["groups"] == {"anatomy": {}, "T/L": {}}
    lesion = medvision["tumor_lesion_size"]["labels"]["tumour @ CT (A)"]
    assert (lesion["avgMAE"], lesion["MRE<0.1"], lesion["MRE<0.3"], lesion["num_samples"]) == pytest.approx(
        (1.5, 0, 1, 1)
    )
    measures = medvision["angle_distance"]
    assert measures["overall"]["MAE"] == pytest.approx(5.0)  # mm and degrees together, as MedVision's
    assert measures["overall"]["MRE"] == pytest.approx((0.25 + 5 / 30) / 2)
    assert set(measures["groups"]) == {"a-Angle", "a-Distance"}
    assert measures["labels"]["a_distance_L-1-2"]["avgMRE"] == pytest.approx(0.25)
    printed = capsys.readouterr().out
    assert "regions left out of both groups: 1, with 4 answers (fewer than 50 answers: 1)" in printed
    assert "This pipeline's summary, which differs from MedVision's" in printed


def test_evaluate_reads_parquet_predictions(hand_made, tmp_path):
    pairs, _, predictions = hand_made
    path = str(tmp_path / "predictions.parquet")
    pq.write_table(pa.Table.from_pylist([p for p in predictions if p["sample_id"] in ("d1", "t1")]), path)
    out = str(tmp_path / "report.json")
    assert main(["evaluate", "--pairs", pairs, "--predictions", path, "--json", out]) == 0
    groups = _groups(json.load(open(out)))
    assert groups[("a", "detection", None)]["iou"] == pytest.approx(1 / 3)
    assert groups[("a", "tumor_lesion_size", "mm")]["mae"] == pytest.approx(1.5)


def test_evaluate_usage_errors_exit_2(hand_made, tmp_path, capsys):
    pairs, predictions, _ = hand_made
    csv = tmp_path / "predictions.csv"
    csv.write_text("sample_id,answer\n")
    assert main(["evaluate", "--pairs", pairs, "--predictions", str(tmp_path / "missing.jsonl")]) == 2
    assert main(["evaluate", "--pairs", pairs, "--predictions", str(csv)]) == 2
    assert main(["evaluate", "--pairs", str(tmp_path / "empty"), "--predictions", predictions]) == 2
    assert main(["evaluate", "--pairs", pairs]) == 2
    repeated = tmp_path / "repeated.jsonl"
    repeated.write_text(
        '{"sample_id": "d1", "answer": "[0, 0, 2, 2]"}\n{"sample_id": "d1", "answer": "[0, 0, 1, 1]"}\n'
    )
    assert main(["evaluate", "--pairs", pairs, "--predictions", str(repeated)]) == 2
    numeric_answer = tmp_path / "numeric_answer.jsonl"
    numeric_answer.write_text('{"sample_id": "a1", "answer": 20.0}\n')
    assert main(["evaluate", "--pairs", pairs, "--predictions", str(numeric_answer)]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 6 and all(line.startswith("medvision-pipeline: error: ") for line in errors)
    assert "several predictions" in errors[4] and "must be text" in errors[5]


@pytest.fixture(scope="module")
def small_build(tmp_path_factory, demo_root):
    output = str(tmp_path_factory.mktemp("prompts") / "demo")
    assert (
        main(
            [
                "build",
                f"--source=demo={demo_root}",
                "--output",
                output,
                "--prompt-style",
                "medvision",
                "--cases",
                "Ceph/001,Task02_DemoMR/demo_mr_00",
            ]
        )
        == 0
    )
    return output


def test_demo_build_has_prompt_and_answer_on_every_row_and_scores_its_own_answers(small_build, tmp_path):
    rows = []
    for path in glob.glob(os.path.join(small_build, "dataset=*/task=*/split=*/*.parquet")):
        rows += pq.read_table(path, columns=["sample_id", "prompt", "answer"]).to_pylist()
    assert len(rows) > 100 and all(r["prompt"] and r["answer"] for r in rows)
    predictions = tmp_path / "self.jsonl"
    predictions.write_text(
        "".join(json.dumps({"sample_id": r["sample_id"], "answer": r["answer"]}) + "\n" for r in rows)
    )
    out = str(tmp_path / "report.json")
    assert main(["evaluate", "--pairs", small_build, "--predictions", str(predictions), "--json", out]) == 0
    report = json.load(open(out))
    groups = _groups(report)
    assert {task for _, task, _ in groups} == {"detection", "tumor_lesion_size", "angle_distance"}
    assert all(g["parse_success_rate"] == 1 and g["predictions"] == g["pairs"] for g in groups.values())
    for (_, task, _), group in groups.items():
        if task == "detection":  # 4 decimals of relative coordinates: IoU within a rounding of 1
            assert group["iou"] > 0.99
        else:  # answers carry 2 decimals, read as float32
            assert group["mae"] <= 0.005 + 1e-5
    medvision = report["medvision"]
    assert all(region["SuccessRate"] == 1 for region in medvision["detection"]["regions"].values())
    assert medvision["tumor_lesion_size"]["overall"]["SR"] == 1
    assert medvision["angle_distance"]["overall"]["SR"] == 1
    assert medvision["angle_distance"]["overall"]["MRE<0.1"] == 1


def test_a_one_pixel_high_box_scores_zero_instead_of_stopping_evaluate(tmp_path):
    # Rows 4..4 (one pixel) of a 10 x 10 image: MedVision's target from inclusive indices has
    # y_min = y_max = (10 - 4) / 10, no area; MedVision scores any answer to it 0.
    pairs = str(tmp_path / "pairs")
    _write(
        pairs,
        "a",
        "detection",
        [
            {
                "sample_id": "flat",
                "box_xyxy_px": [2.0, 4.0, 6.0, 5.0],
                "image_width_px": 10,
                "image_height_px": 10,
                "label_name": "liver",
                "modality": "CT",
                "plane": "axial",
                "provenance": _provenance("medvision"),
            }
        ],
    )
    open(os.path.join(pairs, "_SUCCESS"), "w").close()
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text('{"sample_id": "flat", "answer": "<answer>0.2, 0.5, 0.5, 0.7</answer>"}\n')
    out = str(tmp_path / "report.json")
    assert main(["evaluate", "--pairs", pairs, "--predictions", str(predictions), "--json", out]) == 0
    detection = _groups(json.load(open(out)))[("a", "detection", None)]
    assert (detection["parsed"], detection["iou"], detection["f1"], detection["recall"]) == (1, 0, 0, 0)


def test_predictions_without_an_answer_field_are_refused_naming_the_fields_they_have(hand_made, tmp_path, capsys):
    pairs, _, _ = hand_made
    wrong_field = tmp_path / "wrong_field.jsonl"
    wrong_field.write_text('{"sample_id": "d1", "prediction": "[1, 0, 3, 2]"}\n')
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert main(["evaluate", "--pairs", pairs, "--predictions", str(wrong_field)]) == 2
    assert main(["evaluate", "--pairs", pairs, "--predictions", str(empty)]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert "no answer field found" in errors[0] and "prediction, sample_id" in errors[0]
    assert '"answer": "<answer>' in errors[0] and "holds no predictions" in errors[1]


def test_help_shows_a_predictions_line_that_evaluate_documents(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert evaluate.EXAMPLE_PREDICTION in capsys.readouterr().out
    assert cli.EXAMPLE_PREDICTION == evaluate.EXAMPLE_PREDICTION


def test_split_scores_the_pairs_of_one_split_and_counts_predictions_of_others(hand_made, tmp_path, capsys):
    pairs, predictions, _ = hand_made
    other = os.path.join(pairs, "dataset=a", "task=angle_distance", "split=train")
    os.makedirs(other)
    test_file = os.path.join(pairs, "dataset=a", "task=angle_distance", "split=test", "part-00000-of-00001.parquet")
    os.rename(test_file, os.path.join(other, "part-00000-of-00001.parquet"))  # a1, a2 are train pairs now
    out = str(tmp_path / "report.json")
    assert main(["evaluate", "--pairs", pairs, "--predictions", predictions, "--split", "test", "--json", out]) == 0
    report = json.load(open(out))
    assert {task for _, task, _ in _groups(report)} == {"detection", "tumor_lesion_size"}
    assert report["other_split_sample_ids"] == {"count": 2, "examples": ["a1", "a2"]}
    assert "angle_distance" not in report["medvision"]
    assert "predictions for pairs outside split test, not scored: 2 (e.g. a1, a2)" in capsys.readouterr().out
    assert main(["evaluate", "--pairs", pairs, "--predictions", predictions, "--split", "validation"]) == 2
    assert "no pairs in split 'validation'; this build has test, train" in capsys.readouterr().err
