"""TopCoW 2024: circle of Willis vessels in CTA and TOF-MRA of the same patients.

Cite: Yang K. et al., "Benchmarking the CoW with the TopCoW Challenge: Topology-Aware Anatomical
Segmentation of the Circle of Willis for CTA and MRA", arXiv:2312.17670.

Raw layout: `imagesTr/topcow_{ct,mr}_<NNN>_0000.nii.gz` with `cow_seg_labelsTr/topcow_{ct,mr}_<NNN>.nii.gz`.
CTA and MRA of one patient share the number: one subject, two series. Label 4 is spelled
correctly ('artery'); values 13 and 14 are unused.
"""

from pipeline.sources.base import SourceInfo
from pipeline.sources.layout import LayoutSource, Series, labels_from

LABELS = labels_from(
    "1: basilar artery; 2: right posterior cerebral artery; 3: left posterior cerebral artery; "
    "4: right internal carotid artery; 5: right middle cerebral artery; 6: left internal carotid artery; "
    "7: left middle cerebral artery; 8: right posterior communicating artery; 9: left posterior communicating artery; "
    "10: anterior communicating artery; 11: right anterior cerebral artery; 12: left anterior cerebral artery; "
    "15: third a2 segment"
)


def _series(name: str, modality: str, token: str, window=None) -> Series:
    case = rf"(?P<case>topcow_{token}_(?P<number>\d{{3}}))"
    return Series(
        name,
        modality,
        image=rf"imagesTr/{case}_0000\.nii\.gz",
        mask=rf"cow_seg_labelsTr/{case}\.nii\.gz",
        subject_id="topcow_{number}",
        labels=LABELS,
        ct_window=window,
    )


class TopCow24Source(LayoutSource):
    info = SourceInfo(
        name="topcow24",
        anatomy="brain vessels (circle of Willis)",
        modalities=("MRI", "CT"),
        tasks=("detection",),
        licence="LicenseRef-TopCoW-opendata-swiss-terms",
        redistributable=True,
        citation="Yang et al., TopCoW challenge, arXiv:2312.17670",
    )
    layout = "imagesTr/topcow_{ct,mr}_NNN_0000.nii.gz, cow_seg_labelsTr/"
    series = (_series("MRA", "MRI", "mr"), _series("CTA", "CT", "ct", "angio"))
