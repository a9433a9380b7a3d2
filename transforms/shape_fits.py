"""Ellipse fits and RECIST calipers of many point sets at once, one group per component, in mm.

Each function takes the points (or polygon edges) of every component with the group of each, and
returns one result per group from array operations over all of them: a slice stack's hundreds of
components cost a few passes over their points, not hundreds of small calls. Points are (x, y).
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np


class Ellipses(NamedTuple):
    """Fitted ellipses: centre, semi-axes (major >= minor), major-axis angle in [0, pi) from +x towards +y."""

    centre_xy: np.ndarray  # (n, 2)
    half_major: np.ndarray  # (n,)
    half_minor: np.ndarray  # (n,)
    theta: np.ndarray  # (n,)
    fitted: np.ndarray  # (n,) False where the fit fails or is not finite


class Segments(NamedTuple):
    """One segment per group: its length and both ends (mm)."""

    length: np.ndarray  # (n,)
    start_xy: np.ndarray  # (n, 2)
    end_xy: np.ndarray  # (n, 2)


# Relative difference below which two lengths count as equal (rounding, or spacings stored as float32).
TIE_TOLERANCE = 1e-12

# Angles this close below pi are 0 (float rounding of a horizontal axis).
ANGLE_WRAP_RAD = 1e-12

# skimage's constraint matrix inverted (eqn. 18 of Halir & Flusser); exact in binary.
_INVERSE_CONSTRAINT = np.array([[0.0, 0.0, 0.5], [0.0, -1.0, 0.0], [0.5, 0.0, 0.0]])


def group_starts(group: np.ndarray, n: int) -> np.ndarray:
    """Where each group 0..n-1 begins in a sorted, complete `group` array."""
    return np.searchsorted(group, np.arange(n))


def fit_ellipses(points_xy: np.ndarray, group: np.ndarray, n: int, weights: np.ndarray | None = None) -> Ellipses:
    """Direct least-squares ellipses (Halir & Flusser), computed as skimage's `EllipseModel.from_estimate`
    does (its normalisation, scatter matrices and formulas), for all groups at once: equal to it to float
    rounding. Its failures fail here: under 5 points, no spread, a singular scatter, not exactly one
    eigenvector meeting the ellipse constraint, or a complex eigensystem (no real ellipse). Points are
    sorted by group, each group 0..n-1 holding at least one; `weights` (default 1) count each point as
    that many (`run_moment_points`), each group's adding up to a whole number of points."""
    starts = group_starts(group, n)

    def total(values: np.ndarray) -> np.ndarray:
        if weights is not None:
            values = values * (weights if values.ndim == 1 else weights[:, None])
        return np.add.reduceat(values, starts, axis=0)

    counts = np.diff(np.r_[starts, len(group)]).astype(np.float64)
    if weights is not None:
        counts = np.rint(np.add.reduceat(weights, starts))  # whole numbers of points, summed from fractions
    with np.errstate(all="ignore"):
        origin = total(points_xy) / counts[:, None]
        centred = points_xy - origin[group]
        mean = total(centred).sum(axis=1) / (2 * counts)  # skimage: the std over both columns
        scale = np.sqrt(total((centred - mean[group, None]) ** 2).sum(axis=1) / (2 * counts))
        fitted = (counts >= 5) & (scale >= np.finfo(np.float64).tiny)
        x, y = (centred / scale[group, None]).T
        xx, xy, yy = x * x, x * y, y * y
        monomials = (xx * xx, xx * xy, xx * yy, xy * yy, yy * yy, xx * x, xx * y, xy * y, yy * y, xx, xy, yy, x, y)
        *s, sx2, sxy, sy2, sx, sy = total(np.column_stack(monomials)).T
    quartic = np.stack([[s[0], s[1], s[2]], [s[1], s[2], s[3]], [s[2], s[3], s[4]]]).transpose(2, 0, 1)
    cubic = np.stack([[s[5], s[6], sx2], [s[6], s[7], sxy], [s[7], s[8], sy2]]).transpose(2, 0, 1)
    quadratic = np.stack([[sx2, sxy, sx], [sxy, sy2, sy], [sx, sy, counts]]).transpose(2, 0, 1)
    inverse, invertible = _inverses(np.where(fitted[:, None, None], quadratic, np.eye(3)))
    fitted &= invertible
    with np.errstate(all="ignore"):
        reduced = _INVERSE_CONSTRAINT @ (quartic - cubic @ inverse @ cubic.transpose(0, 2, 1))
    fitted &= np.isfinite(reduced).all(axis=(1, 2))
    eigenvalues, vectors = np.linalg.eig(np.where(fitted[:, None, None], reduced, np.eye(3)))
    if np.iscomplexobj(vectors):
        fitted &= ~((eigenvalues.imag != 0).any(axis=1) | (vectors.imag != 0).any(axis=(1, 2)))
        vectors = vectors.real
    meets = 4 * vectors[:, 0, :] * vectors[:, 2, :] - vectors[:, 1, :] ** 2 > 0
    fitted &= meets.sum(axis=1) == 1
    quadratic_part = vectors[np.arange(n), :, np.argmax(meets, axis=1)]
    linear_part = ((-inverse @ cubic.transpose(0, 2, 1)) @ quadratic_part[:, :, None])[:, :, 0]
    return _ellipse_parameters(quadratic_part, linear_part, scale, origin, fitted)


def run_moment_points(
    first_xy: np.ndarray, last_xy: np.ndarray, length: np.ndarray, group: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted points (points, weights, group) with every moment up to degree 5 of each run of `length`
    evenly spaced points from `first_xy` to `last_xy`: what `fit_ellipses` sums of them, from at most
    three points a run (its middle, and both sides of it at the distance that matches the fourth moment).

    Offsets e of the run's points from its middle are symmetric, so their odd moments vanish; a symmetric
    rule of nodes 0 and +-r with weights w0, w1 has the same sums of e^0, e^2 and e^4 (and 0 for odd powers)
    when 2 w1 r^2 = E2 and 2 w1 r^4 = E4, and so sums every polynomial of degree 5 or less exactly. A run
    of one point stays one point; a run of three gets its own points back (two: its ends, and its middle
    weighted 0)."""
    single = length == 1
    c = length[~single].astype(np.float64)
    e2 = c * (c * c - 1) / 12  # sums of e^2 and e^4 over offsets -(c - 1)/2 .. (c - 1)/2 steps
    e4 = c * (c * c - 1) * (3 * c * c - 7) / 240
    side_weight = e2 * e2 / (2 * e4)
    middle = (first_xy[~single] + last_xy[~single]) / 2
    reach = ((last_xy[~single] - first_xy[~single]) / (c - 1)[:, None]) * np.sqrt(e4 / e2)[:, None]
    points = np.concatenate([first_xy[single], middle, middle - reach, middle + reach])
    weights = np.concatenate([np.ones(int(single.sum())), c - 2 * side_weight, side_weight, side_weight])
    groups = np.concatenate([group[single], np.tile(group[~single], 3)])
    order = np.argsort(groups, kind="stable")
    return points[order], weights[order], groups[order]


def _inverses(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverses of a stack of matrices, and which exist (singular ones give the identity)."""
    try:
        return np.linalg.inv(matrices), np.ones(len(matrices), bool)
    except np.linalg.LinAlgError:
        inverses, invertible = np.empty_like(matrices), np.ones(len(matrices), bool)
        for index, matrix in enumerate(matrices):
            try:
                inverses[index] = np.linalg.inv(matrix)
            except np.linalg.LinAlgError:
                inverses[index], invertible[index] = np.eye(3), False
        return inverses, invertible


def _ellipse_parameters(quadratic_part, linear_part, scale, origin, fitted) -> Ellipses:
    """Centre, semi-axes and angle of the conics a x^2 + b xy + c y^2 + d x + f y + g = 0 (skimage's formulas,
    then its clean-up: NaN to 0, infinities to the largest float, de-normalised)."""
    a, b, c = quadratic_part.T
    d, f, g = linear_part.T
    b, d, f = b / 2.0, d / 2.0, f / 2.0
    with np.errstate(all="ignore"):
        x0 = (c * d - b * f) / (b**2.0 - a * c)
        y0 = (a * f - b * d) / (b**2.0 - a * c)
        numerator = a * f**2 + c * d**2 + g * b**2 - 2 * b * d * f - a * c * g
        term = np.sqrt((a - c) ** 2 + 4 * b**2)
        width = np.sqrt(2 * numerator / ((b**2 - a * c) * (term - (a + c))))
        height = np.sqrt(2 * numerator / ((b**2 - a * c) * (-term - (a + c))))
        # skimage: 0.5 * arctan(2b / (a - c)), + pi / 2 where a > c. arctan2 gives the same angle (mod pi)
        # with no jump where a - c changes sign: where a == c exactly (a shape symmetric about a diagonal)
        # skimage divides by zero and can turn the major axis by 90 degrees.
        phi = 0.5 * np.arctan2(-2.0 * b, c - a)
        swap = width < height
        width, height = np.where(swap, height, width), np.where(swap, width, height)
        phi = (phi + np.where(swap, np.pi / 2, 0.0)) % np.pi
        params = np.nan_to_num(np.stack([x0, y0, width, height, phi]))
        params[:4] *= scale
        params[:2] += origin.T
        half_a, half_b, theta = params[2], params[3], params[4]
        swap = half_b > half_a  # only where the clean-up changed the order
        half_a, half_b = np.where(swap, half_b, half_a), np.where(swap, half_a, half_b)
        theta = (theta + np.where(swap, np.pi / 2, 0.0)) % np.pi
        # a horizontal axis's angle, rounded just below pi, is 0: its ends then come in one order, not either
        theta = np.where(np.pi - theta < ANGLE_WRAP_RAD, 0.0, theta)
    centre = params[:2].T
    fitted = fitted & np.isfinite(centre).all(axis=1) & np.isfinite(half_a) & np.isfinite(half_b) & np.isfinite(theta)
    return Ellipses(centre, half_a, half_b, theta, fitted)


def longest_diameters(candidates_px: np.ndarray, group: np.ndarray, n: int, spacing_mm_xy) -> Segments:
    """The farthest pair of points of each group, in mm: its maximal caliper.

    `candidates_px` (sorted by group) hold every convex hull vertex of each group; they lie on half
    pixels, so the hull is found exactly on integers. Of pairs at the same greatest distance (to
    `TIE_TOLERANCE`), the one whose first end comes first in (y, x) order, then whose second end does, is
    kept; the segment runs from its first end (higher up, then further left) to the other: the same for
    any order of the points and any rounding of the spacing.
    """
    scale = np.asarray(spacing_mm_xy, np.float64)
    halves = np.rint(candidates_px * 2).astype(np.int32)
    starts = np.r_[group_starts(group, n), len(group)]
    hulls = [
        starts[index] + cv2.convexHull(halves[starts[index] : starts[index + 1]], returnPoints=False).ravel()
        for index in range(n)
    ]
    sizes = np.array([hull.size for hull in hulls])
    vertex = np.concatenate(hulls)
    vertex_group = np.repeat(np.arange(n), sizes)
    points_px, points_mm = candidates_px[vertex], candidates_px[vertex] * scale
    rank = np.empty(vertex.size, np.int64)
    rank[np.lexsort((points_px[:, 0], points_px[:, 1], vertex_group))] = np.arange(vertex.size)
    first, second = _pairs_within(sizes)
    distance = np.hypot(*(points_mm[first] - points_mm[second]).T)
    pair_group = vertex_group[first]
    pair_starts = group_starts(pair_group, n)
    farthest = np.maximum.reduceat(distance, pair_starts)
    # pairs whose lengths differ by float rounding only are tied: the choice must not depend on it
    keep = (distance >= farthest[pair_group] * (1 - TIE_TOLERANCE)) & (rank[first] < rank[second])
    key = np.where(keep, rank[first] * vertex.size + rank[second], np.iinfo(np.int64).max)
    chosen = np.minimum.reduceat(key, pair_starts)
    single = chosen == np.iinfo(np.int64).max  # one point: a segment of length 0
    by_rank = np.argsort(rank)
    first_vertex = rank[group_starts(vertex_group, n)]
    start = by_rank[np.where(single, first_vertex, chosen // vertex.size)]
    end = by_rank[np.where(single, first_vertex, chosen % vertex.size)]
    return Segments(np.hypot(*(points_mm[start] - points_mm[end]).T), points_mm[start], points_mm[end])


def _pairs_within(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered pair (i, j) of items within each run of `sizes` consecutive items, by run."""
    offsets = np.cumsum(sizes) - sizes
    per_run = sizes * sizes
    run = np.repeat(np.arange(sizes.size), per_run)
    local = np.arange(per_run.sum()) - np.repeat(np.cumsum(per_run) - per_run, per_run)
    return offsets[run] + local // sizes[run], offsets[run] + local % sizes[run]


def perpendicular_diameters(edges_xy: np.ndarray, edge_group: np.ndarray, axes: Segments, step_mm: float) -> Segments:
    """Each group's longest chord inside its polygon perpendicular to its axis (RECIST short axis), in mm.

    Chords are cut every `step_mm` along the axis from its start, the first `step_mm / 2` past the
    polygon's lowest point along it; on each cut, the edges' crossings pair up (even-odd rule) into
    inside segments, and the longest wins (the first cut, then the first segment, on ties). An edge
    crosses the cuts from its lower end's position (included) to its upper end's (excluded), so a cut
    through a vertex counts the polygon once there. No chord: length 0, both ends at the axis start.
    `edges_xy` (E, 2, 2) are sorted by group.
    """
    n = len(axes.length)
    has_axis = axes.length > 0  # a one-point group has no axis to cut across
    direction = np.zeros((n, 2))
    direction[has_axis] = (axes.end_xy - axes.start_xy)[has_axis] / axes.length[has_axis, None]
    kept = has_axis[edge_group]
    edges_xy, edge_group = edges_xy[kept], edge_group[kept]
    along, across = _along_across(edges_xy, edge_group, axes.start_xy, direction)
    cuts = _Cuts.of(np.minimum(along[:, 0], along[:, 1]), np.maximum(along[:, 0], along[:, 1]), edge_group, n, step_mm)
    first = cuts.index_at_or_above(np.minimum(along[:, 0], along[:, 1]), edge_group)
    crossed = cuts.index_at_or_above(np.maximum(along[:, 0], along[:, 1]), edge_group) - first
    edge = np.repeat(np.arange(len(edge_group)), crossed)
    cut = np.repeat(first - (np.cumsum(crossed) - crossed), crossed) + np.arange(edge.size)
    weight = (cuts.at[cut] - along[edge, 0]) / (along[edge, 1] - along[edge, 0])
    position = across[edge, 0] + weight * (across[edge, 1] - across[edge, 0])
    chord_cut, low, high, rank = _chords(cut, position, len(cuts.at))
    return _longest_chords(chord_cut, low, high, rank, cuts, axes.start_xy, direction)


def _along_across(edges_xy, edge_group, start_xy, direction) -> tuple[np.ndarray, np.ndarray]:
    """Both ends of each edge along its group's axis and across it (to the left), from the axis start."""
    dx, dy = direction[edge_group, 0, None], direction[edge_group, 1, None]
    relative_x = edges_xy[:, :, 0] - start_xy[edge_group, 0, None]
    relative_y = edges_xy[:, :, 1] - start_xy[edge_group, 1, None]
    return relative_x * dx + relative_y * dy, relative_y * dx - relative_x * dy


class _Cuts(NamedTuple):
    """Every group's cut positions, group after group, each group's ascending."""

    at: np.ndarray  # positions along the axis
    group: np.ndarray
    first: np.ndarray  # (n,) index of each group's first cut
    n_cuts: np.ndarray  # (n,)

    @classmethod
    def of(cls, lower, upper, group, n, step_mm) -> "_Cuts":
        present = np.unique(group)
        starts = np.searchsorted(group, present)
        lowest, highest = np.minimum.reduceat(lower, starts), np.maximum.reduceat(upper, starts)
        positions = [np.arange(low + step_mm / 2, high, step_mm) for low, high in zip(lowest, highest)]
        count = np.zeros(n, np.int64)
        count[present] = [len(p) for p in positions]
        at = np.concatenate(positions) if positions else np.empty(0)
        return cls(at, np.repeat(np.arange(n), count), np.cumsum(count) - count, count)

    def index_at_or_above(self, values: np.ndarray, group: np.ndarray) -> np.ndarray:
        """Index (in `at`) of the first cut of each value's group at or above it; one past the group's
        last cut when there is none. Estimated from the even spacing, then settled on the cuts."""
        offset, count = self.first[group], self.n_cuts[group]
        if not self.at.size:
            return offset
        first_at = self.at[np.minimum(offset, self.at.size - 1)]
        spacing = np.where(count > 1, self.at[np.minimum(offset + 1, self.at.size - 1)] - first_at, 1.0)
        with np.errstate(invalid="ignore"):
            guess = np.nan_to_num(np.ceil((values - first_at) / spacing))
        index = np.clip(guess, 0, count).astype(np.int64)
        while True:
            below = (index < count) & (self.at[np.minimum(offset + index, self.at.size - 1)] < values)
            above = (index > 0) & (self.at[offset + index - 1] >= values)
            if not (below.any() or above.any()):
                return offset + index
            index += below.astype(np.int64) - above


def _chords(cut: np.ndarray, position: np.ndarray, n_cuts: int) -> tuple:
    """The inside segments of each cut: its crossings in order of position, paired (0, 1), (2, 3), ...
    (an odd last one is left alone). Returns (cut, lower end, upper end, rank within the cut) per chord."""
    order = np.argsort(cut.astype(np.uint16) if n_cuts <= 1 << 16 else cut, kind="stable")  # radix when small
    cut, position = cut[order], position[order]
    per_cut = np.bincount(cut, minlength=n_cuts)
    crowded = per_cut[cut] > 2  # most cuts cross a lesion twice: those need no sorting
    if crowded.any():
        inner = np.flatnonzero(crowded)
        inner = inner[np.lexsort((position[inner], cut[inner]))]
        position[np.flatnonzero(crowded)] = position[inner]
    starts = np.cumsum(per_cut) - per_cut
    rank_in_cut = np.arange(cut.size) - starts[cut]
    left = np.flatnonzero((rank_in_cut % 2 == 0) & (rank_in_cut + 1 < per_cut[cut]))
    low, high = position[left], position[left + 1]
    pair = per_cut[cut[left]] == 2
    low, high = np.where(pair, np.minimum(low, high), low), np.where(pair, np.maximum(low, high), high)
    return cut[left], low, high, rank_in_cut[left] // 2


def _longest_chords(chord_cut, low, high, rank, cuts: _Cuts, start_xy, direction) -> Segments:
    """Each group's longest chord (the first cut, then the first segment, on ties to `TIE_TOLERANCE`);
    groups without a positive one get length 0 with both ends at the axis start."""
    n = len(start_xy)
    normal = np.column_stack((-direction[:, 1], direction[:, 0]))
    lengths = high - low
    group = cuts.group[chord_cut]
    longest = np.full(n, -np.inf)
    np.maximum.at(longest, group, lengths)
    order_key = chord_cut * (int(rank.max(initial=0)) + 1) + rank
    tied = (lengths >= longest[group] * (1 - TIE_TOLERANCE)) & (lengths > 0)
    first = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first, group, np.where(tied, order_key, np.iinfo(np.int64).max))
    chord = np.full(n, -1)
    winners = np.flatnonzero(tied & (order_key == first[group]))  # keys are unique: one winner a group
    chord[group[winners]] = winners
    found = np.flatnonzero(chord >= 0)
    chosen = chord[found]
    base = start_xy[found] + cuts.at[chord_cut[chosen], None] * direction[found]
    length = np.zeros(n)
    start, end = start_xy.copy(), start_xy.copy()
    length[found] = lengths[chosen]
    start[found] = base + low[chosen, None] * normal[found]
    end[found] = base + high[chosen, None] * normal[found]
    return Segments(length, start, end)
