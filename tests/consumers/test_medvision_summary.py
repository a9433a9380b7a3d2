"""MedVision's summary tables (consumers/medvision_summary.py) on hand-made answers whose results follow from
MedVision's rules at commit ae6e130 by hand."""

from __future__ import annotations

import pytest

from consumers import medvision_summary as mv
from consumers.scoring import sample_metrics

WHERE = {"modality": "CT", "plane": "axial", "prompt_style": "default", "dataset": "d"}


def _box_pair(label: str, modality: str = "CT") -> dict:
    return {
        **WHERE,
        "task": "detection",
        "label_name": label,
        "modality": modality,
        "box_xyxy_px": [0.0, 0.0, 2.0, 2.0],
        "image_width_px": 10,
        "image_height_px": 10,
    }


def _answers(pair: dict, boxes: list) -> list[dict]:
    return [mv.score_answer(pair, {"sample_id": "s", "answer": box}) for box in boxes]


HIT, HALF, MISS = "[0, 0, 2, 2]", "[1, 0, 3, 2]", "[5, 5, 6, 6]"  # IoU 1, 1/3 (F1 0.5), 0


def test_detection_groups_keep_regions_of_50_answers_weighted_by_answers_and_split_tumours_from_anatomy():
    liver = _answers(_box_pair("liver"), [HIT] * 30 + [HALF] * 20)  # 50 answers: IoU (30 + 20/3) / 50
    tumour = _answers(_box_pair("Kidney Tumor", "MRI"), [HIT] * 60 + ["no box"] * 40)  # IoU 0.6, SR 0.6
    spleen = _answers(_box_pair("spleen"), [HIT] * 49)  # too few
    others = _answers(_box_pair("others"), [HIT] * 80)  # MedVision's excluded keys
    lesion = _answers(_box_pair("lesion", "MRI"), [MISS] * 150)  # IoU 0
    british = _answers(_box_pair("liver tumour"), [HIT] * 10)
    summary = mv.summarize(liver + tumour + spleen + others + lesion + british)["detection"]
    regions = summary["regions"]
    assert regions["Kidney Tumor @ MR (A)"]["group"] == "T/L"  # MedVision's modality short name
    assert mv.detection_group_of("liver tumour @ CT (A)", {"num_samples": 50}) == "T/L"
    assert regions["spleen @ CT (A)"]["group"] == "left out: fewer than 50 answers"
    assert regions["others @ CT (A)"]["group"] == "left out: miscellaneous/others"
    anatomy, tl = summary["groups"]["anatomy"], summary["groups"]["T/L"]
    assert (anatomy["num_regions"], anatomy["total_samples"]) == (1, 50)
    assert anatomy["IoU"] == pytest.approx((30 + 20 / 3) / 50)
    assert anatomy["F1>0.5"] == 1 and anatomy["F1>0.6"] == pytest.approx(0.6)  # F1 = 0.5 counts for >0.5
    assert (tl["num_regions"], tl["total_samples"]) == (2, 250)
    # Region means weighted by their answer counts, unparsed answers scoring 0: (0.6 * 100 + 0 * 150) / 250.
    assert tl["IoU"] == pytest.approx(60 / 250) and tl["SuccessRate"] == pytest.approx((0.6 * 100 + 150) / 250)
    assert tl["IoU>0.5"] == pytest.approx(60 / 250)


def _size_pair(label="tumour") -> dict:
    return {**WHERE, "task": "tumor_lesion_size", "label_name": label, "major_axis_mm": 10.0, "minor_axis_mm": 5.0}


def test_a_40_digit_answer_is_infinite_as_for_medvision_and_an_unparsed_one_for_our_summary():
    pair = _size_pair()
    huge = {"sample_id": "s", "answer": "[" + "9" * 40 + ", 5]"}
    scored = mv.score_answer(pair, huge)
    assert scored["success"] and scored["MAE"] == float("inf")  # float32 overflows: a parsed answer, no error
    assert sample_metrics(pair, huge) is None
    close = mv.score_answer(pair, {"sample_id": "s", "answer": "[10.5, 5]"})  # MAE 0.25, MRE 0.025
    label = mv.summarize([scored, close])["tumor_lesion_size"]["labels"]["tumour @ CT (A)"]
    assert (label["avgMAE"], label["SuccessRate"], label["num_samples"]) == (0.25, 1.0, 2)
    assert (label["MRE<0.1"], label["MRE<1.0"]) == (0.5, 0.5)  # the infinite error is in no bucket


def test_tumour_overall_leaves_out_a_label_without_parsed_answers_angle_distance_keeps_it():
    parsed = mv.score_answer(_size_pair(), {"sample_id": "s", "answer": "[12, 5]"})  # MAE 1, MRE 0.1
    failed = [mv.score_answer(_size_pair("cyst"), {"sample_id": "s", "answer": "none"})] * 3
    sizes = mv.summarize([parsed] + failed)["tumor_lesion_size"]
    assert sizes["left_out"] == ["cyst @ CT (A)"]
    assert (sizes["overall"]["MAE"], sizes["overall"]["SR"], sizes["overall"]["total_samples"]) == (1, 1, 1)
    distance = {**WHERE, "task": "angle_distance", "metric_type": "distance", "value": 20.0, "unit": "mm"}
    measured = mv.score_answer({**distance, "metric_name": "L-1-2"}, {"sample_id": "s", "value": 22.0})
    missed = [mv.score_answer({**distance, "metric_name": "L-3-4"}, {"sample_id": "s", "answer": "?"})] * 3
    measures = mv.summarize([measured] + missed)["angle_distance"]
    # 4 answers in the denominator, the failed label adding nothing: MAE 2 * 1 / 4, SR 1 / 4.
    assert (measures["overall"]["MAE"], measures["overall"]["SR"], measures["overall"]["total_samples"]) == (
        0.5,
        0.25,
        4,
    )
    assert measures["groups"]["d-Distance"]["MAE"] == 2.0  # group means weigh valid labels only
    assert measures["overall"]["MRE<0.1"] == 0  # MRE exactly 0.1 is in bucket [0.1, 0.2)


def test_the_last_error_bucket_is_open_so_the_1_0_rate_counts_every_finite_error():
    pair = {**WHERE, "task": "angle_distance", "metric_type": "angle", "metric_name": "A", "value": 10.0, "unit": "deg"}
    far = mv.score_answer(pair, {"sample_id": "s", "value": 100.0})  # MRE 9
    label = mv.summarize([far])["angle_distance"]["labels"]["d_angle_A"]
    assert (label["MRE<0.9"], label["MRE<1.0"]) == (0, 1)


def test_tables_name_the_reference_and_print_every_task():
    answers = _answers(_box_pair("liver"), [HIT] * 50) + _answers(_box_pair("spleen"), [HIT])
    answers.append(mv.score_answer(_size_pair(), {"sample_id": "s", "answer": "1, 2"}))
    lines = mv.format_tables(mv.summarize(answers))
    assert lines[0] == "MedVision's summary tables, as computed by MedVision commit ae6e130 (2026-04-10)"
    assert any(line.startswith("liver @ CT (A)  50") for line in lines)
    assert not any(line.startswith("spleen") for line in lines)
    assert any(line.startswith("tumour @ CT (A)") for line in lines)
