"""crossMoDA 2021: contrast-enhanced T1 brain MRI with vestibular schwannoma and cochlea.

Cite: Dorent R. et al., "CrossMoDA 2021 challenge: Benchmark of cross-modality domain
adaptation techniques for vestibular schwannoma and cochlea segmentation", Medical Image
Analysis 83, 102628 (2023).

Raw layout (crossmoda_training.zip): `source_training/crossmoda_<n>_ceT1.nii.gz` with
`crossmoda_<n>_Label.nii.gz`; `target_training/` (hrT2, unlabelled) is not used.
"""

from pipeline.sources.base import SourceInfo
from pipeline.sources.layout import LayoutSource, Series

CASE = r"source_training/(?P<case>crossmoda_\d+)"


class CrossModaSource(LayoutSource):
    info = SourceInfo(
        name="crossmoda",
        anatomy="brain (vestibular schwannoma and cochlea)",
        modalities=("MRI",),
        tasks=("detection",),
        licence="CC-BY-4.0",
        redistributable=True,
        citation="Dorent et al., CrossMoDA 2021, Medical Image Analysis 83, 102628 (2023)",
    )
    layout = "source_training/crossmoda_N_{ceT1,Label}.nii.gz"
    series = (
        Series(
            "ceT1",
            "MRI",
            image=CASE + r"_ceT1\.nii\.gz",
            mask=CASE + r"_Label\.nii\.gz",
            labels={1: "vestibular schwannoma", 2: "cochlea"},
        ),
    )
