"""Formats (NIfTI, DICOM series, MHA, NRRD) agree; real files no one here wrote; the fault corpus."""

from __future__ import annotations

import glob
import gzip
import json
import os
import shutil

import nibabel as nib
import numpy as np
import pyarrow.parquet as pq
import pydicom.data
import pytest

from pipeline.cli import main
from tests.conftest import write_nifti
from tests.formats import write_dicom_series, write_enhanced_multiframe, write_itk
from transforms import dicom, dicom_seg
from transforms.boxes import component_boxes
from transforms.caseref import CaseRef, SequenceRef
from transforms.errors import PipelineError, Reason
from transforms.loading import load_case
from transforms.phantoms import Cuboid, centred_affine, rasterize
from transforms.slicing import extract_slices
from transforms.volume import Volume, grid_affine

SHAPE, SPACING = (40, 36, 12), (0.7, 0.9, 2.5)
CUBE = Cuboid(1, (-8.0, -6.0, -10.0), (9.0, 7.0, 8.0))


def phantom(orientation="LPS"):
    affine = centred_affine(SHAPE, orientation, SPACING)
    labels = rasterize(SHAPE, affine, (CUBE,))
    return (labels * 200 - 100).astype(np.float32), labels, affine


def write_image(folder, fmt, image, affine) -> str:
    """The image in one format; the returned URI of a DICOM series ends in '/'."""
    if fmt == "dicom":
        return write_dicom_series(os.path.join(folder, "series"), image, affine) + "/"
    if fmt == "nifti":
        return write_nifti(os.path.join(folder, "img.nii.gz"), image.astype(np.int16), affine)
    return write_itk(os.path.join(folder, f"img.{fmt}"), image.astype(np.int16), affine)


@pytest.mark.parametrize("orientation", ["LPS", "PSL", "LAS", "ASL"])  # right- and left-handed storage
def test_same_phantom_in_every_format_gives_identical_pairs(tmp_path, orientation):
    image, labels, affine = phantom(orientation)
    mask = write_nifti(tmp_path / "seg.nii.gz", labels, affine)
    results = {}
    for fmt in ("nifti", "dicom", "mha", "nrrd"):
        uri = write_image(str(tmp_path / fmt), fmt, image, affine)
        case = CaseRef("t", "c", "c", uri, mask, (SequenceRef("CT", "CT"),), ((1, "cube"),))
        loaded = load_case(case, {uri: uri.rstrip("/"), mask: mask})
        boxes = [
            (c.plane, c.slice_index, b.box_xyxy_px, c.spacing_mm_row_col)
            for c in extract_slices(loaded, "finest")
            for b in component_boxes(c.labels_2d)
        ]
        results[fmt] = (boxes, float(loaded.images["CT"].array.mean()), loaded.geometry.orig_orientation)
    reference = results["nifti"]
    for fmt, (boxes, mean, stored) in results.items():
        # DICOM stacks run along row x column, so left-handed storage comes back with k reversed
        assert stored == orientation or fmt == "dicom", fmt
        assert mean == pytest.approx(reference[1], abs=1e-3), fmt  # RescaleSlope/Intercept applied
        assert [b[:3] for b in boxes] == [b[:3] for b in reference[0]], fmt
        assert all(np.allclose(b[3], r[3], atol=1e-4) for b, r in zip(boxes, reference[0])), fmt


def test_enhanced_multiframe_dicom_matches_the_classic_series(tmp_path):
    image, _, affine = phantom("PSL")
    classic = write_dicom_series(str(tmp_path / "classic"), image, affine)
    write_enhanced_multiframe(tmp_path / "enhanced" / "volume.dcm", image, affine)
    classic_array, classic_affine, _ = dicom.read_series(classic, "classic")
    enhanced_array, enhanced_affine, _ = dicom.read_series(str(tmp_path / "enhanced"), "enhanced")
    np.testing.assert_allclose(enhanced_affine, classic_affine, atol=1e-5)
    np.testing.assert_allclose(enhanced_array, classic_array, atol=1.0)  # slope 2: values round to 2 HU
    np.testing.assert_allclose(enhanced_array, image, atol=1.0)


def test_pydicom_bundled_ct_series_reads_with_its_geometry(tmp_path):
    source = os.path.join(os.path.dirname(pydicom.data.__file__), "test_files", "dicomdirtests", "98892001", "CT5N")
    array, affine, uneven = dicom.read_series(source, source)
    assert not uneven
    assert array.shape == (16, 16, 5)
    np.testing.assert_allclose(np.linalg.norm(affine[:3, :3], axis=0), (0.488281, 0.488281, 2.5), atol=1e-5)
    assert affine[2, 3] == pytest.approx(-1.2375)  # the lowest slice comes first, whatever the file order
    assert array.min() >= -1024  # stored values went through RescaleIntercept -1024


def test_jpeg_ls_lossless_series_decodes_like_the_uncompressed_original(tmp_path):
    data = os.path.join(os.path.dirname(pydicom.data.__file__), "test_files")
    for name in ("MR_small.dcm", "MR_small_jpeg_ls_lossless.dcm"):
        os.makedirs(tmp_path / name)
        shutil.copy(os.path.join(data, name), tmp_path / name / name)
    plain, plain_affine, _ = dicom.read_series(str(tmp_path / "MR_small.dcm"), "plain")
    compressed, compressed_affine, _ = dicom.read_series(str(tmp_path / "MR_small_jpeg_ls_lossless.dcm"), "jls")
    np.testing.assert_array_equal(compressed, plain)
    np.testing.assert_allclose(compressed_affine, plain_affine)


def test_nibabel_bundled_two_slice_mr_series_reads(tmp_path):
    data = os.path.join(os.path.dirname(nib.__file__), "nicom", "tests", "data")
    for name in ("0.dcm", "1.dcm"):
        shutil.copy(os.path.join(data, name), tmp_path / name)
    array, affine, _ = dicom.read_series(str(tmp_path), "mr")
    assert array.shape == (256, 256, 2)
    np.testing.assert_allclose(np.linalg.norm(affine[:3, :3], axis=0), (1.796875, 1.796875, 3.0), atol=1e-3)


def test_uneven_series_can_be_resampled_to_its_median_gap_and_flagged(tmp_path):
    image, _, affine = phantom()
    ramp = np.broadcast_to(np.arange(SHAPE[2], dtype=np.float32) * 10.0, SHAPE).copy()  # value = 10 x slice
    folder = write_dicom_series(str(tmp_path / "series"), ramp, affine, skip_slices=(5,))
    array, resampled_affine, uneven = dicom.read_series(folder, folder, allow_uneven=True)
    assert uneven and array.shape == SHAPE
    np.testing.assert_allclose(resampled_affine, affine, atol=1e-5)
    np.testing.assert_allclose(array[0, 0, :], np.arange(SHAPE[2]) * 10.0, atol=0.01)  # the gap is interpolated


@pytest.mark.parametrize(
    "fault, reason",
    [
        (dict(duplicate_slice=4), Reason.DUPLICATE_SLICE_POSITION),
        (dict(skip_slices=(5,)), Reason.UNEVEN_SPACING),
        (dict(drop_tag="ImagePositionPatient"), Reason.DICOM_MISSING_TAGS),
    ],
)
def test_dicom_series_faults_are_refused(tmp_path, fault, reason):
    image, _, affine = phantom()
    folder = write_dicom_series(str(tmp_path / "series"), image, affine, **fault)
    with pytest.raises(PipelineError) as error:
        dicom.read_series(folder, folder)
    assert error.value.reason is reason


# --- the fault corpus, built end to end in one run ---------------------------------------------


def corpus(root) -> tuple[str, dict[str, Reason | None]]:
    """An MSD-layout task mixing good cases in three formats with one case per fault."""
    task = os.path.join(str(root), "Task01_Faults")
    image, labels, affine = phantom()
    images, masks = os.path.join(task, "imagesTr"), os.path.join(task, "labelsTr")
    entries: list[dict] = []
    expected: dict[str, Reason | None] = {}

    def add(name: str, image_path: str, mask_path: str, reason: Reason | None = None) -> None:
        entries.append(
            {
                "image": os.path.relpath(image_path, task) + ("/" if image_path.endswith("/") else ""),
                "label": os.path.relpath(mask_path, task),
            }
        )
        expected[f"Task01_Faults/{name}"] = reason

    def nifti_pair(
        name, image_array=image, label_array=labels, image_affine=affine, label_affine=affine
    ) -> tuple[str, str]:
        return (
            write_nifti(os.path.join(images, f"{name}.nii.gz"), image_array.astype(np.int16), image_affine),
            write_nifti(os.path.join(masks, f"{name}.nii.gz"), label_array, label_affine),
        )

    add("good_nifti", *nifti_pair("good_nifti"))
    good_mask = os.path.join(masks, "good_nifti.nii.gz")
    add("good_dicom", write_dicom_series(os.path.join(images, "good_dicom"), image, affine) + "/", good_mask)
    add("good_mha", write_itk(os.path.join(images, "good_mha.mha"), image.astype(np.int16), affine), good_mask)
    # sform and qform disagree: kept (sform wins), flagged in provenance
    conflict_image, conflict_mask = nifti_pair("qform_conflict")
    header_image = nib.Nifti1Image.from_filename(conflict_image)
    shifted = affine.copy()
    shifted[:3, 3] += 5.0
    header_image.set_qform(shifted, code=1)
    nib.save(header_image, conflict_image)
    add("qform_conflict", conflict_image, conflict_mask)

    truncated, truncated_mask = nifti_pair("truncated")
    data = open(truncated, "rb").read()
    open(truncated, "wb").write(data[: len(data) // 2])
    add("truncated", truncated, truncated_mask, Reason.TRUNCATED_GZIP)
    plain, plain_mask = nifti_pair("not_gzip")
    open(plain, "wb").write(gzip.decompress(open(plain, "rb").read()))
    add("not_gzip", plain, plain_mask, Reason.NOT_GZIP)
    bomb = os.path.join(images, "bomb.nii.gz")
    header = nib.Nifti1Header()
    header.set_data_shape((30000, 30000, 12))  # 1.08e10 voxels declared, a few bytes stored
    open(bomb, "wb").write(gzip.compress(header.binaryblock + b"\0" * 4 + b"\0" * 1024))
    add("bomb", bomb, good_mask, Reason.TOO_LARGE)
    add("mask_shape", *nifti_pair("mask_shape", label_array=labels[:, :, :-1].copy()), Reason.MASK_GRID_MISMATCH)
    moved = affine.copy()
    moved[:3, 3] += (0.0, 0.0, 1.0)
    add("mask_shifted", *nifti_pair("mask_shifted", label_affine=moved), Reason.MASK_GRID_MISMATCH)
    add("float_labels", *nifti_pair("float_labels", label_array=labels * np.float32(0.5)), Reason.NONINT_LABELS)
    add("unknown_label", *nifti_pair("unknown_label", label_array=labels * np.uint8(3)), Reason.UNKNOWN_LABEL)
    sheared = affine.copy()
    sheared[0, 1] += 0.3
    add("sheared", *nifti_pair("sheared", image_affine=sheared, label_affine=sheared), Reason.NON_ORTHONORMAL)
    for name, fault, reason in (
        ("dicom_duplicate", dict(duplicate_slice=4), Reason.DUPLICATE_SLICE_POSITION),
        ("dicom_gap", dict(skip_slices=(5,)), Reason.UNEVEN_SPACING),
        ("dicom_no_position", dict(drop_tag="ImagePositionPatient"), Reason.DICOM_MISSING_TAGS),
    ):
        series = write_dicom_series(os.path.join(images, name), image, affine, **fault)
        add(name, series + "/", good_mask, reason)
    meta = {"name": "faults", "modality": {"0": "CT"}, "labels": {"0": "background", "1": "cube"}, "training": entries}
    json.dump(meta, open(os.path.join(task, "dataset.json"), "w"))
    return task, expected


def test_fault_corpus_quarantines_each_fault_and_writes_every_good_case(tmp_path):
    task, expected = corpus(tmp_path)
    output = str(tmp_path / "out")
    assert main(["build", "--source", f"msd={task}", "--output", output]) == 0
    quarantine = [
        r for f in glob.glob(os.path.join(output, "quarantine", "*.parquet")) for r in pq.read_table(f).to_pylist()
    ]
    got = {q["case_id"]: q["reason"] for q in quarantine if q["stage"] == "load"}
    assert got == {case: reason.value for case, reason in expected.items() if reason}
    pairs = [
        r
        for f in glob.glob(os.path.join(output, "dataset=msd/task=detection/split=*/*.parquet"))
        for r in pq.read_table(f, columns=["case_id", "provenance"]).to_pylist()
    ]
    written = {r["case_id"] for r in pairs}
    assert written == {case for case, reason in expected.items() if reason is None}
    assert all(r["provenance"]["sform_qform_mismatch"] == r["case_id"].endswith("qform_conflict") for r in pairs)
    for path in glob.glob(os.path.join(output, "**", "*.parquet"), recursive=True):
        data = open(path, "rb").read()
        assert b"Secret^Patient" not in data and b"MRN-12345" not in data and b"private" not in data
    stats = json.load(open(os.path.join(output, "stats.json")))
    assert stats["cases"]["msd"] == {"listed": len(expected), "with_pairs": len(written)}


def test_failure_fraction_over_the_limit_fails_the_run(tmp_path, capsys):
    task, expected = corpus(tmp_path)
    output = str(tmp_path / "out")
    assert main(["build", "--source", f"msd={task}", "--output", output, "--max-failure-fraction", "0.5"]) == 1
    failed = sum(1 for reason in expected.values() if reason) / len(expected)
    assert f"exceeds --max-failure-fraction 0.5 (msd: {failed:.1%} of cases)" in capsys.readouterr().err
    assert os.path.exists(os.path.join(output, "stats.json")) and not os.path.exists(os.path.join(output, "_SUCCESS"))


def test_nilearn_mni152_template_builds_through_the_pipeline(tmp_path):
    """A real template no one here wrote, read by the real reader, with GM/WM maps thresholded to labels."""
    import nilearn

    data = os.path.join(os.path.dirname(nilearn.__file__), "datasets", "data")
    template = os.path.join(data, "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    grey, white = (
        np.asanyarray(nib.load(os.path.join(data, f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz")).dataobj)
        for kind in ("gm", "wm")
    )
    labels = np.where((white >= 128) & (white >= grey), 2, np.where(grey >= 128, 1, 0)).astype(np.uint8)
    task = tmp_path / "Task01_MNI"
    for folder in ("imagesTr", "labelsTr"):
        os.makedirs(task / folder)
    shutil.copy(template, task / "imagesTr" / "mni152.nii.gz")
    nib.save(nib.Nifti1Image(labels, nib.load(template).affine), str(task / "labelsTr" / "mni152.nii.gz"))
    json.dump(
        {
            "modality": {"0": "T1w"},
            "labels": {"0": "background", "1": "grey matter", "2": "white matter"},
            "training": [{"image": "./imagesTr/mni152.nii.gz", "label": "./labelsTr/mni152.nii.gz"}],
        },
        open(task / "dataset.json", "w"),
    )
    output = str(tmp_path / "out")
    assert main(["build", "--source", f"msd={task}", "--output", output]) == 0
    rows = [
        r
        for f in glob.glob(os.path.join(output, "dataset=msd/task=detection/split=*/*.parquet"))
        for r in pq.read_table(
            f, columns=["plane", "label_name", "pixel_spacing_mm", "image_width_px", "image_height_px", "provenance"]
        ).to_pylist()
    ]
    assert {r["label_name"] for r in rows} == {"grey matter", "white matter"}
    assert {r["pixel_spacing_mm"] for r in rows} == {1.0}
    sizes = {r["plane"]: (r["image_width_px"], r["image_height_px"]) for r in rows}
    assert sizes == {"axial": (197, 233), "coronal": (197, 189), "sagittal": (233, 189)}
    assert {r["provenance"]["orig_orientation"] for r in rows} == {"RAS"}
    assert not glob.glob(os.path.join(output, "quarantine", "*.parquet"))


def test_gantry_tilted_series_is_refused_as_sheared(tmp_path):
    image, _, affine = phantom()
    tilted = affine.copy()
    tilted[0, 2] += 0.5  # each slice also moves 0.5 mm sideways: an 11 degree tilt
    folder = write_dicom_series(str(tmp_path / "series"), image, tilted)
    with pytest.raises(PipelineError) as error:
        dicom.read_series(folder, folder)
    assert error.value.reason is Reason.NON_ORTHONORMAL and "gantry tilt" in error.value.message


@pytest.mark.parametrize("labels", [False, True], ids=["image", "label raster"])
def test_planar_image_over_the_budget_is_refused_from_its_header(tmp_path, labels):
    """An image over the memory budget, or a 2D label raster larger than the image it labels (a mask's
    budget is its image's pixels), is refused before any pixel is decoded."""
    from PIL import Image

    from transforms.readers import PlanarGeometry, read_planar

    path = str(tmp_path / "big.png")
    Image.fromarray(np.zeros((40, 30), np.uint8)).save(path)
    with pytest.raises(PipelineError) as error:
        read_planar(path, PlanarGeometry("AIR", (0.1, 0.1)), path, max_pixels=1000, labels=labels)
    assert error.value.reason is Reason.TOO_LARGE


def test_series_folder_hygiene(tmp_path):
    """Non-image objects are skipped; a corrupt slice fails the series instead of vanishing from it."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid

    image, _, affine = phantom()
    folder = write_dicom_series(str(tmp_path / "series"), image, affine)
    structure = Dataset()
    structure.file_meta = FileMetaDataset()
    structure.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    structure.file_meta.MediaStorageSOPClassUID = structure.SOPClassUID = RTStructureSetStorage
    structure.SOPInstanceUID = structure.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    structure.save_as(os.path.join(folder, "RS.dcm"), enforce_file_format=True)
    with open(os.path.join(folder, "notes.txt"), "w") as handle:
        handle.write("not DICOM")
    assert dicom.read_series(folder, folder)[0].shape == SHAPE
    slice_path = sorted(glob.glob(os.path.join(folder, "IM*.dcm")))[3]
    data = open(slice_path, "rb").read()
    open(slice_path, "wb").write(data[:400])
    with pytest.raises(PipelineError) as error:
        dicom.read_series(folder, folder)
    assert error.value.reason is Reason.UNREADABLE


def test_one_frame_enhanced_objects_decode_as_frames(tmp_path):
    image, _, affine = phantom()
    one_slice = image[:, :, :1].copy()
    write_enhanced_multiframe(tmp_path / "enhanced" / "frame.dcm", one_slice, affine)
    array, _, _ = dicom.read_series(str(tmp_path / "enhanced"), "enhanced")
    assert array.shape == (SHAPE[0], SHAPE[1], 1)
    np.testing.assert_allclose(array, one_slice, atol=1.0)


def test_series_folder_named_without_a_trailing_slash_still_loads(tmp_path):
    image, labels, affine = phantom()
    folder = write_dicom_series(str(tmp_path / "series"), image, affine)
    mask = write_nifti(tmp_path / "seg.nii.gz", labels, affine)
    case = CaseRef("t", "c", "c", folder, mask, (SequenceRef("CT", "CT"),), ((1, "cube"),))
    loaded = load_case(case, {folder: folder, mask: mask})
    assert loaded.geometry.affine_source == "dicom_positions"


# pydicom-data's liver.dcm: a real BINARY SEG (3 frames, 512x512, 0.810547 mm, 1 mm apart) whose
# CT is not distributed; the tests rebuild a CT series on its frame of reference around it.
LIVER_SPACING_MM = (0.810547, 0.810547, 1.0)
LIVER_FIRST_FRAME_RAS = np.array([235.2, 226.8, -128.69])  # LPS (-235.2, -226.8, -128.69)


def liver_seg() -> str:
    import data_store  # the pydicom-data package

    return os.path.join(os.path.dirname(data_store.__file__), "data", "liver.dcm")


def liver_ct_affine(first_slice_offset: int = 1, orientation: str = "LPS", shift_mm=(0.0, 0.0, 0.0)) -> np.ndarray:
    """An axial CT grid holding the SEG's frames on its slices `first_slice_offset`.. (k along S or I)."""
    affine = grid_affine(orientation, LIVER_SPACING_MM)
    affine[:3, 3] = LIVER_FIRST_FRAME_RAS + np.asarray(shift_mm)
    affine[:3, 3] -= affine[:3, 2] * first_slice_offset
    return affine


def test_dicom_seg_frames_land_on_their_slices_of_the_image_grid():
    frames = pydicom.dcmread(liver_seg()).pixel_array.astype(bool)  # stored at z = -128.69, -127.69, -126.69
    names = {0: "background", 1: "liver"}
    up = dicom_seg.read_label_map(liver_seg(), "liver.dcm", Volume(np.zeros((512, 512, 5)), liver_ct_affine()), names)
    assert up.array.dtype == np.uint8 and set(np.unique(up.array)) == {0, 1}
    for k, frame in zip((1, 2, 3), frames):  # frame rows run along j (P), columns along i (L)
        assert np.array_equal(up.array[:, :, k], frame.T)
    assert up.array[:, :, (0, 4)].sum() == 0
    down = dicom_seg.read_label_map(
        liver_seg(), "liver.dcm", Volume(np.zeros((512, 512, 5)), liver_ct_affine(1, "LPI", (0, 0, 2))), names
    )
    for k, frame in zip((3, 2, 1), frames):  # k runs down: the lowest frame lands on the highest k
        assert np.array_equal(down.array[:, :, k], frame.T)


@pytest.mark.parametrize(
    "grid, names, reason",
    [
        ((512, 512, 5), {1: "spleen"}, Reason.UNKNOWN_LABEL),
        ((512, 512, 3), {1: "Liver"}, Reason.MASK_GRID_MISMATCH),  # the last frame falls off the grid
        ((400, 512, 5), {1: "Liver"}, Reason.MASK_GRID_MISMATCH),  # frames wider than the image
    ],
    ids=["segment_not_in_label_map", "frame_beyond_last_slice", "frame_wider_than_image"],
)
def test_dicom_seg_that_does_not_fit_is_refused(grid, names, reason):
    with pytest.raises(PipelineError) as error:
        dicom_seg.read_label_map(liver_seg(), "liver.dcm", Volume(np.zeros(grid), liver_ct_affine()), names)
    assert error.value.reason == reason


def test_dicom_seg_half_a_voxel_off_the_grid_is_refused():
    shifted = Volume(np.zeros((512, 512, 5)), liver_ct_affine(shift_mm=(0.0, 0.0, 0.5)))
    with pytest.raises(PipelineError) as error:
        dicom_seg.read_label_map(liver_seg(), "liver.dcm", shifted, {1: "liver"})
    assert error.value.reason == Reason.MASK_GRID_MISMATCH


def test_dicom_seg_builds_through_the_pipeline_on_a_ct_series(tmp_path):
    task = tmp_path / "Task03_Liver"
    ct = np.full((512, 512, 5), -100.0, np.float32)
    write_dicom_series(str(task / "imagesTr" / "liver_0"), ct, liver_ct_affine())
    os.makedirs(task / "labelsTr")
    shutil.copy(liver_seg(), task / "labelsTr" / "liver_0.dcm")
    json.dump(
        {
            "modality": {"0": "CT"},
            "labels": {"0": "background", "1": "liver"},
            "training": [{"image": "./imagesTr/liver_0/", "label": "./labelsTr/liver_0.dcm"}],
        },
        open(task / "dataset.json", "w"),
    )
    output = str(tmp_path / "out")
    assert main(["build", "--source", f"msd={task}", "--output", output, "--spacing", "native"]) == 0
    rows = [
        r
        for f in glob.glob(os.path.join(output, "dataset=msd/task=detection/split=*/*.parquet"))
        for r in pq.read_table(f, columns=["plane", "slice_index", "label_name", "area_px"]).to_pylist()
    ]
    axial = [r for r in rows if r["plane"] == "axial"]
    assert {r["label_name"] for r in rows} == {"liver"}
    assert {r["slice_index"] for r in axial} == {1, 2, 3}
    frames = pydicom.dcmread(liver_seg()).pixel_array
    assert sorted(sum(r["area_px"] for r in axial if r["slice_index"] == k) for k in (1, 2, 3)) == sorted(
        int(frame.sum()) for frame in frames
    )
    assert not glob.glob(os.path.join(output, "quarantine", "*.parquet"))
