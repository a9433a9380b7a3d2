"""PNG encoders and settings side by side on real slices: CPU ms and KiB per slice, lossless checked.

    .venv/bin/python benchmarks/png_encoders.py [--realdata ../shared/reference/realdata/pyradiomics]
        [--demo OUTPUT_OF_A_DEMO_BUILD]

Slices: every 4th axial slice of the real lung CT (lung window) and every 2nd of the brain MR
(percentile window), as the pipeline windows them; with `--demo`, up to 400 distinct PNGs of a demo
build. The pipeline's own `encode_png` is one of the rows. Each setting's best of 5 runs (CPU time
of this thread); every output is decoded with Pillow and compared with its input.
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import sys
import time

import cv2
import numpy as np
import pyarrow.parquet as pq
import SimpleITK as sitk
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from transforms.intensity import ct_window, encode_png, percentile_window, to_uint8  # noqa: E402

REALDATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference", "realdata", "pyradiomics")


def _pillow(level: int):
    def encode(pixels):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG", compress_level=level)
        return buffer.getvalue()

    return encode


def _opencv(*params):
    return lambda pixels: cv2.imencode(".png", pixels, list(params))[1].tobytes()


C, S = cv2.IMWRITE_PNG_COMPRESSION, cv2.IMWRITE_PNG_STRATEGY
ENCODERS = {
    "pipeline encode_png": encode_png,
    "pillow level 6": _pillow(6),
    "pillow level 1": _pillow(1),
    "opencv defaults": _opencv(),
    "opencv 1 rle": _opencv(C, 1, S, cv2.IMWRITE_PNG_STRATEGY_RLE),
    "opencv 1 huffman": _opencv(C, 1, S, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY),
    "opencv 6": _opencv(C, 6),
}


def real_slices(folder: str) -> dict[str, list[np.ndarray]]:
    lung = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(folder, "lung1_image.nrrd"))).astype(np.float32)
    brain = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(folder, "brain1_image.nrrd"))).astype(np.float32)
    window = percentile_window(brain)
    return {
        "lung CT 512x512": [to_uint8(lung[k], ct_window("lung")) for k in range(0, lung.shape[0], 4)],
        "brain MR 256x256": [to_uint8(brain[k], window) for k in range(0, brain.shape[0], 2)],
    }


def demo_slices(output: str, limit: int = 400) -> list[np.ndarray]:
    blobs = {
        row["image"]["bytes"]
        for path in glob.glob(f"{output}/dataset=*/task=*/split=*/*.parquet")
        for row in pq.read_table(path, columns=["image"]).to_pylist()
        if row["image"]["bytes"]
    }
    return [np.asarray(Image.open(io.BytesIO(blob))) for blob in sorted(blobs)[:limit]]


def measure(encode, slices: list[np.ndarray]) -> tuple[float, float, bool]:
    """(ms per slice, KiB per slice, lossless)."""
    best, out = float("inf"), []
    for _ in range(5):
        started = time.process_time()
        out = [encode(pixels) for pixels in slices]
        best = min(best, time.process_time() - started)
    lossless = all(np.array_equal(np.asarray(Image.open(io.BytesIO(png))), pixels) for png, pixels in zip(out, slices))
    return 1000 * best / len(slices), sum(map(len, out)) / len(slices) / 1024, lossless


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realdata", default=REALDATA)
    parser.add_argument("--demo", help="a demo build's output folder")
    args = parser.parse_args()
    sets = real_slices(args.realdata)
    if args.demo:
        sets["demo (distinct PNGs)"] = demo_slices(args.demo)
    print("| slices | encoder | ms/slice | KiB/slice | lossless |\n| --- | --- | --- | --- | --- |")
    for name, slices in sets.items():
        for label, encode in ENCODERS.items():
            ms, kib, lossless = measure(encode, slices)
            print(f"| {name} ({len(slices)}) | {label} | {ms:.2f} | {kib:.1f} | {lossless} |", flush=True)


if __name__ == "__main__":
    main()
