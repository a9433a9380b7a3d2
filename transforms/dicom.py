"""DICOM series (SPEC §3.7): header scan, one series, slices sorted along the normal, checked spacing.

Rules: group by SeriesInstanceUID and orientation and require exactly one group; sort by
ImagePositionPatient projected on the slice normal (never InstanceNumber); take the slice
spacing from those positions; refuse duplicate positions and uneven spacing (a missing slice
shows up as a double gap) instead of interpolating; apply RescaleSlope/Intercept per slice.
Enhanced (multi-frame) objects take the same geometry from their functional groups.
DICOM is LPS; the `Volume` returned is RAS+ (i = column, j = row, k = slice).
Messages name a missing or malformed field, never its content: they reach the quarantine table (an
output), and header text can hold anything.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from transforms import deadline
from transforms.errors import PipelineError, Reason

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
DUPLICATE_TOL_MM = 1e-3
UNEVEN_REL_TOL = 0.01  # gaps may differ by 1% of the median gap (and 0.01 mm) before the series is uneven
ORIENTATION_DECIMALS = 4


@dataclasses.dataclass(frozen=True)
class Frame:
    """One 2D frame's geometry (LPS mm) and where its pixels are."""

    path: str
    frame_index: int | None  # within a multi-frame file
    position_lps: np.ndarray
    row_direction: np.ndarray  # direction of increasing column index
    column_direction: np.ndarray  # direction of increasing row index
    spacing_row_col_mm: tuple[float, float]  # PixelSpacing: between rows, between columns
    rows: int
    columns: int


def tag_value(dataset, keyword: str, path: str, default=None):
    """`dataset.get(keyword)`; a value pydicom cannot convert (text in a DS/IS field) is `dicom_missing_tags`."""
    try:
        return dataset.get(keyword, default)
    except (ValueError, TypeError, OverflowError) as exc:
        raise PipelineError(Reason.DICOM_MISSING_TAGS, f"{keyword} is malformed (not of its value type)", path) from exc


def _vector(value, n: int, what: str, path: str) -> np.ndarray:
    try:
        vector = np.asarray([float(v) for v in value], dtype=np.float64) if value is not None else None
    except (ValueError, TypeError, OverflowError) as exc:
        raise PipelineError(Reason.DICOM_MISSING_TAGS, f"{what} malformed (not {n} numbers)", path) from exc
    if vector is None or vector.shape != (n,) or not np.isfinite(vector).all():
        raise PipelineError(Reason.DICOM_MISSING_TAGS, f"{what} missing or malformed (not {n} finite numbers)", path)
    return vector


def _item(group, keyword: str, path: str, shared=None):
    """The first item of a functional group sequence, from the frame's group or else the shared one."""
    sequence = tag_value(group, keyword, path) or (tag_value(shared, keyword, path) if shared is not None else None)
    if not sequence:
        raise PipelineError(Reason.DICOM_MISSING_TAGS, f"{keyword} missing from the functional groups", path)
    return sequence[0]


def frames_of(dataset, path: str) -> list[Frame]:
    """The frames of one file: classic (one frame) or enhanced multi-frame (functional groups)."""
    if "PerFrameFunctionalGroupsSequence" in dataset:
        shared = _item(dataset, "SharedFunctionalGroupsSequence", path)
        frames = []
        for index, group in enumerate(tag_value(dataset, "PerFrameFunctionalGroupsSequence", path)):
            orientation = _item(group, "PlaneOrientationSequence", path, shared)
            measures = _item(group, "PixelMeasuresSequence", path, shared)
            position = tag_value(_item(group, "PlanePositionSequence", path), "ImagePositionPatient", path)
            frames.append(
                _frame(
                    path,
                    index,
                    position,
                    tag_value(orientation, "ImageOrientationPatient", path),
                    tag_value(measures, "PixelSpacing", path),
                    dataset,
                )
            )
        return frames
    if _whole_number(tag_value(dataset, "NumberOfFrames", path, 1) or 1, "NumberOfFrames", path) > 1:
        raise PipelineError(
            Reason.BAD_SHAPE,
            "multi-frame object without per-frame geometry (no PerFrameFunctionalGroupsSequence)",
            path,
        )
    return [
        _frame(
            path,
            None,
            tag_value(dataset, "ImagePositionPatient", path),
            tag_value(dataset, "ImageOrientationPatient", path),
            tag_value(dataset, "PixelSpacing", path),
            dataset,
        )
    ]


def _whole_number(value, keyword: str, path: str) -> int:
    try:
        return int(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise PipelineError(Reason.DICOM_MISSING_TAGS, f"{keyword} is not a whole number", path) from exc


def _frame(path, index, position, orientation, spacing, dataset) -> Frame:
    iop = _vector(orientation, 6, "ImageOrientationPatient", path)
    if "Rows" not in dataset or "Columns" not in dataset:
        raise PipelineError(Reason.DICOM_MISSING_TAGS, "Rows/Columns missing", path)
    row_spacing, col_spacing = _vector(spacing, 2, "PixelSpacing", path)
    rows, columns = (_whole_number(tag_value(dataset, keyword, path), keyword, path) for keyword in ("Rows", "Columns"))
    return Frame(
        path,
        index,
        _vector(position, 3, "ImagePositionPatient", path),
        iop[:3],
        iop[3:],
        (float(row_spacing), float(col_spacing)),
        rows,
        columns,
    )


def scan_headers(folder: str, uri: str) -> list[Frame]:
    """Frames of the one series in `folder` (files that are not DICOM are ignored)."""
    groups: dict[tuple, list[Frame]] = {}
    for name in sorted(os.listdir(folder)):
        deadline.check()
        path = os.path.join(folder, name)
        try:
            dataset = pydicom.dcmread(path, stop_before_pixels=True)
        except InvalidDicomError:
            continue  # not DICOM at all (no preamble): a stray file in the folder
        except (OSError, ValueError, EOFError) as exc:
            raise PipelineError(
                Reason.UNREADABLE,
                f"corrupt DICOM file {name} ({type(exc).__name__}); a dropped slice would change the volume",
                uri,
            ) from exc
        if "Rows" not in dataset:
            if "Image Storage" in pydicom.uid.UID(str(tag_value(dataset, "SOPClassUID", path, ""))).name:
                raise PipelineError(
                    Reason.UNREADABLE,
                    f"image object {name} has no Rows: truncated or corrupt; a dropped slice would change the volume",
                    uri,
                )
            continue  # DICOMDIR, RTSTRUCT, SR, presentation states: objects without an image
        try:
            frames = frames_of(dataset, path)
        except PipelineError as exc:  # named by the series and the file in it, not the worker's local path
            raise PipelineError(exc.reason, f"{name}: {exc.message}", uri) from exc
        for frame in frames:
            directions = np.concatenate((frame.row_direction, frame.column_direction))
            key = (
                str(tag_value(dataset, "SeriesInstanceUID", path, "")),
                tuple(np.round(directions, ORIENTATION_DECIMALS)),
            )
            groups.setdefault(key, []).append(frame)
    if not groups:
        raise PipelineError(Reason.UNREADABLE, "no DICOM image in the series folder", uri)
    if len(groups) > 1:
        raise PipelineError(
            Reason.MULTIPLE_SERIES,
            f"{len(groups)} series/orientations in one folder; list each series as its own case",
            uri,
        )
    return next(iter(groups.values()))


# The last slice may sit at most this fraction of a pixel off the line through the first slice
# along the normal (scanners round IPP/IOP: nibabel's bundled MR drifts 0.016 mm; gantry tilt mm).
MAX_DRIFT_PIXELS = 0.5
ORTHOGONALITY_TOL = 1e-3


def check_no_tilt(frames: list[Frame], normal: np.ndarray, uri: str) -> None:
    """Slices must follow each other along their normal; gantry tilt makes the grid sheared."""
    step = frames[-1].position_lps - frames[0].position_lps
    drift_mm = float(np.linalg.norm(step - (step @ normal) * normal))
    limit_mm = MAX_DRIFT_PIXELS * min(frames[0].spacing_row_col_mm)
    if drift_mm > limit_mm:
        raise PipelineError(
            Reason.NON_ORTHONORMAL,
            f"slices drift {drift_mm:.2f} mm sideways from their normal "
            f"(gantry tilt; limit {limit_mm:.2f} mm): the grid is sheared",
            uri,
        )


def check_orientation(frame: Frame, uri: str) -> None:
    """Row and column directions must be unit length and perpendicular."""
    row, column = frame.row_direction, frame.column_direction
    worst = max(abs(float(row @ column)), abs(float(np.linalg.norm(row)) - 1), abs(float(np.linalg.norm(column)) - 1))
    if worst > ORTHOGONALITY_TOL:
        raise PipelineError(
            Reason.NON_ORTHONORMAL, f"ImageOrientationPatient is not orthonormal (error {worst:.2e})", uri
        )


def sort_and_check(frames: list[Frame], uri: str, allow_uneven: bool = False):
    """(frames in order along the slice normal, their depths in mm, median gap in mm, uneven?).

    Duplicate positions are always refused; uneven gaps are refused unless `allow_uneven`.
    """
    check_orientation(frames[0], uri)
    normal = np.cross(frames[0].row_direction, frames[0].column_direction)
    depth = np.array([frame.position_lps @ normal for frame in frames])
    order = np.argsort(depth, kind="stable")
    frames, depth = [frames[i] for i in order], depth[order]
    if len(frames) == 1:
        return frames, depth, 1.0, False
    gaps = np.diff(depth)
    if np.any(gaps < DUPLICATE_TOL_MM):
        at = float(depth[1:][gaps < DUPLICATE_TOL_MM][0])
        raise PipelineError(Reason.DUPLICATE_SLICE_POSITION, f"two slices at {at:.3f} mm along the normal", uri)
    check_no_tilt(frames, normal, uri)
    median = float(np.median(gaps))
    uneven = float(gaps.max() - gaps.min()) > max(UNEVEN_REL_TOL * median, 0.01)
    if uneven and not allow_uneven:
        raise PipelineError(
            Reason.UNEVEN_SPACING,
            f"slice gaps range {gaps.min():.3f}-{gaps.max():.3f} mm "
            "(a missing slice?); no silent interpolation (see --allow-uneven-dicom-spacing)",
            uri,
        )
    if {(f.rows, f.columns, f.spacing_row_col_mm) for f in frames} != {
        (frames[0].rows, frames[0].columns, frames[0].spacing_row_col_mm)
    }:
        raise PipelineError(Reason.BAD_SHAPE, "slices differ in size or pixel spacing", uri)
    return frames, depth, median, uneven


def voxel_count(folder: str, uri: str) -> int:
    """Voxels the series would decode to, from headers only (for the memory budget).

    An uneven series, if resampled, gets one slice per median gap over its whole depth.
    """
    frames, depth, gap_mm, uneven = sort_and_check(scan_headers(folder, uri), uri, allow_uneven=True)
    n_slices = even_slice_count(depth, gap_mm) if uneven else len(frames)
    return n_slices * frames[0].rows * frames[0].columns


def even_slice_count(depth_mm: np.ndarray, gap_mm: float) -> int:
    return int(round((depth_mm[-1] - depth_mm[0]) / gap_mm)) + 1


def _pixels(frame: Frame, cache: dict, uri: str) -> np.ndarray:
    """Rescaled float32 pixels (rows, cols) of one frame; each file is decoded once."""
    deadline.check()
    if frame.path not in cache:
        dataset = pydicom.dcmread(frame.path)
        cache.clear()
        cache[frame.path] = (dataset, dataset.pixel_array)
    dataset, array = cache[frame.path]
    # pydicom gives (rows, cols) for a one-frame object, enhanced or not
    pixels = array[frame.frame_index] if frame.frame_index is not None and array.ndim == 3 else array
    try:
        slope, intercept = _rescale(dataset, frame.frame_index)
    except (ValueError, TypeError, OverflowError) as exc:
        raise PipelineError(Reason.DICOM_MISSING_TAGS, "RescaleSlope or RescaleIntercept is not a number", uri) from exc
    return pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def _rescale(dataset, frame_index) -> tuple[float, float]:
    if frame_index is not None and "PerFrameFunctionalGroupsSequence" in dataset:
        group = dataset.PerFrameFunctionalGroupsSequence[frame_index]
        transform = group.get("PixelValueTransformationSequence") or dataset.SharedFunctionalGroupsSequence[0].get(
            "PixelValueTransformationSequence"
        )
        if transform:
            return float(transform[0].get("RescaleSlope", 1)), float(transform[0].get("RescaleIntercept", 0))
    return float(dataset.get("RescaleSlope", 1) or 1), float(dataset.get("RescaleIntercept", 0) or 0)


def resample_to_even(stack: np.ndarray, depth_mm: np.ndarray, gap_mm: float) -> np.ndarray:
    """Slices at uneven depths, linearly interpolated onto depths depth[0] + n * gap."""
    n_out = even_slice_count(depth_mm, gap_mm)
    targets = depth_mm[0] + gap_mm * np.arange(n_out)
    upper = np.clip(np.searchsorted(depth_mm, targets, side="right"), 1, len(depth_mm) - 1)
    weight = ((targets - depth_mm[upper - 1]) / (depth_mm[upper] - depth_mm[upper - 1])).astype(np.float32)
    weight = np.clip(weight, 0.0, 1.0)
    return stack[..., upper - 1] * (1 - weight) + stack[..., upper] * weight


def read_series(folder: str, uri: str, allow_uneven: bool = False):
    """The series in `folder` as (array i-j-k float32, voxel-to-RAS+ affine, whether it was uneven).

    An uneven series (only with `allow_uneven`) is resampled to its median gap, and flagged.
    """
    frames, depth, slice_mm, uneven = sort_and_check(scan_headers(folder, uri), uri, allow_uneven)
    first = frames[0]
    normal = np.cross(first.row_direction, first.column_direction)
    row_mm, col_mm = first.spacing_row_col_mm
    affine_lps = np.eye(4)
    affine_lps[:3, :3] = np.column_stack(
        (first.row_direction * col_mm, first.column_direction * row_mm, normal * slice_mm)
    )
    affine_lps[:3, 3] = first.position_lps
    cache: dict = {}
    try:
        stack = np.stack([_pixels(frame, cache, uri).T for frame in frames], axis=-1)
    except (ValueError, AttributeError, RuntimeError) as exc:
        raise PipelineError(Reason.UNREADABLE, f"cannot decode pixel data ({type(exc).__name__})", uri) from exc
    if uneven:
        stack = resample_to_even(stack, depth, slice_mm)
    affine = np.eye(4)
    affine[:3] = LPS_TO_RAS @ affine_lps[:3]
    return np.ascontiguousarray(stack), affine, uneven
