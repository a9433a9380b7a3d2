"""Floor ratio, worker scaling and peak memory of real builds on synthetic CT volumes.

For each SIZE:COUNT: COUNT volumes of that size (own noise each) are built in one run
(`medvision-pipeline build`, DirectRunner, one process), so Beam's fixed start-up is shared as
in a real build; their floor is decoding every .nii.gz (SimpleITK, one thread) and encoding every
output PNG, nothing else, measured in the same run. Ratio = build seconds / floor seconds. A build
also pays a fixed cost once per run (building the graph, starting the runner, first-use imports,
reconciling the footers), which a full build spreads over tens of thousands of volumes; a build of
one 64x64x10 volume measures it, and the marginal ratio, (build - that build) / (floor - its floor),
is the per-volume figure of a long run. Then a mixed workload (all sizes together) is built with 1
and with 2 worker processes: the throughput ratio is the scaling ratio. Peak RSS is the largest of
the build's processes; the baseline is an idle process that has imported the pipeline.

    python benchmarks/scaling.py --sizes 256x256x100:6 512x512x300:2 [--mixed 256x256x100:3,512x512x200:1]
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np
import pyarrow.dataset as ds
import SimpleITK as sitk

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stage_times  # noqa: E402  (the phantom writer shared with benchmarks/stage_times.py)

from transforms import nifti  # noqa: E402
from transforms.intensity import encode_png, to_uint8, window_for  # noqa: E402
from transforms.planes import display_slice, labelled_slice_indices, plane_grid, planes_of  # noqa: E402
from transforms.volume import Volume, to_canonical  # noqa: E402

SPACING_MM = (0.7, 0.7, 2.5)
FIXED_COST_SPEC = "64x64x10:1"
TWO_WORKERS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def parse_size(text: str) -> tuple[int, int, int]:
    return tuple(int(v) for v in text.lower().split("x"))  # type: ignore[return-value]


def write_task(root: str, volumes: list[tuple[str, tuple[int, int, int]]]) -> str:
    """An MSD-layout CT task holding the given volumes (name, shape), each with its own noise."""
    task = os.path.join(root, "Task01_BenchCT")
    os.makedirs(os.path.join(task, "imagesTr"), exist_ok=True)
    os.makedirs(os.path.join(task, "labelsTr"), exist_ok=True)
    training = []
    for seed, (name, shape) in enumerate(volumes):
        image, labels = (os.path.join(task, folder, f"{name}.nii.gz") for folder in ("imagesTr", "labelsTr"))
        if not os.path.exists(image):
            stage_times.write_phantom(shape, SPACING_MM, image, labels, seed)
        training.append({"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"})
    label_names = {
        "0": "background",
        "1": "liver",
        "2": "right kidney",
        "3": "left kidney",
        "4": "spleen",
        "5": "liver lesion",
    }
    with open(os.path.join(task, "dataset.json"), "w") as handle:
        json.dump({"modality": {"0": "CT"}, "labels": label_names, "training": training}, handle)
    return task


def floor_seconds(image_path: str, labels_path: str) -> dict:
    """Decode every input + encode the PNG of every output slice (slices are prepared untimed), with the
    pipeline's encoder and with OpenCV's defaults (`cv2.imencode(".png", pixels)`). The floor's decode is
    SimpleITK's, one thread, of the image and the label map in their stored types; the pipeline's own
    decode of the image (nibabel, to row-major float32) is timed beside it for the cost model:
    {"decode_s", "pipeline_decode_s", "encode_s", "encode_cv2_default_s", "pngs", "pixels", "png_bytes",
    "png_bytes_cv2_default"}."""
    start = time.perf_counter()
    for path in (image_path, labels_path):
        sitk.ReadImage(path)
    decode_s = time.perf_counter() - start
    start = time.perf_counter()
    image_file = nifti.load(image_path)
    image = Volume(nifti.read_channel(image_file, None, image_path), nifti.resolve_affine(image_file.header).affine_ras)
    pipeline_decode_s = time.perf_counter() - start
    labels_file = nifti.load(labels_path)
    labels = to_canonical(
        Volume(nifti.read_labels(labels_file, labels_path), nifti.resolve_affine(labels_file.header).affine_ras)
    )
    image = to_canonical(image)
    window = window_for("CT", "soft_tissue", image.array)
    slices = []
    for plane in planes_of(labels.array.shape):
        grid = plane_grid(labels.array.shape, labels.spacing_mm, plane, "finest")
        for index in labelled_slice_indices(labels.array, plane):
            slices.append(to_uint8(grid.resample_image(display_slice(image.array, plane, int(index))), window))
    start = time.perf_counter()
    png_bytes = sum(len(encode_png(pixels)) for pixels in slices)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    default_bytes = sum(len(cv2.imencode(".png", pixels)[1]) for pixels in slices)
    return {
        "decode_s": decode_s,
        "pipeline_decode_s": pipeline_decode_s,
        "encode_s": encode_s,
        "encode_cv2_default_s": time.perf_counter() - start,
        "pngs": len(slices),
        "pixels": sum(pixels.size for pixels in slices),
        "png_bytes": png_bytes,
        "png_bytes_cv2_default": default_bytes,
    }


def floor_and_build(root: str, spec: str) -> dict:
    """SIZE[:COUNT] volumes written under `root`, built: the stats of `build`, with the floor's seconds
    ("floor_s"), its totals ("floor") and the number of volumes ("volumes")."""
    size, count = (spec.split(":") + ["1"])[:2]
    names = [f"ct_{size}_{n}" for n in range(int(count))]
    task = write_task(os.path.join(root, spec.replace(":", "_")), [(name, parse_size(size)) for name in names])
    floors = [
        floor_seconds(*(os.path.join(task, folder, f"{name}.nii.gz") for folder in ("imagesTr", "labelsTr")))
        for name in names
    ]
    floor = {key: sum(f[key] for f in floors) for key in floors[0]}
    result = build(task, os.path.join(root, f"out-{size}-{time.time_ns()}"), [])
    return {
        **result,
        "floor_s": floor["decode_s"] + floor["encode_s"],
        "floor_cv2_default_s": floor["decode_s"] + floor["encode_cv2_default_s"],
        "floor": floor,
        "volumes": len(names),
    }


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:")) / 1024
    except (OSError, StopIteration, ValueError):
        return 0.0


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _descendants(pid: int) -> list[int]:
    children = []
    for task in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else []:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                children += [int(child) for child in handle.read().split()]
        except OSError:
            pass
    return children + [grandchild for child in children for grandchild in _descendants(child)]


def bundle_count(output: str) -> int:
    """Bundles of the pairs written (a slice's pairs of one task), each of which shuffles one PNG."""
    files = glob.glob(os.path.join(output, "dataset=*", "task=*", "split=*", "*.parquet"))
    keys = ["case_id", "sequence", "plane", "slice_index", "task"]
    pairs = ds.dataset(files, format="parquet", partitioning="hive", partition_base_dir=output)
    return pairs.to_table(columns=keys).group_by(keys).aggregate([]).num_rows


def build(task: str, output: str, extra: list[str]) -> dict:
    """One build in a child process: stats, wall time, peak RSS and CPU seconds of the driver and of its
    worker processes (sampled from /proc every 0.2 s; in one-process mode the driver is also the worker).
    The driver's CPU share shows how much of the work the runner's controller does itself."""
    command = [sys.executable, "-m", "pipeline.cli", "build", "--source", f"msd={task}", "--output", output, *extra]
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    driver_mb, worker_mb, driver_cpu_s = 0.0, 0.0, 0.0
    worker_cpu_s: dict[int, float] = {}
    while child.poll() is None:
        driver_mb, driver_cpu_s = max(driver_mb, _rss_mb(child.pid)), max(driver_cpu_s, _cpu_s(child.pid))
        for pid in _descendants(child.pid):
            worker_mb = max(worker_mb, _rss_mb(pid))
            worker_cpu_s[pid] = max(worker_cpu_s.get(pid, 0.0), _cpu_s(pid))
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=0.2)  # the wall time ends when the child does, not at the next sample
    stderr = child.stderr.read() if child.stderr else ""
    if child.returncode != 0:
        sys.exit(f"build failed ({child.returncode}): {stderr[-2000:]}")
    wall = time.perf_counter() - start
    stats = json.load(open(os.path.join(output, "stats.json")))
    return {
        "pipeline_s": stats["wall_seconds"],
        "process_s": wall,
        "rows": stats["total_rows"],
        "bundles": bundle_count(output),
        "peak_mb": driver_mb,
        "worker_peak_mb": worker_mb,
        "driver_cpu_s": driver_cpu_s,
        "worker_cpu_s": sum(worker_cpu_s.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        nargs="*",
        default=["256x256x100:6", "512x512x300:2"],
        help="SIZE[:COUNT] volumes built together per floor-ratio row",
    )
    parser.add_argument(
        "--mixed",
        default="256x256x100:3,512x512x200:1",
        help="SIZE:COUNT,... of the mixed workload for the worker-scaling ratio ('' to skip)",
    )
    parser.add_argument("--workdir", default=None, help="keep volumes here between runs (default: a temp folder)")
    parser.add_argument("--save", help="write the measured unit costs of the last size to this JSON file")
    args = parser.parse_args()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)  # the floor's decode runs on one thread
    print("$ " + shlex.join([sys.executable, *sys.argv]))
    print(f"{os.cpu_count()} CPUs; spacing {SPACING_MM} mm, stored LPS; numpy {np.__version__}")
    root = args.workdir or tempfile.mkdtemp(prefix="scaling_")
    baseline = subprocess.run(
        [
            sys.executable,
            "-c",
            "import pipeline.run; print(next(line.split()[1] for line in "
            "open('/proc/self/status') if line.startswith('VmHWM:')))",
        ],  # ru_maxrss: the parent's
        check=True,
        capture_output=True,
        text=True,
    )
    print(f"baseline RSS of a process that imported the pipeline: {int(baseline.stdout) / 1024:.0f} MB")
    print(
        "\nfloor ratio (one process): build seconds / (decode + PNG encode) seconds; marginal: net of a one-volume run"
    )
    fixed = floor_and_build(root, FIXED_COST_SPEC)
    print(
        f"fixed cost per run ({FIXED_COST_SPEC}): build {fixed['pipeline_s']:.1f} s ({fixed['process_s']:.1f} s "
        f"for the whole command, imports included), floor {fixed['floor_s']:.2f} s"
    )
    print(
        "floor s: SimpleITK's decode (one thread, image and labels) + the pipeline's PNG encoder; "
        "cv2 s: the same decode + cv2.imencode at OpenCV's defaults"
    )
    print(
        f"{'volumes':<16}{'floor s':>9}{'cv2 s':>7}{'PNGs':>7}{'build s':>9}{'ratio':>7}{'marginal':>9}"
        f"{'vs cv2':>8}{'rows':>8}{'peak MB':>9}{'decoded MB':>11}"
    )
    for spec in args.sizes:
        result = floor_and_build(root, spec)
        floor, floor_s, shape = result["floor"], result["floor_s"], parse_size(spec.split(":")[0])
        marginal = (result["pipeline_s"] - fixed["pipeline_s"]) / (floor_s - fixed["floor_s"])
        cv2_s = result["floor_cv2_default_s"]
        marginal_cv2 = (result["pipeline_s"] - fixed["pipeline_s"]) / (cv2_s - fixed["floor_cv2_default_s"])
        decoded_mb = np.prod(shape) * 4 / 2**20
        print(
            f"{spec.replace(':', ' x'):<16}{floor_s:>9.1f}{cv2_s:>7.1f}{floor['pngs']:>7}{result['pipeline_s']:>9.1f}"
            f"{result['pipeline_s'] / floor_s:>7.2f}{marginal:>9.2f}{marginal_cv2:>8.2f}{result['rows']:>8}"
            f"{result['peak_mb']:>9.0f}{decoded_mb:>11.0f}"
        )
        per_volume_s = result["pipeline_s"] - fixed["pipeline_s"]  # the fixed cost is paid once per build
        costs = {
            "s_per_mvoxel_decode": floor["pipeline_decode_s"] / (np.prod(shape) * result["volumes"] / 1e6),
            "s_per_mpixel_slices": (per_volume_s - floor["pipeline_decode_s"]) / (floor["pixels"] / 1e6),
            "png_bytes_per_pixel": floor["png_bytes"] / floor["pixels"],
            "pairs_per_slice": result["rows"] / floor["pngs"],
            "bundles_per_slice": result["bundles"] / floor["pngs"],
            "source": f"benchmarks/scaling.py, {spec}, {os.cpu_count()} CPUs, one process",
        }
    if args.save:
        with open(args.save, "w") as handle:
            json.dump({k: round(v, 4) if isinstance(v, float) else v for k, v in costs.items()}, handle, indent=1)
        print(f"costs of the last row saved to {args.save} (input of benchmarks/cost_model.py)")
    if args.mixed:
        volumes = [
            (f"ct_{size}_{n}", parse_size(size))
            for part in args.mixed.split(",")
            for size, count in [part.split(":")]
            for n in range(int(count))
        ]
        task = write_task(os.path.join(root, "mixed"), volumes)
        one = build(task, os.path.join(root, f"mixed-1-{time.time_ns()}"), [])
        two = build(task, os.path.join(root, f"mixed-2-{time.time_ns()}"), TWO_WORKERS)
        print(f"\nworker scaling, mixed workload {args.mixed} ({len(volumes)} volumes, {one['rows']} rows)")
        print(f"  1 process : pipeline {one['pipeline_s']:.1f} s, peak RSS {one['peak_mb']:.0f} MB")
        print(
            f"  2 workers : pipeline {two['pipeline_s']:.1f} s, peak RSS driver {two['peak_mb']:.0f} MB, "
            f"largest worker {two['worker_peak_mb']:.0f} MB"
        )
        print(
            f"  CPU seconds: 1 process {one['driver_cpu_s']:.0f}; 2 workers: driver (runner controller) "
            f"{two['driver_cpu_s']:.0f} + workers {two['worker_cpu_s']:.0f}"
        )
        print(f"  throughput ratio 2 vs 1: {one['pipeline_s'] / two['pipeline_s']:.2f}x")


if __name__ == "__main__":
    main()
