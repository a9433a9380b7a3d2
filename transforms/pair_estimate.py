"""How many pairs a planned case will make, and how many PNG bytes they will carry, before any slice is cut.

The write sizes its files from this estimate, so the pair rows cross one shuffle instead of being
materialised once more to be counted first. It is an estimate, for file sizes only (the row counts
that the build reconciles are exact):

- a label makes one detection pair on every planned slice that its 3D bounding box crosses (one
  component per slice: more components, or a box with holes, make it wrong), and a target label
  one tumour/lesion size pair likewise;
- measurements are placed already, so their pairs are counted exactly;
- a plane's PNG size is that of its middle planned slice, encoded for each sequence, stored once per
  slice with pairs of the task (a slice's pairs of one task are written together, sharing it).
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

from transforms.intensity import Window
from transforms.loading import LoadedCase
from transforms.planes import SLICE_AXIS, SpacingMode
from transforms.slicing import PlacedMeasurement, extract_slices
from transforms.volume import label_extents


@dataclasses.dataclass(frozen=True)
class PairEstimate:
    """Estimated pairs of one task of a case and the PNG bytes they carry (a PNG per slice with pairs)."""

    task: str
    pairs: int
    png_bytes: int


def estimate_pairs(
    loaded: LoadedCase,
    spacing: SpacingMode,
    display: str,
    plan: dict[str, tuple[int, ...]],
    placed: dict[tuple[str, int], list[PlacedMeasurement]],
    windows: dict[str, Window],
    with_pixels: bool = True,
) -> tuple[PairEstimate, ...]:
    """The estimate for a case's slice `plan` (see the module); `with_pixels=False` for pointer rows."""
    labels = loaded.labels.array
    max_label = int(labels.max()) if labels.size else 0  # given to find_objects, which would scan for it again
    extents = label_extents(labels, max_label) if max_label > 0 else []
    targets = set(loaded.case.lesion_labels)
    png_per_slice = _middle_slice_png_bytes(loaded, spacing, display, plan, windows) if with_pixels else {}
    pairs: collections.Counter[str] = collections.Counter()
    png_bytes: collections.Counter[str] = collections.Counter()
    for plane, indices in plan.items():
        plane_pairs, with_pairs = _pairs_per_task(np.asarray(indices), SLICE_AXIS[plane], extents, targets)
        measured = [len(placed.get((plane, index), ())) for index in indices]
        plane_pairs["angle_distance"], with_pairs["angle_distance"] = sum(measured), int(np.count_nonzero(measured))
        for task, n in plane_pairs.items():
            pairs[task] += n * len(loaded.case.sequences)
            png_bytes[task] += int(with_pairs[task]) * png_per_slice.get(plane, 0)
    return tuple(PairEstimate(task, pairs[task], png_bytes[task]) for task in sorted(pairs) if pairs[task])


def _pairs_per_task(
    indices: np.ndarray, axis: int, extents: list, targets: set[int]
) -> tuple[collections.Counter[str], collections.Counter[str]]:
    """Detection and lesion pairs over the planned slices `indices` (sorted) of one plane, one sequence, and
    how many of those slices have any."""
    counts: collections.Counter[str] = collections.Counter()
    crossed_by = {task: np.zeros(len(indices), bool) for task in ("detection", "tumor_lesion_size")}
    for label, extent in enumerate(extents, start=1):
        if extent is None:
            continue
        first, stop = np.searchsorted(indices, (extent[axis].start, extent[axis].stop))
        for task in ("detection", "tumor_lesion_size") if label in targets else ("detection",):
            counts[task] += int(stop - first)
            crossed_by[task][first:stop] = True
    return counts, collections.Counter({task: int(np.count_nonzero(c)) for task, c in crossed_by.items()})


def _middle_slice_png_bytes(
    loaded: LoadedCase, spacing: SpacingMode, display: str, plan: dict[str, tuple[int, ...]], windows: dict[str, Window]
) -> dict[str, int]:
    """Per plane, the PNG bytes of its middle planned slice over all sequences, cut as the build cuts it."""
    middle: dict[str, tuple[int, ...]] = {
        plane: (indices[len(indices) // 2],) for plane, indices in plan.items() if indices
    }
    sizes: collections.Counter[str] = collections.Counter()
    for content in extract_slices(loaded, spacing, display, middle, windows, with_labels=False):
        sizes[content.plane] += len(content.encoded_png())
    return sizes
