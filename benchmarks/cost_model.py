"""Cost model of the full build of the 22 sources: vCPU-hours, shuffle volume and a Dataflow price.

Inputs:
- measured costs (`--costs FILE`, written by `benchmarks/scaling.py --save FILE`; without it the
  figures measured on the reference 2-core machine are used and printed): seconds per decoded
  megavoxel and per megapixel of output slices, PNG bytes per output pixel, pairs per slice and
  bundles per slice (a slice's pairs of one task: a slice with boxes and lesion sizes makes two);
- the inventory below: volumes per source from sources.yaml (`counts.volumes`, Table 1), and a
  typical stored shape and spacing per source, which sources.yaml does not give (assumptions,
  marked; the slice count follows from them: every plane is cut, coronal/sagittal upsampled to
  the finest in-plane spacing, and LABELLED_FRACTION of each axis holds a label).

The DAG decodes a volume once to plan it and once per work unit (runs of at most
MAX_SLICES_PER_UNIT slices of one plane; no cache hit is assumed, as on a runner that scatters
units). No pixels cross a shuffle: the slice step writes each PNG once to the build's scratch folder
(`pipeline.spill`) and the pair rows are shuffled once, at the write's GroupByKey, in bundles that
carry a reference to their slice's PNG (SPILL_REFERENCE_BYTES) instead of the PNG itself. The PNGs
are written to and read back from Cloud Storage once each instead (no Dataflow charge, and GCS
traffic within a region is free; its operations are priced below).

Price assumptions (Dataflow batch, us-central1 list prices, stated not fetched): $0.056 per
vCPU-hour, $0.003557 per GB-hour of memory, $0.011 per GB of Dataflow Shuffle processed,
workers n2-standard-4 (4 vCPU, 16 GB), no persistent-disk or egress charges counted; Cloud Storage
Standard $0.020 per GB-month, $0.005 per 1,000 writes and $0.0004 per 1,000 reads.

The PNG encoder is priced the same way (ENCODERS: CPU per megapixel and bytes per pixel measured by
benchmarks/png_encoders.py on real CT): its CPU in vCPU-hours, its bytes in a month of storage.

    python benchmarks/cost_model.py [--costs measured.json] [--workers 50]
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

# (source, volumes, stored shape i x j x k, spacing mm, note); sequences count as volumes.
INVENTORY = (
    ("abdomenatlas", 5195, (512, 512, 300), (0.8, 0.8, 2.5), "CT; shape assumed"),
    ("abdomenct_1k", 1000, (512, 512, 150), (0.8, 0.8, 2.5), "CT; shape assumed"),
    ("acdc", 300, (216, 256, 10), (1.5, 1.5, 8.0), "cine MRI frames"),
    ("amos22", 360, (512, 512, 150), (0.7, 0.7, 3.0), "CT + MRI; shape assumed"),
    ("autopet_iii", 2 * 1400, (400, 400, 300), (2.0, 2.0, 3.0), "CT + PET per study, minus negatives (assumed)"),
    ("bcv15", 50, (512, 512, 140), (0.8, 0.8, 3.0), "abdomen 30 + cervix ~20"),
    ("brats24", 4 * 2300, (240, 240, 155), (1.0, 1.0, 1.0), "4 sequences per case; case count assumed"),
    ("camus", 1000, (600, 500, 20), (0.3, 0.15, 1.0), "2D+t, time frames only (one plane)"),
    ("ceph_biometrics_400", 400, (1935, 2400, 1), (0.1, 0.1, 1.0), "2D X-ray"),
    ("crossmoda", 105, (512, 512, 120), (0.4, 0.4, 1.5), "ceT1"),
    ("feta24", 80 + 65, (256, 256, 256), (0.5, 0.5, 0.5), "detection + biometry cases"),
    ("flare22", 50, (512, 512, 100), (0.8, 0.8, 2.5), "CT"),
    ("hntsmrg24", 300, (512, 512, 80), (0.5, 0.5, 2.0), "pre/mid-RT T2"),
    ("isles24", 2 * 149, (192, 192, 60), (1.2, 1.2, 2.5), "ADC + DWI"),
    ("kipa22", 70, (150, 150, 200), (0.7, 0.7, 0.7), "cropped kidney CT (assumed)"),
    ("kits23", 489, (512, 512, 200), (0.8, 0.8, 3.0), "CT"),
    ("msd", 1741 + 3 * 484 + 32, (240, 240, 155), (1.0, 1.0, 1.0), "4D channels counted; mixed shapes"),
    ("oaizib_cm", 507, (160, 384, 384), (0.7, 0.36, 0.36), "DESS"),
    ("skm_tea", 2 * 155, (512, 512, 160), (0.31, 0.31, 0.8), "2 echoes"),
    ("toothfairy2", 480, (300, 300, 300), (0.3, 0.3, 0.3), "CBCT (assumed)"),
    ("topcow24", 250, (512, 512, 200), (0.4, 0.4, 0.6), "CTA + MRA (count assumed)"),
    ("totalsegmentator", 1228 + 616, (300, 300, 350), (1.5, 1.5, 1.5), "CT + MRI, resampled 1.5 mm release"),
)
LABELLED_FRACTION = 0.6  # of the slices along each axis that hold a label (assumption)
# Measured on the reference machine (2 cores), benchmarks/scaling.py, 512x512x300 CT at 0.7x0.7x2.5 mm.
# bundles_per_slice comes from the demo build instead: the synthetic CT has no lesion label, so each of its
# slices makes one bundle (1.0), while a slice with a lesion makes a second one (the demo: 2277 bundles, 1783 slices).
DEFAULT_COSTS: dict[str, Any] = {
    "s_per_mvoxel_decode": 0.0143,
    "s_per_mpixel_slices": 0.0241,
    "png_bytes_per_pixel": 0.4324,
    "pairs_per_slice": 2.0154,
    "bundles_per_slice": 1.28,
    "source": "scaling.py 512x512x300:2, 2 CPUs, one process, 2026-12-03 (mean of two runs); bundles: demo build",
}
MAX_SLICES_PER_UNIT = 512  # pipeline.casework.LoadSettings.max_slices_per_unit
ROW_OVERHEAD_BYTES = 1024  # pipeline.write.ROW_OVERHEAD_BYTES: the non-image columns of a pair
SPILL_REFERENCE_BYTES = 200  # a pickled schemas.spilled.SpilledPng: object URI, offset, length, 24-byte head
SPILL_OBJECTS_PER_UNIT = 1  # one scratch object per DoFn bundle of the slice step, about one per work unit
VCPU_HOUR_USD, GB_HOUR_USD, SHUFFLE_GB_USD = 0.056, 0.003557, 0.011
GCS_GB_MONTH_USD, GCS_WRITE_USD, GCS_READ_USD = 0.020, 0.005 / 1000, 0.0004 / 1000
# (name, ms per megapixel, bytes per pixel): benchmarks/png_encoders.py, real lung CT 512x512 (lung window),
# best of 5, 2026-12-03; the chosen one first.
ENCODERS = (
    ("opencv zlib 1 + RLE (chosen)", 4.15 / 0.262144, 83.8 * 1024 / 262144),
    ("opencv defaults", 2.78 / 0.262144, 95.5 * 1024 / 262144),
    ("opencv zlib 1 + huffman only", 3.50 / 0.262144, 82.5 * 1024 / 262144),
    ("pillow level 6", 23.77 / 0.262144, 86.0 * 1024 / 262144),
)
WORKER_VCPUS, WORKER_GB = 4, 16


def output_pixels(shape, spacing_mm) -> tuple[float, float, int]:
    """(slices, pixels, work units) cut from one volume: labelled slices of each plane, at the plane's
    finest spacing."""
    i, j, k = shape
    si, sj, sk = spacing_mm
    if k == 1:
        return 1.0, float(i * j), 1
    planes = (  # (slices, rows, cols) of axial, coronal, sagittal at the finer in-plane spacing
        (k, j * sj / min(si, sj), i * si / min(si, sj)),
        (j, k * sk / min(si, sk), i * si / min(si, sk)),
        (i, k * sk / min(sj, sk), j * sj / min(sj, sk)),
    )
    slices = sum(LABELLED_FRACTION * n for n, _, _ in planes)
    pixels = sum(LABELLED_FRACTION * n * rows * cols for n, rows, cols in planes)
    units = sum(math.ceil(LABELLED_FRACTION * n / MAX_SLICES_PER_UNIT) for n, _, _ in planes)
    return slices, pixels, units


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--costs", help="JSON written by benchmarks/scaling.py --save")
    parser.add_argument("--workers", type=int, default=50, help="Dataflow workers (for wall-time estimate)")
    args = parser.parse_args()
    costs: dict[str, Any] = json.load(open(args.costs)) if args.costs else DEFAULT_COSTS
    print(f"costs: {costs}")
    print(f"{'source':<20}{'volumes':>8}{'slices M':>10}{'pairs M':>9}{'vCPU h':>9}{'shuffle GB':>11}")
    totals = {
        "volumes": 0,
        "slices": 0.0,
        "pairs": 0.0,
        "cpu_s": 0.0,
        "shuffle_b": 0.0,
        "pixels": 0.0,
        "png_b": 0.0,
        "units": 0,
    }
    for name, volumes, shape, spacing, _ in INVENTORY:
        slices, pixels, units = output_pixels(shape, spacing)
        decodes = 1 + units
        cpu_s = volumes * (
            decodes * costs["s_per_mvoxel_decode"] * shape[0] * shape[1] * shape[2] / 1e6
            + costs["s_per_mpixel_slices"] * pixels / 1e6
        )
        png_b = volumes * pixels * costs["png_bytes_per_pixel"]
        pairs = volumes * slices * costs["pairs_per_slice"]
        shuffle_b = volumes * slices * costs["bundles_per_slice"] * SPILL_REFERENCE_BYTES + pairs * ROW_OVERHEAD_BYTES
        print(
            f"{name:<20}{volumes:>8}{volumes * slices / 1e6:>10.2f}{pairs / 1e6:>9.2f}{cpu_s / 3600:>9.1f}"
            f"{shuffle_b / 1e9:>11.0f}"
        )
        for key, value in (
            ("volumes", volumes),
            ("slices", volumes * slices),
            ("pairs", pairs),
            ("cpu_s", cpu_s),
            ("shuffle_b", shuffle_b),
            ("pixels", volumes * pixels),
            ("png_b", png_b),
            ("units", volumes * units),
        ):
            totals[key] += value
    vcpu_h, shuffle_gb = totals["cpu_s"] / 3600, totals["shuffle_b"] / 1e9
    memory_gb_h = vcpu_h / WORKER_VCPUS * WORKER_GB
    spill_usd = (
        totals["units"] * SPILL_OBJECTS_PER_UNIT * GCS_WRITE_USD
        + totals["slices"] * costs["bundles_per_slice"] * GCS_READ_USD
    )
    price = vcpu_h * VCPU_HOUR_USD + memory_gb_h * GB_HOUR_USD + shuffle_gb * SHUFFLE_GB_USD + spill_usd
    print(
        f"{'total':<20}{totals['volumes']:>8}{totals['slices'] / 1e6:>10.2f}{totals['pairs'] / 1e6:>9.2f}"
        f"{vcpu_h:>9.1f}{shuffle_gb:>11.0f}"
    )
    print(
        f"\nDataflow estimate: {vcpu_h:.0f} vCPU-h x ${VCPU_HOUR_USD} + {memory_gb_h:.0f} GB-h x ${GB_HOUR_USD} "
        f"+ {shuffle_gb:.0f} GB shuffle x ${SHUFFLE_GB_USD} + PNG spill operations ${spill_usd:.0f} = ${price:.0f}"
    )
    png_gb = totals["png_b"] / 1e9
    print(
        f"not shuffled: the PNGs ({png_gb:.0f} GB, spilled to Cloud Storage once instead); shuffling them "
        f"in the bundles would add {png_gb * costs['bundles_per_slice']:.0f} GB "
        f"(${png_gb * costs['bundles_per_slice'] * SHUFFLE_GB_USD:.0f})"
    )
    print(f"wall time on {args.workers} x n2-standard-4 at full use: {vcpu_h / (args.workers * WORKER_VCPUS):.1f} h")
    print_encoders(totals["pixels"], png_gb * costs["bundles_per_slice"])


def print_encoders(pixels: float, stored_png_gb: float) -> None:
    """What each PNG encoder would cost the full build: CPU, and a month of the output's PNG storage."""
    chosen_bytes = ENCODERS[0][2]
    print(
        f"\nPNG encoder ({pixels / 1e9:.0f} Gpixel of slices; output PNGs {stored_png_gb:.0f} GB with the chosen one)"
    )
    print(f"{'encoder':<38}{'vCPU h':>8}{'CPU $':>8}{'GB':>8}{'$/month':>9}")
    for name, ms_per_mpixel, bytes_per_pixel in ENCODERS:
        vcpu_h = ms_per_mpixel * pixels / 1e6 / 1000 / 3600
        gb = stored_png_gb * bytes_per_pixel / chosen_bytes
        print(f"{name:<38}{vcpu_h:>8.0f}{vcpu_h * VCPU_HOUR_USD:>8.1f}{gb:>8.0f}{gb * GCS_GB_MONTH_USD:>9.1f}")


if __name__ == "__main__":
    main()
