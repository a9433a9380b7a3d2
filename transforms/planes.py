"""Planes of a canonical (RAS+) volume: which slices exist, display orientation, square-pixel resampling.

Display convention (SPEC §3.9, radiological): axial slices show the patient's left on the image's
right and anterior up; coronal and sagittal show superior up (sagittal: anterior on the left).
The "raw" display (MedVision-compatible conventions) shows the canonical RAS+ slice as stored:
rows along the first remaining array axis, columns along the second, nothing flipped.
Pixel frame of every displayed slice: origin top-left, x = column, y = row.

Resampling is separable and per slice: each displayed slice has its rows and its columns
interpolated along one axis at a time onto a pixel-edge-aligned grid of square pixels.
Only the two in-plane axes of a plane are resampled; slices stay at their native positions
along the plane normal, so no upsampled 3D volume is ever materialised.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Union

import numpy as np

PLANES = ("axial", "coronal", "sagittal")
# Array axis of a canonical RAS+ volume that each plane's slices are taken along.
SLICE_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}
# Two spacings are "equal" within this relative tolerance (no resampling needed).
SPACING_REL_TOL = 1e-6

SpacingMode = Union[str, float]  # "finest" | "native" | a spacing in mm
DISPLAYS = ("radiological", "raw")


def parse_spacing_mode(text: str) -> SpacingMode:
    """'finest', 'native' or a positive number of mm; raises ValueError otherwise."""
    if text in ("finest", "native"):
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan  # a word other than the two modes
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"spacing must be finest, native or a positive number of mm (e.g. 0.8), got {text!r}")
    return value


def planes_of(shape_ijk: tuple[int, int, int], wanted: tuple[str, ...] = ()) -> tuple[str, ...]:
    """All three planes for a 3D volume; only the plane across the one-voxel axis for 2D images.

    `wanted` narrows the result (e.g. only time frames of a 2D+t stack stored as 3D).
    """
    flat_axes = [axis for axis, size in enumerate(shape_ijk) if size == 1]
    planes = PLANES if not flat_axes else tuple(plane for plane in PLANES if SLICE_AXIS[plane] == flat_axes[0])
    return tuple(plane for plane in planes if not wanted or plane in wanted)


def in_plane_axes(plane: str, display: str = "radiological") -> tuple[int, int]:
    """(row axis, column axis) of the canonical array for a displayed slice of `plane`."""
    first, second = [axis for axis in range(3) if axis != SLICE_AXIS[plane]]
    return (second, first) if display == "radiological" else (first, second)


def display_slice(array_ijk: np.ndarray, plane: str, index: int, display: str = "radiological") -> np.ndarray:
    """The 2D slice `index` of `plane`, oriented for display (rows, cols).

    With the canonical slice indexed (u, v) (u, v the remaining RAS axes in order), the
    radiological display runs rows along -v and columns along -u (axial rows go
    anterior->posterior, columns right->left); the raw display keeps rows along +u, columns along +v.
    """
    selector: list[slice | int] = [slice(None)] * 3
    selector[SLICE_AXIS[plane]] = index  # basic indexing: a view even of a flipped/transposed volume
    cut = array_ijk[tuple(selector)]
    return cut[::-1, ::-1].T if display == "radiological" else cut


def grid_positions(n_src: int, src_mm: float, dst_mm: float) -> np.ndarray | None:
    """Fractional source index of each output pixel centre, or None when no resampling is needed.

    Both grids start at the same pixel edge; the output has ceil(n_src * src_mm / dst_mm)
    pixels, so it covers the whole source extent (the last pixel may reach past it by less
    than one output pixel and repeats the edge value).
    """
    if abs(src_mm - dst_mm) <= SPACING_REL_TOL * dst_mm:
        return None
    n_dst = max(1, math.ceil(n_src * src_mm / dst_mm - 1e-9))
    centres = (np.arange(n_dst) + 0.5) * (dst_mm / src_mm) - 0.5
    return np.clip(centres, 0.0, n_src - 1.0)


def interpolate_linear(array: np.ndarray, axis: int, positions: np.ndarray | None) -> np.ndarray:
    """Linear interpolation of `array` along one axis at fractional indices (float32 out)."""
    if positions is None:
        return array
    low = np.floor(positions).astype(np.intp)
    high = np.minimum(low + 1, array.shape[axis] - 1)
    weight_shape = [1] * array.ndim
    weight_shape[axis] = -1
    weight = (positions - low).astype(np.float32).reshape(weight_shape)
    array = np.ascontiguousarray(array, dtype=np.float32)  # one strided read of a slice view, not two
    below = np.take(array, low, axis=axis)
    above = np.take(array, high, axis=axis)
    above -= below  # below + (above - below) * weight, in place
    above *= weight
    above += below
    return above


def interpolate_nearest(array: np.ndarray, axis: int, positions: np.ndarray | None) -> np.ndarray:
    """Nearest-neighbour sampling along one axis: label-preserving, never invents values.

    An output centre falls in source pixel floor(p + 0.5); when upsampling every source
    pixel contains at least one output centre, so no label is lost either.
    """
    if positions is None:
        return array
    return np.take(array, np.floor(positions + 0.5).astype(np.intp), axis=axis)


@dataclasses.dataclass(frozen=True)
class PlaneGrid:
    """How the displayed slices of one plane are resampled: per-axis positions and output spacing."""

    plane: str
    n_slices: int
    row_positions: np.ndarray | None
    col_positions: np.ndarray | None
    spacing_mm_row_col: tuple[float, float]
    shape_rows_cols: tuple[int, int]
    source_shape_rows_cols: tuple[int, int]
    source_spacing_mm_row_col: tuple[float, float]
    display: str = "radiological"

    @property
    def square_spacing_mm(self) -> float | None:
        """The side of the square pixel, or None when `native` leaves pixels rectangular."""
        row_mm, col_mm = self.spacing_mm_row_col
        return row_mm if abs(row_mm - col_mm) <= SPACING_REL_TOL * col_mm else None

    @property
    def downsamples(self) -> bool:
        """True when an output pixel is larger than the source pixel along rows or columns."""
        return any(
            dst > src * (1 + SPACING_REL_TOL)
            for dst, src in zip(self.spacing_mm_row_col, self.source_spacing_mm_row_col)
        )

    def resample_image(self, slice_2d: np.ndarray) -> np.ndarray:
        rows = interpolate_linear(slice_2d, 0, self.row_positions)
        return interpolate_linear(rows, 1, self.col_positions)

    def resample_labels(self, slice_2d: np.ndarray) -> np.ndarray:
        rows = interpolate_nearest(slice_2d, 0, self.row_positions)
        return interpolate_nearest(rows, 1, self.col_positions)

    def cut(self, array_ijk: np.ndarray, index: int) -> np.ndarray:
        """Slice `index` of this plane in this grid's display orientation (before resampling)."""
        return display_slice(array_ijk, self.plane, index, self.display)

    def display_xy(self, point_ijk) -> tuple[float, float]:
        """A continuous canonical voxel position as displayed pixels (x, y), edge frame.

        Edge frame: pixel (c, r) spans [c, c+1) x [r, r+1), so a voxel centre lands on a
        pixel centre. The radiological display flips both in-plane axes (see `display_slice`);
        each axis is then scaled by source / output spacing.
        """
        row_axis, col_axis = in_plane_axes(self.plane, self.display)
        (n_rows, n_cols), (row_src, col_src) = self.source_shape_rows_cols, self.source_spacing_mm_row_col
        row_dst, col_dst = self.spacing_mm_row_col
        col_px, row_px = float(point_ijk[col_axis]) + 0.5, float(point_ijk[row_axis]) + 0.5
        if self.display == "radiological":
            col_px, row_px = n_cols - col_px, n_rows - row_px
        return col_px * col_src / col_dst, row_px * row_src / row_dst

    def slice_of(self, point_ijk) -> int:
        """The slice of this plane nearest to a continuous canonical voxel position."""
        return int(np.clip(round(float(point_ijk[SLICE_AXIS[self.plane]])), 0, self.n_slices - 1))


def target_spacing_mm(row_mm: float, col_mm: float, mode: SpacingMode) -> tuple[float, float]:
    """Output (row, col) pixel spacing of a plane for a spacing mode.

    `finest` keeps the header's value exactly (float32 headers make 0.7 read as 0.69999999),
    so an axis already at that spacing is never interpolated.
    """
    if mode == "native":
        return row_mm, col_mm
    side = min(row_mm, col_mm) if mode == "finest" else float(mode)
    return side, side


def plane_grid(
    shape_ijk: tuple[int, int, int], spacing_mm_ijk, plane: str, mode: SpacingMode, display: str = "radiological"
) -> PlaneGrid:
    """The resampling plan for `plane` of a canonical volume with this shape and voxel spacing,
    displayed `display` ("radiological" or "raw", see the module docstring)."""
    row_axis, col_axis = in_plane_axes(plane, display)
    src_row_mm, src_col_mm = float(spacing_mm_ijk[row_axis]), float(spacing_mm_ijk[col_axis])
    dst_row_mm, dst_col_mm = target_spacing_mm(src_row_mm, src_col_mm, mode)
    row_positions = grid_positions(shape_ijk[row_axis], src_row_mm, dst_row_mm)
    col_positions = grid_positions(shape_ijk[col_axis], src_col_mm, dst_col_mm)
    n_rows = shape_ijk[row_axis] if row_positions is None else len(row_positions)
    n_cols = shape_ijk[col_axis] if col_positions is None else len(col_positions)
    return PlaneGrid(
        plane=plane,
        n_slices=shape_ijk[SLICE_AXIS[plane]],
        row_positions=row_positions,
        col_positions=col_positions,
        spacing_mm_row_col=(dst_row_mm, dst_col_mm),
        shape_rows_cols=(n_rows, n_cols),
        source_shape_rows_cols=(shape_ijk[row_axis], shape_ijk[col_axis]),
        source_spacing_mm_row_col=(src_row_mm, src_col_mm),
        display=display,
    )


def labelled_slice_indices(labels_ijk: np.ndarray, plane: str) -> np.ndarray:
    """Indices of the slices of `plane` that contain any non-zero label."""
    other_axes = tuple(axis for axis in range(3) if axis != SLICE_AXIS[plane])
    return np.flatnonzero(labels_ijk.any(axis=other_axes))


def labelled_slices(labels_ijk: np.ndarray) -> dict[str, np.ndarray]:
    """`labelled_slice_indices` of every plane, from one pass over the volume in its memory order."""
    by_axis = labelled_indices(labels_ijk)
    return {plane: by_axis[axis] for plane, axis in SLICE_AXIS.items()}


def labelled_indices(labels_ijk: np.ndarray) -> list[np.ndarray]:
    """For each axis i, j, k: the indices along it where a non-zero label lies.

    A canonical volume is usually a flipped, transposed view of the array as read; reducing over
    its outermost axis in memory, every axis running forward in memory, reads the memory once and
    in order; the other two axes are then read inside the box of the labels only.
    """
    order = sorted(range(3), key=lambda axis: -abs(labels_ijk.strides[axis]))
    flipped = [labels_ijk.strides[axis] < 0 for axis in order]
    outer = labels_ijk.transpose(order)[tuple(slice(None, None, -1 if flip else 1) for flip in flipped)]
    across = np.logical_or.reduce(outer if outer.dtype.kind in "biu" else outer != 0, axis=0) != 0
    inner = [np.flatnonzero(across.any(axis=1)), np.flatnonzero(across.any(axis=0))]
    found: list[np.ndarray] = [inner[0], *inner]  # the outer axis's: empty unless the inner ones have labels
    if inner[0].size:
        (a0, a1), (b0, b1) = ((int(f[0]), int(f[-1]) + 1) for f in inner)
        found[0] = np.flatnonzero((outer[:, a0:a1, b0:b1] != 0).any(axis=(1, 2)))
    for position, axis in enumerate(order):
        if flipped[position]:
            found[position] = labels_ijk.shape[axis] - 1 - found[position][::-1]
    by_axis = dict(zip(order, found))
    return [by_axis[axis] for axis in range(3)]
