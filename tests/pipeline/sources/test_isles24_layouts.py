"""ISLES'24 in the layouts a user can download today, generated here: the Zenodo release (masks and
DWI/ADC registered to the acute NCCT under derivatives/, raw MRI on another grid), the challenge's BIDS
download (mask on the raw MRI grid, with the session and subject spellings of its documentation) and
MedVision's mirror (Images-ADC/, Images-DWI/, Masks/). Each mask is paired with images on its own grid."""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.sources.isles24 import Isles24Source
from tests.source_fixtures import phantom, write_mask, write_nifti, write_pair

NCCT_GRID = dict(orientation="LPS", spacing_mm=(0.9, 0.9, 2.0), shape=(30, 30, 10))
MRI_GRID = dict(orientation="RAS", spacing_mm=(1.2, 1.2, 4.0), shape=(24, 24, 6))


def write_on_grid(root, relative: str, grid: dict, labels: bool = False) -> None:
    image, mask, affine = phantom((1,), seed=len(relative), **grid)
    write_nifti(os.path.join(root, relative), mask if labels else image, affine)


def zenodo(root) -> None:
    """sub-stroke0001 complete; sub-stroke0003 lacks its registered ADC (only the raw one)."""
    for subject in ("sub-stroke0001", "sub-stroke0003"):
        case = f"{subject}_ses-02"
        for kind in ("dwi", "adc"):
            write_on_grid(root, f"raw_data/{subject}/ses-02/dwi/{case}_{kind}.nii.gz", MRI_GRID)
        write_on_grid(root, f"raw_data/{subject}/ses-01/{subject}_ses-01_ncct.nii.gz", NCCT_GRID)
        write_on_grid(root, f"derivatives/{subject}/ses-02/{case}_space-ncct_lesion-msk.nii.gz", NCCT_GRID, True)
        kinds = ("dwi", "adc") if subject == "sub-stroke0001" else ("dwi",)
        for kind in kinds:
            write_on_grid(root, f"derivatives/{subject}/ses-02/{case}_space-ncct_{kind}.nii.gz", NCCT_GRID)
    # the release's one stray uncompressed native-space mask: not a layout file, ignored
    open(os.path.join(root, "derivatives/sub-stroke0001/ses-02/sub-stroke0001_ses-02_lesion-msk.nii"), "wb").close()


def challenge(root) -> None:
    """The BIDS download, once as listed in the challenge's data folder and once with the spellings of
    its README (rawdata/, ses-0002, sub-strokecase)."""
    for raw, subject, session in (
        ("raw_data", "sub-stroke0004", "ses-02"),
        ("rawdata", "sub-strokecase0005", "ses-0002"),
    ):
        case = f"{subject}_{session}"
        for kind in ("dwi", "adc"):
            write_pair(root, f"{raw}/{subject}/{session}/{case}_{kind}.nii.gz", "", (1,))
        write_mask(root, f"derivatives/{subject}/{session}/{case}_lesion-msk.nii.gz", (1,))  # the MRI's grid


def mirror(root) -> None:
    case = "sub-stroke0006_ses-02"
    write_pair(root, f"Images-ADC/{case}_adc.nii.gz", f"Masks/{case}_lesion-msk.nii.gz", (1,))
    write_pair(root, f"Images-DWI/{case}_dwi.nii.gz", "", (1,))


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, str]:
    found = {}
    for name, writer in (("zenodo", zenodo), ("challenge", challenge), ("mirror", mirror)):
        root = str(tmp_path_factory.mktemp(name))
        writer(root)
        found[name] = root
    return found


def listing(root: str) -> dict[str, tuple[str, str, str]]:
    """case id -> (image path below root, mask path below root, listing error reason)."""
    cases = Isles24Source().list_cases(root)
    strip = lambda uri: os.path.relpath(uri, root) if uri else ""  # noqa: E731
    return {c.case_id: (strip(c.image_uri), strip(c.mask_uri), (c.listing_error or ("",))[0]) for c in cases}


def test_zenodo_masks_pair_with_the_images_registered_to_the_ncct(roots):
    cases = listing(roots["zenodo"])
    assert sorted(cases) == [
        "sub-stroke0001_ses-02/ADC",
        "sub-stroke0001_ses-02/DWI",
        "sub-stroke0003_ses-02/ADC",
        "sub-stroke0003_ses-02/DWI",
    ]
    image, mask, error = cases["sub-stroke0001_ses-02/DWI"]
    assert image.endswith("sub-stroke0001_ses-02_space-ncct_dwi.nii.gz") and not error
    assert mask.endswith("sub-stroke0001_ses-02_space-ncct_lesion-msk.nii.gz")
    assert cases["sub-stroke0003_ses-02/ADC"][2] == "missing_file"  # the raw ADC is on another grid


def test_a_zenodo_case_without_its_registered_image_says_why(roots):
    case = next(c for c in Isles24Source().list_cases(roots["zenodo"]) if c.case_id == "sub-stroke0003_ses-02/ADC")
    assert "NCCT grid" in case.listing_error[1] and "space-ncct_adc" in case.listing_error[1]


def test_the_challenge_download_pairs_raw_mri_with_its_mask(roots):
    cases = listing(roots["challenge"])
    assert sorted(cases) == [
        "sub-stroke0004_ses-02/ADC",
        "sub-stroke0004_ses-02/DWI",
        "sub-strokecase0005_ses-0002/ADC",
        "sub-strokecase0005_ses-0002/DWI",
    ]
    assert all(not error and "lesion-msk" in mask for _, mask, error in cases.values())
    assert cases["sub-strokecase0005_ses-0002/ADC"][0].startswith("rawdata/")


def test_medvisions_mirror_pairs_both_sequences_with_the_one_mask(roots):
    cases = listing(roots["mirror"])
    assert {case: (image.split("/")[0], mask) for case, (image, mask, _) in cases.items()} == {
        "sub-stroke0006_ses-02/ADC": ("Images-ADC", "Masks/sub-stroke0006_ses-02_lesion-msk.nii.gz"),
        "sub-stroke0006_ses-02/DWI": ("Images-DWI", "Masks/sub-stroke0006_ses-02_lesion-msk.nii.gz"),
    }


def test_every_layout_builds_pairs_on_the_masks_grid(roots, tmp_path):
    output = str(tmp_path / "out")
    argv = ["build", "--output", output, "--spacing", "2.0"]
    for root in roots.values():
        argv += ["--source", f"isles24={root}"]
    assert main(argv) == 0
    stats = json.loads(open(os.path.join(output, "stats.json")).read())
    assert stats["cases"]["isles24"] == {"listed": 10, "with_pairs": 9}
    quarantine = pq.read_table(os.path.join(output, "quarantine")).to_pylist()
    assert [(q["case_id"], q["reason"]) for q in quarantine] == [("sub-stroke0003_ses-02/ADC", "missing_file")]
    rows = pq.read_table(os.path.join(output, "dataset=isles24"), columns=["case_id", "label_name"]).to_pylist()
    assert {row["label_name"] for row in rows} == {"stroke infarct"}
    assert len({row["case_id"] for row in rows}) == 9
