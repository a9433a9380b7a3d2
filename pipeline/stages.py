"""The DAG's steps as thin PTransforms around pure functions of `transforms/` and `schemas/`.

Every step has two outputs: its results and quarantine rows. Known bad input raises
`PipelineError` and becomes a quarantine row with that reason; an unexpected error of a kind
that marks a bug or malformed data is caught by Beam's exception handling
(`with_exception_handling`, which buffers an element's outputs so a failing element never
emits part of its results; the slice stage streams, see `ExtractSlices`) and quarantined as
`unexpected_error` with the exception's type and code location (its text and traceback, which may
quote input and name worker paths, go to the worker log only). I/O errors are left to fail the
bundle, so the runner retries them. Counters are named `<dataset>/<stage>/<outcome>`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
import traceback
import typing

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline import casework, spill, storage
from pipeline.progress import ProgressMarks
from pipeline.version import __version__
from schemas import rows as row_builders
from schemas.rows import RowBundle
from schemas.tables import TASKS
from schemas.validate import batch_problems
from transforms import ids
from transforms.caseref import CaseRef
from transforms.errors import PipelineError, Reason
from transforms.slicing import SliceRecord
from transforms.tracebacks import describe_exception

NAMESPACE = "medvision"
QUARANTINE = "quarantine"
MAIN = "main"
_BAD = "unexpected"
LOG = logging.getLogger(__name__)


def count(dataset: str, stage: str, outcome: str, n: int = 1) -> None:
    Metrics.counter(NAMESPACE, f"{dataset}/{stage}/{outcome}").inc(n)


def describe(element) -> dict:
    """Where an element of any stage came from, for its quarantine row."""
    if isinstance(element, CaseRef):
        return {"dataset": element.dataset, "case_id": element.case_id, "source_uri": element.image_uri}
    if isinstance(element, (SliceRecord, casework.CasePlan, casework.WorkUnit)):
        return describe(element.case)
    if isinstance(element, list) and element:  # a batch of bundles
        return describe(element[0])
    if isinstance(element, RowBundle) and element.rows:
        return describe(element.rows[0])
    if isinstance(element, dict):
        return {
            "dataset": element.get("dataset", ""),
            "case_id": element.get("case_id", ""),
            "source_uri": (element.get("provenance") or {}).get("source_uri", ""),
            "sample_id": element.get("sample_id"),
        }
    return {"dataset": "", "case_id": "", "source_uri": repr(element)[:200]}


def quarantined(
    element, stage: str, reason: Reason, message: str, sample_id: str | None = None
) -> beam.pvalue.TaggedOutput:
    where = describe(element)
    if sample_id is not None:
        where["sample_id"] = sample_id
    count(where["dataset"], stage, reason.value)
    return beam.pvalue.TaggedOutput(
        QUARANTINE,
        row_builders.quarantine_row(
            stage=stage, reason=reason.value, message=message, pipeline_version=__version__, **where
        ),
    )


class QuarantiningFn(beam.DoFn):
    """A DoFn whose outputs include quarantine rows (the steps `Guarded` runs, and its dead letters).
    Beam's bytecode inference of `process` (run by `with_exception_handling` whatever types the ParDo
    declares) follows the quarantine helpers, a cost paid in every run and test pipeline to answer Any: the
    type is declared instead (tests/pipeline/test_runners.py checks no inference runs)."""

    def infer_output_type(self, input_type):
        return typing.Any


def unexpected_message(stage: str, element, exc_type: type, exc_repr: str, trace: list[str]) -> str:
    """The quarantine message of an unexpected error: its type and code location only. The exception's
    text and traceback go to the worker log."""
    LOG.warning("%s: unexpected error on %s: %s\n%s", stage, describe(element), exc_repr, "".join(trace))
    return describe_exception(exc_type, trace)


class _UnexpectedToQuarantine(QuarantiningFn):
    """Beam's dead-letter records (element, (type, repr, traceback)) as quarantine rows."""

    def __init__(self, stage: str):
        self._stage = stage

    def process(self, bad):
        element, (exc_type, exc_repr, trace) = bad
        message = unexpected_message(self._stage, element, exc_type, exc_repr, trace or [])
        yield quarantined(element, self._stage, Reason.UNEXPECTED_ERROR, message).value


# Exceptions that mean "this element cannot be processed" (a bug or a malformed input) and are
# quarantined. I/O errors (OSError, cloud API errors) are not caught: the runner retries them.
QUARANTINED_EXCEPTIONS = (
    PipelineError,
    ArithmeticError,
    LookupError,
    ValueError,
    TypeError,
    AttributeError,
    AssertionError,
    RuntimeError,
    MemoryError,
)


class Guarded(beam.PTransform):
    """ParDo (of a `QuarantiningFn`, or any DoFn) with a quarantine output and Beam's exception handling;
    returns (results, quarantine)."""

    def __init__(self, stage: str, dofn: beam.DoFn, stream: bool = False):
        super().__init__()
        self._stage, self._dofn, self._stream = stage, dofn, stream

    def expand(self, pcoll):
        # Declaring the quarantine output's type keeps Beam from warning about an undeclared tag.
        pardo = beam.ParDo(self._dofn).with_output_types(typing.Any, **{QUARANTINE: dict})
        outputs = pcoll | pardo.with_outputs(QUARANTINE, main=MAIN).with_exception_handling(
            main_tag=MAIN, dead_letter_tag=_BAD, exc_class=QUARANTINED_EXCEPTIONS, partial=self._stream
        )
        unexpected = outputs[_BAD] | "Unexpected" >> beam.ParDo(_UnexpectedToQuarantine(self._stage))
        quarantine = (outputs[QUARANTINE], unexpected) | "Quarantine" >> beam.Flatten()
        return outputs[MAIN], quarantine


class _PlanCasesFn(QuarantiningFn):
    """Load and validate one case and cut its slices into work units."""

    def __init__(self, load: casework.LoadSettings, storage_settings: storage.StorageSettings, progress: ProgressMarks):
        self._load, self._storage_settings, self._progress = load, storage_settings, progress
        self._load_ms = Metrics.distribution(NAMESPACE, "load_ms_per_case")
        self._slices = Metrics.distribution(NAMESPACE, "slices_per_case")
        self._units = Metrics.distribution(NAMESPACE, "units_per_case")

    def setup(self):
        storage.configure(self._storage_settings)

    def process(self, case: CaseRef):
        started, plan = time.monotonic(), None
        try:
            plan = casework.plan_case(case, self._load)
        except PipelineError as exc:
            yield quarantined(case, "load", exc.reason, str(exc))
        finally:
            self._load_ms.update(int(1000 * (time.monotonic() - started)))
            self._progress.case_done(f"{case.dataset}/{case.case_id}", len(plan.units) if plan else 0)
        if plan is not None:
            yield from self._planned(case, plan)

    def _planned(self, case: CaseRef, plan: casework.CasePlan):
        for name, message in plan.unmeasured:
            yield quarantined(case, "angle_distance", Reason.BAD_LANDMARKS, f"{name}: {message}")
        self._slices.update(plan.n_slices)
        self._units.update(len(plan.units))
        if plan.n_slices:
            count(case.dataset, "load", "ok")
            yield plan
        elif not plan.unmeasured:
            reason = Reason.NEGATIVE_CASE if case.negatives_expected else Reason.EMPTY_CASE
            yield quarantined(case, "load", reason, "no labelled slice and no landmark measurement")


class PlanCases(beam.PTransform):
    """CaseRef -> CasePlan (its work units and split memberships); bad cases quarantined, once each."""

    def __init__(
        self,
        load: casework.LoadSettings,
        storage_settings: storage.StorageSettings = storage.StorageSettings(),
        progress: ProgressMarks = ProgressMarks(),
    ):
        super().__init__()
        self._fn = _PlanCasesFn(load, storage_settings, progress)

    def expand(self, cases):
        return cases | Guarded("load", self._fn)


class SharedSplits(beam.PTransform):
    """CasePlan -> one dict {(dataset, subject_id): split}: subjects whose volumes are the same scan
    share one split (`ids.shared_split_overrides`). The memberships are few (one per sequence volume),
    so their union-find runs on one worker; the result is a side input of `ApplySharedSplits`."""

    def expand(self, plans):
        return (
            plans
            # as plain tuples, which Beam encodes deterministically for Distinct (a NamedTuple is pickled)
            | "Memberships" >> beam.FlatMap(lambda plan: [tuple(member) for member in plan.memberships])
            | "Distinct" >> beam.Distinct()
            | "All" >> beam.combiners.ToList()
            | "Groups" >> beam.Map(lambda members: ids.shared_split_overrides(ids.Membership(*m) for m in members))
        )


def _in_shared_split(bundle: RowBundle, overrides: dict):
    first = bundle.rows[0]  # a bundle is one slice of one case: one dataset, subject and split
    split = overrides.get((first["dataset"], first["subject_id"]))
    if split is None or split == first["split"]:
        return bundle
    count(first["dataset"], "split", "shared_with_another_dataset", len(bundle))
    return bundle.with_split(split)


class ApplySharedSplits(beam.PTransform):
    """Bundles of pairs -> the same, each in the split its subject shares with another dataset's
    subject of the same scan (`SharedSplits`, a side input: it needs every plan, so it is applied to
    the pairs, not to the units, which may be cut before the last case is planned)."""

    def __init__(self, shared_splits):
        super().__init__()
        self._shared_splits = shared_splits

    def expand(self, pairs):
        return pairs | beam.Map(_in_shared_split, beam.pvalue.AsSingleton(self._shared_splits))


class _ExtractSlicesFn(QuarantiningFn):
    """Cut one work unit's slices from its case (decoded again, or still cached by this thread)."""

    def __init__(self, load: casework.LoadSettings, storage_settings: storage.StorageSettings, progress: ProgressMarks):
        self._load, self._storage_settings, self._progress = load, storage_settings, progress
        self._cut_ms = Metrics.distribution(NAMESPACE, "cut_ms_per_unit")

    def setup(self):
        storage.configure(self._storage_settings)

    def process(self, unit: casework.WorkUnit):
        started = time.monotonic()
        yield from self._unit_slices(unit)
        self._cut_ms.update(int(1000 * (time.monotonic() - started)))
        self._progress.unit_done(f"{unit.case.dataset}/{unit.case.case_id}/{unit.plane}/{unit.slice_indices[0]}")

    def _unit_slices(self, unit: casework.WorkUnit):
        case, where = unit.case, f"{unit.plane} slices {unit.slice_indices[0]}-{unit.slice_indices[-1]}"
        try:
            records = casework.unit_records(unit, self._load)
        except PipelineError as exc:  # validated when planned: only an input changed or removed since lands here
            yield quarantined(case, "load", exc.reason, f"{where}: {exc}")
            return
        n_records = 0
        try:
            for record in records:
                yield record
                n_records += 1
                yield from self._label_losses(case, record)
        except QUARANTINED_EXCEPTIONS as exc:  # a bug while cutting a validated case: say how much got out
            error = unexpected_message("load", case, type(exc), repr(exc), traceback.format_exception(exc))
            yield quarantined(
                case,
                "load",
                Reason.UNEXPECTED_ERROR,
                f"{where}: cutting stopped after {n_records} slices (those are kept): {error}",
            )
        count(case.dataset, "slices", "ok", n_records)

    def _label_losses(self, case: CaseRef, record: SliceRecord):
        content = record.content
        if content.labels_lost and content.sequence == case.sequences[0].name:
            yield quarantined(
                case,
                "load",
                Reason.LABEL_LOST_IN_RESAMPLING,
                f"labels {list(content.labels_lost)} vanish from {content.plane} slice "
                f"{content.slice_index} at {self._load.spacing} mm; pairs of that slice lack them. "
                "Use a finer --spacing.",
            )


class ExtractSlices(beam.PTransform):
    """WorkUnit -> SliceRecord (one per slice and sequence of the unit), in the unit's own split.

    Streamed: a big unit's slices would not fit in memory together. An error while cutting is
    quarantined saying how many slices got out.
    """

    def __init__(
        self,
        load: casework.LoadSettings,
        storage_settings: storage.StorageSettings = storage.StorageSettings(),
        progress: ProgressMarks = ProgressMarks(),
    ):
        super().__init__()
        self._fn = _ExtractSlicesFn(load, storage_settings, progress)

    def expand(self, units):
        return units | Guarded("load", self._fn, stream=True)


class _EncodePngFn(beam.DoFn):
    def __init__(self, spill_folder: str | None):
        self._spill_folder, self._spill = spill_folder, None
        self._encode_ms = Metrics.distribution(NAMESPACE, "png_ms_per_slice")

    def start_bundle(self):
        self._spill = spill.SpillFile(self._spill_folder) if self._spill_folder else None

    def process(self, record: SliceRecord):
        if record.pointer:  # published without pixels: nothing to encode
            yield dataclasses.replace(record, content=dataclasses.replace(record.content, pixels=None))
            return
        started = time.monotonic()
        content = record.content.with_png()
        if self._spill is not None:
            content = dataclasses.replace(content, png=self._spill.put(content.png))
        self._encode_ms.update(int(1000 * (time.monotonic() - started)))
        yield dataclasses.replace(record, content=content)

    def finish_bundle(self):
        if self._spill is not None:
            self._spill.close()


class EncodePng(beam.PTransform):
    """SliceRecord -> SliceRecord with its PNG, in the fused slice step (the pixels are dropped once encoded);
    with a `spill_folder`, the PNG is written there and the record carries a `SpilledPng` (`pipeline.spill`)."""

    def __init__(self, spill_folder: str | None = None):
        super().__init__()
        self._spill_folder = spill_folder

    def expand(self, slices):
        return slices | beam.ParDo(_EncodePngFn(self._spill_folder))


class _DeriveBoxesFn(QuarantiningFn):
    def __init__(self):
        self._boxes = Metrics.distribution(NAMESPACE, "boxes_per_slice")

    def process(self, record: SliceRecord):
        pairs, dropped = row_builders.detection_pairs(record)
        count(record.case.dataset, "detection", "pairs", len(pairs))
        self._boxes.update(len(pairs))
        if pairs:
            yield RowBundle.of(pairs)
        for sample_id, rejection in dropped:  # the conventions' filter: counted and kept in quarantine
            yield quarantined(record, "detection", rejection.reason, rejection.detail, sample_id)


class DeriveBoxes(beam.PTransform):
    """SliceRecord -> the slice's detection rows (one `RowBundle` per slice), one per connected component of each
    label; pairs dropped by the conventions' single-instance filter go to quarantine (`not_single_instance`)."""

    def expand(self, slices):
        return slices | Guarded("detection", _DeriveBoxesFn())


class _DeriveLesionSizesFn(QuarantiningFn):
    def process(self, record: SliceRecord):
        pairs, rejected = row_builders.lesion_rows(record)
        count(record.case.dataset, "tumor_lesion_size", "pairs", len(pairs))
        if pairs:
            yield RowBundle.of(pairs)
        for sample_id, rejection in rejected:
            yield quarantined(record, "tumor_lesion_size", rejection.reason, rejection.detail, sample_id)


class DeriveLesionSizes(beam.PTransform):
    """SliceRecord -> the slice's tumour/lesion size rows (one `RowBundle` per slice), one per component of a target
    label; guarded fits quarantined."""

    def expand(self, slices):
        return slices | Guarded("tumor_lesion_size", _DeriveLesionSizesFn())


class _DeriveLandmarkMeasuresFn(QuarantiningFn):
    def process(self, record: SliceRecord):
        pairs = row_builders.measurement_rows(record)
        if pairs:
            count(record.case.dataset, "angle_distance", "pairs", len(pairs))
            yield RowBundle.of(pairs)


class DeriveLandmarkMeasures(beam.PTransform):
    """SliceRecord -> the angle/distance rows of the measurements shown on that slice (one `RowBundle` per slice)."""

    def expand(self, slices):
        return slices | Guarded("angle_distance", _DeriveLandmarkMeasuresFn())


class SlicePairs(beam.PTransform):
    """WorkUnit -> (pair bundles of each task, quarantine rows of each step): ExtractSlices, EncodePng
    and the derive step of each of `tasks`, which a runner fuses, so no pixels leave a worker before the write.
    (The PCollections are returned unflattened: the caller flattens them once, with other sources.)"""

    def __init__(
        self,
        load: casework.LoadSettings,
        storage_settings: storage.StorageSettings = storage.StorageSettings(),
        progress: ProgressMarks = ProgressMarks(),
        spill_folder: str | None = None,
        tasks: tuple[str, ...] = TASKS,
    ):
        super().__init__()
        self._load, self._storage_settings, self._progress = load, storage_settings, progress
        self._spill_folder, self._tasks = spill_folder, tasks

    def expand(self, units):
        slices, cut_quarantine = units | "ExtractSlices" >> ExtractSlices(
            self._load, self._storage_settings, self._progress
        )
        slices = slices | "EncodePng" >> EncodePng(self._spill_folder)
        derived = [slices | name >> derive() for task, name, derive in _DERIVE_STEPS if task in self._tasks]
        return tuple(pairs for pairs, _ in derived), (cut_quarantine, *(quarantine for _, quarantine in derived))


class CutUnits(beam.PTransform):
    """Case plans -> (pair bundles, quarantine rows): every planned work unit through `SlicePairs`.

    A big case's units, not its slices, cross a shuffle: its slices are cut, encoded and measured on many
    workers, each decoding the case again. With `LoadSettings.cut_here_below_voxels` (the DirectRunner's
    default), a smaller case's units are cut in the step that planned it, from its decode.
    """

    def __init__(
        self,
        load: casework.LoadSettings,
        storage_settings: storage.StorageSettings,
        progress: ProgressMarks,
        *,
        spill_folder: str | None,
        tasks: tuple[str, ...] = TASKS,
    ):
        super().__init__()
        self._slice_pairs = functools.partial(
            SlicePairs, load, storage_settings, progress, spill_folder=spill_folder, tasks=tasks
        )
        self._cut_here, self._spread = load.some_cut_here, load.some_spread

    def expand(self, plans):
        branches = []
        if self._spread:  # only where some case can spread: a one-worker build's graph is the smaller for it
            branches.append(
                plans
                | "Units" >> beam.FlatMap(lambda plan: plan.units if plan.spread else ())
                | "SpreadUnits" >> beam.Reshuffle()
                | "SlicePairs" >> self._slice_pairs()
            )
        if self._cut_here:
            branches.append(
                plans
                | "UnitsHere" >> beam.FlatMap(lambda plan: () if plan.spread else plan.units)
                | "SlicePairsHere" >> self._slice_pairs()
            )
        pairs = [bundles for branch_pairs, _ in branches for bundles in branch_pairs] | "AllPairs" >> beam.Flatten()
        quarantine = [
            rows for _, branch_quarantine in branches for rows in branch_quarantine
        ] | "AllCutQuarantine" >> beam.Flatten()
        return pairs, quarantine


_DERIVE_STEPS = (
    ("detection", "DeriveBoxes", DeriveBoxes),
    ("tumor_lesion_size", "DeriveLesionSizes", DeriveLesionSizes),
    ("angle_distance", "DeriveLandmarkMeasures", DeriveLandmarkMeasures),
)


class _ValidatePairsFn(QuarantiningFn):
    def process(self, batch: list[RowBundle]):
        rows = [bundle.full_rows() for bundle in batch]
        problems = iter(batch_problems([row for bundle_rows in rows for row in bundle_rows]))
        for bundle, bundle_rows in zip(batch, rows):
            found = [next(problems) for _ in bundle_rows]
            for row, row_problems in zip(bundle_rows, found):
                if row_problems:
                    yield quarantined(row, "validate", Reason.INVALID_PAIR, "; ".join(row_problems))
            valid = [index for index, row_problems in enumerate(found) if not row_problems]
            if valid:
                yield bundle.keeping(valid)


class ValidatePairs(beam.PTransform):
    """Bundles of rows (a slice's pairs of one task) -> bundles of the valid rows; rows that break the schema
    or a task invariant go to quarantine, never to the output.

    Bundles are batched up to `max_rows` rows, each checked against its table's Arrow schema in one
    conversion: a conversion has a fixed cost whatever its size, and most slices make one or two pairs.
    """

    def __init__(self, max_rows: int = 256):
        super().__init__()
        self._max_rows = max_rows

    def expand(self, pairs):
        return (
            pairs
            # Fixed-size batches: letting BatchElements grow them from 1 raised the DirectRunner's peak RSS
            # several-fold on a 512x512x300 CT (benchmarks/scaling.py).
            | "Batch"
            >> beam.BatchElements(
                min_batch_size=self._max_rows, max_batch_size=self._max_rows, element_size_fn=len, record_metrics=False
            )
            | Guarded("validate", _ValidatePairsFn())
        )


class DuplicateSampleIdError(RuntimeError):
    """Two pairs share a sample_id: ids would not identify pairs, so the run must fail."""


def _fail_on_duplicates(sample_id_and_examples):
    sample_id, examples = sample_id_and_examples
    if len(examples) > 1:
        raise DuplicateSampleIdError(f"sample_id {sample_id} is shared by {examples[0]} and {examples[1]}")


class CheckUniqueIds(beam.PTransform):
    """Bundles of pairs -> fails the run, naming both offenders, when two pairs have the same sample_id."""

    def expand(self, pairs):
        return (
            pairs
            | "IdAndOrigin"
            >> beam.FlatMap(
                lambda bundle: [
                    (
                        row["sample_id"],
                        "/".join(
                            str(row.get(key))
                            for key in ("dataset", "case_id", "sequence", "plane", "slice_index", "label")
                        ),
                    )
                    for row in bundle.rows
                ]
            )
            | "TwoPerId" >> beam.combiners.Sample.FixedSizePerKey(2)
            | "FailOnDuplicate" >> beam.Map(_fail_on_duplicates)
        )
