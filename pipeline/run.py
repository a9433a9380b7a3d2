"""Driver of a build: list cases, (dry-run or) run the DAG, reconcile, write stats, the dataset card and
`_SUCCESS`."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import json
import os
import shutil
import signal
import tempfile
import threading
import time

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, GoogleCloudOptions, PipelineOptions, StandardOptions

from consumers import report
from pipeline import claim, scratch, storage
from pipeline.config import DIRECT_RUNNERS, BuildConfig, UsageError
from pipeline.counts import COUNTS_FILE
from pipeline.dag import build_graph
from pipeline.dryrun import dry_run_report
from pipeline.progress import ProgressLine, ProgressMarks
from pipeline.sources import SourceError, get_source
from pipeline.sources.listing import checked_cases
from pipeline.sources.user_options import LesionTargets, configured_source
from pipeline.version import __version__
from pipeline.write import QUARANTINE_PARTITION
from transforms.caseref import CaseRef
from transforms.errors import Reason

# Load-stage quarantine rows that do not mean a case failed.
NOT_FAILURES = {Reason.LABEL_LOST_IN_RESAMPLING.value, Reason.NEGATIVE_CASE.value}


class ReconcileError(RuntimeError):
    """The rows in the written files differ from the rows the pipeline counted."""


class FailureFractionError(RuntimeError):
    """A dataset lost more of its cases to quarantine than --max-failure-fraction allows."""


class BuildStopped(BaseException):
    """SIGTERM, SIGHUP or SIGINT reached the driver during a build: raised there so that its cleanup runs.

    A BaseException, like KeyboardInterrupt: a step running in this process catches `Exception` to
    quarantine a case, and must not quarantine the stop.
    """

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def failed_case_fractions(stats: dict) -> dict[str, float]:
    """Per dataset: cases put aside at load (each has exactly one such row) / cases listed."""
    failed: collections.Counter[str] = collections.Counter()
    for entry in stats["quarantine"]:
        if entry["stage"] == "load" and entry["reason"] not in NOT_FAILURES:
            failed[entry["dataset"]] += entry["rows"]
    return {dataset: failed[dataset] / cases["listed"] for dataset, cases in stats["cases"].items() if cases["listed"]}


def check_failure_fraction(stats: dict, limit: float) -> None:
    over = {d: f for d, f in failed_case_fractions(stats).items() if f > limit}
    if over:
        detail = ", ".join(f"{d}: {f:.1%} of cases" for d, f in sorted(over.items()))
        raise FailureFractionError(
            f"quarantine exceeds --max-failure-fraction {limit:g} ({detail}); a systematic "
            "problem must not be quarantined away: see quarantine/ and stats.json"
        )


def unlisted_by_dry_run(config: BuildConfig) -> list[dict]:
    """With --dry-run, one line per source whose listing would write (the demo before it is generated):
    a dry run writes nothing, so it skips them and says why."""
    lines = []
    for spec in config.sources if config.dry_run else ():
        try:
            source = get_source(spec.name)
            why = source.listing_writes(spec.root or source.default_root() or "")
        except SourceError as exc:
            raise UsageError(str(exc)) from exc
        if why:
            lines.append({"summary": spec.name, "not_listed": why})
    return lines


def list_cases(config: BuildConfig) -> list[CaseRef]:
    """Cases of every `--source`, narrowed by `--cases` and `--max-cases` (per source); with --dry-run,
    the sources whose listing would write are skipped (`unlisted_by_dry_run`)."""
    selected, skipped, listed_ids = [], False, []
    targets = LesionTargets(names=config.lesion_label_names)
    for spec in config.sources:
        try:
            source = configured_source(spec.name, config.subject_regex)
            root = spec.root or source.default_root()
            if root is None:
                raise UsageError(f"--source {spec.name} needs a root: --source {spec.name}=PATH_OR_URI")
            if source.default_root() is None and not storage.is_remote(root) and not os.path.isdir(root):
                raise UsageError(
                    f"--source {spec.name}: folder not found: {root} (give the folder that holds the "
                    f"extracted data; `medvision-pipeline sources` shows each adapter's layout)"
                )
            if config.dry_run and source.listing_writes(root):
                skipped = True
                continue
            # every input of a case is confined to the root it was listed under (`storage.localized`)
            cases = [dataclasses.replace(case, source_root=root) for case in checked_cases(source, root)]
        except SourceError as exc:
            raise UsageError(str(exc)) from exc
        cases = targets.apply(source, cases)
        listed_ids += [case.case_id for case in cases]
        if config.cases:
            cases = [case for case in cases if case.case_id in config.cases]
        selected += cases[: config.max_cases]
    try:
        targets.check()
    except SourceError as exc:
        raise UsageError(str(exc)) from exc
    missing = sorted(set(config.cases or ()) - {case.case_id for case in selected})
    if missing and not skipped:
        raise UsageError(
            f"--cases names cases no source lists: {', '.join(missing)}{case_id_hint(missing, listed_ids)}"
        )
    keys = collections.Counter((case.dataset, case.case_id) for case in selected)
    repeated = sorted(key for key, n in keys.items() if n > 1)
    if repeated:
        raise UsageError(f"cases listed more than once (a source given twice?): {repeated[:5]}")
    return selected


def case_id_hint(missing: list[str], listed_ids: list[str]) -> str:
    """Where a listed id ends with a missing one (`demo_ct_00` for `Task01_DemoCT/demo_ct_00`), the full form."""
    full = [known for name in missing for known in listed_ids if known.endswith("/" + name)]
    if full:
        return f" (case ids include their folder: did you mean {', '.join(sorted(full)[:5])}?)"
    return f" (listed ids look like {', '.join(listed_ids[:3])}; --dry-run prints them all)" if listed_ids else ""


def read_counts(config: BuildConfig) -> list[dict]:
    text = storage.read_bytes(f"{config.work_dir}/{COUNTS_FILE}").decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def footer_rows(config: BuildConfig) -> dict[str, int]:
    """Rows per partition according to the Parquet footers actually written."""
    rows: collections.Counter[str] = collections.Counter()
    patterns = ["dataset=*/task=*/split=*/*.parquet", f"{QUARANTINE_PARTITION}/*.parquet"]
    for pattern in patterns:
        for uri in storage.glob(storage.join(config.output, pattern)):
            with storage.open_read(uri) as handle:
                metadata = pq.read_metadata(handle)
            partition = storage.dirname(uri)[len(config.output.rstrip("/")) + 1 :]
            rows[partition] += metadata.num_rows
    return dict(rows)


def reconcile(config: BuildConfig, counts: list[dict]) -> dict[str, int]:
    """Rows per partition, checked: footers must equal the pipeline's counts exactly."""
    counted = {c["partition"]: c["rows"] for c in counts if c["kind"] == "rows"}
    written = footer_rows(config)
    if counted != written:
        differences = {
            p: (counted.get(p, 0), written.get(p, 0))
            for p in sorted(set(counted) | set(written))
            if counted.get(p, 0) != written.get(p, 0)
        }
        raise ReconcileError(f"rows counted != rows in Parquet footers (counted, written): {differences}")
    return written


def build_stats(
    config: BuildConfig, cases: list[CaseRef], counts: list[dict], written: dict[str, int], seconds: float
) -> dict:
    """stats.json: parameters, cases, rows per dataset/task/split and quarantine per reason."""
    rows = []
    for partition, n in sorted(written.items()):
        if partition == QUARANTINE_PARTITION:
            continue
        keys = dict(part.split("=", 1) for part in partition.split("/"))
        rows.append({**keys, "rows": n})
    listed = collections.Counter(case.dataset for case in cases)
    with_pairs = {c["dataset"]: c["rows"] for c in counts if c["kind"] == "cases"}
    quarantine = sorted(
        ({k: c[k] for k in ("dataset", "stage", "reason", "rows")} for c in counts if c["kind"] == "quarantine"),
        key=lambda q: (q["dataset"], q["stage"], q["reason"]),
    )
    return {
        "pipeline_version": __version__,
        "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(seconds, 1),
        "params": config.output_params(),
        "params_hash": config.params_hash,
        "sources": [{"name": s.name, "root": s.root} for s in config.sources],
        "cases": {d: {"listed": n, "with_pairs": with_pairs.get(d, 0)} for d, n in sorted(listed.items())},
        "rows": rows,
        "total_rows": sum(r["rows"] for r in rows),
        "quarantine": quarantine,
        "total_quarantined": written.get(QUARANTINE_PARTITION, 0),
    }


def check_locations_reachable(config: BuildConfig, cases: list[CaseRef], options: PipelineOptions) -> None:
    """Dataflow workers cannot read this machine's disk: refuse local paths there.

    (Portable runners may run workers here, e.g. in LOOPBACK mode, so they are not refused.)
    """
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    if "Dataflow" not in runner:
        return
    local = [config.output] if not storage.is_remote(config.output) else []
    local += sorted({case.image_uri for case in cases if not storage.is_remote(case.image_uri)})[:3]
    if local:
        raise UsageError(
            f"--runner {runner} runs on remote workers, which cannot read local paths "
            f"such as {local[0]}; put inputs and output in object storage (gs://, s3://)"
        )


@contextlib.contextmanager
def local_progress(options: PipelineOptions, total_cases: int):
    """Markers and a progress line for the DirectRunner (its workers share this machine); none elsewhere."""
    if options.view_as(StandardOptions).runner not in DIRECT_RUNNERS:
        yield ProgressMarks()
        return
    with tempfile.TemporaryDirectory(prefix="medvision-progress-") as folder, ProgressLine(folder, total_cases):
        yield ProgressMarks(folder)


def configure_storage(gcs_anonymous: bool, options: PipelineOptions) -> storage.StorageSettings:
    """Set this process's storage access from `--gcs-anonymous` and the Beam options; returns the settings
    that workers need too."""
    settings = storage.StorageSettings(gcs_anonymous, options.view_as(GoogleCloudOptions).project)
    storage.configure(settings)
    FileSystems.set_options(options)  # s3:// endpoint and keys for the driver's own reads and writes
    return settings


@contextlib.contextmanager
def signals_stop_the_build():
    """SIGTERM, SIGHUP and SIGINT raise BuildStopped in the driver while the block runs (main thread only).

    Beam wraps an exception raised inside a step running in this process in its own RuntimeError; after
    a signal, any exception leaving the block is the stop.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []

    def stop(signum, frame):
        received.append(signum)
        raise BuildStopped(signum)

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        yield
    except Exception as exc:
        if received:
            raise BuildStopped(received[0]) from exc
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def remove_work_dir(config: BuildConfig) -> None:
    """Remove `_work/`: its counts (read by the reconciliation by then) and `_work/tmp`, where WriteTable
    writes local files before renaming them into place (object stores are written from local spool files,
    in the run's scratch folder). The output then holds only what README's Output section lists."""
    if not storage.is_remote(config.output):
        shutil.rmtree(config.work_dir, ignore_errors=True)
        return
    storage.delete_many(storage.glob(storage.join(config.work_dir, "**")))


def build(config: BuildConfig, beam_args: list[str]) -> dict:
    """Run a whole build; returns stats (or the dry-run report). Raises UsageError on misuse.

    The output location is checked before anything else and claimed (pipeline/claim.py) just before the
    pipeline runs, after every usage check, so a refused command leaves nothing behind. Temporary files
    live in the run's scratch folder (pipeline/scratch.py) and `_work/tmp`; both are removed when the
    build ends, failed or not.
    """
    options = PipelineOptions(beam_args)
    config = config.for_runner(
        options.view_as(StandardOptions).runner, options.view_as(DirectOptions).direct_num_workers
    )
    settings = configure_storage(config.gcs_anonymous, options)
    claim.check_output_location(config.output)
    if not config.dry_run and not storage.is_empty_location(config.output):
        raise UsageError(
            f"output {config.output} exists and is not empty{claim.describe_existing(config.output)}; "
            "choose a new location"
        )
    run_id = claim.new_run_id()
    with signals_stop_the_build(), scratch.run_scratch(run_id):
        cases = list_cases(config)
        check_locations_reachable(config, cases, options)
        if config.dry_run:
            return {"dry_run": dry_run_report(cases, config) + unlisted_by_dry_run(config)}
        claim.claim_output(config.output, run_id, options)
        try:
            return run_pipeline(config, cases, options, settings, run_id)
        finally:
            remove_work_dir(config)


def run_pipeline(
    config: BuildConfig, cases: list[CaseRef], options: PipelineOptions, settings: storage.StorageSettings, run_id: str
) -> dict:
    """The claimed part of a build: the DAG, reconciliation, stats, the dataset card, then `_SUCCESS`."""
    started = time.monotonic()
    with local_progress(options, len(cases)) as progress, beam.Pipeline(options=options) as pipeline:
        build_graph(pipeline, config, cases, settings, progress)
    counts = read_counts(config)
    remove_work_dir(config)  # before _SUCCESS: a finished output holds no intermediate files
    written = reconcile(config, counts)
    stats = build_stats(config, cases, counts, written, time.monotonic() - started)
    storage.write_bytes(storage.join(config.output, "stats.json"), json.dumps(stats, indent=1).encode())
    check_failure_fraction(stats, config.max_failure_fraction)
    report.write_card(config.output, stats)
    # Not empty: S3 refuses a multipart upload of zero parts, which an empty write becomes.
    success = {"run_id": run_id, "finished_utc": stats["finished_utc"], "total_rows": stats["total_rows"]}
    storage.write_bytes(storage.join(config.output, "_SUCCESS"), json.dumps(success).encode())
    return stats
