"""Validation of output rows: the table schema plus the semantic invariants of each task."""

from __future__ import annotations

import math
import struct

import pyarrow as pa

from schemas.spilled import png_head
from schemas.tables import PARTITION_KEYS, TASKS, schema_for
from transforms.ids import SPLITS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MM_TOL = 1e-6


def file_row(row: dict, schema: pa.Schema) -> dict:
    """The row as stored in a file of `schema` (hive partition keys live in the path, not the file)."""
    return {name: row.get(name) for name in schema.names}


def _extra_columns(row: dict, table: str) -> list[str]:
    extra = sorted(set(row) - set(schema_for(table).names) - set(PARTITION_KEYS))
    return [f"columns not in the {table} schema: {extra}"] if extra else []


def _arrow_problems(rows: list[dict], table: str) -> list[list[str]]:
    """Per row, why it does not convert to the table's Arrow schema without loss. One conversion for all rows;
    only when it fails is each row converted alone, to name the offenders."""
    schema = schema_for(table)
    try:
        pa.RecordBatch.from_pylist([_without_png(file_row(row, schema)) for row in rows], schema=schema)
        return [[] for _ in rows]
    except (pa.ArrowException, TypeError, ValueError) as exc:
        if len(rows) == 1:
            return [[f"does not fit the {table} schema: {exc}"]]
    return [_arrow_problems([row], table)[0] for row in rows]


def _without_png(stored: dict) -> dict:
    """The row with its PNG left out of the Arrow check: bytes always convert to binary (`_common_problems`
    checks the PNG itself), and copying them would cost as much as the check."""
    image = stored.get("image")
    if isinstance(image, dict) and image.get("bytes") is not None:
        return {**stored, "image": {**image, "bytes": None}}
    return stored


def png_size(data: bytes | None) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, or None when the bytes are not a PNG."""
    if not data or data[:8] != PNG_SIGNATURE or len(data) < 24:
        return None
    return struct.unpack(">II", data[16:24])


def _common_problems(row: dict) -> list[str]:
    problems = []
    if row.get("task") not in TASKS:
        problems.append(f"task {row.get('task')!r} not in {TASKS}")
    if row.get("split") not in SPLITS:
        problems.append(f"split {row.get('split')!r} not in {SPLITS}")
    problems += [f"{column} is empty" for column in ("prompt", "answer") if not row.get(column)]
    pixels = (row.get("image") or {}).get("bytes")
    size = png_size(png_head(pixels))
    if row.get("image_mode") == "pointer":
        if pixels is not None:
            problems.append("a pointer row carries image bytes")
    elif size is None:
        problems.append("image bytes are not a PNG")
    elif size != (row.get("image_width_px"), row.get("image_height_px")):
        problems.append(
            f"PNG is {size[0]}x{size[1]} px but the row says {row.get('image_width_px')}x{row.get('image_height_px')}"
        )
    spacing = row.get("pixel_spacing_mm_row_col") or []
    if len(spacing) != 2 or not all(math.isfinite(v) and v > 0 for v in spacing):
        problems.append(f"pixel_spacing_mm_row_col {spacing} is not two positive mm values")
    window = row.get("intensity_window") or {}
    if (
        not all(isinstance(window.get(k), float) and math.isfinite(window[k]) for k in ("low", "high"))
        or not window["low"] < window["high"]
    ):
        problems.append(f"intensity_window {window} is not a finite low < high")
    return problems


def _detection_problems(row: dict) -> list[str]:
    problems = []
    box = row.get("box_xyxy_px") or []
    if len(box) != 4:
        return [f"box_xyxy_px {box} does not have 4 values"]
    x0, y0, x1, y1 = box
    width, height = row["image_width_px"], row["image_height_px"]
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        problems.append(f"box {box} is empty or outside the {width}x{height} image")
    spacing = row.get("pixel_spacing_mm_row_col") or []
    if len(spacing) == 2:
        expected = [(x1 - x0) * spacing[1], (y1 - y0) * spacing[0]]
        if any(abs(a - b) > MM_TOL for a, b in zip(row.get("box_size_mm") or [], expected)):
            problems.append(f"box_size_mm {row.get('box_size_mm')} != box in px x spacing {expected}")
    if row.get("label_name") is None:
        problems.append(f"label {row.get('label')} has no name")
    n_components, index = row.get("n_components") or 0, row.get("component_index")
    if not (n_components >= 1 and index is not None and 0 <= index < n_components):
        problems.append(f"component_index {index} outside 0..{n_components - 1}")
    return problems + _benchmark_box_problems(row)


def _benchmark_box_problems(row: dict) -> list[str]:
    """MedVision's box target: present exactly under its conventions, relative, lower-left origin (y_min < y_max)."""
    target = row.get("box_medvision_rel")
    wanted = (row.get("provenance") or {}).get("conventions") == "medvision"
    if target is None:
        return ["box_medvision_rel missing under --conventions medvision"] if wanted else []
    if not wanted:
        return ["box_medvision_rel set outside --conventions medvision"]
    if (
        len(target) != 4
        or not all(0 <= v <= 1 for v in target)
        or not (target[0] <= target[2] and target[1] <= target[3])
    ):
        return [f"box_medvision_rel {target} is not a relative [x_min, y_min, x_max, y_max]"]
    return []


def _inside_image(row: dict, columns: tuple[str, ...]) -> list[str]:
    width, height = row["image_width_px"], row["image_height_px"]
    problems = []
    for column in columns:
        value = row.get(column) or []
        points = value if value and isinstance(value[0], list) else [value]
        if not points or not all(len(p) == 2 and 0 <= p[0] <= width and 0 <= p[1] <= height for p in points):
            problems.append(f"{column} {value} is not inside the {width}x{height} image")
    return problems


def _lesion_problems(row: dict) -> list[str]:
    problems = []
    lengths = [
        row.get(k)
        for k in ("major_axis_mm", "minor_axis_mm", "longest_diameter_mm", "perpendicular_diameter_mm", "area_mm2")
    ]
    finite = [v for v in lengths if isinstance(v, float) and math.isfinite(v)]
    if len(finite) != len(lengths):
        return [f"lengths {lengths} are not all finite numbers"]
    major, minor, longest, perpendicular, area = finite
    if not major >= minor > 0:
        problems.append(f"axes major {major} >= minor {minor} > 0 does not hold")
    if not longest >= perpendicular > 0:
        problems.append(f"diameters longest {longest} >= perpendicular {perpendicular} > 0 does not hold")
    if area <= 0:
        problems.append(f"area {area} mm2 is not positive")
    return problems + _inside_image(
        row,
        (
            "ellipse_center_xy_px",
            "major_axis_endpoints_xy_px",
            "minor_axis_endpoints_xy_px",
            "longest_diameter_endpoints_xy_px",
            "perpendicular_diameter_endpoints_xy_px",
        ),
    )


def _measurement_problems(row: dict) -> list[str]:
    value, unit, kind = row.get("value"), row.get("unit"), row.get("metric_type")
    if not isinstance(value, float) or not math.isfinite(value):
        return [f"value {value} is not a finite number"]
    problems = []
    if kind == "angle":
        directed = row.get("directed_angle_deg")
        if unit != "deg" or not 0 <= value <= 90:
            problems.append(f"angle {value} {unit} is not an unsigned acute angle in degrees")
        if directed is None or not 0 <= directed <= 180 or abs(min(directed, 180 - directed) - value) > 1e-6:
            problems.append(f"directed angle {directed} does not match the acute angle {value}")
    elif kind == "distance":
        row_mm, col_mm = row["pixel_spacing_mm_row_col"]
        diagonal_mm = math.hypot(row["image_width_px"] * col_mm, row["image_height_px"] * row_mm)
        if unit != "mm" or not 0 < value < diagonal_mm:
            problems.append(f"distance {value} {unit} is not in (0, {diagonal_mm:.1f}) mm, the image diagonal")
    else:
        problems.append(f"metric_type {kind!r} is not angle or distance")
    points = [[p.get("x"), p.get("y")] for p in row.get("landmarks_xy_px") or []]
    if not points:
        problems.append("no landmarks")
    return problems + (_inside_image({**row, "points": points}, ("points",)) if points else [])


SEMANTIC_CHECKS = {
    "detection": _detection_problems,
    "tumor_lesion_size": _lesion_problems,
    "angle_distance": _measurement_problems,
}


def pair_problems(row: dict) -> list[str]:
    """Everything wrong with a pair row (empty list when it is valid)."""
    return batch_problems([row])[0]


def batch_problems(rows: list[dict]) -> list[list[str]]:
    """`pair_problems` of each row; the rows that pass every other check are converted to Arrow together,
    one batch per table (a slice's pairs are validated at once)."""
    problems = [_checked_semantic_problems(row) for row in rows]
    for table in TASKS:
        index = [i for i, row in enumerate(rows) if not problems[i] and row["task"] == table]
        for i, found in zip(index, _arrow_problems([rows[i] for i in index], table) if index else []):
            problems[i] = found
    return problems


def _checked_semantic_problems(row: dict) -> list[str]:
    """`_semantic_problems`, where a check that breaks on a malformed row names the row instead of failing
    the whole batch."""
    try:
        return _semantic_problems(row)
    except (ArithmeticError, LookupError, ValueError, TypeError, AttributeError) as exc:
        return [f"a check failed on this row: {exc!r}"]


def _semantic_problems(row: dict) -> list[str]:
    problems = _common_problems(row)
    table_check = SEMANTIC_CHECKS.get(row.get("task", ""))
    if table_check is not None and not problems:
        problems += table_check(row)
    return problems or _extra_columns(row, row["task"])
