"""Every source's listing, made safe to build from whatever the names and index files under its root hold.

`checked_cases(source, root)` lists a source through its adapter, then:
- an adapter that fails on something it reads while listing (an index file that is not JSON or CSV,
  a field of the wrong type) gives one `bad_listing` case standing for the whole source, instead of
  an exception that ends the run; a root with no recognisable layout stays a usage error (`SourceError`);
- a case whose names or paths are not valid UTF-8 (file names in another encoding) is refused
  (`bad_listing`) under a printable id: such text cannot be written to any output;
- cases that claim one case id are all refused (`bad_listing`), each under an id of its own: which one
  is meant is not for the pipeline to guess;
- names within a label map, and within a case's sequences, are made unique: two labels of one name
  would give identical prompts with different answers (`tumor`, `tumor` -> `tumor (label 1)`,
  `tumor (label 2)`), two sequences of one name would give one sample id to two pairs.
Adapters that can (MSD) also quarantine one task of a source rather than all of it.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import logging
import traceback
from typing import TypeVar

from pipeline.sources.base import Source, SourceError
from transforms.caseref import CaseRef, LabelName, ListingError, label_name_key
from transforms.errors import Reason
from transforms.tracebacks import describe_exception

LOG = logging.getLogger(__name__)
Key = TypeVar("Key")  # what names a pair: a label value, a sequence position
# What an adapter raises on a malformed index file or name; I/O errors (OSError) are not caught.
LISTING_ERRORS = (ValueError, TypeError, LookupError, AttributeError, RecursionError, csv.Error)
WHOLE_SOURCE_CASE_ID = "(listing)"
SHOWN_CLAIMS = 3
MAX_RENAMING_ROUNDS = 8


def checked_cases(source: Source, root: str) -> list[CaseRef]:
    """The cases of `source` under `root`, sorted by case id; raises SourceError for a root that is not
    one of the source's layouts."""
    try:
        cases = source.list_cases(root)
    except SourceError:
        raise
    except LISTING_ERRORS as exc:
        LOG.warning("listing %s under %s failed", source.info.name, root, exc_info=True)
        why = describe_exception(type(exc), traceback.format_exception(exc))
        cases = [
            CaseRef(
                dataset=source.info.name,
                case_id=WHOLE_SOURCE_CASE_ID,
                subject_id=WHOLE_SOURCE_CASE_ID,
                image_uri=root,
                mask_uri="",
                sequences=(),
                labels=(),
                licence=source.info.licence,
                listing_error=ListingError(
                    Reason.BAD_LISTING.value,
                    f"listing the source failed ({why}); the log names the file; no case of this source was listed",
                ),
            )
        ]
    cases = [refuse_unencodable(with_unique_names(case)) for case in cases]
    return sorted(refuse_shared_ids(cases), key=lambda case: case.case_id)


def unique_names(named: tuple[tuple[Key, str], ...], what: str) -> tuple[tuple[Key, str], ...]:
    """(key, name) pairs whose names are distinct (compared ignoring case and separators, as SEG
    segments are matched): every name shared by several keys gets ` ({what} {key})`, and a blank name
    becomes `{what} {key}`. Pairs already distinct come back unchanged."""
    named = tuple((key, name if name.strip() else f"{what} {key}") for key, name in named)
    for _ in range(MAX_RENAMING_ROUNDS):
        counts = collections.Counter(label_name_key(name) for _, name in named)
        if max(counts.values(), default=0) <= 1:
            return named
        named = tuple(
            (key, f"{name.strip()} ({what} {key})" if counts[label_name_key(name)] > 1 else name) for key, name in named
        )
    return tuple((key, f"{what} {key}") for key, _ in named)  # names built to collide: keys alone


def with_unique_names(case: CaseRef) -> CaseRef:
    """The case with unique label names (by label value) and sequence names (by position)."""
    labels = unique_names(tuple((value, str(name)) for value, name in case.labels), "label")
    names = unique_names(tuple(enumerate(str(sequence.name) for sequence in case.sequences)), "sequence")
    sequences = tuple(
        sequence if sequence.name == name else dataclasses.replace(sequence, name=name)
        for sequence, (_, name) in zip(case.sequences, names)
    )
    if labels == case.labels and sequences == case.sequences:
        return case
    return dataclasses.replace(case, labels=tuple(LabelName(*label) for label in labels), sequences=sequences)


def _texts(value):
    if isinstance(value, str):
        yield value
    elif dataclasses.is_dataclass(value):
        for field in dataclasses.fields(value):
            yield from _texts(getattr(value, field.name))
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _texts(item)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str) -> str:
    """Text with undecodable bytes (surrogate escapes of a non-UTF-8 file name) shown as `\\xff`."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte (a JSON `\\ud800`)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def refuse_unencodable(case: CaseRef) -> CaseRef:
    """The case, or a `bad_listing` case of printable ids when any of its text is not valid UTF-8."""
    if all(_is_utf8(text) for text in _texts(case)):
        return case
    return CaseRef(
        dataset=printable(case.dataset),
        case_id=printable(case.case_id),
        subject_id=printable(case.subject_id),
        image_uri=printable(case.image_uri),
        mask_uri="",
        sequences=(),
        labels=(),
        licence=printable(case.licence),
        redistributable=case.redistributable,
        listing_error=ListingError(
            Reason.BAD_LISTING.value,
            "a name or path of this case is not valid UTF-8 (shown "
            "with \\x escapes): rename the file, or fix the name in the index",
        ),
    )


def refuse_shared_ids(cases: list[CaseRef]) -> list[CaseRef]:
    """Cases of unique ids as they are; cases sharing an id, each refused under `<id>#<n>` (n by image
    and mask URI, so the listing's order does not matter), with a suffix no other case has."""
    claims = collections.defaultdict(list)
    for case in cases:
        claims[case.case_id].append(case)
    taken = set(claims)
    checked = []
    for case_id, claimants in claims.items():
        if len(claimants) == 1:
            checked += claimants
            continue
        claimants = sorted(claimants, key=lambda case: (case.image_uri, case.mask_uri))
        shown = ", ".join(case.image_uri for case in claimants[:SHOWN_CLAIMS])
        error = ListingError(
            Reason.BAD_LISTING.value,
            f"{len(claimants)} listed cases claim case id {case_id} (images: {shown}"
            f"{', ...' if len(claimants) > SHOWN_CLAIMS else ''}); which one is meant is ambiguous: "
            "rename or remove the others",
        )
        for number, case in enumerate(claimants, 1):
            unique = f"{case_id}#{number}"
            while unique in taken:
                unique += "#"
            taken.add(unique)
            checked.append(dataclasses.replace(case, case_id=unique, listing_error=error))
    return checked
