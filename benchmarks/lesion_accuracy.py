"""Tumour/lesion size accuracy on analytic ellipses, and the time per slice of the T/L derivation.

An ellipse of known axes (default 40 x 20 mm) is rasterised on pixels of each spacing at every
rotation from 0 to 165 degrees; each measurement is compared with its analytic value. Prints
max and median absolute error per spacing, and the mean time of `lesion_rows` per slice.

    python benchmarks/lesion_accuracy.py
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import numpy as np

from transforms.lesions import LesionSize, measure_component
from transforms.phantoms import ellipse_mask

SPACINGS_MM_ROW_COL = ((1.0, 1.0), (0.5, 2.0), (2.0, 0.5), (0.7, 0.7))
ANGLES_DEG = range(0, 180, 15)
COLUMNS = ("major_axis_mm", "minor_axis_mm", "longest_diameter_mm", "perpendicular_diameter_mm", "angle_deg")


def errors_for(spacing, semi_major_mm, semi_minor_mm, field_mm):
    """Absolute errors (one row per angle) and the mean seconds per measurement."""
    rows, seconds = [], []
    for angle in ANGLES_DEG:
        mask = ellipse_mask(semi_major_mm, semi_minor_mm, angle, spacing, field_mm)
        start = time.perf_counter()
        size = measure_component(mask, spacing)
        seconds.append(time.perf_counter() - start)
        if not isinstance(size, LesionSize):
            raise SystemExit(f"valid ellipse rejected at {spacing} mm, {angle} deg: {size}")
        rows.append(
            (
                abs(size.major_axis_mm - 2 * semi_major_mm),
                abs(size.minor_axis_mm - 2 * semi_minor_mm),
                abs(size.longest_diameter_mm - 2 * semi_major_mm),
                abs(size.perpendicular_diameter_mm - 2 * semi_minor_mm),
                abs((size.ellipse_angle_deg - angle + 90) % 180 - 90),
            )
        )
    return np.array(rows), float(np.mean(seconds))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--axes-mm", type=float, nargs=2, default=(40.0, 20.0), help="major and minor axis")
    parser.add_argument("--field-mm", type=float, default=80.0)
    args = parser.parse_args(argv)
    print("$", shlex.join([sys.executable, *sys.argv]))
    semi_major, semi_minor = args.axes_mm[0] / 2, args.axes_mm[1] / 2
    print(
        f"ellipse {args.axes_mm[0]:g} x {args.axes_mm[1]:g} mm, rotations {ANGLES_DEG.start}-{ANGLES_DEG.stop - 15}"
        f" deg step 15; absolute error, max / median"
    )
    print(f"{'spacing row x col mm':>22}" + "".join(f"{c:>28}" for c in COLUMNS) + f"{'ms per component':>18}")
    for spacing in SPACINGS_MM_ROW_COL:
        errors, seconds = errors_for(spacing, semi_major, semi_minor, args.field_mm)
        cells = "".join(f"{errors[:, i].max():>19.3f} / {np.median(errors[:, i]):<6.3f}" for i in range(len(COLUMNS)))
        print(f"{spacing[0]:>10g} x {spacing[1]:<9g}" + cells + f"{seconds * 1000:>18.2f}")


if __name__ == "__main__":
    main()
