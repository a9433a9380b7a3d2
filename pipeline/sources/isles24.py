"""ISLES 2024: ischaemic stroke, follow-up DWI and ADC with the infarct mask.

Cite: Riedel E.O. et al., "ISLES'24 - A Real-World Longitudinal Multimodal Stroke Dataset",
arXiv:2408.11142 (2024).

Raw layout (BIDS): `raw_data/sub-stroke<NNNN>/ses-02/sub-stroke<NNNN>_ses-02_{dwi,adc}.nii.gz`
and `derivatives/sub-stroke<NNNN>/ses-02/sub-stroke<NNNN>_ses-02_lesion-msk.nii.gz`. Copies
that add a `dwi/` folder level are matched too (only file names are keyed). The acute CT of
ses-01 is not used.
"""
from pipeline.sources.base import SourceInfo
from pipeline.sources.layout import LayoutSource, Series

CASE = r"(?P<case>(?P<subject>sub-stroke\d{4})_ses-02)"
MASK = rf"derivatives/(?:[^/]+/)*{CASE}_lesion-msk\.nii\.gz"


def _series(name: str, suffix: str) -> Series:
    return Series(name, "MRI", image=rf"raw_data/(?:[^/]+/)*{CASE}_{suffix}\.nii\.gz", mask=MASK,
                  case_id="{case}/" + name, subject_id="{subject}", labels={1: "stroke infarct"})


class Isles24Source(LayoutSource):
    info = SourceInfo("isles24", "brain (ischaemic stroke)", ("MRI",), ("detection",), "CC-BY-NC-SA-4.0", True,
                      "Riedel et al., ISLES'24, arXiv:2408.11142")
    series = (_series("ADC", "adc"), _series("DWI", "dwi"))
