"""FLARE 2022: 50 labelled abdominal CTs with 13 organs.

Cite: Ma J. et al., "Unleashing the Strengths of Unlabeled Data in Pan-cancer Abdominal Organ
Quantification: the FLARE22 Challenge", arXiv:2308.05862 (2023).

Raw layout (FLARE22_LabeledCase50: images.zip, labels.zip, extracted anywhere under the root):
`FLARE22_Tr_<NNNN>_0000.nii.gz` images and `FLARE22_Tr_<NNNN>.nii.gz` masks. The label order
differs from AMOS and BCV (1 = liver, 13 = left kidney).
"""

from pipeline.sources.base import SourceInfo
from pipeline.sources.layout import LayoutSource, Series, labels_from


class Flare22Source(LayoutSource):
    info = SourceInfo(
        name="flare22",
        anatomy="abdomen",
        modalities=("CT",),
        tasks=("detection",),
        licence="LicenseRef-FLARE22-terms",
        redistributable=True,
        citation="Ma et al., FLARE22 challenge, arXiv:2308.05862",
    )
    layout = "FLARE22_Tr_NNNN_0000.nii.gz, FLARE22_Tr_NNNN.nii.gz anywhere"
    series = (
        Series(
            "CT",
            "CT",
            image=r"(?P<case>FLARE22_Tr_\d{4})_0000\.nii\.gz",
            mask=r"(?P<case>FLARE22_Tr_\d{4})\.nii\.gz",
            labels=labels_from(
                "1: liver; 2: right kidney; 3: spleen; 4: pancreas; 5: aorta; "
                "6: inferior vena cava; 7: right adrenal gland; 8: left adrenal gland; "
                "9: gallbladder; 10: esophagus; 11: stomach; 12: duodenum; 13: left kidney"
            ),
        ),
    )
