"""ISLES 2024: ischaemic stroke, follow-up DWI and ADC with the infarct mask.

Cite: Riedel E.O. et al., "ISLES'24 - A Real-World Longitudinal Multimodal Stroke Dataset",
arXiv:2408.11142 (2024).

Three layouts are in circulation, each pairing a mask with the images on its own grid:

- **Zenodo** (the release on zenodo.org today): the infarct mask is registered to the acute NCCT,
  `derivatives/sub-stroke<NNNN>/ses-02/sub-stroke<NNNN>_ses-02_space-ncct_lesion-msk.nii.gz`, next to
  DWI and ADC registered to that grid, `..._space-ncct_{dwi,adc}.nii.gz`. The raw follow-up MRI under
  `raw_data/` is on another grid, so it is not paired with that mask.
- **Challenge BIDS** (the Grand Challenge download): raw `raw_data/` (or `rawdata/`)
  `sub-stroke<NNNN>/ses-02/..._{dwi,adc}.nii.gz` and the mask on their grid,
  `derivatives/.../sub-stroke<NNNN>_ses-02_lesion-msk.nii.gz`.
- **MedVision's mirror** (HF `YongchengYAO/ISLES24-MR-Lite`): `Images-ADC/`, `Images-DWI/`, `Masks/`
  holding `sub-stroke<NNNN>_ses-02_{adc,dwi,lesion-msk}.nii.gz`.

Session and subject spellings of the challenge's documentation (`ses-0002`, `sub-strokecase<NNNN>`)
are accepted, and files may sit in extra folders (`dwi/`). A case found in several layouts under
one root is taken from the first that pairs it, in the order above. The acute CT of ses-01 is not
used.
"""

from __future__ import annotations

import dataclasses
import re

from pipeline.sources.base import SourceInfo
from pipeline.sources.layout import LayoutSource, Series
from transforms.caseref import CaseRef, ListingError
from transforms.errors import Reason

CASE = r"(?P<case>(?P<subject>sub-stroke(?:case)?\d{4})_ses-(?:02|0002))"
ANY = r"(?:[^/]+/)*"
LABELS = {1: "stroke infarct"}
REGISTERED_MASK = rf"derivatives/{ANY}{CASE}_space-ncct_lesion-msk\.nii\.gz"


def _series(name: str, suffix: str) -> tuple[Series, ...]:
    """The series of one sequence in each layout, in order of preference."""
    image_mask_patterns = (
        (rf"derivatives/{ANY}{CASE}_space-ncct_{suffix}\.nii\.gz", REGISTERED_MASK),
        (rf"(?:raw_data|rawdata)/{ANY}{CASE}_{suffix}\.nii\.gz", rf"derivatives/{ANY}{CASE}_lesion-msk\.nii\.gz"),
        (rf"Images-{name}/{CASE}_{suffix}\.nii\.gz", rf"Masks/{CASE}_lesion-msk\.nii\.gz"),
    )
    return tuple(
        Series(name, "MRI", image=image, mask=mask, labels=LABELS, case_id="{case}/" + name, subject_id="{subject}")
        for image, mask in image_mask_patterns
    )


SERIES = (*_series("ADC", "adc"), *_series("DWI", "dwi"))


def preferred(candidates: list[CaseRef]) -> CaseRef:
    """The first candidate (layout order) whose image has its mask, else the first."""
    return next((case for case in candidates if not case.listing_error), candidates[0])


def explained(case: CaseRef, registered_masks: set[str]) -> CaseRef:
    """A raw image without a mask on its grid, whose case has a mask on the NCCT grid, says so."""
    if not case.listing_error or case.listing_error[0] != Reason.MISSING_FILE.value:
        return case
    name, sequence = case.case_id.split("/", 1)
    if name not in registered_masks:
        return case
    message = (
        f"the lesion mask of {name} is registered to the acute NCCT grid (space-ncct), and no {sequence} "
        f"on that grid was found ({name}_space-ncct_{sequence.lower()}.nii.gz under derivatives/); the raw "
        f"{sequence} is on another grid"
    )
    return dataclasses.replace(case, listing_error=ListingError(Reason.MISSING_FILE.value, message))


class Isles24Source(LayoutSource):
    info = SourceInfo(
        name="isles24",
        anatomy="brain (ischaemic stroke)",
        modalities=("MRI",),
        tasks=("detection",),
        licence="CC-BY-NC-SA-4.0",
        redistributable=True,
        citation="Riedel et al., ISLES'24, arXiv:2408.11142",
    )
    layout = (
        "Zenodo: derivatives/sub-strokeNNNN/ses-02/…_space-ncct_{dwi,adc,lesion-msk}.nii.gz; challenge: "
        "raw_data/sub-strokeNNNN/ses-02/…_{dwi,adc}.nii.gz, derivatives/…_lesion-msk.nii.gz; MedVision "
        "mirror: Images-{ADC,DWI}/, Masks/"
    )
    series = SERIES

    def resolved(self, cases: list[CaseRef], paths: list[str]) -> list[CaseRef]:
        by_id: dict[str, list[CaseRef]] = {}
        for case in cases:  # in series order: layouts by preference
            by_id.setdefault(case.case_id, []).append(case)
        registered = re.compile(rf"(?:^|/){REGISTERED_MASK}\Z")
        masks = {match.group("case") for match in map(registered.search, paths) if match}
        return [explained(preferred(found), masks) for found in by_id.values()]
