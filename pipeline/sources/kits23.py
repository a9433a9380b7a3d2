"""KiTS 2023: kidney, tumour and cyst in corticomedullary-phase CT.

Cite: Heller N. et al., "The KiTS21 Challenge: Automatic segmentation of kidneys, renal tumors,
and renal cysts in corticomedullary-phase CT", arXiv:2307.01984 (2023).

Raw layout (neheller/kits23): `dataset/case_<NNNNN>/imaging.nii.gz` and `segmentation.nii.gz`.
Arrays are stored (slices, rows, cols) with the craniocaudal axis first: planes come from the
affine, never from the array axis order.
"""

from pipeline.sources.base import SourceInfo
from pipeline.sources.layout import LayoutSource, Series


class Kits23Source(LayoutSource):
    info = SourceInfo(
        name="kits23",
        anatomy="kidney",
        modalities=("CT",),
        tasks=("detection", "tumor_lesion_size"),
        licence="CC-BY-NC-SA-4.0",
        redistributable=True,
        citation="Heller et al., KiTS21/23 challenge, arXiv:2307.01984",
    )
    layout = "case_NNNNN/{imaging,segmentation}.nii.gz"
    series = (
        Series(
            "CT",
            "CT",
            image=r"(?P<case>case_\d{5})/imaging\.nii\.gz",
            mask=r"(?P<case>case_\d{5})/segmentation\.nii\.gz",
            labels={1: "kidney", 2: "kidney tumor", 3: "kidney cyst"},
            lesion_labels=(2,),
        ),
    )
