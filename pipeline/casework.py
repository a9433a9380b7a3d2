"""One case from storage to slice records, without Beam: planning a case into work units, and
cutting a unit's slices.

The Beam stages (`PlanCases`, `ExtractSlices`) and `--dry-run`'s sampling all use it, so a dry
run's pair estimate comes from exactly the code that builds the pairs.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import math
import threading
import traceback
from typing import Iterable, Iterator, NamedTuple

from pipeline import storage
from pipeline.version import __version__
from schemas import rows as row_builders
from transforms import deadline, ids
from transforms.caseref import CaseRef, ReadPolicy
from transforms.errors import PipelineError, Reason
from transforms.intensity import Window
from transforms.loading import LoadedCase, Unmeasured, load_case
from transforms.medvision import CONVENTIONS
from transforms.pair_estimate import PairEstimate, estimate_pairs
from transforms.planes import SpacingMode
from transforms.slicing import (
    SliceRecord,
    case_windows,
    check_output_geometry,
    extract_slices,
    place_measurements,
    slice_plan,
)
from transforms.tracebacks import describe_exception


@contextlib.contextmanager
def local_copy(uri: str, policy: ReadPolicy, root: str = ""):
    """(local path, sha256) of an input confined to the source `root`; a missing object is `missing_file`."""
    try:  # an input (or an archived series expanded) may hold at most the memory budget's bytes
        with storage.localized(
            uri, policy.max_voxels * 4 if policy.max_voxels else storage.DEFAULT_MAX_INPUT_BYTES, root
        ) as copy:
            yield copy
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise PipelineError(Reason.MISSING_FILE, "input file does not exist", uri) from exc
    except PermissionError as exc:  # one unreadable input is its case's problem, not the storage's
        raise PipelineError(Reason.UNREADABLE, "input file is not readable (permission denied)", uri) from exc


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoadSettings:
    """How a case is planned and cut into slice records.

    With `publish`, slices of a source that may not be redistributed become pointer records
    (their rows carry no pixels). `conventions` names a `transforms.medvision.CONVENTIONS` entry,
    `prompt_style` the template set of the prompt and answer columns.
    """

    spacing: SpacingMode
    split_salt: str
    params_hash: str
    policy: ReadPolicy = ReadPolicy()
    publish: bool = False
    conventions: str = "default"
    prompt_style: str = "default"  # a schemas.prompts.PROMPT_STYLES entry
    # A plane with more slices is cut in several work units. Each unit decodes its case again where units
    # scatter, so a unit must be long enough to pay for that: on a 512x512x300 CT and two 256x256x100,
    # units of 128 / 256 / 512 slices cost 24.8 / 20.5 / 16.8 CPU s (benchmarks/unit_scaling.py).
    max_slices_per_unit: int = 512
    # Cases decoded to fewer voxels (all sequences) are cut right where they were planned, from the
    # plan's decode; larger ones spread their units over workers. 0: every case spreads.
    cut_here_below_voxels: float = 0  # inf: none spreads

    def spreads(self, voxels: float) -> bool:
        """Whether a case decoded to `voxels` spreads its units over workers (else it is cut where planned)."""
        return voxels >= self.cut_here_below_voxels

    @property
    def some_cut_here(self) -> bool:
        """Whether any case can be cut where planned (0: every case spreads)."""
        return self.cut_here_below_voxels > 0

    @property
    def some_spread(self) -> bool:
        """Whether any case can spread (inf: every case is cut where planned)."""
        return self.cut_here_below_voxels != math.inf

    def pointers_only(self, case: CaseRef) -> bool:
        """Whether the case's rows are published without pixels."""
        return self.publish and not case.redistributable


class InputDigest(NamedTuple):
    """The sha256 of an input as the plan read it: a unit must read the same bytes."""

    uri: str
    sha256: str


class VolumeHash(NamedTuple):
    sequence: str
    volume_hash: str  # `ids.volume_hash`


class SequenceWindow(NamedTuple):
    sequence: str
    window: Window  # of the whole volume


class CaseSlices(NamedTuple):
    """A case's slice records, unit after unit, and the measurements its landmarks could not define."""

    records: Iterator[SliceRecord]
    unmeasured: tuple[Unmeasured, ...]


@dataclasses.dataclass(frozen=True)
class WorkUnit:
    """A run of consecutive slices of one plane of a case, with what its rows need from the whole case.

    A big case's units are spread over workers, so its slices are cut and encoded in parallel; each
    unit decodes the case again (`load`, cached per worker thread). See `CasePlan.spread`.
    """

    case: CaseRef
    plane: str
    slice_indices: tuple[int, ...]
    split: str  # before `ids.shared_split_overrides`
    provenance: dict
    sha256_by_uri: tuple[InputDigest, ...]  # what the plan read: a unit must read the same bytes
    volume_hashes: tuple[VolumeHash, ...]
    windows: tuple[SequenceWindow, ...]


@dataclasses.dataclass(frozen=True)
class CasePlan:
    """A validated case: its work units, the split memberships of its volumes, the measurements its
    landmarks could not define, and an estimate of its pairs."""

    case: CaseRef
    units: tuple[WorkUnit, ...]
    memberships: tuple[ids.Membership, ...]
    unmeasured: tuple[Unmeasured, ...]
    n_slices: int  # over all units and sequences
    split: str  # before `ids.shared_split_overrides`
    pair_estimate: tuple[PairEstimate, ...]  # what the write sizes its files from
    spread: bool  # its units are spread over workers; else cut where planned (`cut_here_below_voxels`)


_last_load = threading.local()


def load(case: CaseRef, settings: LoadSettings) -> tuple[LoadedCase, dict[str, str]]:
    """The case decoded into the canonical frame, and the sha256 of each input.

    The last case a worker thread loaded is kept, so consecutive units of one case decode it once;
    it is dropped before another case is decoded, so a thread never holds two.
    """
    key = (case, settings.policy)
    if getattr(_last_load, "entry", None) is not None and _last_load.entry[0] == key:
        return _last_load.entry[1]
    drop_cached_case()  # no local may keep the old case alive while the next one is decoded
    if case.listing_error:
        raise PipelineError(Reason(case.listing_error[0]), case.listing_error[1], case.image_uri)
    with deadline.limit(settings.policy.max_read_seconds, case.image_uri), contextlib.ExitStack() as stack:
        copies = {
            uri: stack.enter_context(local_copy(uri, settings.policy, case.source_root)) for uri in case.input_uris()
        }
        with decoding(case):
            loaded = load_case(case, {uri: path for uri, (path, _) in copies.items()}, settings.policy)
    _last_load.entry = (key, (loaded, {uri: digest for uri, (_, digest) in copies.items()}))
    return _last_load.entry[1]


@contextlib.contextmanager
def decoding(case: CaseRef):
    """Every failure of decoding a case's local copies is that case's quarantine row.

    The inputs were read whole (hashed) just before, so nothing that fails now is the storage: an
    OSError is a file shorter than it claims, MemoryError a file that decodes past the memory left,
    and any other exception a file a library could not parse (pydicom's InvalidDicomError, struct
    errors, ...). Messages name the exception type and where it was raised, never its text.
    """
    try:
        yield
    except PipelineError:
        raise
    except MemoryError as exc:
        raise PipelineError(Reason.TOO_LARGE, "decoding ran out of memory", case.image_uri) from exc
    except Exception as exc:
        reason = Reason.TRUNCATED_FILE if isinstance(exc, (OSError, EOFError)) else Reason.UNREADABLE
        where = describe_exception(type(exc), traceback.format_exception(exc))
        raise PipelineError(reason, f"cannot be decoded: {where}", case.image_uri) from exc


def drop_cached_case() -> None:
    """Forget this thread's last loaded case (the next `load` reads its inputs again)."""
    _last_load.entry = None


def split_into_units(indices: tuple[int, ...], max_slices: int) -> list[tuple[int, ...]]:
    """Consecutive runs of about equal length, none longer than `max_slices`."""
    n_units = max(1, -(-len(indices) // max_slices))
    bounds = [round(k * len(indices) / n_units) for k in range(n_units + 1)]
    return [indices[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def plan_case(case: CaseRef, settings: LoadSettings) -> CasePlan:
    """Load and validate a case (bad input raises `PipelineError` here) and cut its slice plan into units."""
    loaded, digests = load(case, settings)
    display = CONVENTIONS[settings.conventions].display
    check_output_geometry(loaded, settings.spacing, display)
    split = ids.subject_split(case.dataset, case.subject_id, settings.split_salt, case.official_split)
    provenance = row_builders.provenance(
        case,
        loaded.geometry,
        digests,
        str(settings.spacing),
        __version__,
        settings.params_hash,
        settings.conventions,
        settings.prompt_style,
    )
    hashes = tuple(
        VolumeHash(name, ids.volume_hash(volume.array, volume.affine_ras)) for name, volume in loaded.images.items()
    )
    windows = tuple(SequenceWindow(name, window) for name, window in case_windows(loaded).items())
    placed = place_measurements(loaded, settings.spacing, display)
    plan = slice_plan(loaded, placed)
    estimate = estimate_pairs(
        loaded, settings.spacing, display, plan, placed, dict(windows), with_pixels=not settings.pointers_only(case)
    )
    units = tuple(
        WorkUnit(
            case,
            plane,
            run,
            split,
            provenance,
            tuple(InputDigest(*item) for item in sorted(digests.items())),
            hashes,
            windows,
        )
        for plane, indices in plan.items()
        for run in split_into_units(indices, settings.max_slices_per_unit)
    )
    memberships = tuple(
        ids.Membership(volume_hash, case.dataset, case.subject_id, split, case.official_split is not None)
        for _, volume_hash in hashes
    )
    n_slices = len(case.sequences) * sum(len(unit.slice_indices) for unit in units)
    voxels = sum(volume.array.size for volume in loaded.images.values())
    return CasePlan(
        case,
        units,
        memberships,
        loaded.unmeasured,
        n_slices,
        split,
        estimate,
        spread=settings.spreads(voxels),
    )


def unit_records(unit: WorkUnit, settings: LoadSettings) -> Iterator[SliceRecord]:
    """The unit's slice records, cut one at a time as the iterator is consumed, in the unit's own split
    (the pairs take a split shared with another dataset's subject later, see `pipeline.stages`)."""
    loaded, digests = load(unit.case, settings)
    changed = [uri for uri, digest in unit.sha256_by_uri if digests.get(uri) != digest]
    if changed:
        raise PipelineError(
            Reason.INPUT_CHANGED,
            "input changed while the build ran (its sha256 differs from "
            "the one the case was planned with); rebuild from a stable copy",
            changed[0],
        )
    pointer = settings.pointers_only(unit.case)
    hashes = dict(unit.volume_hashes)
    conventions = CONVENTIONS[settings.conventions]
    contents = extract_slices(
        loaded,
        settings.spacing,
        conventions.display,
        {unit.plane: unit.slice_indices},
        dict(unit.windows),
        measure_several=not conventions.single_instance_only,
        measurement=conventions.lesion_measurement,
    )
    return (
        SliceRecord(unit.case, unit.split, unit.provenance, content, pointer, hashes[content.sequence])
        for content in contents
    )


def slice_records(case: CaseRef, settings: LoadSettings) -> CaseSlices:
    """All slice records of a case, unit after unit (what a build emits for it, without shared splits),
    and the measurements its landmarks could not define. Bad input raises `PipelineError` here."""
    plan = plan_case(case, settings)
    return CaseSlices(
        itertools.chain.from_iterable(unit_records(unit, settings) for unit in plan.units), plan.unmeasured
    )


def pair_counts(records: Iterable[SliceRecord]) -> collections.Counter:
    """Pairs per task that these slice records make (before validation)."""
    counts: collections.Counter[str] = collections.Counter()
    for record in records:
        counts["detection"] += len(row_builders.detection_rows(record))
        counts["tumor_lesion_size"] += len(row_builders.lesion_rows(record)[0])
        counts["angle_distance"] += len(row_builders.measurement_rows(record))
    return +counts
