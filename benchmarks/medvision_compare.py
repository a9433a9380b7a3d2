"""Label derivation side by side: MedVision's own planner code against this pipeline, same label arrays.

MedVision v1.0.0 builds its detection and tumour/lesion (T/L) targets in `medvision_ds`
(`medvision_ds/utils/benchmark_planner.py`, which `medvision_bm`'s `install_medvision_ds` downloads;
the GitHub repository YongchengYAO/MedVision holds only the benchmark code). This harness imports that
file from `--medvision-planner` (a copy in a temporary folder; its `medvision_ds` imports, which only
serve file I/O, are stubbed) and calls its own methods on the canonical RAS+ arrays that a build
derives from, as its planner does per case once the NIfTI files are read:

- detection: `_inspect_2D_slice` on every slice of the three dimensions (one box per 4-connected
  cluster of every label); with `--with-3d-boxes` also `_inspect_3D_image`, which this pipeline has
  no counterpart of (left out by default, so MedVision's time is not inflated);
- T/L: the binary mask of the lesion label, then `__fit_ellipses` (cluster size threshold 200, as in
  its v1.0.0 preprocess scripts) on every slice holding the label, then `_get_biometrics_batch` for
  the major/minor axis lengths.

MedVision reads masks with `get_fdata()`, so it gets a float64 copy in NIfTI (Fortran) order; the
copy is made before timing. Ours is `benchmarks/derivation.py`'s `derive`, the pipeline's own label
derivation, in default and `--conventions medvision` conventions. Runs are interleaved (for each
repetition: every volume, every side), each timed as CPU seconds of this one thread; medians and
minima are printed.

    python benchmarks/medvision_compare.py --medvision-planner /tmp/medvision_ds/utils/benchmark_planner.py \
        --volume ../shared/reference/realdata/pyradiomics/lung1_label.nrrd:1 --synthetic [--reps 7]

Synthetic volume (`--synthetic`, also written with `--write-synthetic FILE` for `derivation.py`):
256 x 256 x 80 voxels of 0.8 x 0.8 x 2.5 mm, RAS+; an organ (label 1, ellipsoid of semi-axes
80 x 60 x 70 mm, centred) and a lesion (label 2, ellipsoid of semi-axes 25 x 12 x 18 mm centred at
(15, -10, 5) mm, turned 35 degrees about S then 20 degrees about R) drawn over it; the lesion is label 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import shlex
import statistics
import sys
import tempfile
import time
import types
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import derivation  # noqa: E402  (the pipeline's label derivation, as benchmarks/derivation.py times it)

from transforms.volume import Volume, to_canonical  # noqa: E402

CLUSTER_SIZE_THRESHOLD = 200  # MedVision v1.0.0 preprocess scripts (T/L tasks)
TL_TASK = {  # the T/L metric definitions of its preprocess scripts: major and minor axis lengths
    "landmarks_map": {"P1": "", "P2": "", "P3": "", "P4": ""},
    "lines_map": {
        "L-1-2": {"element_keys": ["P1", "P2"], "element_map_name": "landmarks_map"},
        "L-3-4": {"element_keys": ["P3", "P4"], "element_map_name": "landmarks_map"},
    },
    "biometrics_map": [
        {"metric_type": "distance", "metric_map_name": "lines_map", "metric_key": "L-1-2"},
        {"metric_type": "distance", "metric_map_name": "lines_map", "metric_key": "L-3-4"},
    ],
}
LANDMARK_KEYS = ("slice_landmarks_x", "slice_landmarks_y", "slice_landmarks_z")
SIDES = ("medvision", "ours_default", "ours_medvision")

SYNTHETIC_SHAPE = (256, 256, 80)
SYNTHETIC_SPACING_MM = (0.8, 0.8, 2.5)
SYNTHETIC_LESION_LABEL = 2


def load_medvision_planner(path: str) -> types.ModuleType:
    """MedVision's `benchmark_planner` module from a file, its `medvision_ds` package imports stubbed."""
    package: Any = types.ModuleType("medvision_ds")  # stubs: attributes set by hand
    package.__version__ = "1.0.0"
    package.__path__ = []
    utils: Any = types.ModuleType("medvision_ds.utils")
    utils.__path__ = []
    preprocess: Any = types.ModuleType("medvision_ds.utils.preprocess_utils")
    preprocess.convert_to_serializable = lambda value: value
    conversion: Any = types.ModuleType("medvision_ds.utils.data_conversion")
    conversion.convert_mask_to_uint16_per_dir = conversion.reorient_niigz_RASplus_batch_inplace = None
    for module in (package, utils, preprocess, conversion):
        sys.modules.setdefault(module.__name__, module)
    spec = importlib.util.spec_from_file_location("medvision_ds.utils.benchmark_planner", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load MedVision's planner from {path}")
    planner: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(planner)
    planner.find_objects = _find_objects_of_bools
    return planner


def _find_objects_of_bools(input, max_label=0):
    """`scipy.ndimage.find_objects` as MedVision's SciPy ran it on a boolean mask: SciPy 1.17 refuses the
    boolean `max_label` that a boolean input gives; a uint8 view of the same bytes is what older SciPy labelled."""
    return ndimage.find_objects(input.view(np.uint8) if input.dtype == bool else input, max_label)


def _slice(array: np.ndarray, axis: int, index: int) -> np.ndarray:
    """`mask[i, :, :]`, `mask[:, i, :]` or `mask[:, :, i]`: a view, as MedVision indexes."""
    selector: list[slice | int] = [slice(None)] * 3
    selector[axis] = index
    return array[tuple(selector)]


def medvision_detection(planner, mask_3d: np.ndarray, voxel_sizes, with_3d: bool) -> int:
    """Its detection planner's per-case label work; returns the number of 2D boxes."""
    n_boxes = 0
    for dim in range(3):
        pixel_spacing = tuple(size for axis, size in enumerate(voxel_sizes) if axis != dim)
        profile: list = []
        for index in range(mask_3d.shape[dim]):
            mask_2d = _slice(mask_3d, dim, index)
            if mask_2d.ndim != 2 or 1 in mask_2d.shape:
                continue
            profile = planner._inspect_2D_slice(profile, index, mask_2d, pixel_spacing)
        n_boxes += sum(len(entry["bboxes"]) for item in profile for entry in item["slice_profile"])
    if with_3d:
        planner._inspect_3D_image(mask_3d, voxel_sizes)
    return n_boxes


def medvision_lesion_sizes(planner, mask_3d: np.ndarray, target_label: int, voxel_sizes) -> int:
    """Its T/L planner's per-case label work (ellipse landmarks, then axis lengths); returns the ellipses kept."""
    fit = planner._MedVision_BenchmarkPlannerBiometry_fromSeg__fit_ellipses
    mask_binary = (mask_3d == target_label).astype(np.uint8)
    found: dict[str, list] = {key: [] for key in LANDMARK_KEYS}
    for dim, key in enumerate(LANDMARK_KEYS):
        pixel_sizes = np.array(voxel_sizes)[[axis for axis in range(3) if axis != dim]]
        for index in range(mask_binary.shape[dim]):
            mask_2d = _slice(mask_binary, dim, index)
            if not np.any(mask_2d):
                continue
            landmarks, _ = fit(mask_2d, CLUSTER_SIZE_THRESHOLD, pixel_sizes, dim, index)
            if landmarks:
                found[key].append({"slice_idx": int(index), "landmarks": landmarks})
    kept = 0
    for dim, key in enumerate(LANDMARK_KEYS):
        if found[key]:
            profiles = planner._get_biometrics_batch(TL_TASK, found, voxel_sizes, dim)
            kept += sum(len(item["slice_profile"]) for item in profiles)
    return kept


def synthetic_volume() -> Volume:
    """The synthetic organ + rotated lesion of the module docstring, on its RAS+ grid."""
    spacing = np.asarray(SYNTHETIC_SPACING_MM)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.asarray(SYNTHETIC_SHAPE) - 1) / 2 * spacing
    axes = [np.arange(n) * s + o for n, s, o in zip(SYNTHETIC_SHAPE, spacing, affine[:3, 3])]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    labels = np.zeros(SYNTHETIC_SHAPE, np.uint8)
    labels[(x / 80) ** 2 + (y / 60) ** 2 + (z / 70) ** 2 <= 1] = 1
    about_s, about_r = math.radians(35), math.radians(20)
    dx, dy, dz = x - 15.0, y + 10.0, z - 5.0
    u = math.cos(about_s) * dx + math.sin(about_s) * dy  # undo the turn about S
    v = -math.sin(about_s) * dx + math.cos(about_s) * dy
    v, w = math.cos(about_r) * v + math.sin(about_r) * dz, -math.sin(about_r) * v + math.cos(about_r) * dz
    labels[(u / 25) ** 2 + (v / 12) ** 2 + (w / 18) ** 2 <= 1] = SYNTHETIC_LESION_LABEL
    return Volume(labels, affine)


def medvision_array(labels: Volume) -> np.ndarray:
    """The canonical labels as MedVision holds a RAS+ mask: `get_fdata()`, float64 in NIfTI (Fortran) order."""
    return np.asfortranarray(labels.array, dtype=np.float64)


def run(volumes, planner_path: str, reps: int, with_3d: bool) -> tuple[dict, dict]:
    """{(volume name, side): [CPU seconds per repetition]} and the counts of the last repetition."""
    module = load_medvision_planner(planner_path)
    with tempfile.TemporaryDirectory() as folder:
        common = {"dataset_dir": folder, "bm_plan": {"tasks": []}, "dataset_name": "bench"}
        detection = module.MedVision_BenchmarkPlannerDetection(**common)
        lesions = module.MedVision_BenchmarkPlannerBiometry_fromSeg(**common)
    prepared = [
        (name, labels, medvision_array(labels), tuple(float(s) for s in labels.spacing_mm), target)
        for name, labels, target in volumes
    ]
    sides = {
        "medvision": lambda lab, mv, sp, t: (
            medvision_detection(detection, mv, sp, with_3d),
            medvision_lesion_sizes(lesions, mv, t, sp),
        ),
        "ours_default": lambda lab, mv, sp, t: derivation.derive(lab, (t,), "default"),
        "ours_medvision": lambda lab, mv, sp, t: derivation.derive(lab, (t,), "medvision"),
    }
    seconds: dict[tuple[str, str], list[float]] = {}
    counts: dict[tuple[str, str], object] = {}
    for _ in range(reps):
        for name, labels, mv_array, spacing, target in prepared:
            for side, work in sides.items():
                started = time.thread_time()
                counts[name, side] = work(labels, mv_array, spacing, target)
                seconds.setdefault((name, side), []).append(time.thread_time() - started)
    return seconds, counts


def _summary(counts) -> str:
    if isinstance(counts, dict):  # ours: per plane (slices, detection pairs, lesion sizes)
        return f"{sum(c[1] for c in counts.values())} boxes, {sum(c[2] for c in counts.values())} sizes"
    return f"{counts[0]} boxes, {counts[1]} ellipses"


def report(seconds, counts, names) -> None:
    print(
        f"{'volume':<24}"
        + "".join(f"{side + ' median s':>22}{'min s':>9}" for side in SIDES)
        + f"{'MV/ours default':>17}{'MV/ours medvision':>19}"
    )
    totals = {side: 0.0 for side in SIDES}
    for name in names:
        medians = {side: statistics.median(seconds[name, side]) for side in SIDES}
        for side in SIDES:
            totals[side] += medians[side]
        cells = "".join(f"{medians[side]:>22.4f}{min(seconds[name, side]):>9.4f}" for side in SIDES)
        print(
            f"{name:<24}{cells}{medians['medvision'] / medians['ours_default']:>17.1f}"
            f"{medians['medvision'] / medians['ours_medvision']:>19.1f}"
        )
    cells = "".join(f"{totals[side]:>22.4f}{'':>9}" for side in SIDES)
    print(
        f"{'sum of medians':<24}{cells}{totals['medvision'] / totals['ours_default']:>17.1f}"
        f"{totals['medvision'] / totals['ours_medvision']:>19.1f}"
    )
    print("counts (last repetition):")
    for name in names:
        print(f"  {name}: " + "; ".join(f"{side} {_summary(counts[name, side])}" for side in SIDES))


def _volume_arg(text: str) -> tuple[str, int]:
    path, _, label = text.rpartition(":")
    if not path or not label.isdigit():
        raise argparse.ArgumentTypeError(f"expected FILE:LESION_LABEL, got {text!r}")
    return path, int(label)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--medvision-planner", help="medvision_ds v1.0.0 utils/benchmark_planner.py")
    parser.add_argument("--volume", type=_volume_arg, action="append", default=[], metavar="FILE:LESION_LABEL")
    parser.add_argument("--synthetic", action="store_true", help="add the synthetic organ + rotated lesion")
    parser.add_argument("--write-synthetic", metavar="FILE", help="write the synthetic labels as NIfTI and exit")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--with-3d-boxes", action="store_true", help="also time MedVision's 3D boxes")
    args = parser.parse_args(argv)
    if args.write_synthetic:
        volume = synthetic_volume()
        nib.save(nib.Nifti1Image(volume.array, volume.affine_ras), args.write_synthetic)
        print(f"wrote {args.write_synthetic} (lesion label {SYNTHETIC_LESION_LABEL})")
        return
    if not args.medvision_planner:
        parser.error("--medvision-planner is required to compare")
    print("$", shlex.join([os.path.basename(sys.executable), *sys.argv]))
    volumes = [(os.path.basename(path), derivation.read_labels(path), label) for path, label in args.volume]
    if args.synthetic:
        volumes.append(("synthetic", to_canonical(synthetic_volume()), SYNTHETIC_LESION_LABEL))
    seconds, counts = run(volumes, args.medvision_planner, max(1, args.reps), args.with_3d_boxes)
    print(
        f"CPU seconds of one thread, {args.reps} interleaved repetitions"
        f"{', MedVision with its 3D boxes' if args.with_3d_boxes else ''}:"
    )
    report(seconds, counts, [name for name, _, _ in volumes])


if __name__ == "__main__":
    main()
