"""AbdomenAtlas 1.0 Mini: 5,195 abdominal CTs with nine organs, merged label maps.

Cite: Qu C. et al., "AbdomenAtlas-8K: Annotating 8,000 CT Volumes for Multi-Organ Segmentation
in Three Weeks", NeurIPS 2023 Datasets and Benchmarks.

Raw layout (HF AbdomenAtlas/AbdomenAtlas1.0Mini): `BDMAP_<8 digits>/ct.nii.gz` with per-organ
binary masks in `segmentations/<organ>.nii.gz` and their merge `combined_labels.nii.gz`
(values 1-9). The per-organ masks are the primary annotation and are merged here (first wins
by label value); `combined_labels` is used only for a case without them, and where its header
disagrees with the CT (a known issue of some cases, which MedVision papers over by copying the
CT header) the case is quarantined as `mask_grid_mismatch` rather than forced onto the CT grid.
"""

from pipeline.sources.base import SourceInfo
from pipeline.sources.layout import LayoutSource, Series, labels_from

LABELS = labels_from(
    "1: aorta; 2: gallbladder; 3: left kidney; 4: right kidney; 5: liver; 6: pancreas; "
    "7: postcava (inferior vena cava); 8: spleen; 9: stomach"
)
ORGAN_FILES = (
    "aorta",
    "gall_bladder",
    "kidney_left",
    "kidney_right",
    "liver",
    "pancreas",
    "postcava",
    "spleen",
    "stomach",
)  # file stems of segmentations/, in label order


class AbdomenAtlasSource(LayoutSource):
    info = SourceInfo(
        name="abdomenatlas",
        anatomy="abdomen",
        modalities=("CT",),
        tasks=("detection",),
        licence="CC-BY-NC-SA-4.0",
        redistributable=True,
        citation="Qu et al., AbdomenAtlas-8K, NeurIPS 2023 Datasets and Benchmarks",
    )
    layout = "BDMAP_*/ct.nii.gz, segmentations/<organ>.nii.gz, combined_labels.nii.gz"
    series = (
        Series(
            "CT",
            "CT",
            image=r"(?P<case>BDMAP_\d+)/ct\.nii\.gz",
            mask_parts=r"(?P<case>BDMAP_\d+)/segmentations/(?P<structure>[^/]+)\.nii\.gz",
            structures={name: value for value, name in enumerate(ORGAN_FILES, 1)},
            mask=r"(?P<case>BDMAP_\d+)/combined_labels\.nii\.gz",
            labels=LABELS,
        ),
    )
