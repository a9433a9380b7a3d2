"""One case from storage to slice records: the work of the load stage, without Beam.

The Beam load stage and `--dry-run`'s sampling both use it, so a dry run's pair estimate
comes from exactly the code that builds the pairs.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
from typing import Iterable, Iterator

from pipeline import storage
from pipeline.version import __version__
from schemas import rows as row_builders
from transforms import ids
from transforms.case import CaseRef, ReadPolicy, SliceRecord, extract_slices, load_case
from transforms.errors import PipelineError, Reason
from transforms.medvision import CONVENTIONS
from transforms.planes import SpacingMode


@contextlib.contextmanager
def local_copy(uri: str, policy: ReadPolicy):
    """(local path, sha256) of an input; a missing object is `missing_file`."""
    try:  # an archived series may expand to at most the memory budget (float32 voxels, in bytes)
        with storage.localized(uri, policy.max_voxels * 4 if policy.max_voxels else
                               storage.DEFAULT_MAX_ARCHIVE_BYTES) as copy:
            yield copy
    except FileNotFoundError as exc:
        raise PipelineError(Reason.MISSING_FILE, "input file does not exist", uri) from exc


@dataclasses.dataclass(frozen=True)
class LoadSettings:
    """How the load stage turns a case into slice records.

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
    prompt_style: str = "default"  # a transforms.prompts.PROMPT_STYLES entry


def slice_records(case: CaseRef, settings: LoadSettings) -> tuple[Iterator[SliceRecord], tuple[tuple[str, str], ...]]:
    """The case's slice records, and the measurements its landmarks could not define.

    The case is read and validated now (bad input raises `PipelineError` here); the records are
    cut one at a time as the iterator is consumed, so a case's slices never sit in memory together.
    """
    if case.listing_error:
        raise PipelineError(Reason(case.listing_error[0]), case.listing_error[1], case.image_uri)
    with contextlib.ExitStack() as stack:
        copies = {uri: stack.enter_context(local_copy(uri, settings.policy)) for uri in case.input_uris()}
        loaded = load_case(case, {uri: path for uri, (path, _) in copies.items()}, settings.policy)
    split = ids.subject_split(case.dataset, case.subject_id, settings.split_salt, case.official_split)
    digests = {uri: digest for uri, (_, digest) in copies.items()}
    provenance = row_builders.provenance(case, loaded.geometry, digests, str(settings.spacing), __version__,
                                         settings.params_hash, settings.conventions, settings.prompt_style)
    pointer = settings.publish and not case.redistributable
    hashes = {name: ids.volume_hash(volume.array, volume.affine_ras) for name, volume in loaded.images.items()}
    records = (SliceRecord(case, split, provenance, content, pointer, hashes[content.sequence])
               for content in extract_slices(loaded, settings.spacing, CONVENTIONS[settings.conventions].display))
    return records, loaded.unmeasured


def pair_counts(records: Iterable[SliceRecord]) -> collections.Counter:
    """Pairs per task that these slice records make (before validation)."""
    counts = collections.Counter()
    for record in records:
        counts["detection"] += len(row_builders.detection_rows(record))
        counts["tumor_lesion_size"] += len(row_builders.lesion_rows(record)[0])
        counts["angle_distance"] += len(row_builders.measurement_rows(record))
    return +counts
