"""The build DAG (README, "Running at scale"): cases -> plans -> pairs -> validated Parquet, with the
quarantine and the reconciliation's counts beside."""

from __future__ import annotations

import apache_beam as beam

from pipeline import storage
from pipeline.config import BuildConfig
from pipeline.counts import COUNTS_FILE, WriteCounts
from pipeline.progress import ProgressMarks
from pipeline.stages import ApplySharedSplits, CheckUniqueIds, CutUnits, PlanCases, SharedSplits, ValidatePairs
from pipeline.write import WritePairs, WriteQuarantine
from transforms.caseref import CaseRef


def build_graph(
    pipeline: beam.Pipeline,
    config: BuildConfig,
    cases: list[CaseRef],
    settings: storage.StorageSettings = storage.StorageSettings(),
    progress: ProgressMarks = ProgressMarks(),
) -> None:
    """Wire the whole build onto `pipeline`; the counts for the reconciliation go to `<output>/_work/`."""
    load, output, work = config.load_settings, config.output, config.work_dir
    listed = pipeline | "ListCases" >> beam.Create(cases) | "SpreadCases" >> beam.Reshuffle()
    plans, load_quarantine = listed | "PlanCases" >> PlanCases(load, settings, progress)
    cut = CutUnits(load, settings, progress, spill_folder=storage.join(work, "pngs"), tasks=config.tasks)
    pairs, cut_quarantine = plans | "CutUnits" >> cut
    splits = plans | "SharedSplits" >> SharedSplits()
    pairs, invalid = pairs | "ApplySharedSplits" >> ApplySharedSplits(splits) | "ValidatePairs" >> ValidatePairs()
    _ = pairs | "CheckUniqueIds" >> CheckUniqueIds()
    quarantine = (load_quarantine, cut_quarantine, invalid) | "AllQuarantine" >> beam.Flatten()
    write_pairs = WritePairs(output, plans, config.tasks, config.target_file_mb, settings, progress)
    pair_files = pairs | "WritePairs" >> write_pairs
    quarantine_files = quarantine | "WriteQuarantine" >> WriteQuarantine(output, config.target_file_mb, settings)
    counted = {"pair_files": pair_files, "quarantine_files": quarantine_files, "quarantine": quarantine, "pairs": pairs}
    _ = counted | "WriteCounts" >> WriteCounts(storage.join(work, COUNTS_FILE), settings)
