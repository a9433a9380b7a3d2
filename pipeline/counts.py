"""The run's counts for the reconciliation (`pipeline.run`): rows written per partition, quarantine rows per
reason, cases with pairs; one JSON line each in `<output>/_work/counts.jsonl`."""

from __future__ import annotations

import json

import apache_beam as beam

from pipeline import storage

COUNTS_FILE = "counts.jsonl"


class WriteCounts(beam.PTransform):
    """{"pair_files", "quarantine_files": per-partition counts of the writes, "quarantine": rows, "pairs":
    bundles} -> one sorted JSON line per count, written to `counts_uri`."""

    def __init__(self, counts_uri: str, settings: storage.StorageSettings):
        super().__init__()
        self._counts_uri, self._settings = counts_uri, settings

    def expand(self, inputs):
        counts = (
            inputs["pair_files"] | "PairCounts" >> beam.Map(lambda c: {"kind": "rows", **c}),
            inputs["quarantine_files"] | "QuarantineCounts" >> beam.Map(lambda c: {"kind": "rows", **c}),
            inputs["quarantine"] | "CountReasons" >> CountReasons(),
            inputs["pairs"] | "CountCases" >> CountCasesWithPairs(),
        ) | "AllCounts" >> beam.Flatten()
        return (
            counts
            | "ToJson" >> beam.Map(lambda record: json.dumps(record, sort_keys=True))
            | "AllLines" >> beam.combiners.ToList()
            | "WriteLines" >> beam.ParDo(_WriteLinesFn(self._counts_uri, self._settings))
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
            | beam.MapTuple(
                lambda key, n: {"kind": "quarantine", "dataset": key[0], "stage": key[1], "reason": key[2], "rows": n}
            )
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
