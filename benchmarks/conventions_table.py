"""How far the two conventions' tumour/lesion sizes are apart, as README's conventions table states them.

On the same slices, the two measurements of `transforms.lesions`: ours (`default`: ellipse fitted to the
pixel-edge contour, our guards) and MedVision v1.4.0's (`--conventions medvision`: `cv2.fitEllipse` on cv2's
pixel-centre contour, its guards only). The slices are those MedVision considers: every slice of every plane
of the canonical RAS+ label array, on its native grid, whose lesion mask is one 4-connected component. Both
measure the identical mask, so the table isolates the measurement (the default build also resamples coronal
and sagittal planes to the finest grid and shows slices radiologically, which moves nothing by more than the
resampling step). Prints one Markdown table: per plane group, the slices each keeps, and the differences
MedVision minus ours of the major and minor axes on the slices both keep, in mm and in pixels of the finer
in-plane spacing.

    python benchmarks/conventions_table.py                       # the real cases of ../shared/reference/realdata
    python benchmarks/conventions_table.py --labels seg.nii.gz:2 --labels lung1_label.nrrd:1
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from typing import Any

import numpy as np
from scipy import ndimage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from derivation import read_labels  # noqa: E402  (a label file canonicalised as a build reads it)

from transforms.lesions import LesionSize, measure_component, measure_component_medvision  # noqa: E402
from transforms.planes import SLICE_AXIS  # noqa: E402

REALDATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "reference" / "realdata" / "pyradiomics"
REAL_CASES = [f"{REALDATA / name}_label.nrrd:1" for name in ("lung1", "brain1", "breast1")]
GROUPS = {"axial": "axial", "coronal": "coronal + sagittal", "sagittal": "coronal + sagittal"}


def single_component_slices(labels: np.ndarray, spacing_mm, label: int):
    """(plane, raw slice mask, (row mm, col mm)) of every slice whose `label` mask is one 4-connected component."""
    binary = labels == label
    for plane, axis in SLICE_AXIS.items():
        spacing = tuple(float(spacing_mm[a]) for a in range(3) if a != axis)
        stack = np.moveaxis(binary, axis, 0)
        for index in np.flatnonzero(stack.any(axis=(1, 2))):
            if ndimage.label(stack[index])[1] == 1:
                yield plane, stack[index], spacing


def compare(inputs: list[str]) -> dict[str, dict]:
    """Per plane group: slices considered, kept by each, and (major, minor, finer pixel mm) where both keep."""
    groups: dict[str, dict[str, Any]] = {
        group: {"slices": 0, "both": [], "ours_only": 0, "medvision_only": 0} for group in GROUPS.values()
    }
    for spec in inputs:
        path, _, label = spec.rpartition(":")
        volume = read_labels(path)
        for plane, mask, spacing in single_component_slices(volume.array, volume.spacing_mm, int(label)):
            tally = groups[GROUPS[plane]]
            ours, theirs = measure_component(mask, spacing), measure_component_medvision(mask, spacing)
            tally["slices"] += 1
            kept = isinstance(ours, LesionSize), isinstance(theirs, LesionSize)
            if isinstance(ours, LesionSize) and isinstance(theirs, LesionSize):
                tally["both"].append(
                    (theirs.major_axis_mm - ours.major_axis_mm, theirs.minor_axis_mm - ours.minor_axis_mm, min(spacing))
                )
            else:
                tally["ours_only"] += kept[0]
                tally["medvision_only"] += kept[1]
    return groups


def table(groups: dict[str, dict]) -> str:
    lines = [
        "| plane | slices (one component) | kept by both | only ours | only MedVision's | "
        "major: MedVision − ours, mean (max abs) | minor: mean (max abs) |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for group, tally in groups.items():
        if not tally["slices"]:
            continue
        cells = []
        if tally["both"]:
            differences = np.array(tally["both"])
            for column in (0, 1):
                mm, px = differences[:, column], differences[:, column] / differences[:, 2]
                worst = int(np.argmax(np.abs(mm)))
                cells.append(f"{mm.mean():+.2f} mm / {px.mean():+.1f} px ({mm[worst]:+.2f} mm / {px[worst]:+.1f} px)")
        else:
            cells = ["–", "–"]
        lines.append(
            f"| {group} | {tally['slices']} | {len(tally['both'])} | {tally['ours_only']} | "
            f"{tally['medvision_only']} | {cells[0]} | {cells[1]} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--labels",
        action="append",
        metavar="FILE:LABEL",
        help="a label map and its lesion label (repeatable); default: the real cases in ../shared",
    )
    args = parser.parse_args(argv)
    inputs = args.labels or REAL_CASES
    missing = [spec.rpartition(":")[0] for spec in inputs if not os.path.isfile(spec.rpartition(":")[0])]
    if missing:
        parser.error(f"no such file: {missing[0]}")
    print(table(compare(inputs)))
    print(f"\n{len(inputs)} label map(s): " + ", ".join(os.path.basename(spec) for spec in inputs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
