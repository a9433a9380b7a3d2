"""ACDC: cine cardiac MRI, ED and ES frames labelled (RV cavity, myocardium, LV cavity).

Cite: Bernard O. et al., "Deep Learning Techniques for Automatic MRI Cardiac Multi-Structures
Segmentation and Diagnosis: Is the Problem Solved?", IEEE TMI 37(11), 2514-2525 (2018).

Raw layout: `database/{training,testing}/patient<NNN>/patient<NNN>_frame<NN>.nii.gz` with
`_gt.nii.gz` masks; the unlabelled `_4d.nii.gz` cine is not used. Both frames of a patient
share the subject (so they share a split); the official training/testing folders are kept.
Short-axis stacks have 5-10 mm slices: strongly anisotropic voxels.
"""

from pipeline.sources.base import SourceInfo
from pipeline.sources.layout import LayoutSource, Series, labels_from

IMAGE = r"(?P<folder>training|testing)/(?P<subject>patient\d{3})/(?P=subject)_frame(?P<frame>\d{2})"


class AcdcSource(LayoutSource):
    info = SourceInfo(
        name="acdc",
        anatomy="heart",
        modalities=("MRI",),
        tasks=("detection",),
        licence="CC-BY-NC-SA-4.0",
        redistributable=True,
        citation="Bernard et al., ACDC, IEEE TMI 37(11) 2018",
    )
    layout = "{training,testing}/patientNNN/patientNNN_frameNN[_gt].nii.gz"
    series = (
        Series(
            "cine MRI frame",
            "MRI",
            image=IMAGE + r"\.nii\.gz",
            mask=IMAGE + r"_gt\.nii\.gz",
            key=("subject", "frame"),
            case_id="{subject}_frame{frame}",
            subject_id="{subject}",
            labels=labels_from("1: right ventricular cavity; 2: myocardium; 3: left ventricular cavity"),
            split_group="folder",
            splits={"training": "train", "testing": "test"},
        ),
    )
