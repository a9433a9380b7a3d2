"""Declarative source layouts: listing rules on plain path lists, merged structure masks, remote listings."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import storage
from pipeline.sources import get_source
from pipeline.sources.layout import DatasetFacts, Series, match_series, usable
from tests.conftest import s3_client, upload_tree
from tests.source_fixtures import FIXTURES, TOTALSEG_PARTS
from transforms.caseref import CaseRef
from transforms.loading import load_case
from transforms.phantoms import centred_affine, rasterize

FACTS = DatasetFacts("toy", "CC0-1.0", True)
SERIES = Series(
    "CT",
    "CT",
    image=r"images/(?P<case>c\d+)_0000\.nii\.gz",
    mask=r"labels/(?P<case>c\d+)\.nii\.gz",
    labels={1: "liver"},
)


def ids(cases: list[CaseRef]) -> dict[str, str | None]:
    return {case.case_id: case.listing_error and case.listing_error[0] for case in cases}


def test_images_join_masks_at_any_depth_and_debris_is_ignored():
    paths = usable(
        [
            "dl/v2/images/c1_0000.nii.gz",
            "dl/v2/labels/c1.nii.gz",
            "dl/v2/images/._c1_0000.nii.gz",
            "__MACOSX/dl/v2/images/c2_0000.nii.gz",
            "dl/v2/labels/c2.nii.gz",
            "dl/v2/images/c1_0000.nii.gz.bak",
        ]
    )
    cases = match_series(SERIES, "gs://bucket/root", paths, FACTS)
    assert ids(cases) == {"c1": None}
    assert (cases[0].image_uri, cases[0].mask_uri) == (
        "gs://bucket/root/dl/v2/images/c1_0000.nii.gz",
        "gs://bucket/root/dl/v2/labels/c1.nii.gz",
    )


def test_a_missing_mask_is_quarantined_or_skipped_as_the_source_declares():
    paths = ["images/c1_0000.nii.gz"]
    assert ids(match_series(SERIES, "r", paths, FACTS)) == {"c1": "missing_file"}
    skipping = Series(**{**SERIES.__dict__, "unlabelled": "skip"})
    assert match_series(skipping, "r", paths, FACTS) == []


def test_two_images_claiming_one_case_are_both_refused():
    paths = ["a/images/c1_0000.nii.gz", "b/images/c1_0000.nii.gz", "a/labels/c1.nii.gz"]
    assert ids(match_series(SERIES, "r", paths, FACTS)) == {
        "c1#a/images/c1_0000.nii.gz": "bad_listing",
        "c1#b/images/c1_0000.nii.gz": "bad_listing",
    }


def test_several_masks_for_one_image_are_refused():
    paths = ["images/c1_0000.nii.gz", "a/labels/c1.nii.gz", "b/labels/c1.nii.gz"]
    assert ids(match_series(SERIES, "r", paths, FACTS)) == {"c1": "bad_listing"}


def test_where_and_official_split_come_from_path_groups():
    amos = get_source("amos22")
    paths = [
        "imagesTr/amos_0001.nii.gz",
        "labelsTr/amos_0001.nii.gz",
        "imagesVa/amos_0600.nii.gz",
        "labelsVa/amos_0600.nii.gz",
    ]
    ct, mri = (match_series(series, "r", paths, FACTS) for series in amos.series)
    assert [(c.case_id, c.official_split) for c in ct] == [("amos_0001", "train")]
    assert [(c.case_id, c.official_split) for c in mri] == [("amos_0600", "validation")]


def test_structure_masks_merge_lower_label_first(tmp_path):
    """TotalSegmentator parts: the rib (92) overlaps liver (5) and spleen (1); both keep their voxels."""
    FIXTURES["totalsegmentator"](str(tmp_path))
    cases = {case.case_id: case for case in get_source("totalsegmentator").list_cases(str(tmp_path))}
    case = cases["ct/s0001"]
    assert case.official_split == "train" and [value for value, _ in case.mask_parts] == [1, 5, 92]
    loaded = load_case(case, {uri: uri for uri in case.input_uris()})
    affine = centred_affine((32, 32, 8), "LPS", (1.0, 1.0, 3.0))
    part = {name: rasterize((32, 32, 8), affine, (cuboid,)) > 0 for name, cuboid in TOTALSEG_PARTS.items()}
    expected = np.zeros((32, 32, 8), np.uint8)
    expected[part["rib_left_1"]] = 92
    expected[part["liver"]] = 5
    expected[part["spleen"]] = 1
    stored = np.flip(loaded.labels.array, axis=(0, 1))  # canonical RAS back to the stored LPS order
    assert np.array_equal(stored, expected)
    assert cases["ct/s0003"].listing_error[0] == "unknown_label"


@pytest.mark.parametrize("name", ["kits23", "brats24"])
def test_listing_from_gcs_equals_the_local_listing(tmp_path, gcs_emulator, name):
    FIXTURES[name](str(tmp_path))
    storage.gcs_filesystem().mkdir(f"layout-{name.replace('_', '-')}")
    root = f"gs://layout-{name.replace('_', '-')}/raw"
    upload_tree(str(tmp_path), root)
    source = get_source(name)
    local = [(c.case_id, c.image_uri[len(str(tmp_path)) :]) for c in source.list_cases(str(tmp_path))]
    remote = [(c.case_id, c.image_uri[len(root) :]) for c in source.list_cases(root)]
    assert remote == local and len(local) >= 3


def test_nearest_placement_of_a_finer_mask_and_refusal_of_a_disjoint_one():
    from transforms.errors import PipelineError
    from transforms.phantoms import Cuboid
    from transforms.volume import Volume, place_nearest

    cube = (Cuboid(3, (-6.0, -6.0, -6.0), (6.0, 6.0, 6.0)),)
    coarse_affine = centred_affine((12, 12, 12), "LPS", (2.0, 2.0, 2.0))
    fine_affine = centred_affine((24, 24, 24), "RAS", (1.0, 1.0, 1.0))
    fine = Volume(rasterize((24, 24, 24), fine_affine, cube), fine_affine)
    placed = place_nearest(Volume(np.zeros((12, 12, 12)), coarse_affine), fine)
    assert np.array_equal(placed.array, rasterize((12, 12, 12), coarse_affine, cube))  # 12 mm cube: 6 voxels a side
    shifted = fine_affine.copy()
    shifted[0, 3] += 200.0  # 200 mm to the side: no overlap at all
    far = Volume(fine.array, shifted)
    with pytest.raises(PipelineError) as error:
        place_nearest(Volume(np.zeros((12, 12, 12)), coarse_affine), far)
    assert error.value.reason.value == "mask_grid_mismatch"


def test_listing_from_s3_equals_the_local_listing(tmp_path, s3_server):
    s3_client(s3_server).create_bucket(Bucket="layout-acdc")
    FIXTURES["acdc"](str(tmp_path))
    upload_tree(str(tmp_path), "s3://layout-acdc/raw")
    source = get_source("acdc")
    local = [(c.case_id, c.official_split, c.image_uri[len(str(tmp_path)) :]) for c in source.list_cases(str(tmp_path))]
    remote = [
        (c.case_id, c.official_split, c.image_uri[len("s3://layout-acdc/raw") :])
        for c in source.list_cases("s3://layout-acdc/raw")
    ]
    assert remote == local and len(local) == 5
