"""HNTS-MRG 2024: head and neck T2w MRI before (preRT) and during (midRT) radiotherapy.

Cite: Wahid K.A. et al., "Overview of the Head and Neck Tumor Segmentation for Magnetic
Resonance Guided Applications (HNTS-MRG) 2024 Challenge", LNCS 15273 (2025).

Raw layout (HNTSMRG24_train.zip): `<id>/{preRT,midRT}/<id>_<phase>_T2.nii.gz` with
`<id>_<phase>_mask.nii.gz` (1 = GTVp, 2 = GTVn). The registered pre-RT copies in `midRT/`
are not used. Both phases of a patient share the subject. Some midRT masks are empty
(patients 21, 25, 29, 42, a complete response): recorded as `negative_case`, not a failure.
"""

from pipeline.sources.base import SourceInfo
from pipeline.sources.layout import LayoutSource, Series

LABELS = {1: "primary gross tumor volume", 2: "metastatic lymph node"}


def _phase(phase: str) -> Series:
    case = rf"(?P<case>\d+)/{phase}/(?P=case)_{phase}"
    return Series(
        f"{phase} T2",
        "MRI",
        image=case + r"_T2\.nii\.gz",
        mask=case + r"_mask\.nii\.gz",
        case_id="{case}/" + phase,
        subject_id="{case}",
        labels=LABELS,
        lesion_labels=(1, 2),
        negatives_expected=True,
    )


class Hntsmrg24Source(LayoutSource):
    info = SourceInfo(
        name="hntsmrg24",
        anatomy="head and neck",
        modalities=("MRI",),
        tasks=("detection", "tumor_lesion_size"),
        licence="CC-BY-NC-4.0",
        redistributable=True,
        citation="Wahid et al., HNTS-MRG 2024 challenge overview, LNCS 15273 (2025)",
    )
    layout = "<id>/{preRT,midRT}/<id>_<phase>_{T2,mask}.nii.gz"
    series = (_phase("midRT"), _phase("preRT"))
