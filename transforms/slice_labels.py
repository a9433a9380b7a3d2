"""The label side of a plane's planned slices, derived at once: boxes, lesion components, lost labels.

The planned slices of a plane are cut from the canonical label volume as one stack, cropped to the box
holding their labels, in display orientation. The connected components of every label (4-connected,
never across slices), their boxes and areas come from one reading of the stack, as row runs
(`transforms.runs`); a lesion label is also labelled inside its own box, for the measurements. Along an
in-plane axis that the plane's grid keeps or upsamples, nearest-neighbour resampling turns each source
pixel into one or more whole output pixels, in order: components, their raster order and counts are
those of the source pixels, a box edge maps exactly to the first output pixel of its source pixel, and
an area counts the output pixels of each source pixel. Along an axis the grid downsamples, pixels can
vanish and components split or merge, so the stack is resampled along it first. All lesion components of
a label are measured together on the source pixels, with the displayed pixels each row and column
becomes (`transforms.outlines`). Results are those of `transforms.boxes` and `transforms.lesions` run on
each displayed label slice (tests compare them).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import numpy as np
from scipy import ndimage

from transforms import runs
from transforms.boxes import MAX_COMPONENTS_PER_LABEL, ComponentBox
from transforms.lesions import MEASUREMENTS, LesionSize, Rejection
from transforms.outlines import repeats_of
from transforms.packed import PackedArray
from transforms.planes import SLICE_AXIS, SPACING_REL_TOL, PlaneGrid, labelled_indices
from transforms.volume import present_labels, transposed_2d

# 4-connected within a slice, nothing across slices.
_IN_SLICE_CROSS = np.zeros((3, 3, 3), bool)
_IN_SLICE_CROSS[1] = ndimage.generate_binary_structure(2, 1)


@dataclasses.dataclass(frozen=True)
class LesionComponent:
    """One component of a lesion label in a slice; `size` is None when it was not measured: the label is in
    more than `MAX_COMPONENTS_PER_LABEL` pieces (one entry, index 0), or in several and only single ones are."""

    label: int
    component_index: int
    n_components: int
    size: LesionSize | Rejection | None


@dataclasses.dataclass(frozen=True, eq=False)
class SliceLabels:
    """What one displayed label slice gives: its boxes (by label, then raster order), its lesion components,
    the labels resampling removed, and the slice itself held as its labelled box at source resolution."""

    boxes: tuple[ComponentBox, ...] = ()
    lesions: tuple[LesionComponent, ...] = ()
    labels_lost: tuple[int, ...] = ()
    crop: Optional[PackedArray] = None  # the labelled box of the slice, source pixels, display orientation
    origin_row_col: tuple[int, int] = (0, 0)  # displayed pixel of the crop's first output pixel
    row_map: Optional[np.ndarray] = None  # crop row shown by each output row from the origin; None: one each
    col_map: Optional[np.ndarray] = None

    def labels_2d(self, shape_rows_cols: tuple[int, int]) -> np.ndarray:
        """The displayed label slice (rows, cols)."""
        if self.crop is None:
            return np.zeros(shape_rows_cols, np.uint8)
        crop = self.crop.unpack()
        crop = crop if self.row_map is None else crop[self.row_map]
        crop = crop if self.col_map is None else crop[:, self.col_map]
        full = np.zeros(shape_rows_cols, crop.dtype)
        row, col = self.origin_row_col
        full[row : row + crop.shape[0], col : col + crop.shape[1]] = crop
        return full


@dataclasses.dataclass(frozen=True)
class _Axis:
    """How one in-plane axis of the working stack maps to displayed pixels."""

    origin: int  # displayed pixel of working index 0
    out_map: Optional[np.ndarray]  # working index of each displayed pixel from the origin; None: one each
    take: Optional[np.ndarray]  # source indices (in the crop) the working stack is resampled to first

    def first_out(self, n_working: int) -> np.ndarray:
        """Displayed pixel (from the origin) where each working index 0..n begins; index n is the end."""
        edges = np.arange(n_working + 1)
        return edges if self.out_map is None else np.searchsorted(self.out_map, edges, side="left")

    def counts(self, n_working: int) -> np.ndarray | None:
        return None if self.out_map is None else np.bincount(self.out_map, minlength=n_working)


def _axis(positions: np.ndarray | None, src_mm: float, dst_mm: float, low: int, high: int) -> _Axis:
    """The plan of one axis for a crop [low, high) of source pixels (see the module docstring)."""
    if positions is None:
        return _Axis(low, None, None)
    source = np.floor(positions + 0.5).astype(np.intp)  # as `planes.interpolate_nearest`
    first, stop = np.searchsorted(source, (low, high), side="left")
    if dst_mm > src_mm * (1 + SPACING_REL_TOL):
        return _Axis(int(first), None, source[first:stop] - low)
    return _Axis(int(first), source[first:stop] - low, None)


def _display_stack(labels_ijk: np.ndarray, grid: PlaneGrid) -> np.ndarray:
    """View (slice, row, col) of every slice of the plane in display orientation (`planes.display_slice`)."""
    stack = np.moveaxis(labels_ijk, SLICE_AXIS[grid.plane], 0)
    return stack[:, ::-1, ::-1].transpose(0, 2, 1) if grid.display == "radiological" else stack


def _gathered(stack: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """stack[positions], contiguous. When slices are the stack's fastest axis in memory (a plane across the
    volume's innermost axis), numpy's gather reads a cache line per voxel (270 ms for a 512x512x300 CT's
    sagittal labels); each row's (column, slice) plane turned by OpenCV's blocked transpose reads the
    memory in order (57 ms)."""
    strides = [abs(stride) for stride in stack.strides]
    if strides[0] >= min(strides[1:]) or stack.size == 0:
        return stack[positions]
    gathered = np.empty((len(positions), *stack.shape[1:]), stack.dtype)
    for row in range(stack.shape[1]):
        gathered[:, row] = transposed_2d(np.ascontiguousarray(stack[:, row].T[:, positions]))
    return gathered


def _display_rows_cols(box_ijk: tuple[slice, ...], shape_ijk, grid: PlaneGrid) -> tuple[slice, slice]:
    """The rows and columns of the displayed slices (`_display_stack`) that a box of the volume covers."""
    a, b = (axis for axis in range(3) if axis != SLICE_AXIS[grid.plane])
    if grid.display != "radiological":
        return box_ijk[a], box_ijk[b]
    flipped = [slice(shape_ijk[axis] - box_ijk[axis].stop, shape_ijk[axis] - box_ijk[axis].start) for axis in (b, a)]
    return flipped[0], flipped[1]


def derive_plane(
    labels_ijk: np.ndarray,
    grid: PlaneGrid,
    indices,
    lesion_labels=(),
    measure_several: bool = True,
    measurement: str = "pixel_edge",
) -> dict[int, SliceLabels]:
    """`SliceLabels` of each slice `indices` of `grid`'s plane of a canonical label volume.

    Lesion components of `lesion_labels` are measured (`transforms.lesions.MEASUREMENTS[measurement]`,
    the conventions' choice) unless their label is in more than `MAX_COMPONENTS_PER_LABEL` pieces, or in
    several and `measure_several` is False (MedVision's single-instance conventions never use those).
    """
    indices = [int(index) for index in indices]
    result = dict.fromkeys(indices, _UNLABELLED)
    if not indices:
        return result
    # The planned slices' slab, cropped to its labels in the volume's own frame (read in memory order).
    slice_axis, first = SLICE_AXIS[grid.plane], min(indices)
    slab = labels_ijk[(slice(None),) * slice_axis + (slice(first, max(indices) + 1),)]
    along = labelled_indices(slab)
    if along[slice_axis].size == 0:
        return result
    box = tuple(slice(int(found[0]), int(found[-1]) + 1) for found in along)
    rows, cols = _display_rows_cols(box, slab.shape, grid)
    labelled = set((along[slice_axis] + first).tolist())
    kept = [index for index in indices if index in labelled]
    source = _gathered(_display_stack(slab[box], grid), np.asarray(kept) - first - box[slice_axis].start)
    row_axis = _axis(grid.row_positions, *_spacings(grid, 0), rows.start, rows.stop)
    col_axis = _axis(grid.col_positions, *_spacings(grid, 1), cols.start, cols.stop)
    working = source if row_axis.take is None else np.take(source, row_axis.take, axis=1)
    working = working if col_axis.take is None else np.take(working, col_axis.take, axis=2)
    boxes, lesions, found = _derive_stack(
        working, row_axis, col_axis, grid.spacing_mm_row_col, lesion_labels, measure_several, measurement
    )
    resampled_away = row_axis.take is not None or col_axis.take is not None
    for position, (index, crop) in enumerate(zip(kept, _own_crops(working, found, row_axis, col_axis))):
        lost: tuple[int, ...] = ()
        if resampled_away:
            lost = tuple(sorted(present_labels(source[position]) - present_labels(working[position])))
        result[index] = SliceLabels(boxes[position], lesions[position], lost, *crop)
    return result


_UNLABELLED = SliceLabels()


def _slice_boxes(found: runs.Components, n_slices: int) -> np.ndarray:
    """(first row, row end, first column, column end, any label) of the labels of each slice, (n, 5): the
    box of its components' boxes (zeros for a slice with none)."""
    boxes = np.zeros((n_slices, 5), np.int64)
    boxes[:, [0, 2]] = np.iinfo(np.int64).max
    np.minimum.at(boxes[:, 0], found.slice_index, found.row0)
    np.maximum.at(boxes[:, 1], found.slice_index, found.row1)
    np.minimum.at(boxes[:, 2], found.slice_index, found.col0)
    np.maximum.at(boxes[:, 3], found.slice_index, found.col1)
    boxes[found.slice_index, 4] = 1
    boxes[boxes[:, 4] == 0, :4] = 0
    return boxes


def _own_crops(working: np.ndarray, found: runs.Components, row_axis: _Axis, col_axis: _Axis):
    """Each slice's own labelled box (so it does not depend on the other slices cut with it), where it is
    displayed, and which of its rows and columns each displayed pixel shows: `SliceLabels`' crop,
    origin_row_col, row_map and col_map, or no crop for a slice with no label left."""
    boxes = _slice_boxes(found, len(working))
    row_origins, row_maps = _placed(row_axis, boxes[:, 0], boxes[:, 1], working.shape[1])
    col_origins, col_maps = _placed(col_axis, boxes[:, 2], boxes[:, 3], working.shape[2])
    for position, (r0, r1, c0, c1, any_label) in enumerate(boxes.tolist()):
        if not any_label:
            yield None, (0, 0), None, None
            continue
        crop = PackedArray.pack(working[position, r0:r1, c0:c1])
        yield crop, (row_origins[position], col_origins[position]), row_maps[position], col_maps[position]


def _placed(axis: _Axis, low: np.ndarray, high: np.ndarray, n_working: int) -> tuple[list[int], list]:
    """Where each box [low, high) of working indices along `axis` is displayed: its first displayed pixel,
    and the box index each displayed pixel shows (None: one each)."""
    begins = axis.first_out(n_working)
    origins = (axis.origin + begins[low]).tolist()
    if axis.out_map is None:
        return origins, [None] * len(low)
    first, stop = begins[low].tolist(), begins[high].tolist()
    return origins, [axis.out_map[a:b] - offset for a, b, offset in zip(first, stop, low.tolist())]


def derive_slice(
    labels_2d: np.ndarray,
    spacing_mm_row_col: tuple[float, float],
    lesion_labels=(),
    measure_several: bool = True,
    measurement: str = "pixel_edge",
) -> SliceLabels:
    """`SliceLabels` of one displayed label slice (boxes and lesion components; no crop is kept)."""
    identity = _Axis(0, None, None)
    boxes, lesions, _ = _derive_stack(
        labels_2d[None], identity, identity, spacing_mm_row_col, lesion_labels, measure_several, measurement
    )
    return SliceLabels(boxes[0], lesions[0])


def _spacings(grid: PlaneGrid, axis: int) -> tuple[float, float]:
    return grid.source_spacing_mm_row_col[axis], grid.spacing_mm_row_col[axis]


def _derive_stack(
    working: np.ndarray,
    row_axis: _Axis,
    col_axis: _Axis,
    spacing_mm_row_col,
    lesion_labels,
    measure_several: bool,
    measurement: str = "pixel_edge",
) -> tuple[list[tuple[ComponentBox, ...]], list[tuple[LesionComponent, ...]], runs.Components]:
    """The boxes and the lesion components of each slice of a working stack (slice, row, col), as
    `SliceLabels` holds them, and the components they come from."""
    n_slices, n_rows, n_cols = working.shape
    first_row, first_col = row_axis.origin + row_axis.first_out(n_rows), col_axis.origin + col_axis.first_out(n_cols)
    repeats = (row_axis.counts(n_rows), col_axis.counts(n_cols))
    found = runs.components(working, *repeats)
    boxes: list[list[ComponentBox]] = [[] for _ in range(n_slices)]
    for k, box in _boxes(found, first_row, first_col):
        boxes[k].append(box)
    lesions: list[dict[int, list[LesionComponent]]] = [{} for _ in range(n_slices)]  # by label
    for value in sorted(set(found.value.tolist()) & {int(label) for label in lesion_labels}):
        mine = found.value == value
        _, rows, cols = label_box = (
            slice(int(found.slice_index[mine].min()), int(found.slice_index[mine].max()) + 1),
            slice(int(found.row0[mine].min()), int(found.row1[mine].max())),
            slice(int(found.col0[mine].min()), int(found.col1[mine].max())),
        )
        measure = functools.partial(
            MEASUREMENTS[measurement],
            spacing_mm_row_col=spacing_mm_row_col,
            origin_row_col=(int(first_row[rows.start]), int(first_col[cols.start])),
            repeats=repeats_of(repeats, rows, cols),
        )
        for k, entry in _lesion_entries(value, working, label_box, found, measure, measure_several):
            lesions[k].setdefault(value, []).append(entry)
    order = [int(label) for label in lesion_labels]  # the case's order, as rows are made
    by_slice = [tuple(entry for label in order for entry in by_label.get(label, ())) for by_label in lesions]
    return [tuple(b) for b in boxes], by_slice, found


def _boxes(found: runs.Components, first_row: np.ndarray, first_col: np.ndarray):
    """(slice, `ComponentBox`) of each component; `first_row`/`first_col`: the displayed pixel where each
    working row/column begins (index n: where the last one ends)."""
    new_group = np.r_[True, (np.diff(found.value) != 0) | (np.diff(found.slice_index) != 0)]  # (label, slice)
    index = np.arange(new_group.size) - np.maximum.accumulate(np.where(new_group, np.arange(new_group.size), 0))
    sizes = np.diff(np.r_[np.flatnonzero(new_group), new_group.size])
    xyxy = np.stack([first_col[found.col0], first_row[found.row0], first_col[found.col1], first_row[found.row1]], 1)
    for value, k, i, n, box, area in zip(
        found.value.tolist(),
        found.slice_index.tolist(),
        index.tolist(),
        np.repeat(sizes, sizes).tolist(),
        xyxy.tolist(),
        found.displayed_area.tolist(),
    ):
        yield k, ComponentBox(value, i, n, tuple(box), area)


def _lesion_entries(value: int, working, label_box, found: runs.Components, measure, measure_several: bool):
    """(slice, `LesionComponent`) of each component of a lesion label, in raster order; those of a slice
    where the label is in at most `MAX_COMPONENTS_PER_LABEL` pieces (in one only, unless `measure_several`)
    measured together by `measure(components, numbers, pixels=their areas)` on the label's box; a label in
    more pieces gives its slice one entry, index 0, unmeasured."""
    mine = found.value == value
    # The runs' components, numbered in the same raster order, as the image the measurements read.
    components, count = ndimage.label(working[label_box] == value, _IN_SLICE_CROSS, output=np.int32)
    if count != np.count_nonzero(mine):
        raise AssertionError(f"label {value}: {count} components labelled, {np.count_nonzero(mine)} from runs")
    slice_of = found.slice_index[mine]
    per_slice = np.bincount(slice_of, minlength=working.shape[0])
    index_in_slice = np.arange(count) - (np.cumsum(per_slice) - per_slice)[slice_of]
    n_in_slice = per_slice[slice_of]
    measured = np.flatnonzero((n_in_slice <= MAX_COMPONENTS_PER_LABEL) & (measure_several | (n_in_slice == 1)))
    areas = found.displayed_area[mine][measured]
    sizes = measure(components, measured + 1, pixels=areas) if measured.size else []
    size_of = dict(zip(measured.tolist(), sizes))
    for number, (k, n, index) in enumerate(zip(slice_of.tolist(), n_in_slice.tolist(), index_in_slice.tolist())):
        if n <= MAX_COMPONENTS_PER_LABEL or index == 0:
            yield k, LesionComponent(value, index, n, size_of.get(number))
