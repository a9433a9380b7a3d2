"""AMOS 2022: abdominal CT and MRI with 15 organs.

Cite: Ji Y. et al., "AMOS: A Large-Scale Abdominal Multi-Organ Benchmark for Versatile Medical
Image Segmentation", NeurIPS 2022 Datasets and Benchmarks.

Raw layout (amos22.zip): `{imagesTr,imagesVa}/amos_<NNNN>.nii.gz` with same-named masks in
`{labelsTr,labelsVa}/`; `imagesTs/` has no labels. Modality by id, as MedVision does
(sources.yaml, unsure): ids below 507 are CT, the rest MRI. Tr/Va are the official
train/validation folders. Label 8 is spelled 'aorta' (the dataset's 'arota' is a typo).
"""

from pipeline.sources.base import SourceInfo
from pipeline.sources.layout import LayoutSource, Series, labels_from

LABELS = labels_from(
    "1: spleen; 2: right kidney; 3: left kidney; 4: gall bladder; 5: esophagus; 6: liver; 7: stomach; "
    "8: aorta; 9: postcava; 10: pancreas; 11: right adrenal gland; 12: left adrenal gland; "
    "13: duodenum; 14: bladder; 15: prostate/uterus"
)
FIRST_MRI_ID = 507
IMAGE = r"images(?P<folder>Tr|Va)/(?P<case>amos_(?P<number>\d{4}))\.nii\.gz"
MASK = r"labels(?:Tr|Va)/(?P<case>amos_\d{4})\.nii\.gz"
SPLITS = {"Tr": "train", "Va": "validation"}


class Amos22Source(LayoutSource):
    info = SourceInfo(
        name="amos22",
        anatomy="abdomen",
        modalities=("CT", "MRI"),
        tasks=("detection",),
        licence="CC-BY-4.0",
        redistributable=True,
        citation="Ji et al., AMOS, NeurIPS 2022 Datasets and Benchmarks",
    )
    layout = "images{Tr,Va}/amos_NNNN.nii.gz, labels{Tr,Va}/"
    series = (
        Series(
            "CT",
            "CT",
            image=IMAGE,
            mask=MASK,
            labels=LABELS,
            split_group="folder",
            splits=SPLITS,
            where=lambda groups: int(groups["number"]) < FIRST_MRI_ID,
        ),
        Series(
            "MRI",
            "MRI",
            image=IMAGE,
            mask=MASK,
            labels=LABELS,
            split_group="folder",
            splits=SPLITS,
            where=lambda groups: int(groups["number"]) >= FIRST_MRI_ID,
        ),
    )
