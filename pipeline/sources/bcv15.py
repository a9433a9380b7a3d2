"""BCV 2015 (Multi-Atlas Labeling Beyond the Cranial Vault): abdomen and cervix CT.

Cite: Landman B. et al., "MICCAI Multi-Atlas Labeling Beyond the Cranial Vault - Workshop and
Challenge" (2015), Synapse syn3193805.

Raw layout: both archives (RawData.zip, CervixRawData.zip) extract a `RawData/` folder, so put
them in two folders under the root. Abdomen: `Training/img/img<NNNN>.nii.gz` with
`Training/label/label<NNNN>.nii.gz`; cervix: `Training/img/<NNNNNNN>-Image.nii.gz` with
`Training/label/<NNNNNNN>-Mask.nii.gz`. `Testing/` has no labels and is not listed.
"""

from pipeline.sources.base import SourceInfo
from pipeline.sources.layout import LayoutSource, Series, labels_from


class Bcv15Source(LayoutSource):
    info = SourceInfo(
        name="bcv15",
        anatomy="abdomen and cervix",
        modalities=("CT",),
        tasks=("detection",),
        licence="LicenseRef-Synapse-BCV-terms",
        redistributable=True,
        citation="Landman et al., Multi-Atlas Labeling Beyond the Cranial Vault, MICCAI 2015 challenge",
    )
    layout = "…/Training/img/imgNNNN.nii.gz + label/labelNNNN… (abdomen), …-Image/-Mask.nii.gz (cervix)"
    series = (
        Series(
            "abdomen CT",
            "CT",
            image=r"Training/img/img(?P<case>\d{4})\.nii\.gz",
            mask=r"Training/label/label(?P<case>\d{4})\.nii\.gz",
            case_id="abdomen/{case}",
            subject_id="abdomen/{case}",
            labels=labels_from(
                "1: spleen; 2: right kidney; 3: left kidney; 4: gallbladder; 5: esophagus; "
                "6: liver; 7: stomach; 8: aorta; 9: inferior vena cava; "
                "10: portal vein and splenic vein; 11: pancreas; 12: right adrenal gland; "
                "13: left adrenal gland"
            ),
        ),
        Series(
            "cervix CT",
            "CT",
            image=r"Training/img/(?P<case>\d{7})-Image\.nii\.gz",
            mask=r"Training/label/(?P<case>\d{7})-Mask\.nii\.gz",
            case_id="cervix/{case}",
            subject_id="cervix/{case}",
            labels=labels_from("1: bladder; 2: uterus; 3: rectum; 4: small bowel"),
        ),
    )
