"""The build DAG (ARCHITECTURE.md): cases -> work units -> slices -> pairs -> validated Parquet + quarantine + counts."""
from __future__ import annotations

import json

import apache_beam as beam

from pipeline import storage
from pipeline.config import BuildConfig
from pipeline.progress import ProgressMarks
from pipeline.stages import ApplySharedSplits, CheckUniqueIds, PlanCases, SharedSplits, SlicePairs, ValidatePairs
from pipeline.write import WriteTable, partition_of, planned_partition_bytes
from schemas.rows import RowBundle
from transforms.caseref import CaseRef

COUNTS_FILE = "counts.jsonl"
QUARANTINE_PARTITION = "quarantine"


def build_graph(pipeline: beam.Pipeline, config: BuildConfig, cases: list[CaseRef],
                settings: storage.StorageSettings = storage.StorageSettings(),
                progress: ProgressMarks = ProgressMarks()) -> None:
    """Wire the whole build onto `pipeline`; counts for reconciliation go to `<output>/_work/`."""
    load = config.load_settings
    pngs = storage.join(config.work_dir, "pngs")  # spilled PNGs (`pipeline.spill`): no pixels cross a shuffle
    plans, load_quarantine = (
        pipeline
        | "ListCases" >> beam.Create(cases)
        | "SpreadCases" >> beam.Reshuffle()
        | "PlanCases" >> PlanCases(load, settings, progress)
    )
    # A big case's units, not its slices, cross a shuffle: its slices are cut, encoded and measured on
    # many workers, each decoding the case again, and no pixels are shuffled before the write.
    branches = [
        plans
        | "Units" >> beam.FlatMap(lambda plan: plan.units if plan.spread else ())
        | "SpreadUnits" >> beam.Reshuffle()
        | "SlicePairs" >> SlicePairs(load, settings, progress, spill_folder=pngs, tasks=config.tasks)
    ]
    if load.cut_here_below_voxels:  # a small case is cut in the step that planned it, from its decode
        branches.append(plans
                        | "UnitsHere" >> beam.FlatMap(lambda plan: () if plan.spread else plan.units)
                        | "SlicePairsHere" >> SlicePairs(load, settings, progress, spill_folder=pngs,
                                                         tasks=config.tasks))
    pairs, invalid = (
        [bundles for branch_pairs, _ in branches for bundles in branch_pairs]
        | "AllPairs" >> beam.Flatten()
        | "ApplySharedSplits" >> ApplySharedSplits(plans | "SharedSplits" >> SharedSplits())
        | "ValidatePairs" >> ValidatePairs()
    )
    _ = pairs | "CheckUniqueIds" >> CheckUniqueIds()
    quarantine = ([load_quarantine, invalid] + [rows for _, branch_quarantine in branches for rows in branch_quarantine]
                  | "AllQuarantine" >> beam.Flatten())

    pair_files = pairs | "WritePairs" >> WriteTable(
        config.output, partition_of, lambda row: row["task"], config.target_file_mb, settings, progress,
        planned_bytes=plans | "PlannedBytes" >> beam.FlatMap(planned_partition_bytes, config.tasks))
    quarantine_files = (
        quarantine
        | "OneRowBundles" >> beam.Map(lambda row: RowBundle((row,)))
        | "WriteQuarantine" >> WriteTable(config.output, lambda row: QUARANTINE_PARTITION,
                                          lambda row: QUARANTINE_PARTITION, config.target_file_mb, settings)
    )
    counts = (
        (pair_files | "PairCounts" >> beam.Map(lambda c: {"kind": "rows", **c}),
         quarantine_files | "QuarantineCounts" >> beam.Map(lambda c: {"kind": "rows", **c}),
         quarantine | "CountReasons" >> CountReasons(),
         pairs | "CountCases" >> CountCasesWithPairs())
        | "AllCounts" >> beam.Flatten()
    )
    _ = (
        counts
        | "ToJson" >> beam.Map(lambda record: json.dumps(record, sort_keys=True))
        | "AllLines" >> beam.combiners.ToList()
        | "WriteCounts" >> beam.ParDo(_WriteLinesFn(f"{config.work_dir}/{COUNTS_FILE}", settings))
    )


class _WriteLinesFn(beam.DoFn):
    """Write a small list of lines, sorted, to one object (the run's counts)."""

    def __init__(self, uri: str, settings: storage.StorageSettings):
        self._uri, self._settings = uri, settings

    def setup(self):
        storage.configure(self._settings)

    def process(self, lines: list[str]):
        storage.write_bytes(self._uri, "".join(f"{line}\n" for line in sorted(lines)).encode())


class CountReasons(beam.PTransform):
    """Quarantine rows -> {"kind": "quarantine", dataset, stage, reason, rows}."""

    def expand(self, quarantine):
        return (
            quarantine
            | beam.Map(lambda row: ((row["dataset"], row["stage"], row["reason"]), 1))
            | beam.CombinePerKey(sum)
            | beam.MapTuple(lambda key, n: {"kind": "quarantine", "dataset": key[0], "stage": key[1],
                                            "reason": key[2], "rows": n})
        )


class CountCasesWithPairs(beam.PTransform):
    """Bundles of pairs -> {"kind": "cases", dataset, rows: cases that produced at least one pair}."""

    def expand(self, pairs):
        return (
            pairs
            | beam.FlatMap(lambda bundle: {(row["dataset"], row["case_id"]) for row in bundle.rows})
            | beam.Distinct()
            | beam.combiners.Count.PerKey()
            | beam.MapTuple(lambda dataset, n: {"kind": "cases", "dataset": dataset, "rows": n})
        )
