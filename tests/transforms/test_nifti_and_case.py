"""NIfTI affine resolution, label checks and case-level quarantine reasons."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import write_nifti
from transforms import nifti
from transforms.caseref import CaseRef, SequenceRef
from transforms.errors import PipelineError, Reason
from transforms.loading import load_nifti_case
from transforms.phantoms import grid_affine


def header_with(sform=None, sform_code=0, qform=None, qform_code=0):
    image = nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), None)
    if sform is not None:
        image.header.set_sform(sform, code=sform_code)
    if qform is not None:
        image.header.set_qform(qform, code=qform_code)
    return image.header


def test_sform_preferred_and_disagreement_flagged():
    sform = grid_affine("LPS", (0.7, 0.7, 2.5), (10, 20, 30))
    qform = grid_affine("LPS", (0.7, 0.7, 2.5), (10, 20, 35))
    resolved = nifti.resolve_affine(header_with(sform, 1, qform, 1))
    assert resolved.source == "sform" and resolved.sform_qform_mismatch
    np.testing.assert_allclose(resolved.affine_ras, sform, atol=1e-5)


def test_qform_only_file_uses_the_qform():
    qform = grid_affine("PSL", (0.5, 3.0, 2.0), (1, 2, 3))
    resolved = nifti.resolve_affine(header_with(qform=qform, qform_code=1))
    assert resolved.source == "qform" and not resolved.sform_qform_mismatch
    np.testing.assert_allclose(resolved.affine_ras, qform, atol=1e-5)


def test_no_form_falls_back_to_pixdim():
    header = header_with()
    header.set_zooms((0.5, 2.0, 3.0))
    resolved = nifti.resolve_affine(header)
    assert resolved.source == "pixdim"
    np.testing.assert_allclose(np.linalg.norm(resolved.affine_ras[:3, :3], axis=0), (0.5, 2.0, 3.0))


def case_on_disk(tmp_path, labels, label_map=((1, "organ"),), image=None, mask_affine=None):
    affine = grid_affine("RAS", (1.0, 1.0, 2.0))
    image = np.zeros(labels.shape, np.int16) if image is None else image
    image_path = write_nifti(tmp_path / "img.nii.gz", image, affine)
    mask_path = write_nifti(tmp_path / "seg.nii.gz", labels, affine if mask_affine is None else mask_affine)
    case = CaseRef("t", "c", "c", image_path, mask_path, (SequenceRef("CT", "CT"),), label_map)
    return case, image_path, mask_path


def test_float_labels_near_integers_are_rounded_not_truncated(tmp_path):
    labels = np.zeros((6, 6, 4), np.float32)
    labels[2:4, 2:4, 1:3] = 0.9999
    case, image_path, mask_path = case_on_disk(tmp_path, labels)
    loaded = load_nifti_case(case, image_path, mask_path)
    assert set(np.unique(loaded.labels.array)) == {0, 1}


def test_fractional_labels_are_refused(tmp_path):
    labels = np.zeros((6, 6, 4), np.float32)
    labels[1, 1, 1] = 0.5
    case, image_path, mask_path = case_on_disk(tmp_path, labels)
    with pytest.raises(PipelineError) as error:
        load_nifti_case(case, image_path, mask_path)
    assert error.value.reason is Reason.NONINT_LABELS


def test_label_outside_the_label_map_is_refused(tmp_path):
    labels = np.zeros((6, 6, 4), np.uint8)
    labels[1, 1, 1] = 9
    case, image_path, mask_path = case_on_disk(tmp_path, labels)
    with pytest.raises(PipelineError) as error:
        load_nifti_case(case, image_path, mask_path)
    assert error.value.reason is Reason.UNKNOWN_LABEL and "[9]" in error.value.message


def test_mask_on_another_grid_is_refused(tmp_path):
    labels = np.zeros((6, 6, 4), np.uint8)
    shifted = grid_affine("RAS", (1.0, 1.0, 2.0), (0.0, 0.0, 1.0))
    case, image_path, mask_path = case_on_disk(tmp_path, labels, mask_affine=shifted)
    with pytest.raises(PipelineError) as error:
        load_nifti_case(case, image_path, mask_path)
    assert error.value.reason is Reason.MASK_GRID_MISMATCH and "origin" in error.value.message


@pytest.mark.parametrize(
    "corrupt, reason",
    [
        (lambda data: data[: len(data) // 2], Reason.TRUNCATED_GZIP),
        (lambda data: gzip.decompress(data)[:200], Reason.NOT_GZIP),
    ],
)
def test_corrupt_files_get_their_reason(tmp_path, corrupt, reason):
    labels = np.zeros((6, 6, 4), np.uint8)
    case, image_path, mask_path = case_on_disk(tmp_path, labels)
    with open(image_path, "rb") as handle:
        data = handle.read()
    with open(image_path, "wb") as handle:
        handle.write(corrupt(data))
    with pytest.raises(PipelineError) as error:
        load_nifti_case(case, image_path, mask_path)
    assert error.value.reason is reason


def test_four_d_image_is_split_by_channel_never_spatially(tmp_path):
    affine = grid_affine("LPS", (1.0, 1.0, 1.0))
    image = np.stack([np.full((5, 6, 7), value, np.int16) for value in (10, 20, 30)], axis=-1)
    labels = np.zeros((5, 6, 7), np.uint8)
    image_path = write_nifti(tmp_path / "img.nii.gz", image, affine)
    mask_path = write_nifti(tmp_path / "seg.nii.gz", labels, affine)
    sequences = tuple(SequenceRef(name, "MRI", channel) for channel, name in enumerate(("A", "B", "C")))
    case = CaseRef("t", "c", "c", image_path, mask_path, sequences, ((1, "x"),))
    loaded = load_nifti_case(case, image_path, mask_path)
    assert {name: float(v.array.mean()) for name, v in loaded.images.items()} == {"A": 10, "B": 20, "C": 30}
    assert all(v.array.shape == (5, 6, 7) for v in loaded.images.values())


def test_scl_slope_on_a_mask_does_not_rescale_label_codes(tmp_path):
    labels = np.zeros((6, 6, 4), np.uint8)
    labels[1:3, 1:3, 1] = 1
    case, image_path, mask_path = case_on_disk(tmp_path, labels)
    mask = nib.load(mask_path)
    scaled = nib.Nifti1Image(np.asanyarray(mask.dataobj), mask.affine, mask.header)
    scaled.header.set_slope_inter(0.5, 0.0)
    nib.save(scaled, mask_path)
    assert nib.load(mask_path).dataobj.slope == 0.5
    loaded = load_nifti_case(case, image_path, mask_path)
    assert set(np.unique(loaded.labels.array)) == {0, 1}


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32, np.int64])
def test_present_labels_matches_unique_on_views_and_edge_values(dtype):
    """The flag pass must agree with np.unique on flipped/transposed views, 2D slices and values that
    take the fallback (negative, or too large to flag)."""
    from transforms.volume import present_labels

    rng = np.random.default_rng(int(np.dtype(dtype).itemsize))
    volume = np.where(rng.random((37, 23, 11)) < 0.02, rng.integers(1, 120, (37, 23, 11)), 0).astype(dtype)
    for view in (volume, volume[::-1, :, ::-1], volume.transpose(2, 0, 1), volume[:, 5], volume[:0]):
        assert present_labels(view) == set(np.unique(view).tolist()) - {0}
    if np.dtype(dtype).kind == "i":
        volume[3, 4, 5] = -2
        assert present_labels(volume) == set(np.unique(volume).tolist()) - {0}
    if np.iinfo(dtype).max >= 1 << 16:
        volume[3, 4, 5] = 1 << 20
        assert present_labels(volume) == set(np.unique(volume).tolist()) - {0}


@pytest.mark.parametrize("order", ["F", "C"])
@pytest.mark.parametrize("slope, inter", [(1.0, 0.0), (0.37, -1024.5)])
@pytest.mark.parametrize("dtype", ["<i2", ">i2", "u1", "i1", "<u2", "<i4", ">u4", ">i8", "<u8", ">f8", "<f4", "g"])
def test_scaled_voxels_equal_nibabels_in_any_memory_order(monkeypatch, order, slope, inter, dtype):
    """Slab-wise scaling (several slabs here) equals nibabel's float64 result, row-major whatever raw's order
    and dtype (a column-major volume is transposed as bytes, so byte order and width must survive)."""
    monkeypatch.setattr(nifti, "SCALING_SLAB_VOXELS", 100)
    kind = np.dtype(dtype)
    low, high = (max(-3000, np.iinfo(kind).min), min(3000, np.iinfo(kind).max)) if kind.kind in "ui" else (-3000, 3000)
    values = np.random.default_rng(3).integers(low, high, (9, 7, 5))
    raw = np.asarray(values, dtype=dtype, order=order)
    scaled = nifti._scaled_float32(raw, slope, inter)
    np.testing.assert_array_equal(scaled, (raw * np.float64(slope) + np.float64(inter)).astype(np.float32))
    assert scaled.flags.c_contiguous and scaled.dtype == np.float32


def test_a_one_dimensional_nifti_is_refused_from_its_header(tmp_path):
    """dim[0] = 1 is a valid NIfTI header but no image: refused before nibabel or numpy see the voxels."""
    path = str(tmp_path / "line.nii")
    nib.save(nib.Nifti1Image(np.zeros(64, np.int16), np.eye(4)), path)
    with open(path, "rb") as handle:
        head = handle.read()
    with pytest.raises(PipelineError) as refused:
        nifti.check_raw_header(head, path, "line.nii")
    assert refused.value.reason is Reason.BAD_SHAPE and "1D image" in str(refused.value)
