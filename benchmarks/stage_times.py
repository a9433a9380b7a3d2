"""Per-stage wall time of the slice pipeline on one synthetic CT volume (default 512x512x300, 0.7x0.7x2.5 mm).

Runs the same transforms, in the same order, as `transforms.loading.load_nifti_case` and
`extract_slices`, one stage at a time, then writes the detection-style rows (one per box) to a
zstd Parquet file. The phantom is the demo abdomen (`pipeline.sources.demo.ABDOMEN`) stretched per
axis to fill the field of view, stored LPS so canonicalisation does real work. The .nii.gz files are
written in a child process, so the peak RSS reported is that of the timed stages alone.

    python benchmarks/stage_times.py --shape 128 128 60 --repeat 3
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import resource
import shlex
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.sources import demo
from pipeline.write import parquet_options
from schemas.tables import IMAGE_TYPE
from transforms import nifti
from transforms.boxes import component_boxes
from transforms.intensity import encode_png, to_uint8, window_for
from transforms.phantoms import Ellipsoid, centred_affine, intensities, rasterize
from transforms.planes import display_slice, labelled_slice_indices, plane_grid, planes_of
from transforms.volume import Volume, to_canonical

ORIENTATION = "LPS"  # stored axes i, j, k run along x, y, z, so the field is shape * spacing
SLAB_VOXELS_K = 16  # rasterise this many k-slices at a time (a full meshgrid is ~2 GB at 512x512x300)
SEED = 0
STAGES = (
    "read",
    "canonicalise",
    "slice selection",
    "slice extraction",
    "resample",
    "window",
    "png",
    "boxes",
    "parquet write",
)


def scaled_structure(structure, scale_xyz: np.ndarray):
    """A demo structure stretched about the world origin by a factor per world axis."""

    def scaled(point_mm):
        return tuple(float(v) for v in np.multiply(point_mm, scale_xyz))

    if isinstance(structure, Ellipsoid):
        return dataclasses.replace(
            structure, centre_mm=scaled(structure.centre_mm), radii_mm=scaled(structure.radii_mm)
        )
    return dataclasses.replace(structure, low_mm=scaled(structure.low_mm), high_mm=scaled(structure.high_mm))


def rasterize_slabs(shape, affine: np.ndarray, structures) -> np.ndarray:
    """`phantoms.rasterize`, one slab of k-slices at a time to bound memory."""
    labels = np.zeros(shape, dtype=np.uint8)
    for k0 in range(0, shape[2], SLAB_VOXELS_K):
        slab_affine = affine.copy()
        slab_affine[:3, 3] += affine[:3, 2] * k0
        slab_shape = (shape[0], shape[1], min(SLAB_VOXELS_K, shape[2] - k0))
        labels[:, :, k0 : k0 + slab_shape[2]] = rasterize(slab_shape, slab_affine, structures)
    return labels


def write_phantom(shape, spacing_mm, image_path: str, labels_path: str, seed: int = SEED) -> None:
    """The demo CT phantom on this grid (int16 HU image, uint8 labels), written as two .nii.gz files."""
    fov_mm = np.asarray(shape) * np.asarray(spacing_mm)
    scale_xyz = fov_mm / np.array([demo.ABDOMEN_FOV_MM[axis] for axis in "xyz"])
    affine = centred_affine(shape, ORIENTATION, spacing_mm)
    labels = rasterize_slabs(shape, affine, [scaled_structure(s, scale_xyz) for s in demo.ABDOMEN])
    body_mm = scaled_structure(Ellipsoid(1, (0.0, 0.0, 0.0), (95.0, 75.0, 500.0)), scale_xyz)
    body = rasterize_slabs(shape, affine, (body_mm,)).astype(bool)
    image = intensities(labels, demo.ABDOMEN_HU, background=30.0, noise_sd=15.0, seed=seed)
    image[~body] = -1000.0
    for path, array in ((image_path, np.rint(image).astype(np.int16)), (labels_path, labels)):
        with open(path, "wb") as handle:
            handle.write(demo.nifti_gz_bytes(array, affine))


def run_stages(image_path: str, labels_path: str, parquet_path: str) -> tuple[dict, dict]:
    """Every stage once, as the pipeline orders them; returns (seconds by stage, counts and sizes)."""
    times_s: defaultdict[str, float] = defaultdict(float)
    counts: defaultdict[str, Any] = defaultdict(int)  # numbers, and each plane's size as text

    def timed(stage, function, *args):
        start_s = time.perf_counter()
        result = function(*args)
        times_s[stage] += time.perf_counter() - start_s
        return result

    def read():
        image_file = nifti.load(image_path)
        affine = nifti.resolve_affine(image_file.header).affine_ras
        labels_file = nifti.load(labels_path)
        return (
            Volume(nifti.read_channel(image_file, None, image_path), affine),
            Volume(nifti.read_labels(labels_file, labels_path), nifti.resolve_affine(labels_file.header).affine_ras),
        )

    image, labels = timed("read", read)
    image, labels = timed("canonicalise", lambda: (to_canonical(image), to_canonical(labels)))
    counts["image_mb"], counts["labels_mb"] = image.array.nbytes / 2**20, labels.array.nbytes / 2**20
    window = timed("window", window_for, "CT", "soft_tissue", image.array)
    pngs, boxes_xyxy_px = [], []
    for plane in planes_of(labels.array.shape):
        grid = timed("slice selection", plane_grid, labels.array.shape, labels.spacing_mm, plane, "finest")
        indices = timed("slice selection", labelled_slice_indices, labels.array, plane)
        counts[f"slices {plane}"] = len(indices)
        counts[f"px {plane}"] = "x".join(str(n) for n in grid.shape_rows_cols)
        for index in indices:
            labels_2d = timed("slice extraction", display_slice, labels.array, plane, int(index))
            labels_2d = timed("resample", grid.resample_labels, labels_2d)
            pixels = timed("slice extraction", display_slice, image.array, plane, int(index))
            pixels = timed("resample", grid.resample_image, pixels)
            png = timed("png", encode_png, timed("window", to_uint8, pixels, window))
            for box in timed("boxes", component_boxes, labels_2d):
                pngs.append(png)
                boxes_xyxy_px.append([float(v) for v in box.box_xyxy_px])
            counts["png_bytes"] += len(png)
    counts["boxes"] = len(boxes_xyxy_px)
    timed("parquet write", write_rows, parquet_path, pngs, boxes_xyxy_px)
    counts["parquet_bytes"] = os.path.getsize(parquet_path)
    return times_s, counts


def write_rows(path: str, pngs: list[bytes], boxes_xyxy_px: list[list[float]]) -> None:
    """One row per box (as the detection table: the slice PNG repeats per box), zstd Parquet."""
    images = pa.array([{"bytes": png, "path": None} for png in pngs], type=IMAGE_TYPE)
    boxes = pa.array(boxes_xyxy_px, type=pa.list_(pa.float64()))
    table = pa.table({"image": images, "box_xyxy_px": boxes})
    pq.write_table(table, path, **parquet_options(table.schema))


def print_report(runs: list[tuple[dict, float]], counts: dict, setup_s: float, nifti_mb: float) -> None:
    """The stage table (median over repeats) and the run's sizes."""
    median_s = {stage: statistics.median(times[stage] for times, _ in runs) for stage in STAGES}
    total_s = sum(median_s.values())
    wall_s = statistics.median(wall for _, wall in runs)
    print(f"stage times, median of {len(runs)} run(s); setup (phantom + .nii.gz write, untimed) {setup_s:.1f} s")
    print(f"{'stage':<18}{'seconds':>10}{'% total':>10}")
    for stage in STAGES:
        print(f"{stage:<18}{median_s[stage]:>10.3f}{100 * median_s[stage] / total_s:>9.1f}%")
    print(f"{'total':<18}{total_s:>10.3f}{100.0:>9.1f}%")
    print(f"{'(loop wall)':<18}{wall_s:>10.3f}   untimed overhead {wall_s - total_s:.3f} s")
    print()
    for plane in ("axial", "coronal", "sagittal"):
        print(f"slices {plane:<9}{counts[f'slices {plane}']:>8}   at {counts[f'px {plane}']} px")
    print(f"boxes (rows)    {counts['boxes']:>8}")
    print(f"PNG bytes       {counts['png_bytes'] / 2**20:>8.1f} MB ({counts['png_bytes']} B, one per slice)")
    print(f"Parquet file    {counts['parquet_bytes'] / 2**20:>8.1f} MB")
    print(f"decoded volume  {counts['image_mb']:>8.1f} MB float32 image + {counts['labels_mb']:.1f} MB labels")
    print(f".nii.gz on disk {nifti_mb:>8.1f} MB (image + labels)")
    print(f"peak RSS        {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:>8.1f} MB (timed process)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 512, 300), metavar=("I", "J", "K"))
    parser.add_argument("--spacing", type=float, nargs=3, default=(0.7, 0.7, 2.5), metavar=("I_MM", "J_MM", "K_MM"))
    parser.add_argument("--repeat", type=int, default=1, help="runs of every stage; the table shows medians")
    args = parser.parse_args()
    if min(args.shape) < 1 or min(args.spacing) <= 0 or args.repeat < 1:
        parser.error("--shape, --spacing and --repeat must be positive")
    command = shlex.join(
        [
            sys.executable,
            os.path.relpath(__file__),
            "--shape",
            *map(str, args.shape),
            "--spacing",
            *map(str, args.spacing),
            "--repeat",
            str(args.repeat),
        ]
    )
    print(f"$ {command}")
    print(
        f"volume {'x'.join(map(str, args.shape))} voxels at {'x'.join(map(str, args.spacing))} mm, "
        f"stored {ORIENTATION}; {os.cpu_count()} CPUs, numpy {np.__version__}, pyarrow {pa.__version__}"
    )
    with tempfile.TemporaryDirectory(prefix="stage_times_") as folder:
        image_path, labels_path = os.path.join(folder, "image.nii.gz"), os.path.join(folder, "labels.nii.gz")
        start_s = time.perf_counter()
        writer = multiprocessing.get_context("spawn").Process(
            target=write_phantom, args=(tuple(args.shape), tuple(args.spacing), image_path, labels_path)
        )
        writer.start()
        writer.join()
        if writer.exitcode != 0:
            sys.exit(f"phantom writer failed with exit code {writer.exitcode}")
        setup_s = time.perf_counter() - start_s
        nifti_mb = (os.path.getsize(image_path) + os.path.getsize(labels_path)) / 2**20
        runs = []
        for _ in range(args.repeat):
            start_s = time.perf_counter()
            times_s, counts = run_stages(image_path, labels_path, os.path.join(folder, "detection.parquet"))
            runs.append((times_s, time.perf_counter() - start_s))
    print_report(runs, counts, setup_s, nifti_mb)


if __name__ == "__main__":
    main()
