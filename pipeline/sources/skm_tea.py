"""SKM-TEA: knee qDESS MRI (two echoes) with cartilage and meniscus labels.

Cite: Desai A.D. et al., "SKM-TEA: A Dataset for Accelerated MRI Reconstruction with Dense Image
Labels for Quantitative Clinical Evaluation", NeurIPS 2021 Datasets and Benchmarks.

Layout read: the NIfTI conversion MedVision uses (SKM-TEA-nii: `img_nii_E1/MTR_<NNN>.nii.gz`,
`img_nii_E2/`, `seg-nii/MTR_<NNN>.nii.gz`); the official release stores images as HDF5, which
must be converted first (the h5 keys are not documented well enough to read them blind).
Stanford research-use agreement: not redistributable (publish pointer rows only).
"""

from pipeline.sources.base import SourceInfo
from pipeline.sources.layout import LayoutSource, Series, labels_from

LABELS = labels_from(
    "1: patellar cartilage; 2: femoral cartilage; 3: medial tibial cartilage; "
    "4: lateral tibial cartilage; 5: medial meniscus; 6: lateral meniscus"
)


def _echo(echo: str) -> Series:
    return Series(
        f"echo {echo[-1]}",
        "MRI",
        image=rf"img_nii_{echo}/(?P<case>MTR_\d+)\.nii\.gz",
        mask=r"seg-nii/(?P<case>MTR_\d+)\.nii\.gz",
        case_id="{case}/" + echo,
        subject_id="{case}",
        labels=LABELS,
    )


class SkmTeaSource(LayoutSource):
    info = SourceInfo(
        name="skm_tea",
        anatomy="knee",
        modalities=("MRI",),
        tasks=("detection",),
        licence="LicenseRef-Stanford-University-Dataset-Research-Use-Agreement",
        redistributable=False,
        citation="Desai et al., SKM-TEA, NeurIPS 2021 Datasets and Benchmarks",
    )
    layout = "img_nii_{E1,E2}/MTR_NNN.nii.gz, seg-nii/MTR_NNN.nii.gz (the NIfTI conversion)"
    series = (_echo("E1"), _echo("E2"))
