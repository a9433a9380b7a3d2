"""KiPA 2022: kidney parsing in contrast CT (renal vein, kidney, renal artery, tumour).

Cite: He Y. et al., "Meta grayscale adaptive network for 3D integrated renal structures
segmentation", Medical Image Analysis 71, 102055 (2021); KiPA22 challenge.

Raw layout: `train/image/<id>.nii.gz` with the same name in `train/label/`. Licence is
CC BY-NC-ND: the pixels of derived slices may not be republished, so the adapter is marked
not redistributable (publish pointer rows).
"""

from pipeline.sources.base import SourceInfo
from pipeline.sources.layout import LayoutSource, Series, labels_from


class Kipa22Source(LayoutSource):
    info = SourceInfo(
        name="kipa22",
        anatomy="kidney",
        modalities=("CT",),
        tasks=("detection", "tumor_lesion_size"),
        licence="CC-BY-NC-ND-4.0",
        redistributable=False,
        citation="He et al., Meta grayscale adaptive network, MedIA 71, 102055 (2021); KiPA22 challenge",
    )
    layout = "image/<id>.nii.gz, label/<id>.nii.gz"
    series = (
        Series(
            "CT",
            "CT",
            image=r"image/(?P<case>[^/]+)\.nii\.gz",
            mask=r"label/(?P<case>[^/]+)\.nii\.gz",
            labels=labels_from("1: renal vein; 2: kidney; 3: renal artery; 4: tumor"),
            lesion_labels=(4,),
        ),
    )
