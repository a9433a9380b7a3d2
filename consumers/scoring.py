"""Scoring model answers against pairs: each answer as the MedVision benchmark scores it, and this
pipeline's own summary (MedVision's summary tables are `consumers/medvision_summary.py`).

Answers are parsed like MedVision's `src/medvision_bm/utils/parse_utils.py`
(github.com/YongchengYAO/MedVision): every number matching `-?\\d+\\.?\\d*` is found and the last k
are kept (k = 4 for a box, 2 for a lesion's axes, 1 for an angle or distance); fewer than k is a
parse failure. Under the `medvision` prompt style only the text inside the first
`<answer>...</answer>` is searched (`extract_last_k_nums_within_answer_tag`, which
`benchmark/parse_outputs.py` applies), so an answer without the tags fails; under `default` the whole
answer is. Each number is read as a float32, as MedVision's summaries read it (`np.float32`), so one
beyond float32's range (about 3.4e38, e.g. 40 digits) is infinite. A prediction may give numbers
instead of text: `box` (4 numbers, in the style's box frame), `major_axis_mm` and `minor_axis_mm`,
or `value`; they are read the same way.

This pipeline's summary (`summarize_group`) differs from MedVision's: its means are over parsed
answers with finite numbers only, per dataset, task and unit, and the parse success rate says how
many that is.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Optional, Sequence, Union

import numpy as np

from schemas.prompts import medvision_box_target

NUMBER_PATTERN = re.compile(r"-?\d+\.?\d*")
ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
ANSWER_SIZE = {"detection": 4, "tumor_lesion_size": 2, "angle_distance": 1}
ANSWER_FIELDS = ("answer", "box", "major_axis_mm", "minor_axis_mm", "value")  # a prediction's answer, any form
RELATIVE_ERROR_EPSILON = 1e-15  # MedVision's guard against a zero truth
TASK_UNITS = {"detection": None, "tumor_lesion_size": "mm"}  # angle/distance: the pair's own unit
# A box corner or overlap ratio: a float, or a numpy scalar that keeps numpy's arithmetic (MedVision's summaries).
Number = Union[float, np.floating]


def as_float32(value) -> float:
    """A number (or its text) as MedVision reads it, `np.float32`: rounded to float32, infinite beyond its range."""
    with np.errstate(over="ignore"):
        return float(np.float32(value))


def parse_answer(text: str, task: str, style: str) -> Optional[list[float]]:
    """The last k numbers of an answer text (k by task) read as float32, or None when fewer are found.

    `medvision` style: only inside the first `<answer>...</answer>`; None without the tags.
    """
    if style == "medvision":
        tagged = ANSWER_TAG.search(text)
        if tagged is None:
            return None
        text = tagged.group(1)
    numbers = NUMBER_PATTERN.findall(text)
    k = ANSWER_SIZE[task]
    return [as_float32(n) for n in numbers[-k:]] if len(numbers) >= k else None


def _numeric_prediction(prediction: dict, task: str) -> Optional[list[float]]:
    """The task's numbers from a prediction's numeric fields, or None when one is missing."""
    if task == "detection":
        values = prediction.get("box")
    elif task == "tumor_lesion_size":
        values = [prediction.get("major_axis_mm"), prediction.get("minor_axis_mm")]
    else:
        values = [prediction.get("value")]
    if values is None or len(values) != ANSWER_SIZE[task] or any(v is None for v in values):
        return None
    return [as_float32(v) for v in values]


def answered_numbers(prediction: dict, task: str, style: str) -> Optional[list[float]]:
    """The numbers a prediction gives, as float32 (possibly infinite): parsed from `answer` when present,
    else its numeric fields; None when neither yields the task's count of numbers."""
    answer = prediction.get("answer")
    return parse_answer(answer, task, style) if answer is not None else _numeric_prediction(prediction, task)


def predicted_numbers(prediction: dict, task: str, style: str) -> Optional[list[float]]:
    """`answered_numbers` when all are finite, else None (this pipeline's summary counts it unparsed)."""
    numbers = answered_numbers(prediction, task, style)
    if numbers is None or not all(math.isfinite(v) for v in numbers):
        return None
    return numbers


def truth_numbers(pair: dict, style: str) -> list[float]:
    """The ground truth in the answer's frame: the box as the style's answer states it (pixel edges,
    or MedVision's relative lower-left target), [major, minor] in mm, or the angle/distance value."""
    task = pair["task"]
    if task == "detection":
        return medvision_box_target(pair) if style == "medvision" else [float(v) for v in pair["box_xyxy_px"]]
    if task == "tumor_lesion_size":
        return [float(pair["major_axis_mm"]), float(pair["minor_axis_mm"])]
    return [float(pair["value"])]


@dataclasses.dataclass(frozen=True)
class BoxOverlap:
    """Area overlap of a predicted box P with a true box T (any common frame; unitless ratios in [0, 1])."""

    iou: Number  # |P ∩ T| / |P ∪ T|
    f1: Number  # box Dice: 2 |P ∩ T| / (|P| + |T|), the harmonic mean of precision and recall
    precision: Number  # |P ∩ T| / |P|: the share of the predicted box that is inside the true box
    recall: Number  # |P ∩ T| / |T|: the share of the true box that the prediction covers


def _sorted_box(box: Sequence[Number]) -> tuple[Number, Number, Number, Number]:
    # MedVision sorts each axis, so a box given as [x1, y1, x0, y0] still counts.
    x0, y0, x1, y1 = box
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def box_overlap(predicted_xyxy: Sequence[Number], true_xyxy: Sequence[Number]) -> BoxOverlap:
    """IoU, F1 (Dice), precision and recall of two `[x0, y0, x1, y1]` boxes by area.

    Corners are sorted per axis first. No overlap gives 0 for all four, and so does a box of zero
    area on either side: MedVision's target of a 1-px-high or -wide box (inclusive indices) has none,
    and MedVision scores it 0 (its overlap test comes before any division).
    """
    px0, py0, px1, py1 = _sorted_box(predicted_xyxy)
    tx0, ty0, tx1, ty1 = _sorted_box(true_xyxy)
    overlap_w, overlap_h = min(px1, tx1) - max(px0, tx0), min(py1, ty1) - max(py0, ty0)
    if overlap_w <= 0 or overlap_h <= 0:
        return BoxOverlap(0.0, 0.0, 0.0, 0.0)
    overlap = overlap_w * overlap_h
    predicted_area, true_area = (px1 - px0) * (py1 - py0), (tx1 - tx0) * (ty1 - ty0)
    return BoxOverlap(
        overlap / (predicted_area + true_area - overlap),
        2 * overlap / (predicted_area + true_area),
        overlap / predicted_area,
        overlap / true_area,
    )


def absolute_and_relative_error(predicted: list[float], truth: list[float]) -> tuple[float, float]:
    """Mean absolute error (truth's unit) and mean relative error |p - t| / t over the numbers of one
    answer (MedVision averages a lesion's major and minor axis errors)."""
    errors = [abs(p - t) for p, t in zip(predicted, truth)]
    relative = [e / (t + RELATIVE_ERROR_EPSILON) for e, t in zip(errors, truth)]
    return sum(errors) / len(errors), sum(relative) / len(relative)


def group_key(pair: dict) -> tuple[str, str, Optional[str]]:
    """(dataset, task, unit): angle/distance pairs are split by unit so mm and degrees never share a mean;
    boxes have no unit (their metrics are ratios)."""
    task = pair["task"]
    return pair["dataset"], task, TASK_UNITS[task] if task in TASK_UNITS else pair["unit"]


def sample_metrics(pair: dict, prediction: dict) -> Optional[dict]:
    """Per-sample metrics of one prediction of a pair, or None when it cannot be parsed."""
    style = pair["prompt_style"]
    numbers = predicted_numbers(prediction, pair["task"], style)
    if numbers is None:
        return None
    truth = truth_numbers(pair, style)
    if pair["task"] == "detection":
        return dataclasses.asdict(box_overlap(numbers, truth))
    mae, mre = absolute_and_relative_error(numbers, truth)
    return {"mae": mae, "mre": mre}


def _mean(values: list[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def summarize_group(key: tuple[str, str, Optional[str]], n_pairs: int, per_sample: list[Optional[dict]]) -> dict:
    """One report line: counts, parse success rate and the task's mean metrics over parsed predictions
    (None when nothing parsed). `per_sample` holds `sample_metrics` results, None for failures."""
    dataset, task, unit = key
    parsed = [m for m in per_sample if m is not None]
    line = {
        "dataset": dataset,
        "task": task,
        "unit": unit,
        "pairs": n_pairs,
        "predictions": len(per_sample),
        "parsed": len(parsed),
        "parse_success_rate": len(parsed) / len(per_sample) if per_sample else None,
    }
    names = ("iou", "f1", "precision", "recall") if task == "detection" else ("mae", "mre")
    line.update({name: _mean([m[name] for m in parsed]) for name in names})
    return line
