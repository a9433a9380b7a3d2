"""MedVision's summary tables of a model's answers, computed as MedVision's own code computes them.

Reference: MedVision's last upstream code that parses `<answer>` tags, commit ae6e130 (2026-04-10) of
github.com/YongchengYAO/MedVision (kept in forks, e.g. github.com/viennh/MedVision; the upstream
snapshot of 2025-12-05 predates the tag parser): `src/medvision_bm/benchmark/parse_outputs.py`,
`summarize_detection_task.py`, `summarize_TL_task.py`, `summarize_AD_task.py`, and
`src/medvision_bm/utils/parse_utils.py`, `configs.py`. What it does, and so what this does:

- Every answer counts, parsed or not (`num_samples`, the weight of every mean below). An answer is
  read by `consumers.scoring.answered_numbers` (last k numbers in the first `<answer>` block, each a
  float32, so a 40-digit number is infinite) and is a success when it yields k numbers.
- Detection, per answer (`cal_metrics_detection_task`): an unparsed answer scores 0 IoU, F1, precision
  and recall; a parsed one scores the box overlap (0 when the boxes do not overlap, including a true box
  of zero area), each clamped to 1, and MAE = mean |p - t| of the four coordinates.
- Detection, per region `"{label} @ {modality} ({S|C|A})"`: means of IoU/F1/precision/recall over the
  answers whose value is finite (every answer, in practice), MAE over finite MAEs, success rate,
  `{metric}>{t}` = share of all answers with metric >= t for t = 0.5 ... 0.9 (">" is MedVision's name),
  `MAE<{k}` = share of all answers in the MAE buckets below k (see `_bucket_counts`).
- Detection, groups: regions named with "miscellaneous" or "others", or with fewer than 50 answers,
  are left out; the rest are "T/L" when the name holds "tumor", "lesion" or "metastatic", else
  "anatomy"; each metric is the mean of the regions' values weighted by their answer counts.
- T/L and A/D, per answer: MAE and MRE = mean |p - t| / (t + 1e-15) over the answer's numbers,
  NaN when unparsed. Per label (T/L: `"{label} @ {modality} ({plane})"`, A/D:
  `"{dataset}_{metric_type}_{metric_name}"`): MAE and MRE over finite values, success rate,
  `MRE<{k}` over all answers. Overall: label values weighted by answer counts; T/L leaves out a label
  without a finite MRE (every answer unparsed), A/D keeps it in the denominator. A/D also averages per
  dataset and measurement type (MedVision's FeTA-Distance, Ceph-Angle, Ceph-Distance) and mixes mm and
  degrees in its overall MAE, as MedVision's does. The 50-answer minimum applies to detection only.

Where ours departs (inputs, not arithmetic): our label names stand for MedVision's regrouped ones
(`label_map_regroup`, `label_map_rename`, which merge e.g. a brain tumour's sub-labels into one region),
so "tumour" counts as a T/L keyword too; our metric names stand for its metric keys, our dataset names
for its file names, and the per-dataset A/D groups generalise its three hard-coded ones. Scores come out in
float64 from float32 answers; MedVision's numpy scalars may differ in the last bits.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Optional

import numpy as np

from consumers import scoring

MEDVISION_REFERENCE = "MedVision commit ae6e130 (2026-04-10)"
MEDVISION_SOURCE = (
    "github.com/YongchengYAO/MedVision, kept in forks such as github.com/viennh/MedVision: "
    "src/medvision_bm/benchmark/parse_outputs.py and summarize_{detection,TL,AD}_task.py"
)
MINIMUM_GROUP_SIZE = 50  # configs.MINIMUM_GROUP_SIZE: detection regions with fewer answers are left out
EXCLUDED_KEYS = ("miscellaneous", "others")
# configs.TUMOR_LESION_GROUP_KEYS, plus "tumour": MedVision matches them in its regrouped names, which spell
# "Tumor" ("liver tumour" becomes "Liver Tumor/Lesion"); our regions keep the datasets' own label names.
TUMOR_LESION_GROUP_KEYS = ("tumor", "lesion", "metastatic", "tumour")
OVERLAP_NAMES = ("IoU", "F1", "Precision", "Recall")
OVERLAP_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
ERROR_THRESHOLDS = tuple(k / 10 for k in range(1, 11))
PRINTED_MRE_THRESHOLDS = ("MRE<0.1", "MRE<0.2", "MRE<0.3")
MODALITY_SHORT = {"MRI": "MR", "ultrasound": "US", "X-ray": "XR"}
PLANE_LETTER = {"sagittal": "S", "coronal": "C", "axial": "A"}  # slice_dim 0, 1, 2 of RAS+


def region_name(pair: dict) -> str:
    """MedVision's region of a detection or T/L pair: label, short modality and plane letter."""
    modality = MODALITY_SHORT.get(pair["modality"], pair["modality"])
    return f"{pair['label_name']} @ {modality} ({PLANE_LETTER[pair['plane']]})"


def measurement_label(pair: dict) -> str:
    """MedVision's label of an angle/distance pair: dataset, measurement type and key."""
    return f"{pair['dataset']}_{pair['metric_type']}_{pair['metric_name']}"


def detection_answer(numbers: Optional[list[float]], truth: list[float]) -> dict:
    """One detection answer's scores: unparsed is 0 overlap and NaN MAE."""
    if numbers is None:
        return {"success": False, "MAE": math.nan, **{name: 0.0 for name in OVERLAP_NAMES}}
    with np.errstate(all="ignore"):  # an infinite corner: its area is infinite and its scores 0
        # float32 corners against float64 truth, so areas round as in MedVision's numpy arithmetic
        overlap = scoring.box_overlap([np.float32(v) for v in numbers], [np.float64(v) for v in truth])
    scores = dict(zip(OVERLAP_NAMES, (min(float(v), 1.0) for v in dataclasses.astuple(overlap))))
    return {"success": True, "MAE": sum(abs(p - t) for p, t in zip(numbers, truth)) / len(truth), **scores}


def error_answer(numbers: Optional[list[float]], truth: list[float]) -> dict:
    """One T/L or A/D answer's MAE and MRE, NaN when unparsed."""
    if numbers is None:
        return {"success": False, "MAE": math.nan, "MRE": math.nan}
    mae, mre = scoring.absolute_and_relative_error(numbers, truth)
    return {"success": True, "MAE": mae, "MRE": mre}


def score_answer(pair: dict, prediction: dict) -> dict:
    """A prediction scored as MedVision scores it, with the region or label it is summarised under."""
    task, style = pair["task"], pair["prompt_style"]
    numbers, truth = scoring.answered_numbers(prediction, task, style), scoring.truth_numbers(pair, style)
    if task == "detection":
        return {"task": task, "label": region_name(pair), **detection_answer(numbers, truth)}
    label = region_name(pair) if task == "tumor_lesion_size" else measurement_label(pair)
    return {
        "task": task,
        "label": label,
        "dataset": pair["dataset"],
        "metric_type": pair.get("metric_type"),
        **error_answer(numbers, truth),
    }


def _finite_mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _bucket_counts(values: list[float]) -> list[int]:
    """Finite errors counted in MedVision's ten buckets `min(int(10 v), 9)`: [0, 0.1), ..., [0.9, inf).
    The last bucket is open, so MedVision's `<1.0` rate counts every finite error."""
    counts = [0] * len(ERROR_THRESHOLDS)
    for value in values:
        if math.isfinite(value):
            counts[min(int(value * 10), 9)] += 1
    return counts


def _below_rates(name: str, values: list[float]) -> dict:
    counts = _bucket_counts(values)
    return {f"{name}<{k:.1f}": sum(counts[: i + 1]) / len(values) for i, k in enumerate(ERROR_THRESHOLDS)}


def detection_region(answers: list[dict]) -> dict:
    """MedVision's metrics of one detection region (`_calculate_final_metrics_detection_task`)."""
    n = len(answers)
    metrics = {name: _finite_mean([a[name] for a in answers]) for name in OVERLAP_NAMES}
    metrics.update(
        {
            "avgMAE": _finite_mean([a["MAE"] for a in answers]),
            "SuccessRate": sum(a["success"] for a in answers) / n,
            "num_samples": n,
        }
    )
    metrics.update(_below_rates("MAE", [a["MAE"] for a in answers]))
    for name in OVERLAP_NAMES:
        metrics.update({f"{name}>{t:.1f}": sum(a[name] >= t for a in answers) / n for t in OVERLAP_THRESHOLDS})
    return metrics


def error_label(answers: list[dict]) -> dict:
    """MedVision's metrics of one T/L or A/D label (`_calculate_final_metrics_TL_task`, `..._AD_task`)."""
    n = len(answers)
    return {
        "avgMAE": _finite_mean([a["MAE"] for a in answers]),
        "avgMRE": _finite_mean([a["MRE"] for a in answers]),
        "SuccessRate": sum(a["success"] for a in answers) / n,
        "num_samples": n,
        **_below_rates("MRE", [a["MRE"] for a in answers]),
    }


def _weighted_mean(values: list[float], weights: list[int]) -> float:
    """Mean of the non-NaN values weighted by answer counts; NaN when none."""
    kept = [(v, w) for v, w in zip(values, weights) if not math.isnan(v)]
    if not kept or not sum(w for _, w in kept):
        return math.nan
    return float(np.sum(np.array([v for v, _ in kept]) * np.array([w for _, w in kept])) / sum(w for _, w in kept))


def detection_group(regions: dict[str, dict]) -> dict:
    """Sample-weighted means of the regions' metrics (`group_anatomy_vs_tumor_lesion`); {} when empty."""
    if not regions:
        return {}
    weights = [m["num_samples"] for m in regions.values()]
    names = [name for name in next(iter(regions.values())) if name != "num_samples"]
    # MedVision skips inf as well as NaN here
    means = {
        name: _weighted_mean([m[name] if math.isfinite(m[name]) else math.nan for m in regions.values()], weights)
        for name in names
    }
    return {**means, "total_samples": sum(weights), "num_regions": len(regions)}


def detection_group_of(region: str, metrics: dict) -> str:
    """ "anatomy", "T/L", or why MedVision leaves the region out of both."""
    lowered = region.lower()
    if any(key in lowered for key in EXCLUDED_KEYS):
        return "left out: miscellaneous/others"
    if metrics["num_samples"] < MINIMUM_GROUP_SIZE:
        return f"left out: fewer than {MINIMUM_GROUP_SIZE} answers"
    return "T/L" if any(key in lowered for key in TUMOR_LESION_GROUP_KEYS) else "anatomy"


def summarize_detection(answers: list[dict]) -> dict:
    """Regions (each with its group or why it is left out) and the anatomy and T/L groups."""
    regions = {label: detection_region(group) for label, group in _by_label(answers).items()}
    membership = {label: detection_group_of(label, metrics) for label, metrics in regions.items()}
    groups = {
        group: detection_group({label: regions[label] for label in regions if membership[label] == group})
        for group in ("anatomy", "T/L")
    }
    return {"groups": groups, "regions": {label: {**regions[label], "group": membership[label]} for label in regions}}


def _weighted_overall(labels: dict[str, dict], total: int) -> dict:
    """MAE, MRE, SR weighted by answer counts over `total` answers, NaN terms adding nothing
    (`print_model_summaries`), and the MRE<0.1..0.3 rates weighted over the labels."""
    if not total:
        return {}
    overall = {}
    for key, name in (("avgMAE", "MAE"), ("avgMRE", "MRE"), ("SuccessRate", "SR")):
        overall[name] = sum(m[key] * m["num_samples"] for m in labels.values() if not math.isnan(m[key])) / total
    weights = [m["num_samples"] for m in labels.values()]
    overall.update(
        {name: _weighted_mean([m[name] for m in labels.values()], weights) for name in PRINTED_MRE_THRESHOLDS}
    )
    return {**overall, "total_samples": total}


def summarize_tumor_lesion(answers: list[dict]) -> dict:
    """Labels and the weighted overall line; a label without a finite MRE is left out of both."""
    labels = {label: error_label(group) for label, group in _by_label(answers).items()}
    kept = {label: m for label, m in labels.items() if not math.isnan(m["avgMRE"])}
    return {
        "overall": _weighted_overall(kept, sum(m["num_samples"] for m in kept.values())),
        "labels": kept,
        "left_out": sorted(set(labels) - set(kept)),
    }


def summarize_angle_distance(answers: list[dict]) -> dict:
    """Labels, the weighted overall line over every answer, and per dataset and measurement type groups."""
    grouped = _by_label(answers)
    labels = {label: error_label(group) for label, group in grouped.items()}
    group_of = {
        label: f"{group[0]['dataset']}-{group[0]['metric_type'].capitalize()}" for label, group in grouped.items()
    }
    groups = {}
    for name in sorted(set(group_of.values())):
        members = [m for label, m in labels.items() if group_of[label] == name]
        weights = [m["num_samples"] for m in members]
        groups[name] = {
            **{
                out: _weighted_mean([m[key] for m in members], weights)
                for key, out in (("avgMAE", "MAE"), ("avgMRE", "MRE"), ("SuccessRate", "SR"))
            },
            **{key: _weighted_mean([m[key] for m in members], weights) for key in PRINTED_MRE_THRESHOLDS},
            "samples": sum(weights),
        }
    total = sum(m["num_samples"] for m in labels.values())
    return {"overall": _weighted_overall(labels, total), "groups": groups, "labels": labels}


def _by_label(answers: list[dict]) -> dict[str, list[dict]]:
    grouped = collections.defaultdict(list)
    for answer in answers:
        grouped[answer["label"]].append(answer)
    return dict(grouped)


def summarize(answers: list[dict]) -> dict:
    """MedVision's summaries of `score_answer` results, per task present; NaN becomes None."""
    by_task = collections.defaultdict(list)
    for answer in answers:
        by_task[answer["task"]].append(answer)
    summaries = {
        "detection": summarize_detection,
        "tumor_lesion_size": summarize_tumor_lesion,
        "angle_distance": summarize_angle_distance,
    }
    return _without_nan(
        {
            "reference": f"{MEDVISION_REFERENCE}, {MEDVISION_SOURCE}",
            **{task: summaries[task](by_task[task]) for task in summaries if by_task[task]},
        }
    )


def _without_nan(value):
    if isinstance(value, dict):
        return {key: _without_nan(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_without_nan(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


# --- text tables ---

DETECTION_GROUP_COLUMNS = (
    "Recall",
    "Precision",
    "F1",
    "IoU",
    "SuccessRate",
    "IoU>0.5",
    "F1>0.5",
    "F1>0.6",
    "F1>0.7",
    "F1>0.8",
    "F1>0.9",
)
DETECTION_REGION_COLUMNS = ("Recall", "Precision", "F1", "IoU", "SuccessRate", "IoU>0.5", "F1>0.5")
ERROR_COLUMNS = ("MAE", "MRE", "SR") + PRINTED_MRE_THRESHOLDS
LABEL_KEYS = {"MAE": "avgMAE", "MRE": "avgMRE", "SR": "SuccessRate"}


def cell(value) -> str:
    """A table cell: 4 decimals for floats, '-' for no value."""
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def aligned(rows: list[tuple]) -> list[str]:
    """Rows of cells as left-aligned columns, two spaces apart."""
    text = [tuple(cell(v) for v in row) for row in rows]
    widths = [max(len(row[c]) for row in text) for c in range(len(text[0]))]
    return ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in text]


def _left_out_line(regions: list[tuple[str, dict]]) -> str:
    reasons = collections.Counter(m["group"].removeprefix("left out: ") for _, m in regions)
    answers = sum(m["num_samples"] for _, m in regions)
    return (
        f"regions left out of both groups: {len(regions)}, with {answers} answers ("
        + ", ".join(f"{why}: {n}" for why, n in sorted(reasons.items()))
        + "); every region is in the JSON report"
    )


def _detection_lines(summary: dict) -> list[str]:
    groups = [
        (name, g.get("num_regions", 0), g.get("total_samples", 0), *(g.get(c) for c in DETECTION_GROUP_COLUMNS))
        for name, g in summary["groups"].items()
    ]
    regions = sorted(summary["regions"].items(), key=lambda item: -item[1]["num_samples"])
    kept = [(name, m) for name, m in regions if not m["group"].startswith("left out")]
    left_out = [(name, m) for name, m in regions if m["group"].startswith("left out")]
    return [
        "Detection, anatomy vs T/L: regions of at least 50 answers, weighted by answers; an unparsed answer "
        "scores 0; 'IoU>0.5' is MedVision's name for the share of all answers with IoU >= 0.5",
        *aligned([("group", "regions", "samples") + DETECTION_GROUP_COLUMNS] + groups),
        *aligned(
            [("region", "samples", "group") + DETECTION_REGION_COLUMNS]
            + [(name, m["num_samples"], m["group"], *(m[c] for c in DETECTION_REGION_COLUMNS)) for name, m in kept]
        ),
        *([_left_out_line(left_out)] if left_out else []),
    ]


def _overall_line(overall: dict) -> str:
    if not overall:
        return "overall: no label with a parsed answer"
    return (
        "overall: "
        + ", ".join(f"{name} {cell(overall[name])}" for name in ERROR_COLUMNS)
        + f" (total samples: {overall['total_samples']})"
    )


def _label_rows(labels: dict) -> list[str]:
    ordered = sorted(labels.items(), key=lambda item: -item[1]["num_samples"])
    return aligned(
        [("label",) + ERROR_COLUMNS + ("samples",)]
        + [(name, *(m[LABEL_KEYS.get(c, c)] for c in ERROR_COLUMNS), m["num_samples"]) for name, m in ordered]
    )


def _tumor_lesion_lines(summary: dict) -> list[str]:
    left_out = f"; left out, no parsed answer: {', '.join(summary['left_out'])}" if summary["left_out"] else ""
    return [
        f"Tumour/lesion size (mm), labels weighted by answers{left_out}",
        _overall_line(summary["overall"]),
        *_label_rows(summary["labels"]),
    ]


def _angle_distance_lines(summary: dict) -> list[str]:
    groups = [(name, *(g[c] for c in ERROR_COLUMNS), g["samples"]) for name, g in summary["groups"].items()]
    return [
        "Angle/distance, labels weighted by answers (the overall MAE mixes mm and degrees, as MedVision's does)",
        _overall_line(summary["overall"]),
        *aligned([("group",) + ERROR_COLUMNS + ("samples",)] + groups),
        *_label_rows(summary["labels"]),
    ]


def format_tables(summary: dict) -> list[str]:
    """MedVision's summary (`summarize`'s result) as text lines, one block per task present."""
    lines = [f"MedVision's summary tables, as computed by {MEDVISION_REFERENCE}", f"({MEDVISION_SOURCE})"]
    for task, block in (
        ("detection", _detection_lines),
        ("tumor_lesion_size", _tumor_lesion_lines),
        ("angle_distance", _angle_distance_lines),
    ):
        if task in summary:
            lines += [""] + block(summary[task])
    return lines
