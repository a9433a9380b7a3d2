"""Tumour/lesion size (SPEC §4): ellipse and RECIST diameters of one component, in millimetres.

All fitting happens in physical mm (x = column * column spacing, y = row * row spacing) so that
rectangular pixels cannot swap or skew axes. Points given back to the output are continuous
displayed-pixel coordinates `(x, y)` with the origin at the image's top-left corner: pixel
(column c, row r) spans [c, c+1) x [r, r+1), the frame of the boxes. Angles are measured in the
mm frame from the image's +x axis towards +y (down), in [0, 180).

A component that cannot be measured reliably is rejected with a `Reason`, never emitted.

Two measurements, chosen by the build's conventions (`MEASUREMENTS`, `Conventions.lesion_measurement`):
`measure_component` (ours: ellipse fitted to the pixel-edge contour, RECIST diameters, stricter guards)
and `measure_component_medvision` (MedVision v1.4.0: `cv2.fitEllipse` on cv2's pixel-centre contour,
its guards only; our RECIST diameters alongside).
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
from scipy.spatial import ConvexHull
from skimage.measure import EllipseModel, find_contours
from skimage.measure import label as label_components

from transforms.boxes import CONNECTIVITY, MAX_COMPONENTS_PER_LABEL
from transforms.errors import Reason

MIN_CONTOUR_POINTS = 5
# An ellipse fitted to five pixels or fewer measures the pixel grid, not the lesion.
MIN_COMPONENT_PIXELS = 6
MAX_MAJOR_OVER_BOX_DIAGONAL = 1.5
SIZE_FLOOR_MM = 2.0
SIZE_FLOOR_PIXELS = 2.0

Point = tuple[float, float]


@dataclasses.dataclass(frozen=True)
class LesionSize:
    """Measurements of one component (all lengths in mm, points in displayed pixels, edge frame)."""

    major_axis_mm: float
    minor_axis_mm: float
    ellipse_center_xy_px: Point
    ellipse_angle_deg: float
    major_axis_endpoints_xy_px: tuple[Point, Point]
    minor_axis_endpoints_xy_px: tuple[Point, Point]
    longest_diameter_mm: float
    longest_diameter_endpoints_xy_px: tuple[Point, Point]
    perpendicular_diameter_mm: float
    perpendicular_diameter_endpoints_xy_px: tuple[Point, Point]
    area_mm2: float


@dataclasses.dataclass(frozen=True)
class Rejection:
    """Why a component was not measured, with the numbers that decided it."""

    reason: Reason
    detail: str


def size_floor_mm(spacing_mm_row_col: tuple[float, float]) -> float:
    """MedVision v1.4.0's floor: max(2 mm, 2 x the coarser in-plane spacing), the same in every plane."""
    return max(SIZE_FLOOR_MM, SIZE_FLOOR_PIXELS * max(spacing_mm_row_col))


def outer_contour_mm(component: np.ndarray, spacing_mm_row_col, origin_row_col: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The component's outer boundary as (x, y) mm points, on pixel edges, in the edge frame.

    Marching squares at level 0.5 on the zero-padded mask runs between inside and outside
    pixel centres, i.e. along pixel edges; the longest closed contour is the outer one.
    `component` may be a crop of the slice holding the whole component, its top-left pixel at
    `origin_row_col` of the slice: the contour is the same (squares are scanned in the same order),
    shifted by a whole number of pixels, which the coordinates add back exactly.
    """
    padded = np.pad(component.astype(np.uint8), 1)
    contours = find_contours(padded, 0.5)
    rows_cols = max(contours, key=len)[:-1]  # closed contour: last point repeats the first
    # padded index p is edge-frame coordinate p - 1 + 0.5
    row_mm, col_mm = spacing_mm_row_col
    rows, cols = rows_cols[:, 0] + origin_row_col[0], rows_cols[:, 1] + origin_row_col[1]
    return np.column_stack(((cols - 0.5) * col_mm, (rows - 0.5) * row_mm))


def _to_px(point_mm, spacing_mm_row_col) -> Point:
    row_mm, col_mm = spacing_mm_row_col
    return float(point_mm[0] / col_mm), float(point_mm[1] / row_mm)


def _segment_px(a_mm, b_mm, spacing) -> tuple[Point, Point]:
    return _to_px(a_mm, spacing), _to_px(b_mm, spacing)


def fit_ellipse_mm(contour_mm: np.ndarray):
    """(centre, semi-major, semi-minor, angle of the major axis in rad) or None if the fit fails."""
    try:
        with np.errstate(invalid="ignore", divide="ignore"):  # a circle-like contour has no defined angle: 0/0
            model = EllipseModel.from_estimate(contour_mm)
    except TypeError:  # skimage cannot reduce the complex angle of a fit with no real ellipse (a few pixels)
        return None
    if not model:
        return None
    (half_a, half_b), theta = model.axis_lengths, float(model.theta)
    if half_b > half_a:
        half_a, half_b, theta = half_b, half_a, theta + math.pi / 2
    return np.asarray(model.center, dtype=float), float(half_a), float(half_b), theta % math.pi


def longest_diameter_mm(contour_mm: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Maximal caliper: the farthest pair of boundary points (searched on the convex hull)."""
    hull = contour_mm[ConvexHull(contour_mm).vertices] if len(contour_mm) > 3 else contour_mm
    deltas = hull[:, None, :] - hull[None, :, :]
    distances = np.hypot(deltas[..., 0], deltas[..., 1])
    first, second = np.unravel_index(np.argmax(distances), distances.shape)
    return float(distances[first, second]), hull[first], hull[second]


def perpendicular_diameter_mm(contour_mm: np.ndarray, start: np.ndarray, end: np.ndarray, step_mm: float):
    """Longest chord inside the boundary polygon perpendicular to the segment start-end (RECIST short axis).

    Chords are cut every `step_mm` along the long axis, the first `step_mm / 2` past the contour's
    lowest point along it; on each cut, the polygon's edge crossings pair up (even-odd rule) into
    inside segments, and the longest one wins (the first cut, then the first segment, on ties).
    Returns (length in mm, one end, the other end); (0, start, start) when no chord is found.
    All cuts are made at once: each edge crosses the cuts strictly between its two ends' positions.
    """
    axis = (end - start) / np.linalg.norm(end - start)
    normal = np.array([-axis[1], axis[0]])
    along = (contour_mm - start) @ axis
    across = (contour_mm - start) @ normal
    next_along, next_across = np.roll(along, -1), np.roll(across, -1)
    cuts = np.arange(along.min() + step_mm / 2, along.max(), step_mm)
    first = np.searchsorted(cuts, np.minimum(along, next_along), side="right")
    crossed = np.maximum(np.searchsorted(cuts, np.maximum(along, next_along), side="left") - first, 0)
    edge = np.repeat(np.arange(len(along)), crossed)
    starts = np.cumsum(crossed) - crossed
    cut_index = np.repeat(first - starts, crossed) + np.arange(edge.size)
    cut = cuts[cut_index]
    weight = (cut - along[edge]) / (next_along[edge] - along[edge])
    position = across[edge] + weight * (next_across[edge] - across[edge])
    order = np.lexsort((position, cut_index))
    cut_index, position = cut_index[order], position[order]
    # crossings pair up within a cut: (0, 1), (2, 3), ...; an odd last one is left alone
    group_start = np.flatnonzero(np.r_[True, cut_index[1:] != cut_index[:-1]]) if cut_index.size else cut_index
    rank = np.arange(cut_index.size) - np.repeat(group_start, np.diff(np.r_[group_start, cut_index.size]))
    left = np.flatnonzero((rank % 2 == 0) & np.r_[cut_index[1:] == cut_index[:-1], False])
    lengths = position[left + 1] - position[left]
    if not lengths.size or not lengths.max() > 0.0:
        return 0.0, start, start
    best = left[int(np.argmax(lengths))]
    base = start + cuts[cut_index[best]] * axis
    ends = base + position[best] * normal, base + position[best + 1] * normal
    return float(position[best + 1] - position[best]), *ends


def _pixel_width_mm(direction: np.ndarray, spacing_mm_row_col) -> float:
    """Width of one pixel measured along `direction` (mm frame): |dx| * column mm + |dy| * row mm, normalised."""
    row_mm, col_mm = spacing_mm_row_col
    unit = np.abs(direction) / np.linalg.norm(direction)
    return float(unit[0] * col_mm + unit[1] * row_mm)


def _fit_rejection(
    major_mm: float, minor_mm: float, component: np.ndarray, spacing_mm_row_col: tuple[float, float]
) -> Rejection | None:
    """The guards on a fitted ellipse (SPEC §4, MedVision v1.4.0), or None when it passes them.

    The box diagonal spans the component's pixels edge to edge: (columns x column mm, rows x row mm).
    """
    row_mm, col_mm = spacing_mm_row_col
    rows, cols = np.nonzero(component)
    box_diagonal_mm = math.hypot((cols.max() - cols.min() + 1) * col_mm, (rows.max() - rows.min() + 1) * row_mm)
    if minor_mm < min(row_mm, col_mm):
        return Rejection(Reason.FIT_MINOR_BELOW_PIXEL, f"minor axis {minor_mm:.3g} mm < one pixel")
    if major_mm > MAX_MAJOR_OVER_BOX_DIAGONAL * box_diagonal_mm:
        return Rejection(
            Reason.FIT_MAJOR_EXCEEDS_BOX, f"major axis {major_mm:.3g} mm > 1.5 x box diagonal {box_diagonal_mm:.3g} mm"
        )
    floor = size_floor_mm(spacing_mm_row_col)
    if major_mm < floor:
        return Rejection(Reason.BELOW_SIZE_FLOOR, f"major axis {major_mm:.3g} mm < floor {floor:.3g} mm")
    return None


def measure_component(
    component: np.ndarray, spacing_mm_row_col: tuple[float, float], origin_row_col: tuple[int, int] = (0, 0)
) -> LesionSize | Rejection:
    """Ellipse and RECIST measurements of one binary component, or the reason it is rejected.

    `component` is the slice's mask of the component, or any crop of it holding the whole component
    with its top-left pixel at `origin_row_col` of the slice: the results are the same.
    """
    row_mm, col_mm = spacing_mm_row_col
    contour = outer_contour_mm(component, spacing_mm_row_col, origin_row_col)
    if len(contour) < MIN_CONTOUR_POINTS:
        return Rejection(Reason.FIT_TOO_FEW_POINTS, f"{len(contour)} contour points < {MIN_CONTOUR_POINTS}")
    n_pixels = int(component.sum())
    if n_pixels < MIN_COMPONENT_PIXELS:
        return Rejection(Reason.TOO_FEW_PIXELS, f"{n_pixels} pixels < {MIN_COMPONENT_PIXELS}")
    fit = fit_ellipse_mm(contour)
    if fit is None or not all(np.isfinite(v).all() for v in fit):
        return Rejection(Reason.FIT_DEGENERATE, "ellipse fit failed or is not finite")
    centre, half_major, half_minor, theta = fit
    rejection = _fit_rejection(2 * half_major, 2 * half_minor, component, spacing_mm_row_col)
    if rejection is not None:
        return rejection
    major_dir = np.array([math.cos(theta), math.sin(theta)])
    minor_dir = np.array([-major_dir[1], major_dir[0]])
    longest, long_a, long_b = longest_diameter_mm(contour)
    perpendicular, short_a, short_b = perpendicular_diameter_mm(contour, long_a, long_b, min(row_mm, col_mm) / 2)
    one_pixel_across = _pixel_width_mm(short_b - short_a, spacing_mm_row_col) if perpendicular > 0 else math.inf
    if perpendicular <= one_pixel_across * (1 + 1e-6):
        # A one-pixel-thick line: its fitted "ellipse" is an artefact of the pixel grid, not a size.
        return Rejection(
            Reason.FIT_MINOR_BELOW_PIXEL, f"component is one pixel thick ({perpendicular:.3g} mm across its long axis)"
        )
    return LesionSize(
        major_axis_mm=2 * half_major,
        minor_axis_mm=2 * half_minor,
        ellipse_center_xy_px=_to_px(centre, spacing_mm_row_col),
        ellipse_angle_deg=math.degrees(theta),
        major_axis_endpoints_xy_px=_segment_px(
            centre + half_major * major_dir, centre - half_major * major_dir, spacing_mm_row_col
        ),
        minor_axis_endpoints_xy_px=_segment_px(
            centre + half_minor * minor_dir, centre - half_minor * minor_dir, spacing_mm_row_col
        ),
        longest_diameter_mm=longest,
        longest_diameter_endpoints_xy_px=_segment_px(long_a, long_b, spacing_mm_row_col),
        perpendicular_diameter_mm=perpendicular,
        perpendicular_diameter_endpoints_xy_px=_segment_px(short_a, short_b, spacing_mm_row_col),
        area_mm2=n_pixels * row_mm * col_mm,
    )


def centre_contour_mm(
    component: np.ndarray, spacing_mm_row_col, origin_row_col: tuple[int, int] = (0, 0)
) -> np.ndarray:
    """MedVision's contour of a component: cv2's outer contour (pixel centres), (x, y) mm of the slice, float32.

    `cv2.findContours(RETR_EXTERNAL, CHAIN_APPROX_NONE)` gives pixel column c, row r as the point (c, r),
    the centre of that pixel (edge frame: c + 0.5, r + 0.5). A crop traces the same points in the same
    order, shifted; they are placed back in the slice before scaling, as MedVision scales the whole
    slice's points, so the float32 coordinates it fits are the same bits.
    """
    contours, _ = cv2.findContours(component.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    # one component, one outer contour; MedVision takes contours[0]
    points_xy = contours[0].reshape(-1, 2).astype(np.float64) + (origin_row_col[1], origin_row_col[0])
    row_mm, col_mm = spacing_mm_row_col
    return (points_xy * (col_mm, row_mm)).astype(np.float32)


def measure_component_medvision(
    component: np.ndarray, spacing_mm_row_col: tuple[float, float], origin_row_col: tuple[int, int] = (0, 0)
) -> LesionSize | Rejection:
    """MedVision v1.4.0's tumour/lesion measurement of one component (`--conventions medvision`), or why it refuses.

    `cv2.fitEllipse` on `centre_contour_mm`; major and minor are the fitted full axes in mm. Refused: fewer
    than 5 contour points, a fit cv2 cannot make or that is not finite, then `_fit_rejection`'s guards, and
    nothing else. Points are returned in the edge frame; the RECIST diameters are ours (pixel-edge contour).
    """
    row_mm, col_mm = spacing_mm_row_col
    contour = centre_contour_mm(component, spacing_mm_row_col, origin_row_col)
    if len(contour) < MIN_CONTOUR_POINTS:
        return Rejection(Reason.FIT_TOO_FEW_POINTS, f"{len(contour)} contour points < {MIN_CONTOUR_POINTS}")
    # cv2 nudges a degenerate point set with its thread's random generator, so a fit would depend on every
    # fit before it (MedVision's do); seed 0 restores a fresh thread's state: each fit is a first one.
    cv2.setRNGSeed(0)
    try:
        (centre_x_mm, centre_y_mm), (width_mm, height_mm), angle_deg = cv2.fitEllipse(contour)
    except cv2.error:
        return Rejection(Reason.FIT_DEGENERATE, "cv2.fitEllipse failed")
    if not np.isfinite((centre_x_mm, centre_y_mm, width_mm, height_mm, angle_deg)).all():
        return Rejection(Reason.FIT_DEGENERATE, "ellipse fit is not finite")
    major, minor = max(width_mm, height_mm), min(width_mm, height_mm)
    rejection = _fit_rejection(major, minor, component, spacing_mm_row_col)
    if rejection is not None:
        return rejection
    # cv2's angle turns its first axis (width) from +x towards +y; the major axis is the second when taller
    theta = (math.radians(angle_deg) + (math.pi / 2 if height_mm > width_mm else 0.0)) % math.pi
    major_dir = np.array([math.cos(theta), math.sin(theta)])
    minor_dir = np.array([-major_dir[1], major_dir[0]])
    centre = np.array([centre_x_mm + col_mm / 2, centre_y_mm + row_mm / 2])  # pixel centres -> edge frame
    edge_contour = outer_contour_mm(component, spacing_mm_row_col, origin_row_col)
    longest, long_a, long_b = longest_diameter_mm(edge_contour)
    perpendicular, short_a, short_b = perpendicular_diameter_mm(edge_contour, long_a, long_b, min(row_mm, col_mm) / 2)
    return LesionSize(
        major_axis_mm=float(major),
        minor_axis_mm=float(minor),
        ellipse_center_xy_px=_to_px(centre, spacing_mm_row_col),
        ellipse_angle_deg=math.degrees(theta),
        major_axis_endpoints_xy_px=_segment_px(
            centre + major / 2 * major_dir, centre - major / 2 * major_dir, spacing_mm_row_col
        ),
        minor_axis_endpoints_xy_px=_segment_px(
            centre + minor / 2 * minor_dir, centre - minor / 2 * minor_dir, spacing_mm_row_col
        ),
        longest_diameter_mm=longest,
        longest_diameter_endpoints_xy_px=_segment_px(long_a, long_b, spacing_mm_row_col),
        perpendicular_diameter_mm=perpendicular,
        perpendicular_diameter_endpoints_xy_px=_segment_px(short_a, short_b, spacing_mm_row_col),
        area_mm2=int(component.sum()) * row_mm * col_mm,
    )


# `Conventions.lesion_measurement` -> the measurement of a component (named, so conventions stay import-light)
MEASUREMENTS = {"pixel_edge": measure_component, "medvision_cv2": measure_component_medvision}


def target_components(labels_2d: np.ndarray, target_labels) -> list[tuple[int, int, int, np.ndarray | None]]:
    """(label, component index, components of that label, binary mask) for each target-label component.

    Components use the detection connectivity and raster order, and are counted before any guard. A
    label in more than `MAX_COMPONENTS_PER_LABEL` pieces gives one entry, index 0, with no mask.
    """
    found: list[tuple[int, int, int, np.ndarray | None]] = []
    for label in target_labels:
        components = label_components(labels_2d == label, connectivity=CONNECTIVITY)
        count = int(components.max())
        if count > MAX_COMPONENTS_PER_LABEL:
            found.append((int(label), 0, count, None))
            continue
        found += [(int(label), index, count, components == index + 1) for index in range(count)]
    return found
