"""Peak memory of the per-case work a worker does, against the decoded size of the volume.

A worker's own memory is what one case costs it: read and canonicalise the volume, cut its slices
one at a time, encode each PNG and build each pair row (the same functions the Beam stages call, in
the same order, without a runner). Each scenario runs in a fresh child process that reports its
peak RSS above its RSS after imports. Running 1 and N cases of a size in one process shows whether
the peak depends on the number of cases (it must not: a worker thread keeps only its last case,
dropped before the next one is decoded).
The runner's own buffering (the DirectRunner holds whole bundles in the controller and in each
worker's data channel) comes on top and is reported by benchmarks/scaling.py.

    python benchmarks/memory.py --sizes 256x256x100 512x512x300 --cases 1 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scaling  # noqa: E402  (the synthetic CT task writer)


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(field + ":")) / 1024


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def _peak_rss_mb() -> float:
    """This process image's peak RSS. Not getrusage's ru_maxrss: Linux carries it over from the forked
    parent through exec, so a child of a big parent (one that just wrote the phantoms) reports the parent."""
    return _status_mb("VmHWM")


def measure(task: str, n_cases: int) -> dict:
    """In this process: build the first n_cases of the task pair by pair; peak RSS above the start."""
    from pipeline import casework
    from pipeline.config import add_build_arguments, config_from_args
    from pipeline.run import list_cases
    from schemas import rows

    parser = argparse.ArgumentParser()
    add_build_arguments(parser)
    config = config_from_args(parser.parse_args(["--source", f"msd={task}", "--output", "/nonexistent"]))
    cases = list_cases(config)[:n_cases]
    start_mb = _rss_mb()
    n_pairs = 0
    for case in cases:
        records, _ = casework.slice_records(case, config.load_settings)
        for record in records:
            record = dataclasses.replace(record, content=record.content.with_png())
            n_pairs += len(rows.detection_rows(record)) + len(rows.lesion_rows(record)[0])
    peak_mb = _peak_rss_mb()
    return {"cases": len(cases), "pairs": n_pairs, "start_mb": start_mb, "peak_above_start_mb": peak_mb - start_mb}


def run_child(task: str, n_cases: int) -> dict:
    code = f"import json, memory; print(json.dumps(memory.measure({task!r}, {n_cases})))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=os.path.dirname(os.path.abspath(__file__)),
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", default=["256x256x100", "512x512x300"])
    parser.add_argument("--cases", nargs="*", type=int, default=[1, 3], help="cases per process to compare")
    parser.add_argument("--workdir", default=None, help="keep volumes here between runs (default: a temp folder)")
    args = parser.parse_args()
    print("$ " + shlex.join([sys.executable, *sys.argv]))
    root = args.workdir or tempfile.mkdtemp(prefix="memory_")
    print(f"{'volume':<14}{'cases':>6}{'pairs':>7}{'decoded MB':>12}{'peak MB':>9}{'peak/decoded':>14}")
    for size in args.sizes:
        shape = scaling.parse_size(size)
        task = scaling.write_task(os.path.join(root, size), [(f"ct_{size}_{n}", shape) for n in range(max(args.cases))])
        decoded_mb = float(np.prod(shape)) * 4 / 2**20  # float32 voxels, as the pipeline holds them
        for n_cases in args.cases:
            result = run_child(task, n_cases)
            peak_mb = result["peak_above_start_mb"]
            print(
                f"{size:<14}{n_cases:>6}{result['pairs']:>7}{decoded_mb:>12.0f}{peak_mb:>9.0f}"
                f"{peak_mb / decoded_mb:>14.2f}"
            )


if __name__ == "__main__":
    main()
