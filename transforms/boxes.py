"""Detection targets (SPEC §4): one box per connected component of each label in a displayed slice."""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage
from skimage.measure import label as label_components

# 1 = 4-connectivity in 2D, as MedVision's scipy labelling.
CONNECTIVITY = 1
# MedVision's benchmark filter: one component, at least this many pixels on both sides.
SINGLE_INSTANCE_MIN_SIDE_PX = 10
# A label in more pieces than this in one slice is noise or a crafted pattern (a checkerboard mask of a
# few hundred bytes would make ~10^5 pairs), not anatomy: its pairs of that slice are refused together.
# Pairs per case are then at most this x labels x planned slices.
MAX_COMPONENTS_PER_LABEL = 128


@dataclasses.dataclass(frozen=True)
class ComponentBox:
    """A component's box `[x0, y0, x1, y1]`: pixel edges, end-exclusive, displayed-pixel frame."""

    label: int
    component_index: int  # 0-based, in raster order of the component's first pixel
    n_components: int  # components of this label in this slice
    box_xyxy_px: tuple[int, int, int, int]
    area_px: int

    @property
    def width_px(self) -> int:
        return self.box_xyxy_px[2] - self.box_xyxy_px[0]

    @property
    def height_px(self) -> int:
        return self.box_xyxy_px[3] - self.box_xyxy_px[1]

    @property
    def single_instance(self) -> bool:
        return (
            self.n_components == 1
            and self.width_px >= SINGLE_INSTANCE_MIN_SIDE_PX
            and self.height_px >= SINGLE_INSTANCE_MIN_SIDE_PX
        )

    def size_mm(self, spacing_mm_row_col: tuple[float, float]) -> tuple[float, float]:
        """(width, height) of the box in mm: columns scale by the column spacing, rows by the row spacing."""
        row_mm, col_mm = spacing_mm_row_col
        return self.width_px * col_mm, self.height_px * row_mm

    def normalised_xyxy(self, shape_rows_cols: tuple[int, int]) -> tuple[float, float, float, float]:
        """The box divided by the image size: x by width, y by height, in [0, 1]."""
        rows, cols = shape_rows_cols
        x0, y0, x1, y1 = self.box_xyxy_px
        return x0 / cols, y0 / rows, x1 / cols, y1 / rows


def component_boxes(labels_2d: np.ndarray) -> list[ComponentBox]:
    """Boxes of every connected component of every non-zero label, ordered by label then raster order.

    Only the box around all labelled pixels is labelled (organs fill a fraction of a CT slice), in one pass
    (regions of equal value) with one `find_objects`; each component's label
    and area are then read inside its own box. Cropping keeps raster order, so indices are unchanged.
    """
    crop = _labelled_box(labels_2d)
    if crop is None:
        return []
    row0, col0 = crop[0].start, crop[1].start
    labels_2d = labels_2d[crop]
    components = label_components(labels_2d, background=0, connectivity=CONNECTIVITY)
    by_label: dict[int, list[tuple[tuple[slice, slice], int]]] = {}
    for number, (rows, cols) in enumerate(ndimage.find_objects(components), start=1):  # raster order
        mine = components[rows, cols] == number
        value = int(labels_2d[rows, cols].flat[int(np.argmax(mine))])  # the component's first pixel
        by_label.setdefault(value, []).append(((rows, cols), int(np.count_nonzero(mine))))
    boxes = []
    for label in sorted(by_label):
        found = by_label[label]
        for index, ((rows, cols), area) in enumerate(found):
            box = (col0 + cols.start, row0 + rows.start, col0 + cols.stop, row0 + rows.stop)
            boxes.append(
                ComponentBox(label=label, component_index=index, n_components=len(found), box_xyxy_px=box, area_px=area)
            )
    return boxes


def _labelled_box(labels_2d: np.ndarray) -> tuple[slice, slice] | None:
    """(rows, cols) slices of the smallest box holding every non-zero pixel; None when there is none."""
    labelled = labels_2d != 0
    rows = np.flatnonzero(labelled.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(labelled[rows[0] : rows[-1] + 1].any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)
