"""Ceph-Biometrics-400 (ISBI 2015 cephalometric landmarks): 2D lateral cephalograms with 19 landmarks.

Cite: Wang C.-W. et al., "A benchmark for comparison of dental radiography analysis algorithms",
Medical Image Analysis 31, 63-76 (2016).

Raw layout (as extracted from RawImage.rar and AnnotationsByMD.rar):
    RawImage/{TrainingData,Test1Data,Test2Data}/<NNN>.bmp      1935 x 2400 px, 0.1 mm pixels
    AnnotationsByMD/400_senior/<NNN>.txt                        first 19 lines `x,y` (x = column)

Facts the data do not state, taken as MedVision does (marked unsure in sources.yaml): landmark
pixels are 1-based; the patient faces image-right (columns run anterior, rows inferior).
Distances and angles do not depend on either choice. Official split: TrainingData = train,
Test1Data and Test2Data = test.
"""

from __future__ import annotations

from pipeline import storage
from pipeline.sources.base import Source, SourceError, SourceInfo
from transforms.caseref import CaseRef, LandmarkSpec, PlanarGeometry, SequenceRef
from transforms.landmarks import LandmarkSpace, Measurement

LICENCE = "CC-BY-NC-4.0"
PIXEL_MM = 0.1
ANNOTATOR = "400_senior"
SPLIT_BY_FOLDER = {"TrainingData": "train", "Test1Data": "test", "Test2Data": "test"}
LANDMARKS = tuple(f"P{n}" for n in range(1, 20))
LANDMARK_NAMES = {
    "P1": "sella",
    "P2": "nasion",
    "P3": "orbitale",
    "P4": "porion",
    "P5": "subspinale",
    "P6": "supramentale",
    "P7": "pogonion",
    "P8": "menton",
    "P9": "gnathion",
    "P10": "gonion",
    "P11": "incision inferius",
    "P12": "incision superius",
    "P13": "upper lip",
    "P14": "lower lip",
    "P15": "subnasale",
    "P16": "soft tissue pogonion",
    "P17": "posterior nasal spine",
    "P18": "anterior nasal spine",
    "P19": "articulare",
}


def _line(key: str) -> tuple[str, str]:
    """'L-2-5' -> ('P2', 'P5')."""
    _, a, b = key.split("-")
    return f"P{a}", f"P{b}"


def _angle(first: str, second: str, description: str) -> Measurement:
    key = f"A-L_{first[2:].replace('-', '_')}-L_{second[2:].replace('-', '_')}"
    return Measurement(key, "angle", _line(first) + _line(second), description=description)


MEASUREMENTS = (
    _angle("L-2-5", "L-2-6", "ANB"),
    _angle("L-1-2", "L-2-6", "SNB"),
    _angle("L-1-2", "L-2-5", "SNA"),
    # MedVision names five of the eight angles; the other three are named here from their landmarks, so no
    # prompt shows a key such as A-L_3_4-L_17_18.
    _angle("L-5-6", "L-8-10", "AB plane to mandibular plane (Me-Go)"),
    _angle("L-3-4", "L-2-7", "facial angle (FH to N-Pog)"),
    _angle("L-3-4", "L-17-18", "FH to palatal plane (PNS-ANS)"),
    _angle("L-2-7", "L-5-6", "AB plane angle (N-Pog to A-B)"),
    _angle("L-1-2", "L-9-10", "SN to mandibular plane (Gn-Go)"),
    Measurement("L-1-10", "distance", _line("L-1-10"), description="S-Go (posterior face height)"),
    Measurement("L-2-8", "distance", _line("L-2-8"), description="N-Me (anterior face height)"),
)
GEOMETRY = PlanarGeometry(axes="AIR", spacing_mm_col_row=(PIXEL_MM, PIXEL_MM))


def list_cephalograms(root: str, dataset: str, licence: str) -> list[CaseRef]:
    """One case per BMP under RawImage/*/, with its senior annotator's landmark file."""
    images = storage.glob(storage.join(root, "RawImage", "*", "*.bmp"))
    if not images:
        raise SourceError(f"no RawImage/*/*.bmp under {root}: not a Ceph-Biometrics-400 root")
    cases = []
    for image_uri in images:
        folder, stem = storage.basename(storage.dirname(image_uri)), storage.basename(image_uri)[: -len(".bmp")]
        cases.append(
            CaseRef(
                dataset=dataset,
                case_id=stem,
                subject_id=stem,
                image_uri=image_uri,
                mask_uri="",
                sequences=(SequenceRef("cephalogram", "XR"),),
                labels=(),
                licence=licence,
                redistributable=True,
                official_split=SPLIT_BY_FOLDER.get(folder),
                planar=GEOMETRY,
                landmarks=LandmarkSpec(
                    uri=storage.join(root, "AnnotationsByMD", ANNOTATOR, f"{stem}.txt"),
                    reader="xy_text",
                    space=LandmarkSpace("voxel", index_base=1),
                    measurements=MEASUREMENTS,
                    names=LANDMARKS,
                ),
            )
        )
    return sorted(cases, key=lambda case: case.case_id)


class CephBiometrics400Source(Source):
    info = SourceInfo(
        name="ceph_biometrics_400",
        anatomy="head and neck (lateral cephalograms)",
        modalities=("XR",),
        tasks=("angle_distance",),
        licence=LICENCE,
        redistributable=True,
        citation="Wang et al., A benchmark for comparison of dental radiography analysis algorithms, MedIA 2016",
    )
    layout = "RawImage/{TrainingData,Test1Data,Test2Data}/NNN.bmp, AnnotationsByMD/400_senior/NNN.txt"

    def list_cases(self, root: str) -> list[CaseRef]:
        return list_cephalograms(root, self.info.name, LICENCE)
