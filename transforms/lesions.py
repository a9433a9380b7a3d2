"""Tumour/lesion size (SPEC §4): ellipse and RECIST diameters of components, in millimetres.

Every component of a labelled slice stack is measured at once (`measure_components`): outlines from
`transforms.outlines`, fits and calipers from `transforms.shape_fits`, array operations over all of
them; `measure_component` measures one mask the same way.

All fitting happens in physical mm (x = column * column spacing, y = row * row spacing) so that
rectangular pixels cannot swap or skew axes. Points given back to the output are continuous
displayed-pixel coordinates `(x, y)` with the origin at the image's top-left corner: pixel
(column c, row r) spans [c, c+1) x [r, r+1), the frame of the boxes. Angles are measured in the
mm frame from the image's +x axis towards +y (down), in [0, 180).

A component that cannot be measured reliably is rejected with a `Reason`, never emitted.

Two measurements, chosen by the build's conventions (`MEASUREMENTS`, `Conventions.lesion_measurement`):
`measure_components` (ours: ellipse fitted to the pixel-edge contour, RECIST diameters, stricter guards)
and `measure_components_medvision` (MedVision v1.4.0: `cv2.fitEllipse` on cv2's pixel-centre contour,
its guards only; our RECIST diameters alongside).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple, Optional

import cv2
import numpy as np
from scipy import ndimage
from skimage.measure import label as label_components

from transforms.boxes import CONNECTIVITY, MAX_COMPONENTS_PER_LABEL
from transforms.errors import Reason
from transforms.outlines import (
    ONE_EACH,
    Outlines,
    Repeats,
    displayed,
    displayed_counts,
    displayed_edges,
    repeats_of,
    trace_outlines,
)
from transforms.shape_fits import (
    Segments,
    fit_ellipses,
    group_starts,
    longest_diameters,
    perpendicular_diameters,
    run_moment_points,
)

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


# Slices measured together hold at most this many source pixels: the outlines' working copies of the
# stack stay small (a lesion label can span a whole-body volume).
CHUNK_PIXELS = 1 << 22


def _in_slice_chunks(measure_stack):
    """A measurement of a stack's components made over runs of whole slices (components never cross
    slices), each of at most `CHUNK_PIXELS` pixels; results in the order of `numbers`. `pixels`, each
    component's displayed pixels, is counted here unless the caller has counted them."""

    @functools.wraps(measure_stack)
    def measure(
        components: np.ndarray,
        numbers,
        spacing_mm_row_col,
        origin_row_col=(0, 0),
        repeats: Repeats = ONE_EACH,
        pixels: Optional[np.ndarray] = None,
    ) -> list[LesionSize | Rejection]:
        numbers = np.asarray(numbers)
        pixels = displayed_pixels(components, numbers, repeats) if pixels is None else np.asarray(pixels)
        slices_per_chunk = max(1, CHUNK_PIXELS // max(1, components[0].size))
        if components.shape[0] <= slices_per_chunk:
            return measure_stack(components, numbers, spacing_mm_row_col, origin_row_col, repeats, pixels)
        boxes = ndimage.find_objects(components)
        chunk_of = np.array([boxes[number - 1][0].start for number in numbers.tolist()]) // slices_per_chunk
        results: dict[int, LesionSize | Rejection] = {}
        for chunk in np.unique(chunk_of).tolist():
            mine = np.flatnonzero(chunk_of == chunk)
            part = components[chunk * slices_per_chunk : (chunk + 1) * slices_per_chunk]
            sizes = measure_stack(part, numbers[mine], spacing_mm_row_col, origin_row_col, repeats, pixels[mine])
            results.update(zip(mine.tolist(), sizes))
        return [results[index] for index in range(len(numbers))]

    return measure


class _Shapes(NamedTuple):
    """What every measurement needs of each component: its outline and extent, its displayed pixels and
    its RECIST diameters (mm)."""

    outlines: Outlines
    n_points: np.ndarray
    extents_rows_cols_px: np.ndarray  # (n, 2)
    pixels: np.ndarray
    longest: Segments
    perpendicular: Segments


def _shapes(components, numbers, spacing_mm_row_col, origin_row_col, repeats: Repeats, pixels) -> _Shapes:
    row_mm, col_mm = spacing_mm_row_col
    n = len(numbers)
    outlines = trace_outlines(components, numbers, origin_row_col, repeats)
    ends_xy, end_group = outlines.run_ends()
    starts = group_starts(end_group, n)
    x, y = ends_xy.T
    extents = np.column_stack(  # cracks bound each component's top, bottom, left and right
        [np.maximum.reduceat(v, starts) - np.minimum.reduceat(v, starts) for v in (y, x)]
    ).astype(np.int64)
    longest = longest_diameters(ends_xy, end_group, n, (col_mm, row_mm))
    edges_mm = outlines.edges_xy * (col_mm, row_mm)
    perpendicular = perpendicular_diameters(edges_mm, outlines.edge_group, longest, min(row_mm, col_mm) / 2)
    n_points = np.bincount(outlines.run_group, outlines.run_length, minlength=n).astype(np.int64)
    return _Shapes(outlines, n_points, extents, pixels, longest, perpendicular)


class _Fitted(NamedTuple):
    """Each component's ellipse (mm), or the rejection that came before any guard."""

    early: list[Optional[Rejection]]
    centre_xy: np.ndarray  # (n, 2)
    half_major: np.ndarray
    half_minor: np.ndarray
    theta: np.ndarray


@_in_slice_chunks
def measure_components(
    components: np.ndarray,
    numbers,
    spacing_mm_row_col: tuple[float, float],
    origin_row_col: tuple[int, int] = (0, 0),
    repeats: Repeats = ONE_EACH,
    pixels=None,
) -> list[LesionSize | Rejection]:
    """Ellipse and RECIST measurements of the components `numbers` of a labelled slice stack (slice, row,
    col), or the reason each is rejected, in the order of `numbers`.

    Each is measured on its displayed mask (`transforms.outlines`): the slices shown from displayed pixel
    `origin_row_col`, each source row and column repeated as `repeats` says. The ellipse is fitted to the
    outline's points (skimage's fit, `shape_fits.fit_ellipses`); the RECIST diameters are its maximal
    caliper and the longest chord across it.
    """
    shapes = _shapes(components, numbers, spacing_mm_row_col, origin_row_col, repeats, pixels)
    outlines = shapes.outlines
    points, weights, group = run_moment_points(
        outlines.run_first_xy, outlines.run_last_xy, outlines.run_length, outlines.run_group
    )
    ellipses = fit_ellipses(points * spacing_mm_row_col[::-1], group, len(numbers), weights)
    early = [
        Rejection(Reason.FIT_TOO_FEW_POINTS, f"{points} contour points < {MIN_CONTOUR_POINTS}")
        if points < MIN_CONTOUR_POINTS
        else Rejection(Reason.TOO_FEW_PIXELS, f"{pixels} pixels < {MIN_COMPONENT_PIXELS}")
        if pixels < MIN_COMPONENT_PIXELS
        else None
        if fitted
        else Rejection(Reason.FIT_DEGENERATE, "ellipse fit failed or is not finite")
        for points, pixels, fitted in zip(shapes.n_points.tolist(), shapes.pixels.tolist(), ellipses.fitted.tolist())
    ]
    fitted = _Fitted(early, ellipses.centre_xy, ellipses.half_major, ellipses.half_minor, ellipses.theta)
    return _judge(shapes, fitted, spacing_mm_row_col, refuse_thin=True)


def _judge(shapes: _Shapes, fitted: _Fitted, spacing_mm_row_col, refuse_thin: bool) -> list[LesionSize | Rejection]:
    """Each component's measurement, or the first guard it fails (SPEC §4's order): a rejection before the
    guards, then the fitted ellipse's guards, then (`refuse_thin`) a one-pixel-thick component."""
    row_mm, col_mm = spacing_mm_row_col
    scale = np.array([col_mm, row_mm])
    diagonal_mm = np.hypot(shapes.extents_rows_cols_px[:, 1] * col_mm, shapes.extents_rows_cols_px[:, 0] * row_mm)
    perpendicular = shapes.perpendicular
    across = np.abs(perpendicular.end_xy - perpendicular.start_xy)
    # a failed fit's numbers (nan_to_num's huge values, say) are computed with the others, never used
    with np.errstate(all="ignore"):
        major_mm, minor_mm = 2 * fitted.half_major, 2 * fitted.half_minor
        one_pixel_across = (across @ scale) / np.hypot(*across.T)  # the width of a pixel along the chord
        points = _points_px(fitted, shapes) / scale  # (n, 9, 2) displayed pixels
    thin = refuse_thin & ((perpendicular.length <= 0) | (perpendicular.length <= one_pixel_across * (1 + 1e-6)))
    columns = zip(
        fitted.early,
        major_mm.tolist(),
        minor_mm.tolist(),
        diagonal_mm.tolist(),
        thin.tolist(),
        perpendicular.length.tolist(),
        np.degrees(fitted.theta).tolist(),
        shapes.longest.length.tolist(),
        (shapes.pixels * (row_mm * col_mm)).tolist(),
        points.tolist(),
    )
    floor = size_floor_mm(spacing_mm_row_col)
    results: list[LesionSize | Rejection] = []
    for early, major, minor, diagonal, is_thin, across_mm, angle, longest, area, at in columns:
        rejection = early or _fit_rejection(major, minor, diagonal, min(row_mm, col_mm), floor)
        if rejection is None and is_thin:
            # A one-pixel-thick line: its fitted "ellipse" is an artefact of the pixel grid, not a size.
            detail = f"component is one pixel thick ({across_mm:.3g} mm across its long axis)"
            rejection = Rejection(Reason.FIT_MINOR_BELOW_PIXEL, detail)
        results.append(rejection or _lesion_size(major, minor, angle, longest, across_mm, area, at))
    return results


def _lesion_size(major_mm, minor_mm, angle_deg, longest_mm, perpendicular_mm, area_mm2, points_px) -> LesionSize:
    """A measurement from its numbers and `_points_px`'s nine points (displayed pixels)."""
    centre, major_a, major_b, minor_a, minor_b, long_a, long_b, short_a, short_b = map(tuple, points_px)
    return LesionSize(
        major_axis_mm=major_mm,
        minor_axis_mm=minor_mm,
        ellipse_center_xy_px=centre,
        ellipse_angle_deg=angle_deg,
        major_axis_endpoints_xy_px=(major_a, major_b),
        minor_axis_endpoints_xy_px=(minor_a, minor_b),
        longest_diameter_mm=longest_mm,
        longest_diameter_endpoints_xy_px=(long_a, long_b),
        perpendicular_diameter_mm=perpendicular_mm,
        perpendicular_diameter_endpoints_xy_px=(short_a, short_b),
        area_mm2=area_mm2,
    )


def _points_px(fitted: _Fitted, shapes: _Shapes) -> np.ndarray:
    """(n, 9, 2) points in mm: each ellipse's centre and axis ends, then the RECIST diameters' ends."""
    major_dir = np.column_stack((np.cos(fitted.theta), np.sin(fitted.theta)))
    minor_dir = np.column_stack((-major_dir[:, 1], major_dir[:, 0]))
    half_major, half_minor, centre = fitted.half_major[:, None], fitted.half_minor[:, None], fitted.centre_xy
    points = [
        centre,
        centre + half_major * major_dir,
        centre - half_major * major_dir,
        centre + half_minor * minor_dir,
        centre - half_minor * minor_dir,
        shapes.longest.start_xy,
        shapes.longest.end_xy,
        shapes.perpendicular.start_xy,
        shapes.perpendicular.end_xy,
    ]
    return np.stack(points, axis=1)


def _fit_rejection(major_mm: float, minor_mm: float, box_diagonal_mm: float, pixel_mm: float, floor_mm: float):
    """The guards on a fitted ellipse (SPEC §4, MedVision v1.4.0), or None when it passes them. The box
    diagonal spans the component's displayed pixels edge to edge; `pixel_mm` is the finer spacing."""
    if minor_mm < pixel_mm:
        return Rejection(Reason.FIT_MINOR_BELOW_PIXEL, f"minor axis {minor_mm:.3g} mm < one pixel")
    if major_mm > MAX_MAJOR_OVER_BOX_DIAGONAL * box_diagonal_mm:
        return Rejection(
            Reason.FIT_MAJOR_EXCEEDS_BOX, f"major axis {major_mm:.3g} mm > 1.5 x box diagonal {box_diagonal_mm:.3g} mm"
        )
    if major_mm < floor_mm:
        return Rejection(Reason.BELOW_SIZE_FLOOR, f"major axis {major_mm:.3g} mm < floor {floor_mm:.3g} mm")
    return None


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


@_in_slice_chunks
def measure_components_medvision(
    components: np.ndarray,
    numbers,
    spacing_mm_row_col: tuple[float, float],
    origin_row_col: tuple[int, int] = (0, 0),
    repeats: Repeats = ONE_EACH,
    pixels=None,
) -> list[LesionSize | Rejection]:
    """MedVision v1.4.0's tumour/lesion measurement of each component (`--conventions medvision`), or why it
    refuses; the stack, `numbers`, origin and repeats as `measure_components`.

    `cv2.fitEllipse` on `centre_contour_mm` of the displayed mask; major and minor are the fitted full axes
    in mm. Refused: fewer than 5 contour points, a fit cv2 cannot make or that is not finite, then
    `_fit_rejection`'s guards, and nothing else. Points are returned in the edge frame; the RECIST
    diameters are ours (the outline's).
    """
    shapes = _shapes(components, numbers, spacing_mm_row_col, origin_row_col, repeats, pixels)
    boxes = ndimage.find_objects(components)
    row_at, col_at = (
        origin + displayed_edges(counts, size).astype(np.int64)
        for origin, counts, size in zip(origin_row_col, repeats, components.shape[1:])
    )
    n = len(numbers)
    early: list[Optional[Rejection]] = []
    centre, half_axes, theta = np.zeros((n, 2)), np.zeros((n, 2)), np.zeros(n)
    for index, number in enumerate(numbers):
        k, rows, cols = boxes[number - 1]
        crop = displayed(components[k.start, rows, cols] == number, repeats_of(repeats, rows, cols))
        fit = _cv2_ellipse(
            centre_contour_mm(crop, spacing_mm_row_col, (int(row_at[rows.start]), int(col_at[cols.start])))
        )
        if isinstance(fit, Rejection):
            early.append(fit)
            continue
        early.append(None)
        centre[index], half_axes[index], theta[index] = fit
    # cv2 fits pixel centres: its centre moves half a pixel to the edge frame
    centre += np.array(spacing_mm_row_col[::-1]) / 2
    fitted = _Fitted(early, centre, half_axes[:, 0], half_axes[:, 1], theta)
    return _judge(shapes, fitted, spacing_mm_row_col, refuse_thin=False)


def _cv2_ellipse(contour_mm: np.ndarray):
    """MedVision's fit: (centre (x, y) mm, (half major, half minor) mm, major-axis angle in rad), or why not."""
    if len(contour_mm) < MIN_CONTOUR_POINTS:
        return Rejection(Reason.FIT_TOO_FEW_POINTS, f"{len(contour_mm)} contour points < {MIN_CONTOUR_POINTS}")
    # cv2 nudges a degenerate point set with its thread's random generator, so a fit would depend on every
    # fit before it (MedVision's do); seed 0 restores a fresh thread's state: each fit is a first one.
    cv2.setRNGSeed(0)
    try:
        (centre_x_mm, centre_y_mm), (width_mm, height_mm), angle_deg = cv2.fitEllipse(contour_mm)
    except cv2.error:
        return Rejection(Reason.FIT_DEGENERATE, "cv2.fitEllipse failed")
    if not np.isfinite((centre_x_mm, centre_y_mm, width_mm, height_mm, angle_deg)).all():
        return Rejection(Reason.FIT_DEGENERATE, "ellipse fit is not finite")
    # cv2's angle turns its first axis (width) from +x towards +y; the major axis is the second when taller
    theta = (math.radians(angle_deg) + (math.pi / 2 if height_mm > width_mm else 0.0)) % math.pi
    half_axes = (max(width_mm, height_mm) / 2, min(width_mm, height_mm) / 2)
    return (centre_x_mm, centre_y_mm), half_axes, theta


def measure_component(
    component: np.ndarray,
    spacing_mm_row_col: tuple[float, float],
    origin_row_col: tuple[int, int] = (0, 0),
    repeats: Repeats = ONE_EACH,
    measurement: str = "pixel_edge",
) -> LesionSize | Rejection:
    """`MEASUREMENTS[measurement]` of one binary component: a slice's mask of it, or any crop holding it
    whole with its top-left pixel at `origin_row_col` of the slice (the results are the same)."""
    stack = component[None].astype(np.int32)
    return MEASUREMENTS[measurement](stack, [1], spacing_mm_row_col, origin_row_col, repeats)[0]


measure_component_medvision = functools.partial(measure_component, measurement="medvision_cv2")


def displayed_pixels(components: np.ndarray, numbers, repeats: Repeats = ONE_EACH) -> np.ndarray:
    """How many displayed pixels each component `numbers` covers."""
    return displayed_counts(components, int(components.max()) + 1, repeats)[np.asarray(numbers)]


# `Conventions.lesion_measurement` -> the measurement of a component (named, so conventions stay import-light)
MEASUREMENTS = {"pixel_edge": measure_components, "medvision_cv2": measure_components_medvision}


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
