"""Detection targets (SPEC §4): one box per connected component of each label in a displayed slice."""
from __future__ import annotations

import dataclasses

import numpy as np
from skimage.measure import label as label_components
from skimage.measure import regionprops

# 1 = 4-connectivity in 2D, as MedVision's scipy labelling.
CONNECTIVITY = 1
# MedVision's benchmark filter: one component, at least this many pixels on both sides.
SINGLE_INSTANCE_MIN_SIDE_PX = 10


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
    """Boxes of every connected component of every non-zero label, ordered by label then raster order."""
    boxes = []
    for label in np.unique(labels_2d):
        if label == 0:
            continue
        components = label_components(labels_2d == label, connectivity=CONNECTIVITY)
        regions = regionprops(components)
        for index, region in enumerate(regions):
            min_row, min_col, max_row, max_col = region.bbox
            boxes.append(ComponentBox(
                label=int(label),
                component_index=index,
                n_components=len(regions),
                box_xyxy_px=(int(min_col), int(min_row), int(max_col), int(max_row)),
                area_px=int(region.area),
            ))
    return boxes
