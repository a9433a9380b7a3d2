"""DICOM Segmentation objects (SEG) as a label map on the image grid.

A SEG stores one binary (or fractional) frame per segment and plane, each placed by its own
ImagePositionPatient, usually only where the segment is present. Every frame is placed on the
image grid from its header before any pixel is decoded, and must land on it exactly (a frame
between slices or off the grid is `mask_grid_mismatch`). Segments are matched to the case's
labels by name (SegmentLabel), because segment numbers are per file, not per dataset.
Pixels are decoded one frame at a time: a SEG of many segments never sits whole in memory.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pydicom
from pydicom.pixels import iter_pixels
from pydicom.uid import SegmentationStorage, UID_dictionary

from transforms import deadline
from transforms.caseref import label_name_key
from transforms.dicom import LPS_TO_RAS, Frame, frames_of, tag_value
from transforms.errors import PipelineError, Reason
from transforms.volume import Volume

# A frame corner may sit this fraction of a voxel off the grid: DS strings round IPP to ~1e-4 mm,
# spacings to 1e-6 relative; a real shift is a sizeable fraction of a voxel.
PLACEMENT_TOL_VOXELS = 0.01


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where one frame lands: grid indices of its rows and columns, on slice `index` of axis `axis`."""

    axis: int
    index: int
    row_axis: int
    row_indices: np.ndarray
    column_axis: int
    column_indices: np.ndarray

    def region(self) -> tuple:
        """An index into the grid array that selects the frame's pixels as (rows, columns)."""
        index: list = [0, 0, 0]
        index[self.axis] = self.index
        index[self.row_axis] = self.row_indices[:, None]
        index[self.column_axis] = self.column_indices[None, :]
        return tuple(index)


def segment_values(dataset, label_names: dict[int, str], uri: str) -> dict[int, int]:
    """Segment number -> label value of the case, matched by SegmentLabel.

    Messages count segments instead of quoting them: a SegmentLabel is header text.
    """
    value_of = {label_name_key(name): value for value, name in label_names.items() if value}
    segments = tag_value(dataset, "SegmentSequence", uri, [])
    mapping = {}
    for position, segment in enumerate(segments, 1):
        name = str(tag_value(segment, "SegmentLabel", uri, ""))
        if label_name_key(name) not in value_of:
            raise PipelineError(
                Reason.UNKNOWN_LABEL,
                f"the SegmentLabel of segment {position} of {len(segments)} "
                f"names none of the case's {len(value_of)} labels (matched by name, ignoring case "
                "and separators)",
                uri,
            )
        number = tag_value(segment, "SegmentNumber", uri)
        if not isinstance(number, int):
            raise PipelineError(
                Reason.DICOM_MISSING_TAGS, f"segment {position} of {len(segments)} has no SegmentNumber", uri
            )
        mapping[number] = value_of[label_name_key(name)]
    return mapping


def _uid_name(uid) -> str:
    """A registered UID's name from pydicom's dictionary (our text, not the file's); else a description."""
    if uid is None:
        return "missing"
    return UID_dictionary[uid][0] if str(uid) in UID_dictionary else "not a registered UID"


def place_frame(frame: Frame, grid: Volume, uri: str) -> Placement:
    """The frame's pixels as grid indices; raises `mask_grid_mismatch` unless it lies exactly on the grid."""
    row_spacing, column_spacing = frame.spacing_row_col_mm
    frame_to_ras = np.eye(4)
    frame_to_ras[:3, 0] = LPS_TO_RAS @ frame.row_direction * column_spacing  # along a row: column index
    frame_to_ras[:3, 1] = LPS_TO_RAS @ frame.column_direction * row_spacing  # down a column: row index
    frame_to_ras[:3, 2] = np.cross(frame_to_ras[:3, 0], frame_to_ras[:3, 1])
    frame_to_ras[:3, 3] = LPS_TO_RAS @ frame.position_lps
    to_grid = np.linalg.solve(grid.affine_ras, frame_to_ras)
    column_axis, row_axis = (int(np.argmax(np.abs(to_grid[:3, c]))) for c in (0, 1))
    steps = np.rint(to_grid[:3, :2])
    corner = to_grid[:3, 3]
    if (
        column_axis == row_axis
        or np.abs(to_grid[:3, :2] - steps).max() > PLACEMENT_TOL_VOXELS
        or np.abs(corner - np.rint(corner)).max() > PLACEMENT_TOL_VOXELS
    ):
        raise PipelineError(
            Reason.MASK_GRID_MISMATCH,
            "a segmentation frame does not lie on the image grid "
            f"(frame origin at grid index {np.round(corner, 3).tolist()})",
            uri,
        )
    axis = 3 - column_axis - row_axis
    start = np.rint(corner).astype(int)
    columns = start[column_axis] + int(steps[column_axis, 0]) * np.arange(frame.columns)
    rows = start[row_axis] + int(steps[row_axis, 1]) * np.arange(frame.rows)
    shape = grid.array.shape
    if not (0 <= start[axis] < shape[axis] and _inside(columns, shape[column_axis]) and _inside(rows, shape[row_axis])):
        raise PipelineError(Reason.MASK_GRID_MISMATCH, "a segmentation frame reaches outside the image grid", uri)
    return Placement(axis, int(start[axis]), row_axis, rows, column_axis, columns)


def _inside(indices: np.ndarray, size: int) -> bool:
    return bool(indices.min() >= 0 and indices.max() < size)


def _segment_numbers(dataset, n_frames: int, uri: str) -> list[int]:
    numbers = []
    for group in dataset.get("PerFrameFunctionalGroupsSequence", []):
        identification = group.get("SegmentIdentificationSequence") or dataset.SharedFunctionalGroupsSequence[0].get(
            "SegmentIdentificationSequence"
        )
        if not identification:
            raise PipelineError(Reason.DICOM_MISSING_TAGS, "a SEG frame has no SegmentIdentificationSequence", uri)
        numbers.append(int(identification[0].ReferencedSegmentNumber))
    if len(numbers) != n_frames:
        raise PipelineError(Reason.DICOM_MISSING_TAGS, f"{len(numbers)} per-frame groups for {n_frames} frames", uri)
    return numbers


def _threshold(dataset) -> float:
    """BINARY frames are 0/1; FRACTIONAL ones count as inside from half their maximum value."""
    if str(dataset.get("SegmentationType", "BINARY")).upper() == "FRACTIONAL":
        return float(dataset.get("MaximumFractionalValue", 255)) / 2
    return 0.5


def read_label_map(path: str, uri: str, grid: Volume, label_names: dict[int, str]) -> Volume:
    """The SEG at `path` as a label map on `grid`, its segments given the case's label values.

    Overlapping segments cannot share one label map and are refused.
    """
    dataset = pydicom.dcmread(path, stop_before_pixels=True)
    sop_class = tag_value(dataset, "SOPClassUID", uri)
    if sop_class != SegmentationStorage:
        raise PipelineError(
            Reason.UNREADABLE, f"not a DICOM Segmentation object (SOPClassUID {_uid_name(sop_class)})", uri
        )
    frames = frames_of(dataset, uri)
    values = segment_values(dataset, label_names, uri)
    numbers = _segment_numbers(dataset, len(frames), uri)
    placements = [place_frame(frame, grid, uri) for frame in frames]  # all geometry checked before decoding
    labels = np.zeros(grid.array.shape, np.uint8 if max(values.values(), default=0) < 256 else np.uint16)
    threshold = _threshold(dataset)
    for placement, number, pixels in zip(placements, numbers, iter_pixels(path)):
        deadline.check()
        if number not in values:
            raise PipelineError(
                Reason.UNKNOWN_LABEL, f"a frame refers to segment {number}, not in SegmentSequence", uri
            )
        inside, region = pixels > threshold, placement.region()
        current = labels[region]
        if np.any(inside & (current != 0) & (current != values[number])):
            raise PipelineError(Reason.OVERLAPPING_SEGMENTS, "segments overlap; one label map cannot hold both", uri)
        labels[region] = np.where(inside, values[number], current)
    return grid.with_array(labels)
