"""TotalSegmentator: whole-body CT (117 structures) and MRI (50 structures), one binary mask per structure.

Cite: Wasserthal J. et al., "TotalSegmentator: Robust Segmentation of 104 Anatomic Structures in
CT Images", Radiology: Artificial Intelligence 5(5), e230024 (2023); D'Antonoli T.A. et al.,
"TotalSegmentator MRI", Radiology (2025).

Raw layout (Zenodo v2.0.1 CT, v2.0.0 MRI): `s<NNNN>/ct.nii.gz` or `s<NNNN>/mri.nii.gz` with
`s<NNNN>/segmentations/<structure>.nii.gz`, and `meta.csv` (`;`-separated, with the official
split) at the root. The per-structure masks are merged into one label map: label value = the
structure's position in the class list, a voxel claimed by a lower value keeps it; a missing
structure file contributes nothing, an unknown one quarantines the case. CT and MRI subjects
are different people even where the ids coincide.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import posixpath

from pipeline import storage
from pipeline.sources.base import SourceInfo
from pipeline.sources.layout import DatasetFacts, LayoutSource, Series
from transforms.caseref import CaseRef, ListingError
from transforms.errors import PipelineError, Reason

CT_CLASSES = (
    "spleen kidney_right kidney_left gallbladder liver stomach pancreas adrenal_gland_right adrenal_gland_left "
    "lung_upper_lobe_left lung_lower_lobe_left lung_upper_lobe_right lung_middle_lobe_right lung_lower_lobe_right "
    "esophagus trachea thyroid_gland small_bowel duodenum colon urinary_bladder prostate kidney_cyst_left "
    "kidney_cyst_right sacrum vertebrae_S1 vertebrae_L5 vertebrae_L4 vertebrae_L3 vertebrae_L2 vertebrae_L1 "
    "vertebrae_T12 vertebrae_T11 vertebrae_T10 vertebrae_T9 vertebrae_T8 vertebrae_T7 vertebrae_T6 vertebrae_T5 "
    "vertebrae_T4 vertebrae_T3 vertebrae_T2 vertebrae_T1 vertebrae_C7 vertebrae_C6 vertebrae_C5 vertebrae_C4 "
    "vertebrae_C3 vertebrae_C2 vertebrae_C1 heart aorta pulmonary_vein brachiocephalic_trunk subclavian_artery_right "
    "subclavian_artery_left common_carotid_artery_right common_carotid_artery_left brachiocephalic_vein_left "
    "brachiocephalic_vein_right atrial_appendage_left superior_vena_cava inferior_vena_cava "
    "portal_vein_and_splenic_vein iliac_artery_left iliac_artery_right iliac_vena_left iliac_vena_right humerus_left "
    "humerus_right scapula_left scapula_right clavicula_left clavicula_right femur_left femur_right hip_left hip_right "
    "spinal_cord gluteus_maximus_left gluteus_maximus_right gluteus_medius_left gluteus_medius_right "
    "gluteus_minimus_left gluteus_minimus_right autochthon_left autochthon_right iliopsoas_left iliopsoas_right brain "
    "skull "
    + " ".join(f"rib_{side}_{n}" for side in ("left", "right") for n in range(1, 13))
    + " sternum costal_cartilages"
).split()
MR_CLASSES = (
    "spleen kidney_right kidney_left gallbladder liver stomach pancreas adrenal_gland_right adrenal_gland_left "
    "lung_left lung_right esophagus small_bowel duodenum colon urinary_bladder prostate sacrum vertebrae "
    "intervertebral_discs spinal_cord heart aorta inferior_vena_cava portal_vein_and_splenic_vein iliac_artery_left "
    "iliac_artery_right iliac_vena_left iliac_vena_right humerus_left humerus_right scapula_left scapula_right "
    "clavicula_left clavicula_right femur_left femur_right hip_left hip_right gluteus_maximus_left "
    "gluteus_maximus_right gluteus_medius_left gluteus_medius_right gluteus_minimus_left gluteus_minimus_right "
    "autochthon_left autochthon_right iliopsoas_left iliopsoas_right brain"
).split()
ORDINALS = {1: "1st", 2: "2nd", 3: "3rd"}
RENAMED = {"clavicula": "clavicle", "iliac vena": "iliac vein"}


def prompt_name(structure: str) -> str:
    """'kidney_right' -> 'right kidney', 'rib_left_3' -> 'left 3rd rib', 'vertebrae_L5' -> 'vertebra L5'."""
    if structure.startswith("rib_"):
        _, side, number = structure.split("_")
        return f"{side} {ORDINALS.get(int(number), f'{number}th')} rib"
    if structure.startswith("vertebrae_"):
        return "vertebra " + structure.split("_", 1)[1]
    words = structure.split("_")
    sides = [w for w in words if w in ("left", "right")]
    rest = " ".join(w for w in words if w not in ("left", "right"))
    for old, new in RENAMED.items():
        rest = rest.replace(old, new)
    return " ".join(sides + [rest])


def _series(name: str, image: str, classes: list[str], prefix: str, window=None) -> Series:
    case = r"(?P<case>s\d{4})"
    return Series(
        name,
        name,
        image=rf"{case}/{image}\.nii\.gz",
        mask_parts=rf"{case}/segmentations/(?P<structure>[^/]+)\.nii\.gz",
        structures={structure: value for value, structure in enumerate(classes, 1)},
        labels={value: prompt_name(structure) for value, structure in enumerate(classes, 1)},
        case_id=f"{prefix}/" + "{case}",
        subject_id=f"{prefix}/" + "{case}",
        ct_window=window,
    )


SPLIT_NAMES = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}
UNKNOWN_SPLIT = ""  # a split value meta.csv gives that is none of SPLIT_NAMES: the case is refused


def official_splits(meta_csv: str) -> dict[str, str]:
    """image_id -> split from TotalSegmentator's meta.csv (';'-separated; 'val' becomes 'validation').

    A split other than train/val/test maps to UNKNOWN_SPLIT (never into a partition name); an empty
    split cell gives no entry. Raises csv.Error or ValueError when the text is not such a table.
    """
    lines = meta_csv.splitlines()
    rows = csv.DictReader(io.StringIO(meta_csv), delimiter=";" if lines and ";" in lines[0] else ",")
    splits = {}
    for row in rows:
        image_id, split = row.get("image_id"), row.get("split")
        if not isinstance(image_id, str) or not image_id or not isinstance(split, str) or not split.strip():
            continue
        splits[image_id] = SPLIT_NAMES.get(split.strip().lower(), UNKNOWN_SPLIT)
    return splits


class TotalSegmentatorSource(LayoutSource):
    info = SourceInfo(
        name="totalsegmentator",
        anatomy="whole body",
        modalities=("CT", "MRI"),
        tasks=("detection",),
        licence="CC-BY-4.0",
        redistributable=True,
        citation="Wasserthal et al., TotalSegmentator, Radiology: AI 5(5) e230024 (2023); TotalSegmentator MRI",
    )
    layout = "sNNNN/{ct,mri}.nii.gz, sNNNN/segmentations/<structure>.nii.gz, meta.csv"
    series = (_series("CT", "ct", CT_CLASSES, "ct"), _series("MRI", "mri", MR_CLASSES, "mr"))
    MR_LICENCE = "CC-BY-NC-SA-2.0"

    def cases_of(self, series: Series, root: str, paths: list[str], facts: DatasetFacts) -> list[CaseRef]:
        if series.modality == "MRI":
            facts = dataclasses.replace(facts, licence=self.MR_LICENCE)
        tables: dict[str, dict[str, str] | str] = {}
        cases = []
        for case in super().cases_of(series, root, paths, facts):
            # meta.csv sits next to the s<NNNN>/ folders
            folder = posixpath.dirname(posixpath.dirname(case.image_uri[len(root.rstrip("/")) + 1 :]))
            meta = posixpath.join(folder, "meta.csv") if folder else "meta.csv"
            if meta not in tables:
                tables[meta] = self._splits(root, meta) if meta in paths else {}
            cases.append(_with_split(case, tables[meta], meta))
        return cases

    @staticmethod
    def _splits(root: str, meta: str) -> dict[str, str] | str:
        """The official splits of one meta.csv, or why it cannot be read as a table."""
        try:
            return official_splits(storage.read_listing(storage.join(root, meta), root).decode("utf-8", "replace"))
        except PipelineError as exc:
            return f"{meta} cannot be read ({exc.reason.value})"
        except (csv.Error, ValueError) as exc:
            return f"{meta} is not a ';' or ',' separated table ({type(exc).__name__})"


def _with_split(case: CaseRef, splits: dict[str, str] | str, meta: str) -> CaseRef:
    """The case with its official split from `splits`, or refused (`bad_listing`) when its meta.csv cannot
    be read or gives it a split that is not train/val/test."""
    if case.listing_error:
        return case
    if isinstance(splits, str):
        return dataclasses.replace(case, listing_error=ListingError(Reason.BAD_LISTING.value, splits))
    split = splits.get(case.case_id.split("/", 1)[1])
    if split == UNKNOWN_SPLIT:
        return dataclasses.replace(
            case,
            listing_error=ListingError(
                Reason.BAD_LISTING.value, f"{meta} gives this case a split other than train, val or test"
            ),
        )
    return dataclasses.replace(case, official_split=split) if split else case
