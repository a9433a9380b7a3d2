"""AbdomenCT-1K: 1,000+ abdominal CTs with liver, kidney, spleen and pancreas.

Cite: Ma J. et al., "AbdomenCT-1K: Is Abdominal Organ Segmentation a Solved Problem?",
IEEE TPAMI 44(10), 6695-6714 (2022).

Raw layout (Zenodo; three image zips and Mask.7z, extracted anywhere under the root):
`Case_<5 digits>_0000.nii.gz` images and `Case_<5 digits>.nii.gz` masks. Images without a
mask are expected (more images than masks are released) and are skipped, not quarantined.
"""

from pipeline.sources.base import SourceInfo
from pipeline.sources.layout import LayoutSource, Series, labels_from


class AbdomenCT1KSource(LayoutSource):
    info = SourceInfo(
        name="abdomenct_1k",
        anatomy="abdomen",
        modalities=("CT",),
        tasks=("detection",),
        licence="CC-BY-4.0",
        redistributable=True,
        citation="Ma et al., AbdomenCT-1K, IEEE TPAMI 44(10) 2022",
    )
    layout = "Case_NNNNN_0000.nii.gz, Case_NNNNN.nii.gz anywhere"
    series = (
        Series(
            "CT",
            "CT",
            image=r"(?P<case>Case_\d{5})_0000\.nii\.gz",
            mask=r"(?P<case>Case_\d{5})\.nii\.gz",
            labels=labels_from("1: liver; 2: kidney; 3: spleen; 4: pancreas"),
            unlabelled="skip",
        ),
    )
