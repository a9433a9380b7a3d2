"""Angle/distance: landmark spaces, invariance, and the Ceph-Biometrics-400 and FeTA adapters end to end."""

from __future__ import annotations

import glob
import math
import os

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.cli import main
from tests.conftest import write_nifti
from transforms.caseref import CaseRef, LandmarkSpec, SequenceRef
from transforms.intensity import decode_png
from transforms.landmarks import LandmarkSpace, Measurement, angle_between_lines_deg, measure, to_world_ras
from transforms.loading import load_case
from transforms.phantoms import Ellipsoid, centred_affine, rasterize, reorient
from transforms.slicing import extract_slices

PAIRS = ((1, "A", "B", 0), (2, "C", "D", 1))
MEASURES = (
    Measurement("AB", "distance", ("A", "B"), "axial"),
    Measurement("AB-CD", "angle", ("A", "B", "C", "D"), "coronal"),
)


def test_angles_are_unsigned_acute_and_directed():
    assert angle_between_lines_deg((0, 0, 0), (1, 0, 0), (0, 0, 0), (0, 1, 0)) == pytest.approx((90.0, 90.0))
    assert angle_between_lines_deg((0, 0, 0), (1, 0, 0), (0, 0, 0), (-1, 1, 0)) == pytest.approx((45.0, 135.0))
    assert angle_between_lines_deg((0, 0, 0), (2, 0, 0), (5, 5, 5), (4, 5, 5)) == pytest.approx((0.0, 180.0))


def test_voxel_and_world_spaces_agree():
    affine = centred_affine((20, 30, 40), "PSL", (0.5, 2.0, 1.5))
    voxel = {"A": (3.0, 4.0, 5.0), "B": (10.0, 20.0, 30.0)}
    ras = to_world_ras(voxel, LandmarkSpace("voxel"), affine)
    one_based = to_world_ras(
        {k: tuple(v + 1 for v in p) for k, p in voxel.items()}, LandmarkSpace("voxel", index_base=1), affine
    )
    lps = to_world_ras(
        {k: tuple(p * (-1, -1, 1)) for k, p in ras.items()}, LandmarkSpace("world", frame="LPS"), np.eye(4)
    )
    for name in voxel:
        np.testing.assert_allclose(one_based[name], ras[name])
        np.testing.assert_allclose(lps[name], ras[name])
    distance = measure(Measurement("AB", "distance", ("A", "B")), ras).value
    assert distance == pytest.approx(
        math.dist(np.multiply(voxel["A"], (0.5, 2.0, 1.5)), np.multiply(voxel["B"], (0.5, 2.0, 1.5)))
    )


def landmark_case(tmp_path, orientation, shift_voxels=(0, 0, 0)):
    """A 3D case whose landmark-pair mask is the same physical points stored in `orientation`."""
    shape = (30, 40, 20)
    affine = centred_affine(shape, "RAS", (0.8, 1.1, 2.0))
    affine[:3, 3] += affine[:3, :3] @ np.asarray(shift_voxels, float)
    pairs = np.zeros(shape, np.uint8)
    for label, voxels in {1: ((5, 10, 8), (25, 30, 12)), 2: ((8, 35, 3), (20, 5, 17))}.items():
        for voxel in voxels:
            pairs[voxel] = label
    stored_pairs, stored_affine = reorient(pairs, affine, orientation)
    name = f"{orientation}_{'_'.join(map(str, shift_voxels))}"
    image_path = write_nifti(tmp_path / f"{name}_img.nii.gz", stored_pairs.astype(np.int16), stored_affine)
    pairs_path = write_nifti(tmp_path / f"{name}_pairs.nii.gz", stored_pairs, stored_affine)
    spec = LandmarkSpec(pairs_path, "label_pairs", LandmarkSpace("voxel"), MEASURES, pairs=PAIRS)
    case = CaseRef("t", name, name, image_path, "", (SequenceRef("MR", "MRI"),), (), landmarks=spec)
    return load_case(case, {image_path: image_path, pairs_path: pairs_path})


def test_measurements_do_not_depend_on_storage_order_or_translation(tmp_path):
    results = {}
    for orientation in ("RAS", "LPS", "PSL", "IAR"):
        for shift in ((0, 0, 0), (3, -2, 5)):
            loaded = landmark_case(tmp_path, orientation, shift)
            results[(orientation, shift)] = [round(value.value, 9) for _, value in loaded.measured]
    reference = results[("RAS", (0, 0, 0))]
    assert reference[0] == pytest.approx(math.hypot(20 * 0.8, 20 * 1.1, 4 * 2.0))
    # The pair order follows stored axes, so the directed angle may flip; the acute angle never does.
    assert all(values == reference for values in results.values()), results


def test_measurement_landmarks_are_placed_on_their_plane_slice(tmp_path):
    loaded = landmark_case(tmp_path, "LPS")
    shown = {(c.plane, c.slice_index): c.measurements for c in extract_slices(loaded, "finest") if c.measurements}
    (plane, index), placed = next((key, value) for key, value in shown.items() if value[0].measurement.name == "AB")
    assert plane == "axial"
    assert index in (8, 12)  # the first point's slice along k


# --- Ceph-Biometrics-400 raw layout --------------------------------------------------------------

HAND_LANDMARKS = {  # 1-based (x, y) pixels at 0.1 mm
    "P1": (101, 101),
    "P2": (401, 101),
    "P5": (401, 401),
    "P6": (101, 401),
    "P10": (101, 501),
    "P8": (401, 501),
}


def write_ceph_case(root, folder, stem, landmarks, n_lines=19):
    os.makedirs(os.path.join(root, "RawImage", folder), exist_ok=True)
    os.makedirs(os.path.join(root, "AnnotationsByMD", "400_senior"), exist_ok=True)
    Image.fromarray(np.full((700, 600), 90, np.uint8)).save(os.path.join(root, "RawImage", folder, f"{stem}.bmp"))
    points = [landmarks.get(f"P{n}", (50 + n, 60 + 2 * n)) for n in range(1, 20)][:n_lines]
    with open(os.path.join(root, "AnnotationsByMD", "400_senior", f"{stem}.txt"), "w") as handle:
        handle.write("\n".join(f"{x},{y}" for x, y in points) + "\n1\n")


def test_ceph_angles_and_distances_match_hand_computation(tmp_path):
    root = str(tmp_path / "ceph")
    write_ceph_case(root, "TrainingData", "001", HAND_LANDMARKS)
    write_ceph_case(root, "Test1Data", "151", HAND_LANDMARKS, n_lines=12)  # truncated annotation file
    output = str(tmp_path / "out")
    assert main(["build", "--source", f"ceph_biometrics_400={root}", "--output", output]) == 0
    files = glob.glob(os.path.join(output, "dataset=ceph_biometrics_400/task=angle_distance/split=train/*.parquet"))
    rows = {r["metric_name"]: r for r in ds.dataset(files).to_table().to_pylist()}
    # S-N horizontal, N-A vertical: SNA = 90 deg. N-B and N-A are the same vertical line... B = P6 is
    # straight below S, so N-B runs at 45 deg: SNB = 45, ANB = 45.
    assert rows["A-L_1_2-L_2_5"]["value"] == pytest.approx(90.0)
    assert rows["A-L_1_2-L_2_6"]["value"] == pytest.approx(45.0)
    assert rows["A-L_1_2-L_2_6"]["directed_angle_deg"] == pytest.approx(135.0)
    assert rows["A-L_2_5-L_2_6"]["value"] == pytest.approx(45.0)
    assert rows["L-1-10"]["value"] == pytest.approx(40.0)  # 400 px x 0.1 mm
    assert rows["L-2-8"]["value"] == pytest.approx(40.0)
    assert len(rows) == 10 and rows["L-1-10"]["unit"] == "mm" and rows["A-L_1_2-L_2_5"]["unit"] == "deg"
    # Displayed pixels: the face looks left (radiological sagittal), so x mirrors; y is unchanged.
    sella = next(p for p in rows["L-1-10"]["landmarks_xy_px"] if p["name"] == "P1")
    assert (sella["x"], sella["y"]) == pytest.approx((600 - 100 - 0.5, 100.5))
    quarantine = pq.read_table(glob.glob(os.path.join(output, "quarantine", "*.parquet"))[0]).to_pylist()
    assert [(q["case_id"], q["reason"]) for q in quarantine] == [("151", "bad_landmarks")]


# --- FeTA 2024 raw layout with a real (non-identity) transform -----------------------------------


def itk_affine_text(rotation_lps: np.ndarray, translation_lps) -> str:
    parameters = " ".join(f"{v:.12g}" for v in [*rotation_lps.ravel(), *translation_lps])
    return (
        "#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\n"
        f"Parameters: {parameters}\nFixedParameters: 0 0 0\n"
    )


def test_feta_biometry_is_measured_in_the_realigned_space(tmp_path):
    """Bright blobs put in the original image where the transform sends each landmark must show under it."""
    root = tmp_path / "feta_2.4"
    shape, spacing = (48, 56, 40), (1.0, 1.0, 1.0)
    meas_affine = centred_affine(shape, "RAS", spacing)
    angle = math.radians(20)
    rotation = np.array([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]])
    translation = np.array([4.0, -3.0, 2.0])
    flip = np.diag([-1.0, -1.0, 1.0])
    meas = np.zeros(shape, np.uint8)
    pairs = {
        1: ((24, 40, 20), (24, 12, 20)),
        2: ((24, 20, 30), (24, 20, 10)),
        3: ((40, 28, 20), (8, 28, 20)),
        4: ((44, 28, 22), (4, 28, 22)),
        5: ((34, 14, 16), (14, 14, 16)),
    }
    blobs = []
    for label, voxels in pairs.items():
        for voxel in voxels:
            meas[voxel] = label
            world_meas = meas_affine[:3, :3] @ voxel + meas_affine[:3, 3]
            world_original = flip @ (rotation @ (flip @ world_meas) + translation)  # ITK: meas -> original, LPS
            blobs.append(Ellipsoid(9, tuple(world_original), (1.6, 1.6, 1.6)))
    original_affine = centred_affine((60, 64, 50), "LPS", (1.0, 1.0, 1.0))
    image = np.where(rasterize((60, 64, 50), original_affine, blobs) > 0, 3000, 0).astype(np.int16)
    anat, biometry = root / "sub-001" / "anat", root / "derivatives" / "biometry" / "sub-001" / "anat"
    write_nifti(anat / "sub-001_rec-mial_T2w.nii.gz", image, original_affine)
    write_nifti(anat / "sub-001_rec-mial_dseg.nii.gz", np.zeros(image.shape, np.uint8), original_affine)
    write_nifti(biometry / "sub-001_rec-mial_meas.nii.gz", meas, meas_affine)
    (biometry / "sub-001_rec-mial_trf.txt").write_text(itk_affine_text(rotation, translation))
    output = str(tmp_path / "out")
    assert main(["build", "--source", f"feta24={root}", "--output", output]) == 0
    files = glob.glob(os.path.join(output, "dataset=feta24/task=angle_distance/split=*/*.parquet"))
    rows = {r["metric_name"]: r for r in ds.dataset(files).to_table().to_pylist()}
    assert {name: round(r["value"], 6) for name, r in rows.items()} == {
        "L-1-2": 28.0,
        "L-3-4": 20.0,
        "L-5-6": 32.0,
        "L-7-8": 40.0,
        "L-9-10": 20.0,
    }
    assert {name: r["plane"] for name, r in rows.items()} == {
        "L-1-2": "sagittal",
        "L-3-4": "sagittal",
        "L-5-6": "axial",
        "L-7-8": "axial",
        "L-9-10": "coronal",
    }
    for row in rows.values():
        pixels = decode_png(row["image"]["bytes"])
        first = row["landmarks_xy_px"][0]
        x, y = int(first["x"]), int(first["y"])
        assert pixels[y, x] > 200, row["metric_name"]  # the blob is under the point...
        assert (pixels > 200).mean() < 0.05  # ...and the image is not bright everywhere
    quarantine = glob.glob(os.path.join(output, "quarantine", "*.parquet"))
    assert [(q["case_id"], q["reason"]) for f in quarantine for q in pq.read_table(f).to_pylist()] == [
        ("sub-001_rec-mial", "empty_case")
    ]  # its tissue map is empty on purpose


def test_a_missing_landmark_pair_leaves_only_its_measurement_undefined(tmp_path):
    shape = (20, 20, 20)
    affine = centred_affine(shape, "RAS", (1.0, 1.0, 1.0))
    pairs = np.zeros(shape, np.uint8)
    pairs[2, 5, 5] = pairs[12, 5, 5] = 1  # label 2 (points C, D) is absent
    image_path = write_nifti(tmp_path / "img.nii.gz", pairs.astype(np.int16), affine)
    pairs_path = write_nifti(tmp_path / "pairs.nii.gz", pairs, affine)
    spec = LandmarkSpec(pairs_path, "label_pairs", LandmarkSpace("voxel"), MEASURES, pairs=PAIRS)
    case = CaseRef("t", "c", "c", image_path, "", (SequenceRef("MR", "MRI"),), (), landmarks=spec)
    loaded = load_case(case, {image_path: image_path, pairs_path: pairs_path})
    assert [(m.name, v.value) for m, v in loaded.measured] == [("AB", 10.0)]
    assert [name for name, _ in loaded.unmeasured] == ["AB-CD"] and "['C', 'D']" in loaded.unmeasured[0][1]
