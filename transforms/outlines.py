"""The outer outlines of many components at once, as displayed: boundary points and polygon edges.

A component's outline is the polygon marching squares (level 0.5, skimage's `find_contours`) traces
around its displayed mask: its vertices are the midpoints of the pixel edges between the filled
component and the outside (a "crack"), its edges join the cracks that share a 2 x 2 square of pixel
centres. Inside pixels touching only at a corner are kept apart, as 4-connected components are.

All outlines of a labelled stack (slice, row, col) are traced together, from array operations on the
source pixels. Nearest-neighbour upsampling repeats each source row and column a whole number of
times (`Repeats`); a source crack becomes a run of displayed cracks, one per displayed pixel along it,
one unit apart on a straight line, and the runs meet at the corners of source pixels exactly as the
cracks meet around one corner of displayed pixels. An outline is kept as its runs, never expanded to
their points (a 6.5 mm axis shown at 0.78 mm puts 8 or 9 in each), and its polygon's edges, one along
each run and one across each corner. Coordinates are displayed pixels in the edge frame (pixel column c
spans [c, c + 1)); cracks lie on whole coordinates across them and half ones along them.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
from scipy import ndimage

# Displayed pixels each source row and each source column becomes; None: one each.
Repeats = tuple[Optional[np.ndarray], Optional[np.ndarray]]
ONE_EACH: Repeats = (None, None)

# Background is 8-connected within a slice (the complement of 4-connected components): a region it
# reaches only through a corner is outside, not a hole.
_BACKGROUND_IN_SLICE = np.zeros((3, 3, 3), bool)
_BACKGROUND_IN_SLICE[1] = True


class Outlines(NamedTuple):
    """The outer outlines of components 0..n-1 in displayed pixels (edge frame): the runs of crack midpoints
    and the polygon's edges, each array sorted by component."""

    run_first_xy: np.ndarray  # (R, 2) the first crack midpoint of each run
    run_last_xy: np.ndarray  # (R, 2) its last, run_length - 1 unit steps along x or y from the first
    run_length: np.ndarray  # (R,) how many crack midpoints the run holds
    run_group: np.ndarray  # (R,) the component of each run
    edges_xy: np.ndarray  # (E, 2, 2) both ends of each polygon edge (collinear unit edges merged)
    edge_group: np.ndarray  # (E,)

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """Every crack midpoint of each outline (the vertices of its marching-squares contour), and its
        component; sorted by component."""
        steps = np.repeat(np.arange(self.run_length.size), self.run_length)
        along = np.arange(steps.size) - (np.cumsum(self.run_length) - self.run_length)[steps]
        unit = (self.run_last_xy - self.run_first_xy) / np.maximum(self.run_length - 1, 1)[:, None]
        return self.run_first_xy[steps] + along[:, None] * unit[steps], self.run_group[steps]

    def run_ends(self) -> tuple[np.ndarray, np.ndarray]:
        """Both ends of each run (every convex hull vertex is one) and their components; sorted by component."""
        return np.stack((self.run_first_xy, self.run_last_xy), axis=1).reshape(-1, 2), np.repeat(self.run_group, 2)


def displayed(mask: np.ndarray, repeats: Repeats = ONE_EACH) -> np.ndarray:
    """A 2D mask, or a stack's slices, in displayed pixels: rows and columns repeated as `repeats` says."""
    row_repeats, col_repeats = repeats
    shown = mask if row_repeats is None else np.repeat(mask, row_repeats, axis=-2)
    return shown if col_repeats is None else np.repeat(shown, col_repeats, axis=-1)


def repeats_of(repeats: Repeats, rows: slice, cols: slice) -> Repeats:
    """The repeats of a box of the source pixels."""
    row_repeats, col_repeats = repeats
    return (None if row_repeats is None else row_repeats[rows], None if col_repeats is None else col_repeats[cols])


def displayed_counts(labels: np.ndarray, n_values: int, repeats: Repeats = ONE_EACH) -> np.ndarray:
    """Displayed pixels of each value 0..n_values - 1 of a labelled stack (slice, row, col): each source
    pixel counts as the displayed pixels it becomes. One plain count per distinct (row, column) repeat."""
    total = np.zeros(n_values, np.int64)
    step = max(1, _COUNT_SLAB_PIXELS // max(1, labels[0].size))  # bincount widens what it counts to int64
    for start in range(0, labels.shape[0], step):
        slab = labels[start : start + step]
        for row_repeat, rows in _repeat_classes(repeats[0], labels.shape[1]):
            for col_repeat, cols in _repeat_classes(repeats[1], labels.shape[2]):
                part = slab[:, rows][:, :, cols]
                total += row_repeat * col_repeat * np.bincount(part.ravel(), minlength=n_values)
    return total


_COUNT_SLAB_PIXELS = 1 << 20


def _repeat_classes(counts: Optional[np.ndarray], n: int) -> list[tuple[int, slice | np.ndarray]]:
    """(repeat, the rows or columns repeated that many times) for each repeat shown at all."""
    if counts is None:
        return [(1, slice(None))]
    return [(int(repeat), np.flatnonzero(counts == repeat)) for repeat in np.unique(counts) if repeat > 0]


def trace_outlines(
    components: np.ndarray, numbers, origin_row_col: tuple[int, int] = (0, 0), repeats: Repeats = ONE_EACH
) -> Outlines:
    """The outlines of the components `numbers` (values of `components`, (slice, row, col) with no
    component across slices); group i is `numbers[i]`. Source pixel (0, 0) shows at displayed pixel
    `origin_row_col`. A source row or column shown nowhere changes the shapes: the stack is then
    displayed first."""
    if any(counts is not None and not counts.all() for counts in repeats):
        components, repeats = displayed(components, repeats), ONE_EACH
    numbers = np.asarray(numbers, np.int64)
    lookup = np.zeros(int(components.max()) + 1, np.int32)
    lookup[numbers] = np.arange(1, numbers.size + 1)
    groups = lookup[components]  # 1 + group of each pixel; 0: outside every measured component
    filled = groups.copy()
    nested = _fill_holes(filled)
    parts = [_trace(filled, origin_row_col, repeats)]
    for group in nested:  # a component inside another's hole: each traced on its own
        alone = np.where(groups == group, groups, 0)
        _fill_holes(alone)
        parts.append(_trace(alone, origin_row_col, repeats))
    columns = [np.concatenate(column) for column in zip(*parts)]
    first, last, length, run_group, edges, edge_group = columns
    runs_by_group = np.argsort(run_group, kind="stable")
    edges_by_group = np.argsort(edge_group, kind="stable")
    return Outlines(
        first[runs_by_group],
        last[runs_by_group],
        length[runs_by_group],
        run_group[runs_by_group],
        edges[edges_by_group],
        edge_group[edges_by_group],
    )


def _fill_holes(groups: np.ndarray) -> list[int]:
    """Fill each hole with the group around it, in place; the groups (1-based) involved in a hole that
    holds another component are left out (set to 0) and returned."""
    padded = np.pad(groups, ((0, 0), (1, 1), (1, 1)))
    regions, n_regions = ndimage.label(padded == 0, _BACKGROUND_IN_SLICE)
    is_hole = np.ones(n_regions + 1, bool)
    is_hole[0] = False
    is_hole[regions[:, [0, -1], :]] = False  # a region reaching the border of its slice is outside
    is_hole[regions[:, :, [0, -1]]] = False
    if not is_hole.any():
        return []
    hole_pixels = np.flatnonzero(is_hole[regions])
    hole_of = regions.ravel()[hole_pixels]
    width = regions.shape[2]
    # the groups 4-adjacent to each hole: the one around it, or several when it holds another component
    around = padded.ravel()[hole_pixels[:, None] + np.array([-width, width, -1, 1])]
    touching = around != 0
    n_keys = int(groups.max()) + 1
    pairs = np.unique(np.repeat(hole_of, 4)[touching.ravel()].astype(np.int64) * n_keys + around[touching])
    hole, group = pairs // n_keys, pairs % n_keys
    holes, n_around = np.unique(hole, return_counts=True)
    single = np.isin(hole, holes[n_around == 1])
    fill = np.zeros(n_regions + 1, groups.dtype)
    fill[hole[single]] = group[single]
    padded.ravel()[hole_pixels] = fill[hole_of]
    nested = sorted(set(group[~single].tolist()))
    groups[...] = np.where(np.isin(padded[:, 1:-1, 1:-1], nested), 0, padded[:, 1:-1, 1:-1])
    return nested


def displayed_edges(counts: Optional[np.ndarray], n: int) -> np.ndarray:
    """Displayed coordinate of each of the n + 1 boundaries between source rows (or columns), from 0."""
    return np.arange(n + 1, dtype=np.float64) if counts is None else np.r_[0, np.cumsum(counts)].astype(np.float64)


def _trace(groups: np.ndarray, origin_row_col, repeats: Repeats) -> tuple:
    """`Outlines` columns of the filled stack `groups` (each pixel: 1 + its group, 0 outside)."""
    n_rows, n_cols = groups.shape[1:]
    row_counts = np.ones(n_rows, np.int64) if repeats[0] is None else repeats[0]
    col_counts = np.ones(n_cols, np.int64) if repeats[1] is None else repeats[1]
    row_at = displayed_edges(repeats[0], n_rows) + origin_row_col[0]
    col_at = displayed_edges(repeats[1], n_cols) + origin_row_col[1]
    padded = np.pad(groups, ((0, 0), (1, 1), (1, 1)))
    between_rows = _runs(padded[:, :-1, 1:-1], padded[:, 1:, 1:-1], row_at, col_at, col_counts, across_rows=True)
    between_cols = _runs(padded[:, 1:-1, :-1], padded[:, 1:-1, 1:], col_at, row_at, row_counts, across_rows=False)
    first, last, length, group = (np.concatenate(column) for column in zip(between_rows, between_cols))
    spans = length > 1  # a run's unit edges, merged: the polygon is the same, its crossings the same
    corner_edges, corner_group = _corner_edges(padded, row_at, col_at)
    return (
        first,
        last,
        length,
        group,
        np.concatenate([np.stack((first[spans], last[spans]), axis=1), corner_edges]),
        np.concatenate([group[spans], corner_group]),
    )


def _runs(before, after, boundary_at, start_at, counts, across_rows: bool) -> tuple:
    """(first point, last point, length, group) of each run of displayed cracks between `before` and
    `after` pixels.

    A source crack lies on boundary b (displayed at `boundary_at[b]`) along source pixel i, which begins
    at `start_at[i]` and spans `counts[i]` displayed pixels: one displayed crack each."""
    crack = before != after
    _, first_index, second_index = np.nonzero(crack)
    boundary, along = (first_index, second_index) if across_rows else (second_index, first_index)
    group = np.maximum(before, after)[crack] - 1  # one side is outside
    length = counts[along]
    fixed = boundary_at[boundary]
    first_moving = start_at[along] + 0.5
    last_moving = first_moving + (length - 1)
    if across_rows:  # (x, y)
        return np.column_stack((first_moving, fixed)), np.column_stack((last_moving, fixed)), length, group
    return np.column_stack((fixed, first_moving)), np.column_stack((fixed, last_moving)), length, group


# Where the crack on each side of a corner lies: left (between a and c), right (b, d), up (a, b), down (c, d).
_AROUND_CORNER_XY = np.array([(-0.5, 0.0), (0.5, 0.0), (0.0, -0.5), (0.0, 0.5)])
_LEFT, _RIGHT, _UP, _DOWN = range(4)
_A, _B, _C, _D = range(4)


def _corner_cases() -> np.ndarray:
    """For each of the 16 insides of (a b / c d), as a*8 + b*4 + c*2 + d: up to two edges, each
    (crack, crack, pixel of its group); -1 where there is none."""
    cases = np.full((16, 2, 3), -1, np.int64)
    one_in = {_A: (_UP, _LEFT), _B: (_UP, _RIGHT), _C: (_LEFT, _DOWN), _D: (_RIGHT, _DOWN)}
    for pixel, (one, other) in one_in.items():
        alone = 8 >> pixel
        cases[alone, 0] = (one, other, pixel)  # one pixel in: its corner is cut off
        cases[15 - alone, 0] = (one, other, -1)  # one pixel out: likewise; any inside pixel gives the group
    cases[0b1100, 0] = cases[0b0011, 0] = (_LEFT, _RIGHT, -1)
    cases[0b1010, 0] = cases[0b0101, 0] = (_UP, _DOWN, -1)
    cases[0b1001] = (_UP, _LEFT, _A), (_RIGHT, _DOWN, _D)  # inside pixels meeting at a corner stay apart
    cases[0b0110] = (_UP, _RIGHT, _B), (_LEFT, _DOWN, _C)
    return cases


_CORNER_CASES = _corner_cases()


def _corner_edges(padded: np.ndarray, row_at: np.ndarray, col_at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The edges around each corner of source pixels, and their groups.

    The 2 x 2 pixels (a b / c d) around a corner hold two cracks, joined by one edge, or four: a and d
    inside, or b and c, each cut off by its own edge (inside pixels meeting at a corner stay apart)."""
    inside = (padded != 0).view(np.uint8)
    code = (inside[:, :-1, :-1] << 3) | (inside[:, :-1, 1:] << 2) | (inside[:, 1:, :-1] << 1) | inside[:, 1:, 1:]
    k, rows, cols = np.nonzero((code != 0) & (code != 15))
    width = padded.shape[2]
    top_left = (k * padded.shape[1] + rows) * width + cols
    values = padded.ravel()[top_left[:, None] + np.array([0, 1, width, width + 1])]  # a, b, c, d
    cases = _CORNER_CASES[code[k, rows, cols]]  # (S, 2, 3)
    square, which = np.nonzero(cases[:, :, 0] >= 0)
    one, other, pixel = cases[square, which].T
    any_inside = values.max(axis=1)[square]  # one group in the square, but for a saddle's two
    owner = np.where(pixel >= 0, values[square, np.maximum(pixel, 0)], any_inside)
    x, y = col_at[cols][square], row_at[rows][square]
    ends = [np.column_stack((x + _AROUND_CORNER_XY[end, 0], y + _AROUND_CORNER_XY[end, 1])) for end in (one, other)]
    return np.stack(ends, axis=1), owner - 1
