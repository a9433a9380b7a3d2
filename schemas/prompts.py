"""Prompt and answer text of a pair, per task and prompt style (`--prompt-style`).

`default` states this pipeline's frame explicitly: the displayed image, origin at its top-left
corner, x = column, y = row, coordinates on pixel edges, boxes end-exclusive `[x0, y0, x1, y1]` in
pixels; sizes and distances in mm, angles in degrees. Its answers are exactly that format with
fixed decimals (`consumers/scoring.py` reads them back).

`medvision` reproduces the published MedVision benchmark's non-CoT question templates and answer
formats (github.com/YongchengYAO/MedVision):
- questions: `doc_to_text_BoxCoordinate`, `doc_to_text_TumorLesionSize`,
  `doc_to_text_BiometricsFromLandmarks` with `_get_biometric_prompt_distance/_angle` in
  `src/medvision_bm/medvision_lmms_eval/lmms_eval/tasks/medvision/medvision_utils.py`;
- format requirements: `FORMAT_PROMPT_*` and `GENERAL_FORMAT_PROMPT` in
  `src/medvision_bm/sft/sft_prompts.py` (the revision whose benchmark prompts ask for
  `<answer> </answer>` tags, which `benchmark/parse_outputs.py` reads).
Three slots are filled from our rows rather than MedVision's benchmark plans: the image description
(MedVision's per-task `image_description`; here modality and plane), the structure name (`label_name`)
and the landmark names (the landmark ids of the row). MedVision rescales the stated image size and
pixel size to each model's input resolution; these prompts state the image as written. The answer's
number of decimals is ours: MedVision's targets are floats compared numerically.

Inputs are plain row dicts (schemas/rows.py); functions raise KeyError/ValueError on a row that
lacks the fields of its task.
"""

from __future__ import annotations

from transforms.medvision import benchmark_box_target

PROMPT_STYLES = ("default", "medvision")
BOX_DECIMALS_MEDVISION = 4  # relative coordinates in [0, 1]
MEASURE_DECIMALS = 2  # mm and degrees

_DEFAULT_FRAME = (
    "Coordinates refer to the image as displayed: origin at the top-left corner of the image, x along columns "
    "(to the right), y along rows (downwards), in pixels, measured on pixel edges (pixel column c, row r covers "
    "x in [c, c+1) and y in [r, r+1))."
)

# --- MedVision's text, quoted (see the module docstring for the source files) ---
MEDVISION_GENERAL_FORMAT_PROMPT = (
    "The reasoning process and the final answer must be enclosed within <think> </think> and <answer> </answer> "
    "tags, respectively. For example: <think> reasoning process here </think> <answer> answer here </answer>. "
)
MEDVISION_FORMAT_BOX_COORDINATES = (
    f"{MEDVISION_GENERAL_FORMAT_PROMPT}"
    "The answer should be four decimal numbers separated by commas without any units or additional text. "
    "The first two numbers are the coordinates of the lower-left corner and the last two numbers are the "
    "coordinates of the upper-right corner of the bounding box. "
    "Use relative coordinates in the image space, where the origin is at the lower-left corner of the image. "
    "Relative coordinates should be values between 0 and 1, representing the relative positions in the image."
)
MEDVISION_FORMAT_TUMOR_LESION_SIZE = (
    f"{MEDVISION_GENERAL_FORMAT_PROMPT}"
    "The answer should be two decimal numbers separated by a comma. "
    "The first is the major axis length, and the second is the minor axis length."
)
MEDVISION_FORMAT_BIOMETRICS = f"{MEDVISION_GENERAL_FORMAT_PROMPT}The answer should be a single decimal number."
MEDVISION_UNIT_WORDS = {"mm": "millimeters", "deg": "degrees"}  # `_normalize_metric_unit`


def _image_size_px(row: dict) -> tuple[int, int]:
    return int(row["image_width_px"]), int(row["image_height_px"])


def _pixel_size_mm_width_height(row: dict) -> tuple[float, float]:
    """Pixel size along x (columns) and y (rows) in mm, from `pixel_spacing_mm_row_col`."""
    row_mm, col_mm = row["pixel_spacing_mm_row_col"]
    return float(col_mm), float(row_mm)


def _image_description(row: dict) -> str:
    return f"{row['modality']} {row['plane']} slice"


def _numbers(values, decimals: int) -> str:
    return ", ".join(f"{float(v):.{decimals}f}" for v in values)


def _angle_lines(point_names) -> str:
    first, second, third, fourth = point_names
    return f"the line through {first} and {second} and the line through {third} and {fourth}"


# --- default style ---


def _default_header(row: dict) -> str:
    width_px, height_px = _image_size_px(row)
    return (
        f"Image: {_image_description(row)} ({row['sequence']}), {width_px} pixels wide and {height_px} pixels high.\n"
    )


def _default_spacing_line(row: dict) -> str:
    width_mm, height_mm = _pixel_size_mm_width_height(row)
    return f"Pixel spacing: {width_mm:.3f} mm along x (width) and {height_mm:.3f} mm along y (height).\n"


def default_detection(row: dict) -> tuple[str, str]:
    """Box question in our pixel-edge frame; answer `[x0, y0, x1, y1]` as integers (end-exclusive edges)."""
    prompt = (
        _default_header(row) + _DEFAULT_FRAME + "\n"
        f"Question: give the bounding box of the {row['label_name']}.\n"
        "Answer format: [x0, y0, x1, y1] as four integers in pixels: (x0, y0) is the top-left edge of the "
        "box and (x1, y1) its bottom-right edge, end-exclusive (x1 - x0 is the box width in pixels). "
        "No other text."
    )
    return prompt, "[" + _numbers(row["box_xyxy_px"], 0) + "]"


def default_lesion_size(row: dict) -> tuple[str, str]:
    """Ellipse axes question; answer `[major, minor]` in mm with two decimals."""
    prompt = (
        _default_header(row)
        + _default_spacing_line(row)
        + f"Question: estimate the major and minor axis lengths, in millimetres, of the ellipse fitted to the "
        f"outline of the {row['label_name']}.\n"
        f"Answer format: [major, minor] in mm with {MEASURE_DECIMALS} decimals. No other text."
    )
    return prompt, "[" + _numbers((row["major_axis_mm"], row["minor_axis_mm"]), MEASURE_DECIMALS) + "]"


def default_angle_distance(row: dict, point_names) -> tuple[str, str]:
    """Distance (mm, between two landmarks) or angle (degrees, acute, between two lines) question."""
    what = row["metric_description"] or row["metric_name"]
    if row["metric_type"] == "distance":
        question = (
            f"measure the distance {what}: between landmarks {point_names[0]} and {point_names[1]}, in millimetres."
        )
        unit = "mm"
    else:
        question = (
            f"measure the angle {what}: the acute angle between {_angle_lines(point_names)}, in degrees (0 to 90)."
        )
        unit = "degrees"
    prompt = (
        _default_header(row) + _default_spacing_line(row) + f"Question: {question}\n"
        f"Answer format: one number in {unit} with {MEASURE_DECIMALS} decimals. No other text."
    )
    return prompt, _numbers([row["value"]], MEASURE_DECIMALS)


# --- medvision style ---


def _medvision_task_line(row: dict) -> str:
    return f"Task:\nGiven the input medical image: {_image_description(row)}, "


def _medvision_additional_information(row: dict) -> str:
    """The image and pixel size lines; MedVision's template writes the pixel size in "mm" whatever the task's unit."""
    width_px, height_px = _image_size_px(row)
    width_mm, height_mm = _pixel_size_mm_width_height(row)
    return (
        "Additional information:\n"
        f"The image size is {width_px} pixels (width) x {height_px} pixels (height).\n"
        f"The pixel size for this image is {width_mm:.3f} mm (width) x {height_mm:.3f} mm (height).\n"
    )


def _medvision_answer(values, decimals: int) -> str:
    return f"<answer>{_numbers(values, decimals)}</answer>"


def medvision_box_target(row: dict) -> list[float]:
    """A detection row's box as MedVision's answer states it (`transforms.medvision.benchmark_box_target`)."""
    width_px, height_px = _image_size_px(row)
    x0_px, y0_px, x1_px, y1_px = (int(round(v)) for v in row["box_xyxy_px"])
    return benchmark_box_target((x0_px, y0_px, x1_px, y1_px), width_px, height_px)


def medvision_detection(row: dict) -> tuple[str, str]:
    """MedVision's box question; answer: its benchmark target (relative, origin lower-left, inclusive indices)."""
    prompt = (
        _medvision_task_line(row)
        + f"return the coordinates of the lower-left and upper-right corners of the bounding box for the "
        f"{row['label_name']}.\nFormat requirement:\n{MEDVISION_FORMAT_BOX_COORDINATES}"
    )
    return prompt, _medvision_answer(medvision_box_target(row), BOX_DECIMALS_MEDVISION)


def medvision_lesion_size(row: dict) -> tuple[str, str]:
    """MedVision's tumour/lesion size question; answer: major, minor axis in mm."""
    unit_words = MEDVISION_UNIT_WORDS["mm"]
    prompt = (
        _medvision_task_line(row)
        + f"estimate the major and minor axis lengths of the ellipse enclosing the {row['label_name']}, "
        f"in {unit_words}.\n"
        + _medvision_additional_information(row)
        + f"Format requirement:\n{MEDVISION_FORMAT_TUMOR_LESION_SIZE}"
    )
    return prompt, _medvision_answer((row["major_axis_mm"], row["minor_axis_mm"]), MEASURE_DECIMALS)


def _medvision_biometric_question(row: dict, point_names, unit_words: str) -> str:
    """`_get_biometric_prompt_distance` / `_get_biometric_prompt_angle`, with the measurement's description
    as the biometrics name."""
    name = row["metric_description"]
    if row["metric_type"] == "distance":
        first, second = point_names
        if name:
            return (
                f"estimate the distance of {name} in {unit_words}, which is the distance between 2 landmark "
                f"points: (landmark 1) {first}, (landmark 2) {second}.\n"
            )
        return (
            f"estimate the distance between 2 landmark points in {unit_words}: (landmark 1) {first}, "
            f"(landmark 2) {second}.\n"
        )
    l1p1, l1p2, l2p1, l2p2 = point_names
    lines = f"(line 1) the line connecting {l1p1} and {l1p2}, (line 2) the line connecting {l2p1} and {l2p2}.\n"
    if name:
        return f"estimate the angle of {name} in {unit_words}, which is the angle between 2 lines: {lines}"
    return f"estimate the angle between 2 lines in {unit_words}: {lines}"


def medvision_angle_distance(row: dict, point_names) -> tuple[str, str]:
    """MedVision's angle/distance question; answer: the value (mm or degrees)."""
    unit_words = MEDVISION_UNIT_WORDS[row["unit"]]
    prompt = (
        _medvision_task_line(row)
        + _medvision_biometric_question(row, point_names, unit_words)
        + _medvision_additional_information(row)
        + f"Format requirement:\n{MEDVISION_FORMAT_BIOMETRICS}"
    )
    return prompt, _medvision_answer([row["value"]], MEASURE_DECIMALS)


_BUILDERS = {
    ("default", "detection"): default_detection,
    ("default", "tumor_lesion_size"): default_lesion_size,
    ("medvision", "detection"): medvision_detection,
    ("medvision", "tumor_lesion_size"): medvision_lesion_size,
}
_LANDMARK_BUILDERS = {"default": default_angle_distance, "medvision": medvision_angle_distance}


def prompt_and_answer(row: dict, style: str, point_names: tuple[str, ...] = ()) -> dict:
    """`{"prompt": ..., "answer": ...}` for a pair row of any task in a `PROMPT_STYLES` style.

    `point_names`: the measurement's landmark ids in order (a, b for a distance; a, b, c, d for an angle
    between lines a-b and c-d); needed for angle/distance rows only. Raises ValueError on an unknown style.
    """
    if style not in PROMPT_STYLES:
        raise ValueError(f"unknown prompt style {style!r}; known: {PROMPT_STYLES}")
    if row["task"] == "angle_distance":
        prompt, answer = _LANDMARK_BUILDERS[style](row, point_names)
    else:
        prompt, answer = _BUILDERS[(style, row["task"])](row)
    return {"prompt": prompt, "answer": answer}
