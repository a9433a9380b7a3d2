"""CAMUS: 2D echocardiography, apical two- and four-chamber half sequences (ED to ES), all frames labelled.

Cite: Leclerc S. et al., "Deep Learning for Segmentation Using an Open Large-Scale Dataset in
2D Echocardiography", IEEE TMI 38(9), 2198-2210 (2019).

Raw layout: `database_nifti/patient<NNNN>/patient<NNNN>_{2CH,4CH}_half_sequence.nii.gz` with
`..._half_sequence_gt.nii.gz`. These are 2D+time stored as 3D (H x W x T): only the time
frames are cut (the axial plane of the stored grid); the space-time "planes" MedVision also
cuts are not anatomy. Both views of a patient share the subject. Label names follow CAMUS's
own convention (1 = LV endocardium/cavity, 2 = LV epicardium/myocardium, 3 = left atrium);
MedVision's plan swaps 1 and 2 (sources.yaml, label_convention_check).
"""

from pipeline.sources.base import SourceInfo
from pipeline.sources.layout import LayoutSource, Series, labels_from

CASE = r"(?P<subject>patient\d{4})/(?P=subject)_(?P<view>2CH|4CH)_half_sequence"


class CamusSource(LayoutSource):
    info = SourceInfo(
        name="camus",
        anatomy="heart",
        modalities=("US",),
        tasks=("detection",),
        licence="CC-BY-NC-SA-4.0",
        redistributable=True,
        citation="Leclerc et al., CAMUS, IEEE TMI 38(9) 2019",
    )
    layout = "patientNNNN/patientNNNN_{2CH,4CH}_half_sequence[_gt].nii.gz"
    series = (
        Series(
            "half sequence",
            "US",
            image=CASE + r"\.nii\.gz",
            mask=CASE + r"_gt\.nii\.gz",
            key=("subject", "view"),
            case_id="{subject}_{view}",
            subject_id="{subject}",
            labels=labels_from("1: left ventricle; 2: left ventricular myocardium; 3: left atrium"),
            planes=("axial",),
        ),
    )
