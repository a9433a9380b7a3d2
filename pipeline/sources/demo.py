"""`demo`: deterministic synthetic cases written in real raw layouts, then read like real data.

Layouts: MSD (CT and a 4D MR task), Ceph-Biometrics-400 (2D BMP + landmark text) and FeTA 2024
(T2w, tissue labels, biometry landmark mask and transform), each listed by its own adapter.

The cases exercise what isotropic RAS data hides: anisotropic voxels (0.7x0.7x2.5 mm and an
in-plane 0.5x2.0 mm grid), LPS storage, an axis permutation (PSL), an oblique grid, a 4D
two-sequence MR case, and one truncated file that must land in quarantine. Structures are
defined in world millimetres (transforms.phantoms), so every case has known true sizes:
the liver lesion is a 20 x 16 x 25 mm cuboid (x, y, z), with a 1.2 mm satellite too small to measure.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import tempfile

import numpy as np

from pipeline import storage
from pipeline.sources.base import Source, SourceError, SourceInfo
from pipeline.sources.ceph_biometrics_400 import list_cephalograms
from pipeline.sources.feta24 import list_feta
from pipeline.sources.msd import list_task
from transforms.caseref import CaseRef
from transforms.phantoms import Cuboid, Ellipsoid, centred_affine, intensities, rasterize

DEMO_VERSION = "demo-v3"
LICENCE = "CC0-1.0"
COMPLETE_MARKER = "_COMPLETE"
DEMO_TOP_LEVEL = ("Task01_DemoCT", "Task02_DemoMR", "Ceph", "FeTA", COMPLETE_MARKER)

ABDOMEN_LABELS = {1: "liver", 2: "right kidney", 3: "left kidney", 4: "spleen", 5: "liver lesion"}
LESION_MM = Cuboid(5, (35.0, 0.0, 0.0), (55.0, 16.0, 25.0))
# A 1.2 mm satellite: one or two pixels per slice, below the T/L size floor (shows the guards at work).
SATELLITE_MM = Cuboid(5, (60.0, 30.0, 20.0), (61.2, 31.2, 23.0))
ABDOMEN = (
    Ellipsoid(1, (45.0, 10.0, 10.0), (40.0, 35.0, 30.0)),
    Ellipsoid(2, (40.0, -35.0, -15.0), (15.0, 12.0, 25.0)),
    Ellipsoid(3, (-40.0, -35.0, -15.0), (15.0, 12.0, 25.0)),
    Ellipsoid(4, (-55.0, -15.0, 20.0), (20.0, 15.0, 25.0)),
    LESION_MM,
    SATELLITE_MM,
)
ABDOMEN_HU = {1: 60.0, 2: 150.0, 3: 150.0, 4: 50.0, 5: 10.0}
ABDOMEN_FOV_MM = {"x": 200.0, "y": 160.0, "z": 90.0}

BRAIN_LABELS = {1: "tumour core", 2: "edema"}
BRAIN = (Ellipsoid(2, (-20.0, 10.0, 15.0), (25.0, 22.0, 20.0)), Ellipsoid(1, (-22.0, 12.0, 15.0), (10.0, 9.0, 8.0)))
BRAIN_FOV_MM = {"x": 150.0, "y": 180.0, "z": 130.0}
BRAIN_VALUES = {"T1w": ({1: 900.0, 2: 500.0}, 600.0), "T2w": ({1: 1000.0, 2: 1200.0}, 700.0)}

# (case, orientation, spacing along the stored axes in mm, rotation about z in degrees)
CT_CASES = (
    ("demo_ct_00", "RAS", (0.7, 0.7, 2.5), 0.0),
    ("demo_ct_01", "LPS", (0.7, 0.7, 2.5), 0.0),
    ("demo_ct_02", "PSL", (0.5, 3.0, 2.0), 0.0),
    ("demo_ct_03", "RAS", (0.8, 0.8, 2.0), 8.0),
)
TRUNCATED_CASE = "demo_ct_04"
MR_CASES = (("demo_mr_00", "LAS", (1.0, 1.0, 1.2), 0.0),)
_AXIS_OF_LETTER = {"R": "x", "L": "x", "A": "y", "P": "y", "S": "z", "I": "z"}


def grid_shape(orientation: str, spacing_mm, fov_mm: dict) -> tuple[int, ...]:
    """Voxels along each stored axis to cover the field of view."""
    return tuple(int(round(fov_mm[_AXIS_OF_LETTER[letter]] / s)) for letter, s in zip(orientation, spacing_mm))


def nifti_gz_bytes(array: np.ndarray, affine: np.ndarray) -> bytes:
    """A .nii.gz with sform and qform both set to `affine`; gzip mtime 0 keeps bytes reproducible."""
    import nibabel as nib  # only writing the demo needs it; listing sources must stay cheap

    image = nib.Nifti1Image(array, affine)
    image.header.set_sform(affine, code="scanner")
    image.header.set_qform(affine, code="scanner")
    return gzip.compress(image.to_bytes(), mtime=0)


def ct_case(orientation, spacing_mm, rotation_deg, seed) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(HU image int16, labels uint8, affine) of the abdominal phantom on one grid."""
    shape = grid_shape(orientation, spacing_mm, ABDOMEN_FOV_MM)
    affine = centred_affine(shape, orientation, spacing_mm, rotation_deg)
    labels = rasterize(shape, affine, ABDOMEN)
    body = rasterize(shape, affine, (Ellipsoid(1, (0.0, 0.0, 0.0), (95.0, 75.0, 500.0)),)).astype(bool)
    image = intensities(labels, ABDOMEN_HU, background=30.0, noise_sd=15.0, seed=seed)
    image[~body] = -1000.0
    return np.rint(image).astype(np.int16), labels, affine


def mr_case(orientation, spacing_mm, rotation_deg, seed) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(4D image with channels T1w, T2w, labels, affine) of the brain phantom."""
    shape = grid_shape(orientation, spacing_mm, BRAIN_FOV_MM)
    affine = centred_affine(shape, orientation, spacing_mm, rotation_deg)
    labels = rasterize(shape, affine, BRAIN)
    head = rasterize(shape, affine, (Ellipsoid(1, (0.0, 0.0, 0.0), (70.0, 85.0, 60.0)),)).astype(bool)
    channels = []
    for offset, (values, background) in enumerate(BRAIN_VALUES.values()):
        channel = intensities(labels, values, background, noise_sd=30.0, seed=seed + offset)
        channel[~head] = 0.0
        channels.append(channel)
    return np.rint(np.stack(channels, axis=-1)).astype(np.int16), labels, affine


def write_task(root: str, task: str, modality: list[str], labels: dict, cases: dict[str, tuple[bytes, bytes]]) -> None:
    """One MSD task folder: dataset.json plus imagesTr/ and labelsTr/ files."""
    folder = storage.join(root, task)
    for case_id, (image_bytes, label_bytes) in cases.items():
        storage.write_bytes(storage.join(folder, "imagesTr", f"{case_id}.nii.gz"), image_bytes)
        storage.write_bytes(storage.join(folder, "labelsTr", f"{case_id}.nii.gz"), label_bytes)
    meta = {
        "name": task,
        "licence": LICENCE,
        "release": DEMO_VERSION,
        "modality": {str(i): name for i, name in enumerate(modality)},
        "labels": {"0": "background", **{str(k): v for k, v in labels.items()}},
        "numTraining": len(cases),
        "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in cases],
    }
    storage.write_bytes(storage.join(folder, "dataset.json"), json.dumps(meta, indent=1).encode())


def generate(root: str) -> None:
    """Write the demo dataset under `root` (any storage); skipped when already complete.

    The demo never overwrites: it is written only into a new or empty root, or one holding nothing but
    the demo's own folders (an interrupted generation), where a file of the demo's that is already
    there must hold the demo's bytes. Anything else is a SourceError, raised before anything is written:
    the files are made in a local temporary folder and compared with the root before the missing ones
    are written.
    """
    if storage.exists(storage.join(root, COMPLETE_MARKER)):
        return
    check_generation_root(root)
    with tempfile.TemporaryDirectory(prefix="medvision-demo-") as staging:
        write_demo(staging)
        files = {}
        for relative in storage.list_tree(staging):
            with open(os.path.join(staging, relative), "rb") as handle:
                files[storage.join(root, relative)] = handle.read()
    missing = [uri for uri, data in files.items() if not _exists_as(uri, data)]
    for uri in missing:
        storage.write_bytes(uri, files[uri])
    storage.write_bytes(storage.join(root, COMPLETE_MARKER), DEMO_VERSION.encode())


def check_generation_root(root: str) -> None:
    """Refuse (SourceError) a root holding anything besides the demo's own top-level folders."""
    if storage.is_remote(root):
        names = {relative.split("/", 1)[0] for relative in storage.list_tree(root)}
    elif os.path.isdir(root):
        names = set(os.listdir(root))
    elif os.path.lexists(root):
        raise SourceError(f"demo root {root} is not a folder")
    else:
        names = set()
    foreign = sorted(names - set(DEMO_TOP_LEVEL))
    if foreign:
        raise SourceError(
            f"demo root {root} holds other files ({', '.join(foreign[:3])}); the demo is generated "
            "only into a new or empty folder: give another root, or `--source demo` for the default"
        )


def _exists_as(uri: str, data: bytes) -> bool:
    """False when nothing is at `uri`, True when it holds `data`; SourceError when it holds anything else."""
    if not storage.exists(uri):
        return False
    if storage.read_bytes(uri) != data:
        raise SourceError(
            f"{uri} exists and differs from the demo's file, which would replace it; remove it or give another root"
        )
    return True


def write_demo(root: str) -> None:
    """Write every demo file under `root` (without the completion marker)."""
    ct_files = {}
    for seed, (case_id, orientation, spacing, rotation) in enumerate(CT_CASES):
        image, labels, affine = ct_case(orientation, spacing, rotation, seed)
        ct_files[case_id] = (nifti_gz_bytes(image, affine), nifti_gz_bytes(labels, affine))
    intact_image, intact_labels = ct_files[CT_CASES[0][0]]
    ct_files[TRUNCATED_CASE] = (intact_image[: len(intact_image) // 2], intact_labels)
    write_task(root, "Task01_DemoCT", ["CT"], ABDOMEN_LABELS, ct_files)
    mr_files = {}
    for seed, (case_id, orientation, spacing, rotation) in enumerate(MR_CASES, start=100):
        image, labels, affine = mr_case(orientation, spacing, rotation, seed)
        mr_files[case_id] = (nifti_gz_bytes(image, affine), nifti_gz_bytes(labels, affine))
    write_task(root, "Task02_DemoMR", list(BRAIN_VALUES), BRAIN_LABELS, mr_files)
    write_ceph(storage.join(root, "Ceph"))
    write_feta(storage.join(root, "FeTA", "feta_2.4"))


class DemoSource(Source):
    info = SourceInfo(
        name="demo",
        anatomy="synthetic: lesion phantoms (CT, two-sequence MR), cephalograms, fetal brain with biometry",
        modalities=("CT", "MRI", "X-ray"),
        tasks=("detection", "tumor_lesion_size", "angle_distance"),
        licence=LICENCE,
        redistributable=True,
        citation="medvision-pipeline synthetic demo data",
    )
    layout = "no root needed: generated into the cache in the MSD, Ceph-Biometrics-400 and FeTA 2024 layouts"

    def default_root(self) -> str:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return os.path.join(cache, "medvision-pipeline", DEMO_VERSION)

    def listing_writes(self, root: str) -> str | None:
        if storage.exists(storage.join(root, COMPLETE_MARKER)):
            return None
        check_generation_root(root)
        return f"the demo data is not generated yet: a build generates it into {root} first, a dry run writes nothing"

    def list_cases(self, root: str) -> list[CaseRef]:
        generate(root)
        cases = [
            case
            for task, lesions in (("Task01_DemoCT", (5,)), ("Task02_DemoMR", (1, 2)))
            for case in list_task(storage.join(root, task), "demo", LICENCE, lesions)
        ]
        cases += [
            dataclasses.replace(
                case, case_id=f"Ceph/{case.case_id}", subject_id=f"Ceph/{case.subject_id}", licence=LICENCE
            )
            for case in list_cephalograms(storage.join(root, "Ceph"), "demo", LICENCE)
        ]
        cases += [
            dataclasses.replace(
                case,
                case_id=f"FeTA/{case.case_id}",
                subject_id=f"FeTA/{case.subject_id}",
                licence=LICENCE,
                redistributable=True,
            )
            for case in list_feta(storage.join(root, "FeTA", "feta_2.4"), "demo")
        ]
        return sorted(cases, key=lambda case: case.case_id)


# --- 2D cephalogram-like cases (Ceph-Biometrics-400 layout) ------------------------------------
CEPH_SIZE_PX = (600, 750)  # width, height (the real images are 1935 x 2400 at the same 0.1 mm)
# 1-based (x = column, y = row) positions of P1..P19, face looking to image-right.
CEPH_LANDMARKS_PX = (
    (200, 250),
    (480, 230),
    (420, 300),
    (130, 310),
    (470, 420),
    (450, 560),
    (460, 620),
    (430, 660),
    (450, 645),
    (200, 560),
    (480, 480),
    (485, 470),
    (520, 470),
    (515, 520),
    (510, 420),
    (500, 630),
    (300, 410),
    (480, 400),
    (170, 400),
)
CEPH_CASES = (("TrainingData", "001", 1.0, (0, 0)), ("Test1Data", "151", 1.05, (-12, 8)))


def ceph_landmarks(scale: float, shift_px: tuple[int, int]) -> list[tuple[int, int]]:
    """The template landmarks scaled about the image centre and shifted (whole pixels)."""
    cx, cy = CEPH_SIZE_PX[0] / 2, CEPH_SIZE_PX[1] / 2
    return [
        (round(cx + (x - cx) * scale) + shift_px[0], round(cy + (y - cy) * scale) + shift_px[1])
        for x, y in CEPH_LANDMARKS_PX
    ]


def ceph_image(seed: int) -> bytes:
    """An 8-bit BMP: a bright skull-like ellipse on a dark background, with noise."""
    from PIL import Image

    width, height = CEPH_SIZE_PX
    yy, xx = np.mgrid[0:height, 0:width]
    head = ((xx - 320) / 230.0) ** 2 + ((yy - 400) / 330.0) ** 2 <= 1.0
    pixels = np.where(head, 170.0, 30.0) + np.random.default_rng(seed).normal(0, 8, (height, width))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="BMP")
    return buffer.getvalue()


def write_ceph(root: str) -> None:
    for seed, (folder, stem, scale, shift) in enumerate(CEPH_CASES):
        storage.write_bytes(storage.join(root, "RawImage", folder, f"{stem}.bmp"), ceph_image(seed))
        lines = [f"{x},{y}" for x, y in ceph_landmarks(scale, shift)] + ["2", "3"]  # real files go on past P19
        storage.write_bytes(
            storage.join(root, "AnnotationsByMD", "400_senior", f"{stem}.txt"), ("\n".join(lines) + "\n").encode()
        )


# --- a fetal-brain-like case (FeTA 2024 layout) -------------------------------------------------
FETA_SHAPE, FETA_SPACING_MM, FETA_ORIENTATION = (80, 96, 80), (0.8, 0.8, 0.8), "RAS"
FETA_TISSUES = (
    Ellipsoid(1, (0.0, 0.0, 0.0), (30.0, 36.0, 28.0)),
    Ellipsoid(2, (0.0, 0.0, 2.0), (27.0, 33.0, 25.0)),
    Ellipsoid(3, (0.0, 0.0, 3.0), (23.0, 29.0, 21.0)),
    Ellipsoid(4, (0.0, 2.0, 5.0), (8.0, 12.0, 6.0)),
    Ellipsoid(5, (0.0, -20.0, -12.0), (14.0, 8.0, 7.0)),
    Ellipsoid(6, (0.0, 6.0, -2.0), (6.0, 6.0, 5.0)),
    Ellipsoid(7, (0.0, -10.0, -18.0), (4.0, 5.0, 8.0)),
)
FETA_VALUES = {1: 1400.0, 2: 700.0, 3: 900.0, 4: 1500.0, 5: 650.0, 6: 750.0, 7: 600.0}
# Voxel pairs of the meas labels 1..5 (LCC, HV, bBIP, sBIP, TCD), on the meas (= image) grid.
FETA_MEAS_VOXELS = {
    1: ((40, 66, 50), (40, 34, 50)),
    2: ((40, 24, 40), (40, 24, 26)),
    3: ((66, 48, 46), (14, 48, 46)),
    4: ((74, 48, 46), (6, 48, 46)),
    5: ((56, 24, 28), (24, 24, 28)),
}
IDENTITY_ITK_TRANSFORM = (
    "#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\n"
    "Parameters: 1 0 0 0 1 0 0 0 1 0 0 0\nFixedParameters: 0 0 0\n"
)


def write_feta(root: str) -> None:
    affine = centred_affine(FETA_SHAPE, FETA_ORIENTATION, FETA_SPACING_MM)
    labels = rasterize(FETA_SHAPE, affine, FETA_TISSUES)
    image = intensities(labels, FETA_VALUES, background=0.0, noise_sd=20.0, seed=200)
    meas = np.zeros(FETA_SHAPE, np.uint8)
    for label, voxels in FETA_MEAS_VOXELS.items():
        for voxel in voxels:
            meas[voxel] = label
    anat = storage.join(root, "sub-001", "anat")
    storage.write_bytes(
        storage.join(anat, "sub-001_rec-mial_T2w.nii.gz"), nifti_gz_bytes(np.rint(image).astype(np.int16), affine)
    )
    storage.write_bytes(storage.join(anat, "sub-001_rec-mial_dseg.nii.gz"), nifti_gz_bytes(labels, affine))
    biometry = storage.join(root, "derivatives", "biometry", "sub-001", "anat")
    storage.write_bytes(storage.join(biometry, "sub-001_rec-mial_meas.nii.gz"), nifti_gz_bytes(meas, affine))
    storage.write_bytes(storage.join(biometry, "sub-001_rec-mial_trf.txt"), IDENTITY_ITK_TRANSFORM.encode())
