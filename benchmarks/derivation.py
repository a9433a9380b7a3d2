"""CPU time of the label derivation of one label volume: slice plan, cut, resample, boxes, tumour/lesion sizes.

Reads one label map (NIfTI, or NRRD/MHA through SimpleITK), canonicalises it to RAS+ as a build does,
then runs the pipeline's own label derivation for every plane, as a build's slice step does for the
label side of each planned slice: the slice plan, the label slice cut and resampled onto the plane's
grid, the detection boxes, and the tumour/lesion size of every component of the lesion label (ellipse
and RECIST diameters, guards, the conventions' single-instance filter). No decode, PNG or rows are
timed. Prints the per-plane counts, then the best CPU seconds of one thread over `--reps` runs as the
last line, a bare number.

    python benchmarks/derivation.py --labels lung1_label.nrrd --lesion-label 1 [--conventions medvision] [--reps 7]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

from transforms import nifti
from transforms.lesions import LesionSize
from transforms.medvision import CONVENTIONS
from transforms.planes import labelled_slices, plane_grid, planes_of
from transforms.readers import ITK_SUFFIXES, read_itk
from transforms.slice_labels import derive_plane
from transforms.volume import Volume, as_integer_labels, to_canonical


def read_labels(path: str) -> Volume:
    """A label file as integer labels in the canonical RAS+ frame, as `transforms.loading` reads a mask."""
    if path.lower().endswith(ITK_SUFFIXES):
        volume = read_itk(path, path)
        volume = volume.with_array(as_integer_labels(volume.array, path))
    else:
        image = nifti.load(path, path)
        volume = nifti.to_volume(nifti.read_labels(image, path), nifti.resolve_affine(image.header, path))
    return to_canonical(volume)


def derive(labels: Volume, lesion_labels: tuple[int, ...], conventions: str) -> dict[str, tuple[int, int, int]]:
    """The label side of every planned slice, as a build's slice step derives it (`transforms.slicing.extract_slices`);
    per plane (slices, detection pairs kept, lesion sizes measured)."""
    chosen = CONVENTIONS[conventions]
    spacing = chosen.spacing or "finest"
    counts, plan = {}, labelled_slices(labels.array)
    for plane in planes_of(labels.array.shape):
        grid = plane_grid(labels.array.shape, labels.spacing_mm, plane, spacing, chosen.display)
        indices = plan[plane]
        derived = derive_plane(
            labels.array, grid, indices, lesion_labels, not chosen.single_instance_only, chosen.lesion_measurement
        )
        n_boxes = sum(
            1
            for found in derived.values()
            for box in found.boxes
            if box.single_instance or not chosen.single_instance_only
        )
        n_sizes = sum(
            1
            for found in derived.values()
            for entry in found.lesions
            if isinstance(entry.size, LesionSize) and (entry.n_components == 1 or not chosen.single_instance_only)
        )
        counts[plane] = (len(indices), n_boxes, n_sizes)
    return counts


def best_cpu_seconds(labels: Volume, lesion_labels: tuple[int, ...], conventions: str, reps: int):
    """(best CPU seconds of this thread over `reps` runs, the counts of the last run)."""
    best, counts = float("inf"), {}
    for _ in range(reps):
        started = time.thread_time()
        counts = derive(labels, lesion_labels, conventions)
        best = min(best, time.thread_time() - started)
    return best, counts


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", required=True, help="label map: .nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd")
    parser.add_argument("--lesion-label", type=int, required=True, help="label value measured as a lesion")
    parser.add_argument("--conventions", choices=sorted(CONVENTIONS), default="default")
    parser.add_argument("--reps", type=int, default=7, help="runs; the best is reported")
    args = parser.parse_args(argv)
    print("$", shlex.join([os.path.basename(sys.executable), *sys.argv]))
    labels = read_labels(args.labels)
    spacing = ", ".join(f"{v:.3g}" for v in labels.spacing_mm)
    print(
        f"{os.path.basename(args.labels)}: canonical shape {labels.array.shape}, spacing ({spacing}) mm, "
        f"conventions {args.conventions}"
    )
    seconds, counts = best_cpu_seconds(labels, (args.lesion_label,), args.conventions, max(1, args.reps))
    for plane, (n_slices, n_boxes, n_sizes) in counts.items():
        print(f"  {plane:>8}: {n_slices} slices, {n_boxes} detection pairs, {n_sizes} lesion sizes")
    print(f"best CPU seconds of one thread over {args.reps} runs:")
    print(f"{seconds:.4f}")


if __name__ == "__main__":
    main()
