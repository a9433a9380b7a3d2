"""Declarative raw layouts: an adapter is mostly facts — where images and masks are, ids, labels, tasks.

A `Series` is one image series of a dataset (e.g. BraTS-GLI t1c, AMOS CT). Its `image` and
`mask` regexes match root-relative paths; their shared named groups (`key`) join an image to
its mask, and the groups fill the `case_id` and `subject_id` templates. Matching is on whole
path components at the end of the path, so the dataset may sit anywhere below the root
(`root/ACDC/database/training/patient001/...` and `root/patient001/...` both list).

Everything here is pure: `match_series` takes a file listing and returns `CaseRef`s, so the
listing rules are tested without storage. Bad listings never stop a run: an image without its
mask, or two images claiming one case, become cases with a `listing_error` (quarantined).
"""

from __future__ import annotations

import collections
import dataclasses
import re
from typing import Callable, Mapping, Optional

from pipeline import storage
from pipeline.sources.base import Source, SourceError
from transforms.caseref import CaseRef, ListingError, SequenceRef
from transforms.errors import Reason

# macOS archive debris ships inside several datasets (MSD, BraTS-PED): never data.
JUNK_COMPONENT = re.compile(r"(^|/)(\._[^/]*|__MACOSX|\.DS_Store)(/|$)")


@dataclasses.dataclass(frozen=True)
class Series:
    """One image series of a dataset in its raw layout, with its label map and tasks.

    `image`, `mask`: regexes over root-relative paths ('/' separated), matched at the end.
    `mask_parts`: per-structure binary masks; group `structure` names the file, `structures`
    maps it to a label value (merged first-wins by value). Used when a case has them; `mask`,
    if also given, is the fallback.
    `unlabelled`: "skip" when images without a mask are expected (e.g. a test folder listed
    with the training folder), "quarantine" when a missing mask is a defect.
    """

    sequence: str
    modality: str
    image: str
    labels: Mapping[int, str]
    mask: str = ""
    mask_parts: str = ""
    structures: Mapping[str, int] = dataclasses.field(default_factory=dict)
    key: tuple[str, ...] = ("case",)
    case_id: str = "{case}"
    subject_id: str = "{case}"
    lesion_labels: tuple[int, ...] = ()
    ct_window: Optional[str] = None
    split_group: str = ""  # group whose value names the official split, through `splits`
    splits: Mapping[str, str] = dataclasses.field(default_factory=dict)
    unlabelled: str = "quarantine"
    where: Optional[Callable[[dict], bool]] = None  # keep only images whose groups pass
    planes: tuple[str, ...] = ()  # planes to cut; () = all the volume has
    mask_placement: str = "exact"  # "nearest" where the dataset's masks are known to use another grid
    negatives_expected: bool = False  # empty masks occur by design (negative controls)


def _compile(pattern: str) -> re.Pattern:
    # \Z, not $: `$` also matches before a final newline, so `x.nii.gz\n` would list as `x`
    return re.compile(rf"(?:^|/){pattern}\Z")


def usable(paths: list[str]) -> list[str]:
    """Listing without archive debris (`._*`, `__MACOSX/`, `.DS_Store`)."""
    return [path for path in paths if not JUNK_COMPONENT.search(path)]


def _matches(pattern: str, paths: list[str]) -> list[tuple[str, dict]]:
    compiled = _compile(pattern)
    found = []
    for path in paths:
        match = compiled.search(path)
        if match:
            found.append((path, match.groupdict()))
    return found


def _key(series: Series, groups: dict) -> tuple:
    return tuple(groups[name] for name in series.key)


def _index_masks(series: Series, paths: list[str]) -> dict[tuple, list[str]]:
    masks: dict[tuple, list[str]] = {}
    for path, groups in _matches(series.mask, paths):
        masks.setdefault(_key(series, groups), []).append(path)
    return masks


def _index_parts(series: Series, paths: list[str]) -> dict[tuple, list[tuple[str, str]]]:
    parts: dict[tuple, list[tuple[str, str]]] = {}
    for path, groups in _matches(series.mask_parts, paths):
        parts.setdefault(_key(series, groups), []).append((groups["structure"], path))
    return parts


@dataclasses.dataclass(frozen=True)
class DatasetFacts:
    """What every case of a dataset shares: its name, licence, version."""

    name: str
    licence: str
    redistributable: bool
    version: Optional[str] = None


def match_series(series: Series, root: str, paths: list[str], facts: DatasetFacts) -> list[CaseRef]:
    """The cases of one series in a listing of root-relative `paths`.

    Two images claiming one case id are both refused (`bad_listing`): which one is right is not
    for the pipeline to guess.
    """
    masks = _index_masks(series, paths) if series.mask else {}
    parts = _index_parts(series, paths) if series.mask_parts else {}
    images = [
        (path, groups) for path, groups in _matches(series.image, paths) if series.where is None or series.where(groups)
    ]
    claims = collections.Counter(series.case_id.format(**groups) for _, groups in images)
    cases = []
    for path, groups in images:
        fields = _case_fields(series, root, path, groups, facts)
        if claims[fields["case_id"]] > 1:
            error = ListingError(
                Reason.BAD_LISTING.value, f"{claims[fields['case_id']]} images claim case {fields['case_id']}"
            )
            cases.append(
                CaseRef(mask_uri="", listing_error=error, **{**fields, "case_id": f"{fields['case_id']}#{path}"})
            )
            continue
        mask_fields = _mask_fields(series, root, _key(series, groups), masks, parts)
        if mask_fields is None:
            if series.unlabelled == "skip":
                continue
            mask_fields = dict(mask_uri="", listing_error=(Reason.MISSING_FILE.value, f"no mask for {path}"))
        cases.append(CaseRef(**fields, **mask_fields))
    return cases


def _case_fields(series: Series, root: str, path: str, groups: dict, facts: DatasetFacts) -> dict:
    return dict(
        dataset=facts.name,
        case_id=series.case_id.format(**groups),
        subject_id=series.subject_id.format(**groups),
        image_uri=storage.join(root, path),
        sequences=(SequenceRef(series.sequence, series.modality, ct_window=series.ct_window),),
        labels=tuple(sorted(series.labels.items())),
        lesion_labels=series.lesion_labels,
        licence=facts.licence,
        redistributable=facts.redistributable,
        dataset_version=facts.version,
        official_split=series.splits.get(groups.get(series.split_group) or ""),
        planes=series.planes,
        mask_placement=series.mask_placement,
        negatives_expected=series.negatives_expected,
    )


def _mask_fields(series: Series, root: str, key: tuple, masks: dict, parts: dict) -> Optional[dict]:
    """The mask of one case (`mask_parts` if the case has them, else `mask_uri`), None when it has
    none, or a listing error."""
    if series.mask_parts and key in parts:
        found = parts[key]
        unknown = sorted(name for name, _ in found if name not in series.structures)
        if unknown:
            return dict(
                mask_uri="",
                listing_error=(
                    Reason.UNKNOWN_LABEL.value,
                    f"structure masks not in the class list: {', '.join(unknown)}",
                ),
            )
        return dict(
            mask_uri="",
            mask_parts=tuple(sorted((series.structures[name], storage.join(root, path)) for name, path in found)),
        )
    if not series.mask:
        return None if series.mask_parts else dict(mask_uri="")
    found = masks.get(key, [])
    if len(found) > 1:
        return dict(mask_uri="", listing_error=(Reason.BAD_LISTING.value, f"several masks match: {', '.join(found)}"))
    return dict(mask_uri=storage.join(root, found[0])) if found else None


class LayoutSource(Source):
    """An adapter made of facts: `info`, the dataset's `series`, and optionally its version."""

    series: tuple[Series, ...] = ()
    version: Optional[str] = None

    def list_cases(self, root: str) -> list[CaseRef]:
        paths = usable(storage.list_tree(root))
        facts = DatasetFacts(self.info.name, self.info.licence, self.info.redistributable, self.version)
        cases = self.resolved(
            [case for series in self.series for case in self.cases_of(series, root, paths, facts)], paths
        )
        if not cases:
            found = f"{len(paths)} files, none in the layout" if paths else "no files"
            raise SourceError(
                f"no {self.info.name} data under {root} ({found}): expected {self.layout or 'the layout in README'}"
            )
        return sorted(cases, key=lambda case: case.case_id)

    def cases_of(self, series: Series, root: str, paths: list[str], facts: DatasetFacts) -> list[CaseRef]:
        """The cases of one series; adapters override this where a dataset needs code."""
        return match_series(series, root, paths, facts)

    def resolved(self, cases: list[CaseRef], paths: list[str]) -> list[CaseRef]:
        """The cases of every series, in series order; adapters whose dataset ships in several layouts
        choose here among cases that more than one layout lists."""
        return cases


def labels_from(names: str) -> dict[int, str]:
    """'1: liver; 2: kidney' -> {1: 'liver', 2: 'kidney'}: compact label maps in adapter modules."""
    pairs = (item.split(":", 1) for item in names.split(";") if item.strip())
    return {int(value): name.strip() for value, name in pairs}
