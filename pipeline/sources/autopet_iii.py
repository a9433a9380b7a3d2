"""autoPET III: whole-body FDG and PSMA PET/CT with lesion masks (one mask for CT and PET).

Cite: Gatidis S. et al., "A whole-body FDG-PET/CT Dataset with manually annotated Tumor
Lesions", Scientific Data 9, 601 (2022); autoPET III challenge (MICCAI 2024).

Raw layout (nnU-Net release): `imagesTr/<case>_0000.nii.gz` (CT), `imagesTr/<case>_0001.nii.gz`
(PET, SUV), `labelsTr/<case>.nii.gz` (1 = lesion); cases are `<tracer>_<patient>_<date>`, and
studies of one patient share the subject. Negative controls (all-zero masks) yield no pairs and
are recorded as `negative_case` (not a failure for `--max-failure-fraction`). Lesion size (T/L) is
measured on CT, as in MedVision. CT and PET
come on different grids in some releases (sources.yaml: unsure), so the shared mask is placed on
each image's grid by nearest neighbour where it does not match exactly (flagged in provenance).
"""

from pipeline.sources.base import SourceInfo
from pipeline.sources.layout import LayoutSource, Series

CASE = r"(?P<case>(?P<tracer>fdg|psma)_(?P<patient>[^_/]+)_[^/]+?)"
LABELS = {1: "tumor"}


class AutoPet3Source(LayoutSource):
    info = SourceInfo(
        name="autopet_iii",
        anatomy="whole body",
        modalities=("CT", "PET"),
        tasks=("detection", "tumor_lesion_size"),
        licence="CC-BY-NC-4.0",
        redistributable=True,
        citation="Gatidis et al., whole-body FDG-PET/CT dataset, Sci Data 9, 601 (2022); autoPET III",
    )
    layout = "imagesTr/<case>_0000.nii.gz (CT), _0001 (PET), labelsTr/<case>.nii.gz"
    series = (
        Series(
            "CT",
            "CT",
            image=rf"imagesTr/{CASE}_0000\.nii\.gz",
            mask=rf"labelsTr/{CASE}\.nii\.gz",
            case_id="{case}/CT",
            subject_id="{tracer}_{patient}",
            labels=LABELS,
            lesion_labels=(1,),
            mask_placement="nearest",
            negatives_expected=True,
        ),
        Series(
            "PET",
            "PET",
            image=rf"imagesTr/{CASE}_0001\.nii\.gz",
            mask=rf"labelsTr/{CASE}\.nii\.gz",
            case_id="{case}/PET",
            subject_id="{tracer}_{patient}",
            labels=LABELS,
            mask_placement="nearest",
            negatives_expected=True,
        ),
    )
