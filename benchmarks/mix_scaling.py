"""`mix` against input size: wall time and peak RSS of a mixture from synthetic builds of growing size.

Each build is written by tests/mix_fixtures.py (three datasets, three tasks, train/test, small PNGs of
random pixels); each mix runs in a fresh process so its peak RSS is its own.

    .venv/bin/python benchmarks/mix_scaling.py --pairs 100000 400000 1600000 --take 0.2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CHILD = """
import json, resource, sys, time
from consumers import mix
pairs, output, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
start = time.perf_counter()
caps = mix.MixCaps(per_split={"train": total, "test": total // 4})
summary = mix.mix(mix.MixRequest((pairs,), output, 1000, 0, caps, command="benchmark"))
print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_mb": resource.getrusage(
    resource.RUSAGE_SELF).ru_maxrss / 1024, "pairs": summary["pairs"]}))
"""


def folder_bytes(root: str) -> int:
    return sum(os.path.getsize(os.path.join(folder, name)) for folder, _, names in os.walk(root) for name in names)


def measure(n_pairs: int, take: float, png_side_px: int, work: str) -> dict:
    from tests.mix_fixtures import write_synthetic_build

    build, output = os.path.join(work, f"build{n_pairs}"), os.path.join(work, f"mix{n_pairs}")
    start = time.perf_counter()
    written = write_synthetic_build(build, n_pairs, png_side_px=png_side_px)
    write_s = time.perf_counter() - start
    result = subprocess.run(
        [sys.executable, "-c", CHILD, build, output, str(int(n_pairs * take))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    line = json.loads(result.stdout.strip().splitlines()[-1])
    row = {
        "input_pairs": sum(written.values()),
        "input_mb": folder_bytes(build) / 2**20,
        "write_s": write_s,
        "mix_s": line["seconds"],
        "peak_rss_mb": line["peak_rss_mb"],
        "output_mb": folder_bytes(output) / 2**20,
        "mixture": line["pairs"],
    }
    shutil.rmtree(build)
    shutil.rmtree(output)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, nargs="+", default=[100_000, 400_000, 1_600_000])
    parser.add_argument(
        "--take", type=float, default=0.2, help="train pairs as a fraction of the input (test: a quarter of that)"
    )
    parser.add_argument("--png-side-px", type=int, default=32)
    parser.add_argument("--work", help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="mix-scaling-")
    print("input_pairs  input_MB  mix_s  peak_RSS_MB  output_MB  train/validation/test")
    for n_pairs in args.pairs:
        row = measure(n_pairs, args.take, args.png_side_px, work)
        split = "/".join(str(row["mixture"][s]) for s in ("train", "validation", "test"))
        print(
            f"{row['input_pairs']:>11,}  {row['input_mb']:>8.0f}  {row['mix_s']:>5.1f}  {row['peak_rss_mb']:>11.0f}"
            f"  {row['output_mb']:>9.0f}  {split}",
            flush=True,
        )


if __name__ == "__main__":
    main()
