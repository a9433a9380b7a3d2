"""ToothFairy2: maxillofacial CBCT with jaws, canals, sinuses, pharynx and FDI-numbered teeth.

Cite: Bolelli F. et al., "Segmenting Maxillofacial Structures in CBCT Volumes", CVPR 2025;
ToothFairy2 challenge (MICCAI 2024).

Raw layout (nnU-Net, MetaImage): `imagesTr/<case>_0000.mha` with `labelsTr/<case>.mha`. MHA
is LPS; the reader converts to RAS explicitly. CBCT grey values are not calibrated HU, so the
display window is from percentiles, not a CT window. Teeth use FDI numbers (11-48) as label
values. Registration required: not redistributable (publish pointer rows only).
"""

from pipeline.sources.base import SourceInfo
from pipeline.sources.layout import LayoutSource, Series, labels_from

QUADRANTS = {1: "upper right", 2: "upper left", 3: "lower left", 4: "lower right"}
TEETH = (
    "central incisor",
    "lateral incisor",
    "canine",
    "first premolar",
    "second premolar",
    "first molar",
    "second molar",
    "third molar (wisdom tooth)",
)
LABELS = {
    **labels_from(
        "1: lower jawbone; 2: upper jawbone; 3: left inferior alveolar canal; "
        "4: right inferior alveolar canal; 5: left maxillary sinus; 6: right maxillary sinus; 7: pharynx; "
        "8: bridge; 9: crown; 10: implant; 40: na"
    ),
    **{
        10 * quadrant + n: f"{side} {tooth}" for quadrant, side in QUADRANTS.items() for n, tooth in enumerate(TEETH, 1)
    },
}


class ToothFairy2Source(LayoutSource):
    info = SourceInfo(
        name="toothfairy2",
        anatomy="teeth and jaws",
        modalities=("CBCT",),
        tasks=("detection",),
        licence="CC-BY-SA-4.0",
        redistributable=False,
        citation="Bolelli et al., Segmenting Maxillofacial Structures in CBCT Volumes, CVPR 2025",
    )
    layout = "imagesTr/<case>_0000.mha, labelsTr/<case>.mha"
    series = (
        Series(
            "CBCT",
            "CBCT",
            image=r"imagesTr/(?P<case>[^/]+)_0000\.mha",
            mask=r"labelsTr/(?P<case>[^/]+)\.mha",
            labels=dict(sorted(LABELS.items())),
        ),
    )
