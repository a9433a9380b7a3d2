"""Worker scaling of the DAG's work units without a runner's controller in the data path.

The DirectRunner moves every element between stages through one Python controller process, which
caps its multi-process speed-up on a small machine (`benchmarks/scaling.py` prints its CPU share).
Flink and Dataflow have no such controller. This script measures what they would get from the way
the DAG splits work: every case of a mixed workload is planned (`casework.plan_case`), then its
work units are handed to a pool of 1 or 2 worker processes, each taking the next unit when it is
free (as runners rebalance), and doing exactly the fused slice stage's work: cut, encode the PNG,
build and validate the pair rows. Rows are counted, not written. For comparison the same work is
also handed out a whole case at a time (all its units in a row), as a DAG that spreads only cases
would. Wall times are side by side in one run; the ratio is the throughput of 2 processes over 1.

With `--unit-sizes`, it then cuts every case into units of each given size, each unit decoding its case
again (as on a runner that scatters units, where no cache helps), and prints the CPU seconds: what the
unit size costs in decodes.

    python benchmarks/unit_scaling.py --mixed 256x256x100:3,512x512x200:1 [--workdir /tmp/bench] [--unit-sizes 128 512]
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import shlex
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scaling  # noqa: E402  (the mixed workload writer shared with benchmarks/scaling.py)

from pipeline import casework  # noqa: E402
from pipeline.sources import get_source  # noqa: E402
from schemas import rows as row_builders  # noqa: E402
from schemas.validate import batch_problems  # noqa: E402

SETTINGS = casework.LoadSettings(spacing="finest", split_salt="bench", params_hash="0123456789abcdef")


def units_rows(units: tuple[casework.WorkUnit, ...], settings: casework.LoadSettings = SETTINGS) -> int:
    """The slice stage's work on some units, one after the other: valid pair rows made."""
    made = 0
    for unit in units:
        for record in casework.unit_records(unit, settings):
            record = dataclasses.replace(record, content=record.content.with_png())
            pairs = (
                row_builders.detection_pairs(record)[0]
                + row_builders.lesion_rows(record)[0]
                + row_builders.measurement_rows(record)
            )
            made += sum(1 for problems in batch_problems(pairs) if not problems)
    return made


def cold_unit_seconds(task: str, max_slices: int) -> tuple[int, float, float]:
    """(units, plan CPU s, slice-stage CPU s) of every case cut into units of at most `max_slices`, each unit
    decoding its case anew, as on a runner that scatters a case's units over workers (one process)."""
    settings = dataclasses.replace(SETTINGS, max_slices_per_unit=max_slices)
    n_units, plan_s, cut_s = 0, 0.0, 0.0
    for case in get_source("msd").list_cases(task):
        casework.drop_cached_case()
        start = time.process_time()
        units = casework.plan_case(case, settings).units
        plan_s += time.process_time() - start
        for unit in units:
            casework.drop_cached_case()
            start = time.process_time()
            units_rows((unit,), settings)
            cut_s += time.process_time() - start
        n_units += len(units)
    return n_units, plan_s, cut_s


def run(tasks: list[tuple], processes: int) -> tuple[float, int]:
    """(wall seconds, rows) with `processes` workers each taking the next task when free."""
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        rows = sum(pool.imap_unordered(units_rows, tasks, chunksize=1))
    return time.perf_counter() - start, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mixed", default="256x256x100:3,512x512x200:1", help="SIZE:COUNT,... of the workload")
    parser.add_argument("--workdir", default=None, help="keep volumes here between runs (default: a temp folder)")
    parser.add_argument(
        "--unit-sizes",
        nargs="*",
        type=int,
        default=[],
        help="also: CPU seconds of the slice stage with units of at most these many slices, each unit decoding "
        "its case again (one process)",
    )
    args = parser.parse_args()
    print("$ " + shlex.join([sys.executable, *sys.argv]))
    volumes = [
        (f"ct_{size}_{n}", scaling.parse_size(size))
        for part in args.mixed.split(",")
        for size, count in [part.split(":")]
        for n in range(int(count))
    ]
    task = scaling.write_task(os.path.join(args.workdir or tempfile.mkdtemp(prefix="units_"), "mixed"), volumes)
    start = time.perf_counter()
    by_case = [casework.plan_case(case, SETTINGS).units for case in get_source("msd").list_cases(task)]
    plan_s = time.perf_counter() - start
    casework.drop_cached_case()
    units = [(unit,) for units in by_case for unit in units]
    print(
        f"{len(volumes)} volumes planned in {plan_s:.1f} s (one process): {len(units)} work units of at most "
        f"{SETTINGS.max_slices_per_unit} slices"
    )
    print(f"{'handed out':<12}{'1 process s':>12}{'2 processes s':>14}{'ratio':>7}{'rows':>7}")
    for name, tasks in (("units", units), ("whole cases", by_case)):
        (one_s, rows), (two_s, rows_two) = run(tasks, 1), run(tasks, 2)
        assert rows == rows_two, (rows, rows_two)
        print(f"{name:<12}{one_s:>12.1f}{two_s:>14.1f}{one_s / two_s:>7.2f}{rows:>7}")
    if args.unit_sizes:
        print(f"\n{'max slices':<12}{'units':>7}{'plan CPU s':>12}{'units CPU s':>13}{'total':>8}")
    for max_slices in args.unit_sizes:
        n_units, plan_s, cut_s = cold_unit_seconds(task, max_slices)
        print(f"{max_slices:<12}{n_units:>7}{plan_s:>12.1f}{cut_s:>13.1f}{plan_s + cut_s:>8.1f}")


if __name__ == "__main__":
    main()
