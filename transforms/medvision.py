"""Ground-truth conventions of a build (`--conventions`), and MedVision's benchmark box target.

`default` is this pipeline's own geometry (SPEC §3-§4). `medvision` reproduces the conventions
of the published MedVision benchmark (github.com/YongchengYAO/MedVision, `medvision_ds` v1.4.0
annotations, `medvision_bm` task code), so that users can regenerate its ground truth:

- native grid: slices keep the stored in-plane spacing (MedVision slices the NIfTI array as is);
- raw display: the canonical RAS+ slice as stored (`_load_nifti_2d` takes `image_3d[:, :, k]`
  and shows dim0 as rows), no radiological flip;
- 4-connected components: `scipy.ndimage.label` with its default structure (the cross);
- the benchmark box target (`benchmark_box_target`);
- single-instance filter: a detection pair is kept only when its label has one component in the
  slice and both box sides are >= 10 px (`MedVision.py`, Box-Size loader); a T/L pair only when its
  label has one component in the slice, counted before any size threshold (`n_total_clusters > 1`
  is skipped, release notes v1.1.0 and v1.4.0). The T/L size floor, max(2 mm, 2 x the coarser
  in-plane spacing), and the fit guards are shared with `default` (transforms/lesions.py);
- T/L measurement: `cv2.fitEllipse` on cv2's pixel-centre outer contour in mm, and no guard beyond
  MedVision's (`transforms.lesions.measure_component_medvision`).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Conventions:
    """How slices are displayed and which pairs are kept.

    `spacing` overrides `--spacing` when set; `display` is a `transforms.planes.DISPLAYS` value;
    both use 4-connected components (`transforms.boxes.CONNECTIVITY`); `single_instance_only` drops detection and
    T/L pairs whose label has several components in the slice; `benchmark_box_target` fills
    MedVision's box target on detection rows; `lesion_measurement` names the T/L measurement
    (`transforms.lesions.MEASUREMENTS`).
    """

    name: str
    display: str
    single_instance_only: bool
    benchmark_box_target: bool
    spacing: str | None = None
    lesion_measurement: str = "pixel_edge"


CONVENTIONS = {
    "default": Conventions("default", "radiological", False, False),
    "medvision": Conventions("medvision", "raw", True, True, spacing="native", lesion_measurement="medvision_cv2"),
}


def benchmark_box_target(
    box_xyxy_px: tuple[int, int, int, int], image_width_px: int, image_height_px: int
) -> list[float]:
    """MedVision's benchmark box target for one of our boxes, as `[x_min, y_min, x_max, y_max]` relative.

    Reproduces `doc_to_target_BoxCoordinate` in MedVision's
    `src/medvision_bm/medvision_lmms_eval/lmms_eval/tasks/medvision/medvision_utils.py`
    (github.com/YongchengYAO/MedVision). That code reads the box as inclusive array indices
    (`min_coords`, `max_coords` = first and last pixel, (row, column)), flips rows so that the origin
    is the image's lower-left corner, and divides by the image size:

        x_min = col_first / W          y_min = (H - row_last) / H
        x_max = col_last / W           y_max = (H - row_first) / H

    With our end-exclusive pixel-edge box `[x0, y0, x1, y1]`, col_first = x0, col_last = x1 - 1,
    row_first = y0, row_last = y1 - 1. Because the last pixel's index rather than its far edge is
    used, MedVision's box is 1 px short in both directions: x_max is 1/W short of the true right edge,
    y_min is 1/H above the true bottom edge (its y_max is exact).

    Inputs: box in displayed pixels (origin top-left, x = column, y = row), end-exclusive, non-empty;
    image size in pixels. Output: four floats in [0, 1]. Raises ValueError on an empty box or one
    outside the image.
    """
    x0_px, y0_px, x1_px, y1_px = box_xyxy_px
    if not (0 <= x0_px < x1_px <= image_width_px and 0 <= y0_px < y1_px <= image_height_px):
        raise ValueError(f"box {box_xyxy_px} is empty or outside a {image_width_px}x{image_height_px} px image")
    last_col_px, last_row_px = x1_px - 1, y1_px - 1
    return [
        x0_px / image_width_px,
        (image_height_px - last_row_px) / image_height_px,
        last_col_px / image_width_px,
        (image_height_px - y0_px) / image_height_px,
    ]
