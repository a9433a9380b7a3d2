"""OAIZIB-CM: knee 3D DESS MRI (Osteoarthritis Initiative) with bones and cartilages.

Cite: Yao Y. et al., "CartiMorph: a framework for automated knee articular cartilage
morphometrics", Medical Image Analysis 91, 103035 (2024).

Raw layout (nnU-Net): `{imagesTr,imagesTs}/<case>_0000.nii.gz` with `{labelsTr,labelsTs}/<case>.nii.gz`.
The official Tr/Ts split is kept (MedVision discards it).
"""

from pipeline.sources.base import SourceInfo
from pipeline.sources.layout import LayoutSource, Series, labels_from


class OaizibCmSource(LayoutSource):
    info = SourceInfo(
        name="oaizib_cm",
        anatomy="knee",
        modalities=("MRI",),
        tasks=("detection",),
        licence="CC-BY-NC-4.0",
        redistributable=True,
        citation="Yao et al., CartiMorph, Medical Image Analysis 91, 103035 (2024)",
    )
    layout = "images{Tr,Ts}/<case>_0000.nii.gz, labels{Tr,Ts}/"
    series = (
        Series(
            "DESS",
            "MRI",
            image=r"images(?P<folder>Tr|Ts)/(?P<case>[^/]+)_0000\.nii\.gz",
            mask=r"labels(?:Tr|Ts)/(?P<case>[^/]+)\.nii\.gz",
            split_group="folder",
            splits={"Tr": "train", "Ts": "test"},
            labels=labels_from(
                "1: femur; 2: femoral cartilage; 3: tibia; 4: medial tibial cartilage; 5: lateral tibial cartilage"
            ),
        ),
    )
