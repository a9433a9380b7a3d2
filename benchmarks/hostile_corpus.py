"""Each case of the hostile corpus (`tests/hostile_corpus.py`) built alone: its reason, the build's peak
RSS and its wall time, next to one good case, as a Markdown table.

    .venv/bin/python benchmarks/hostile_corpus.py [--max-volume-mb 1024] [--cases good_nifti,zeros_bomb]

Each build is a fresh process running the CLI (`build --source msd=ROOT --cases TASK/NAME`), so a
row's peak RSS is that process's VmHWM: imports and the runner included (a one-case build of a small
volume is the baseline to compare with).
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time

import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.hostile_corpus import CLI_WITH_PEAK, SECRET_ENV, make_corpus  # noqa: E402


def outcome(output: str, case_id: str) -> str:
    """The case's load reason, or the pairs it made (and refusals at other stages)."""
    rows = [
        row
        for path in glob.glob(f"{output}/quarantine/*.parquet")
        for row in pq.read_table(path).to_pylist()
        if row["case_id"] == case_id
    ]
    load = [row["reason"] for row in rows if row["stage"] == "load"]
    if load:
        return load[0]
    pairs = sum(pq.read_metadata(path).num_rows for path in glob.glob(f"{output}/dataset=*/task=*/split=*/*.parquet"))
    refused = f", {len(rows)} refused ({rows[0]['reason']})" if rows else ""
    return f"{pairs} pairs{refused}"


def build_one(root: str, case_id: str, max_volume_mb: float, workdir: str) -> tuple[str, float, float, int]:
    output = os.path.join(workdir, case_id.replace("/", "__"))
    command = [
        sys.executable,
        "-c",
        CLI_WITH_PEAK,
        "build",
        "--source",
        f"msd={root}",
        "--output",
        output,
        "--cases",
        case_id,
        "--max-volume-mb",
        str(max_volume_mb),
    ]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, **SECRET_ENV), timeout=900)
    seconds = time.monotonic() - started
    peak_mib = int(done.stderr.strip().splitlines()[-1].split("=")[1]) / 1024
    return outcome(output, case_id), peak_mib, seconds, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-volume-mb", type=float, default=1024)
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hostile-bench-") as workdir:
        root, expected, _ = make_corpus(os.path.join(workdir, "corpus"))
        names = args.cases.split(",") if args.cases else None
        chosen = [case for case in expected if "/" in case and (names is None or case.split("/", 1)[1] in names)]
        print("| input | outcome | peak RSS MiB | wall s | exit |")
        print("| --- | --- | --- | --- | --- |")
        for case_id in chosen:
            result, peak_mib, seconds, code = build_one(root, case_id, args.max_volume_mb, workdir)
            print(f"| {case_id.split('/', 1)[1]} | {result} | {peak_mib:.0f} | {seconds:.1f} | {code} |", flush=True)


if __name__ == "__main__":
    main()
