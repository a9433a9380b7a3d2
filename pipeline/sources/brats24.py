"""BraTS 2024: glioma (GLI, post-treatment), metastases (MET), meningioma RT (MEN-RT), paediatric (PED).

Cite: de Verdier M.C. et al., "The 2024 Brain Tumor Segmentation (BraTS) Challenge: Glioma
Segmentation on Post-treatment MRI", arXiv:2405.18368 (2024), and the MET, MEN-RT and PED
sub-challenge papers.

Raw layout: one folder per case and time point, `BraTS-<SUB>-<NNNNN>-<TTT>/` holding
`<case>-{t1c,t1n,t2f,t2w}.nii.gz` and `<case>-seg.nii.gz`; MEN-RT uses `_t1c` and `_gtv`
(t1c only). Label 1 means different things per sub-challenge, so each keeps its own map. The
subject is `BraTS-<SUB>-<NNNNN>` (the last three digits are the time point). T/L targets: t2f
for GLI, t1c for MET, MEN-RT and PED (MedVision's plan). macOS debris is ignored.
"""

from pipeline.sources.base import SourceInfo
from pipeline.sources.layout import LayoutSource, Series, labels_from

LABELS = {
    "GLI": labels_from(
        "1: non-enhancing tumor core; 2: surrounding non-enhancing flair hyperintensity; "
        "3: enhancing tumor tissue; 4: resection cavity"
    ),
    "MET": labels_from(
        "1: non-enhancing tumor core; 2: surrounding non-enhancing flair hyperintensity; 3: enhancing tumor tissue"
    ),
    "PED": labels_from("1: enhancing tumor; 2: non-enhancing tumor; 3: cystic component; 4: peritumoral edema"),
}
SEQUENCES = ("t1c", "t1n", "t2f", "t2w")
LESION_SEQUENCE = {"GLI": "t2f", "MET": "t1c", "PED": "t1c"}


def _series(sub: str, sequence: str) -> Series:
    case = rf"(?P<case>(?P<subject>BraTS-{sub}-\d{{5}})-\d{{3}})"
    return Series(
        sequence,
        "MRI",
        image=rf"{case}-{sequence}\.nii\.gz",
        mask=rf"{case}-seg\.nii\.gz",
        case_id="{case}/" + sequence,
        subject_id="{subject}",
        labels=LABELS[sub],
        lesion_labels=tuple(LABELS[sub]) if LESION_SEQUENCE[sub] == sequence else (),
    )


MEN_RT_CASE = r"(?P<case>(?P<subject>BraTS-MEN-RT-\d{4})-\d+)"


class Brats24Source(LayoutSource):
    info = SourceInfo(
        name="brats24",
        anatomy="brain",
        modalities=("MRI",),
        tasks=("detection", "tumor_lesion_size"),
        licence="LicenseRef-BraTS2024-Synapse-terms",
        redistributable=True,
        citation="de Verdier et al., BraTS 2024 post-treatment glioma, arXiv:2405.18368; MET, MEN-RT, PED",
    )
    layout = (
        "BraTS-{GLI,MET,PED}-NNNNN-TTT/<case>-{t1c,t1n,t2f,t2w,seg}.nii.gz, BraTS-MEN-RT-NNNN-N/<case>_{t1c,gtv}.nii.gz"
    )
    series = tuple(_series(sub, sequence) for sub in ("GLI", "MET", "PED") for sequence in SEQUENCES) + (
        Series(
            "t1c",
            "MRI",
            image=rf"{MEN_RT_CASE}_t1c\.nii\.gz",
            mask=rf"{MEN_RT_CASE}_gtv\.nii\.gz",
            case_id="{case}/t1c",
            subject_id="{subject}",
            labels={1: "gross tumor volume"},
            lesion_labels=(1,),
        ),
    )
