"""Tiny fixtures of the 22 sources in their real raw layouts, each with one deliberately broken case.

Every writer builds its dataset's folder and file names, formats and label values under a root
and returns what a build must produce from it (`Expected`). Volumes are small (32 x 32 x 8,
1 x 1 x 3 mm, LPS storage) with one cuboid per label, so every labelled structure appears on
every plane; lesion targets are 12 mm wide, well above the T/L size floor.
"""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import os

import nibabel as nib
import numpy as np

from pipeline.sources import demo
from tests.conftest import make_msd_task, write_nifti
from tests.formats import write_itk
from transforms.phantoms import Cuboid, centred_affine, intensities, rasterize

SHAPE, SPACING_MM = (32, 32, 8), (1.0, 1.0, 3.0)
# Up to four 12 x 12 x 15 mm cuboids in a 2 x 2 layout around the volume centre.
CORNERS_MM = ((-14.0, -14.0), (2.0, -14.0), (-14.0, 2.0), (2.0, 2.0))


@dataclasses.dataclass
class Expected:
    """What a build of one fixture must contain."""

    tasks: set[str]
    labels: set[str]  # label names that must appear in detection rows
    subjects: set[str]  # subject_id of every case with pairs
    quarantined: dict[str, str]  # case_id -> reason at load (the broken case)
    splits: dict[str, str] = dataclasses.field(default_factory=dict)  # subject_id -> official split
    lesion_labels: set[str] = dataclasses.field(default_factory=set)  # label names with T/L rows


def phantom(values, seed: int = 0, shape=SHAPE, orientation: str = "LPS", spacing_mm=SPACING_MM):
    """(image int16, labels, affine): one cuboid per label value."""
    affine = centred_affine(shape, orientation, spacing_mm)
    cuboids = [Cuboid(value, (x, y, -7.5), (x + 12.0, y + 12.0, 7.5)) for value, (x, y) in zip(values, CORNERS_MM)]
    labels = rasterize(shape, affine, cuboids).astype(np.uint16 if max(values) > 255 else np.uint8)
    image = intensities(labels, {v: 200.0 + 40 * i for i, v in enumerate(values)}, 0.0, 10.0, seed)
    return np.rint(image).astype(np.int16), labels, affine


# Every image gets its own noise: identical volumes would (rightly) be merged into one split group.
_NOISE_SEEDS = itertools.count(1000)


def write_pair(root, image_rel: str, mask_rel: str, values, seed: int = 0, mask_values=None) -> None:
    """An image and its mask (NIfTI or MHA by extension); `mask_values` overrides the mask's labels."""
    image, labels, affine = phantom(values, seed + next(_NOISE_SEEDS))
    if mask_values is not None:
        labels = phantom(mask_values, seed)[1]
    _write(os.path.join(root, image_rel), image, affine)
    if mask_rel:
        _write(os.path.join(root, mask_rel), labels, affine)


def write_mask(root, mask_rel: str, values) -> None:
    _, labels, affine = phantom(values)
    _write(os.path.join(root, mask_rel), labels, affine)


def _write(path: str, array, affine) -> None:
    if path.endswith(".mha"):
        write_itk(path, array, affine)
    else:
        write_nifti(path, array, affine)


def truncate(path: str) -> None:
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


def not_gzip(path: str) -> None:
    """Replace a .nii.gz with an uncompressed NIfTI under the same name."""
    open(path, "wb").write(gzip.decompress(open(path, "rb").read()))


def load_nifti(path: str) -> nib.Nifti1Image:
    """`nib.load` of a fixture file, which is always NIfTI-1 (nib.load is typed as any image format)."""
    image = nib.load(path)
    assert isinstance(image, nib.Nifti1Image), f"{path} is no NIfTI-1 image"
    return image


def shift_grid(path: str, shift_mm=(1.5, 0.0, 0.0)) -> None:
    image = load_nifti(path)
    affine = image.affine.copy()
    affine[:3, 3] += shift_mm
    write_nifti(path, np.asanyarray(image.dataobj), affine)


def other_shape(path: str) -> None:
    image = load_nifti(path)
    write_nifti(path, np.asanyarray(image.dataobj)[:, :, :-2], image.affine)


def float_labels(path: str) -> None:
    image = load_nifti(path)
    write_nifti(path, np.asanyarray(image.dataobj).astype(np.float32) * 0.5, image.affine)


# --- one writer per source -------------------------------------------------------------------


def abdomenatlas(root) -> Expected:
    """Case 1 has per-organ masks (used) and a broken merge (ignored); 2 and 3 only the merge."""
    for n, case in enumerate(("BDMAP_00000001", "BDMAP_00000002", "BDMAP_00000003")):
        write_pair(root, f"{case}/ct.nii.gz", f"{case}/combined_labels.nii.gz", (5, 8, 3), seed=n)
    _, labels, affine = phantom((5, 8, 3))
    for value, organ in ((5, "liver"), (8, "spleen"), (3, "kidney_left"), (7, "postcava")):
        write_nifti(
            os.path.join(root, f"BDMAP_00000001/segmentations/{organ}.nii.gz"),
            (labels == value).astype(np.uint8),
            affine,
        )  # postcava: an empty mask, as in real cases
    shift_grid(os.path.join(root, "BDMAP_00000001/combined_labels.nii.gz"))
    shift_grid(os.path.join(root, "BDMAP_00000003/combined_labels.nii.gz"))
    return Expected(
        {"detection"},
        {"liver", "spleen", "left kidney"},
        {"BDMAP_00000001", "BDMAP_00000002"},
        {"BDMAP_00000003": "mask_grid_mismatch"},
    )


def abdomenct_1k(root) -> Expected:
    for n in range(1, 4):
        write_pair(
            root, f"AbdomenCT-1K-ImagePart1/Case_0000{n}_0000.nii.gz", f"Mask/Case_0000{n}.nii.gz", (1, 2, 3, 4), seed=n
        )
    write_pair(root, "AbdomenCT-1K-ImagePart2/Case_00009_0000.nii.gz", "", (1,))  # no mask released: skipped
    truncate(os.path.join(root, "AbdomenCT-1K-ImagePart1/Case_00003_0000.nii.gz"))
    return Expected(
        {"detection"},
        {"liver", "kidney", "spleen", "pancreas"},
        {"Case_00001", "Case_00002"},
        {"Case_00003": "truncated_gzip"},
    )


def acdc(root) -> Expected:
    for folder, patient in (("training", "patient001"), ("testing", "patient101")):
        for frame in ("01", "12"):
            stem = f"database/{folder}/{patient}/{patient}_frame{frame}"
            write_pair(root, f"{stem}.nii.gz", f"{stem}_gt.nii.gz", (1, 2, 3), seed=int(frame))
        write_pair(root, f"database/{folder}/{patient}/{patient}_4d.nii.gz", "", (1,))  # cine: not listed
        open(os.path.join(root, f"database/{folder}/{patient}/Info.cfg"), "w").write("ED: 1\nES: 12\n")
    write_pair(
        root,
        "database/training/patient002/patient002_frame01.nii.gz",
        "database/training/patient002/patient002_frame01_gt.nii.gz",
        (1, 2),
        mask_values=(1, 7),
    )
    return Expected(
        {"detection"},
        {"right ventricular cavity", "myocardium", "left ventricular cavity"},
        {"patient001", "patient101"},
        {"patient002_frame01": "unknown_label"},
        splits={"patient001": "train", "patient101": "test"},
    )


def amos22(root) -> Expected:
    for folder, number, values in (
        ("Tr", "0001", (1, 6, 10)),
        ("Va", "0002", (6, 7)),
        ("Tr", "0507", (1, 6)),
        ("Tr", "0003", (1,)),
    ):
        write_pair(
            root,
            f"amos22/images{folder}/amos_{number}.nii.gz",
            f"amos22/labels{folder}/amos_{number}.nii.gz",
            values,
            seed=int(number),
        )
    write_pair(root, "amos22/imagesTs/amos_0600.nii.gz", "", (1,))  # test images have no labels: not listed
    other_shape(os.path.join(root, "amos22/labelsTr/amos_0003.nii.gz"))
    return Expected(
        {"detection"},
        {"spleen", "liver", "pancreas", "stomach"},
        {"amos_0001", "amos_0002", "amos_0507"},
        {"amos_0003": "mask_grid_mismatch"},
        splits={"amos_0001": "train", "amos_0002": "validation"},
    )


def autopet_iii(root) -> Expected:
    """PET on a coarser grid (2 x 2 x 6 mm) than the CT and the shared mask: placed by nearest neighbour."""
    for n, case in enumerate(("fdg_0a1b2c3d_07-12-2003", "fdg_0a1b2c3d_05-02-2005", "psma_9f8e7d6c_01-01-2019")):
        write_pair(root, f"imagesTr/{case}_0000.nii.gz", f"labelsTr/{case}.nii.gz", (1,))
        pet, _, pet_affine = phantom((1,), seed=next(_NOISE_SEEDS), shape=(16, 16, 4), spacing_mm=(2.0, 2.0, 6.0))
        write_nifti(os.path.join(root, f"imagesTr/{case}_0001.nii.gz"), pet, pet_affine)
    os.remove(os.path.join(root, "labelsTr/psma_9f8e7d6c_01-01-2019.nii.gz"))
    return Expected(
        {"detection", "tumor_lesion_size"},
        {"tumor"},
        {"fdg_0a1b2c3d"},
        {"psma_9f8e7d6c_01-01-2019/CT": "missing_file", "psma_9f8e7d6c_01-01-2019/PET": "missing_file"},
        lesion_labels={"tumor"},
    )


def bcv15(root) -> Expected:
    for n in ("0001", "0002"):
        write_pair(
            root,
            f"Abdomen/RawData/Training/img/img{n}.nii.gz",
            f"Abdomen/RawData/Training/label/label{n}.nii.gz",
            (1, 6, 11),
            seed=int(n),
        )
    write_pair(root, "Abdomen/RawData/Testing/img/img0061.nii.gz", "", (1,))  # no labels: not listed
    write_pair(
        root,
        "Cervix/RawData/Training/img/0507001-Image.nii.gz",
        "Cervix/RawData/Training/label/0507001-Mask.nii.gz",
        (1, 2, 3),
    )
    not_gzip(os.path.join(root, "Abdomen/RawData/Training/img/img0002.nii.gz"))
    return Expected(
        {"detection"},
        {"spleen", "liver", "pancreas", "bladder", "uterus", "rectum"},
        {"abdomen/0001", "cervix/0507001"},
        {"abdomen/0002": "not_gzip"},
    )


def brats24(root) -> Expected:
    cases = {"GLI": "BraTS-GLI-00005-100", "MET": "BraTS-MET-00012-000", "PED": "BraTS-PED-00030-000"}
    for sub, case in cases.items():
        for n, sequence in enumerate(("t1c", "t1n", "t2f", "t2w")):
            write_pair(root, f"training_data_{sub}/{case}/{case}-{sequence}.nii.gz", "", (1, 2, 3), seed=n)
        write_mask(root, f"training_data_{sub}/{case}/{case}-seg.nii.gz", (1, 2, 3))
    men = "BraTS-MEN-RT-0042-1"
    write_pair(
        root, f"BraTS-MEN-RT-Train-v2/{men}/{men}_t1c.nii.gz", f"BraTS-MEN-RT-Train-v2/{men}/{men}_gtv.nii.gz", (1,)
    )
    open(os.path.join(root, f"training_data_GLI/{cases['GLI']}/._{cases['GLI']}-t1c.nii.gz"), "wb").write(b"\0\5\26\7")
    broken = "BraTS-PED-00031-000"
    write_pair(
        root,
        f"training_data_PED/{broken}/{broken}-t1c.nii.gz",
        f"training_data_PED/{broken}/{broken}-seg.nii.gz",
        (1, 2),
    )
    float_labels(os.path.join(root, f"training_data_PED/{broken}/{broken}-seg.nii.gz"))
    return Expected(
        {"detection", "tumor_lesion_size"},
        {"non-enhancing tumor core", "enhancing tumor", "cystic component", "gross tumor volume"},
        {"BraTS-GLI-00005", "BraTS-MET-00012", "BraTS-PED-00030", "BraTS-MEN-RT-0042"},
        {f"{broken}/t1c": "nonint_labels"},
        lesion_labels={"surrounding non-enhancing flair hyperintensity", "gross tumor volume"},
    )


def camus(root) -> Expected:
    for patient in ("patient0001", "patient0002"):
        for view in ("2CH", "4CH"):
            stem = f"database_nifti/{patient}/{patient}_{view}_half_sequence"
            write_pair(root, f"{stem}.nii.gz", f"{stem}_gt.nii.gz", (1, 2, 3))
            write_pair(
                root,
                f"database_nifti/{patient}/{patient}_{view}_ED.nii.gz",
                f"database_nifti/{patient}/{patient}_{view}_ED_gt.nii.gz",
                (1,),
            )  # single frames: not listed
    truncate(os.path.join(root, "database_nifti/patient0002/patient0002_4CH_half_sequence_gt.nii.gz"))
    return Expected(
        {"detection"},
        {"left ventricle", "left ventricular myocardium", "left atrium"},
        {"patient0001", "patient0002"},
        {"patient0002_4CH": "truncated_gzip"},
    )


def ceph_biometrics_400(root) -> Expected:
    demo.write_ceph(str(root))
    demo_image = os.path.join(root, "RawImage", "TrainingData", "001.bmp")
    os.makedirs(os.path.join(root, "RawImage", "Test2Data"))
    open(os.path.join(root, "RawImage", "Test2Data", "301.bmp"), "wb").write(open(demo_image, "rb").read())
    return Expected(
        {"angle_distance"}, set(), {"001", "151"}, {"301": "missing_file"}, splits={"001": "train", "151": "test"}
    )


def crossmoda(root) -> Expected:
    for n in (1, 2, 3):
        stem = f"crossmoda_training/source_training/crossmoda_{n}"
        write_pair(
            root, f"{stem}_ceT1.nii.gz", f"{stem}_Label.nii.gz", (1, 2), seed=n, mask_values=(1, 5) if n == 3 else None
        )
    write_pair(root, "crossmoda_training/target_training/crossmoda_106_hrT2.nii.gz", "", (1,))  # unlabelled
    return Expected(
        {"detection"},
        {"vestibular schwannoma", "cochlea"},
        {"crossmoda_1", "crossmoda_2"},
        {"crossmoda_3": "unknown_label"},
    )


def feta24(root) -> Expected:
    demo.write_feta(str(root))
    write_pair(root, "sub-002/anat/sub-002_rec-irtk_T2w.nii.gz", "sub-002/anat/sub-002_rec-irtk_dseg.nii.gz", (1, 2, 3))
    write_pair(root, "derivatives/biometry/sub-002/anat/sub-002_rec-irtk_meas.nii.gz", "", (1,))  # no _trf.txt
    return Expected(
        {"detection", "angle_distance"},
        {"grey matter", "white matter", "cerebellum"},
        {"sub-001", "sub-002"},
        {"sub-002_rec-irtk/biometry": "missing_file"},
    )


def flare22(root) -> Expected:
    for n in ("0001", "0002"):
        write_pair(root, f"images/FLARE22_Tr_{n}_0000.nii.gz", f"labels/FLARE22_Tr_{n}.nii.gz", (1, 3, 13))
    write_pair(root, "images/FLARE22_Tr_0003_0000.nii.gz", "labels/FLARE22_Tr_0003.nii.gz", (1,))
    write_pair(root, "images_copy/FLARE22_Tr_0003_0000.nii.gz", "", (1,))  # a second copy claims the case
    return Expected(
        {"detection"},
        {"liver", "spleen", "left kidney"},
        {"FLARE22_Tr_0001", "FLARE22_Tr_0002"},
        {
            f"FLARE22_Tr_0003#{folder}/FLARE22_Tr_0003_0000.nii.gz": "bad_listing"
            for folder in ("images", "images_copy")
        },
    )


def hntsmrg24(root) -> Expected:
    for patient in ("2", "21"):
        for phase in ("preRT", "midRT"):
            stem = f"HNTSMRG24_train/{patient}/{phase}/{patient}_{phase}"
            write_pair(root, f"{stem}_T2.nii.gz", f"{stem}_mask.nii.gz", (1, 2), seed=len(phase))
        write_pair(root, f"HNTSMRG24_train/{patient}/midRT/{patient}_preRT_T2_registered.nii.gz", "", (1,))
    empty = os.path.join(root, "HNTSMRG24_train/21/midRT/21_midRT_mask.nii.gz")
    write_nifti(empty, np.zeros(SHAPE, np.uint8), load_nifti(empty).affine)  # patient 21's empty midRT mask
    return Expected(
        {"detection", "tumor_lesion_size"},
        {"primary gross tumor volume", "metastatic lymph node"},
        {"2", "21"},
        {"21/midRT": "negative_case"},
        lesion_labels={"primary gross tumor volume", "metastatic lymph node"},
    )


def isles24(root) -> Expected:
    for subject in ("sub-stroke0001", "sub-stroke0002"):
        for kind in ("dwi", "adc"):
            write_pair(root, f"raw_data/{subject}/ses-02/{subject}_ses-02_{kind}.nii.gz", "", (1,))
        write_mask(root, f"derivatives/{subject}/ses-02/{subject}_ses-02_lesion-msk.nii.gz", (1,))
        write_pair(root, f"raw_data/{subject}/ses-01/{subject}_ses-01_ncct.nii.gz", "", (1,))  # acute CT: unused
    not_gzip(os.path.join(root, "raw_data/sub-stroke0002/ses-02/sub-stroke0002_ses-02_adc.nii.gz"))
    return Expected(
        {"detection"},
        {"stroke infarct"},
        {"sub-stroke0001", "sub-stroke0002"},
        {"sub-stroke0002_ses-02/ADC": "not_gzip"},
    )


def kipa22(root) -> Expected:
    for n in ("1", "2", "3"):
        write_pair(root, f"train/image/{n}.nii.gz", f"train/label/{n}.nii.gz", (1, 2, 3, 4), seed=int(n))
    truncate(os.path.join(root, "train/image/3.nii.gz"))
    return Expected(
        {"detection", "tumor_lesion_size"},
        {"renal vein", "kidney", "renal artery", "tumor"},
        {"1", "2"},
        {"3": "truncated_gzip"},
        lesion_labels={"tumor"},
    )


def kits23(root) -> Expected:
    for n in ("00000", "00001", "00002"):
        write_pair(root, f"dataset/case_{n}/imaging.nii.gz", f"dataset/case_{n}/segmentation.nii.gz", (1, 2, 3))
    write_pair(root, "dataset/case_00000/instances/kidney_instance-1_annotation-1.nii.gz", "", (1,))
    shift_grid(os.path.join(root, "dataset/case_00002/segmentation.nii.gz"), (0.0, 0.0, 1.5))
    return Expected(
        {"detection", "tumor_lesion_size"},
        {"kidney", "kidney tumor", "kidney cyst"},
        {"case_00000", "case_00001"},
        {"case_00002": "mask_grid_mismatch"},
        lesion_labels={"kidney tumor"},
    )


def msd(root) -> Expected:
    make_msd_task(root, broken="unknown_label")
    return Expected(
        {"detection", "tumor_lesion_size"},
        {"edema", "non-enhancing tumor", "enhancing tumour"},
        {"Task01_BrainTumour/BRATS_001", "Task01_BrainTumour/BRATS_002"},
        {"Task01_BrainTumour/BRATS_003": "unknown_label"},
        lesion_labels={"edema"},
    )


def oaizib_cm(root) -> Expected:
    for folder, case in (("Tr", "oaizib_001"), ("Ts", "oaizib_405"), ("Tr", "oaizib_002")):
        write_pair(
            root,
            f"images{folder}/{case}_0000.nii.gz",
            f"labels{folder}/{case}.nii.gz",
            (1, 2, 3, 4),
            mask_values=(1, 2, 3, 9) if case == "oaizib_002" else None,
        )
    return Expected(
        {"detection"},
        {"femur", "femoral cartilage", "tibia", "medial tibial cartilage"},
        {"oaizib_001", "oaizib_405"},
        {"oaizib_002": "unknown_label"},
        splits={"oaizib_001": "train", "oaizib_405": "test"},
    )


def skm_tea(root) -> Expected:
    for case in ("MTR_001", "MTR_005"):
        for echo in ("E1", "E2"):
            write_pair(root, f"SKM-TEA-nii/img_nii_{echo}/{case}.nii.gz", "", (1, 2, 5))
        write_mask(root, f"SKM-TEA-nii/seg-nii/{case}.nii.gz", (1, 2, 5))
    write_pair(root, "SKM-TEA-nii/img_nii_E1/MTR_009.nii.gz", "", (1,))  # its mask is missing
    return Expected(
        {"detection"},
        {"patellar cartilage", "femoral cartilage", "medial meniscus"},
        {"MTR_001", "MTR_005"},
        {"MTR_009/E1": "missing_file"},
    )


def toothfairy2(root) -> Expected:
    for case, values in (
        ("ToothFairy2F_001", (1, 2, 11, 48)),
        ("ToothFairy2F_002", (1, 3, 7)),
        ("ToothFairy2P_003", (1, 19)),
    ):
        write_pair(
            root,
            f"Dataset112_ToothFairy2/imagesTr/{case}_0000.mha",
            f"Dataset112_ToothFairy2/labelsTr/{case}.mha",
            values,
        )
    return Expected(
        {"detection"},
        {
            "lower jawbone",
            "upper jawbone",
            "upper right central incisor",
            "lower right third molar (wisdom tooth)",
            "pharynx",
        },
        {"ToothFairy2F_001", "ToothFairy2F_002"},
        {"ToothFairy2P_003": "unknown_label"},
    )


def topcow24(root) -> Expected:
    for modality in ("ct", "mr"):
        for number in ("001", "002"):
            write_pair(
                root,
                f"TopCoW24/imagesTr/topcow_{modality}_{number}_0000.nii.gz",
                f"TopCoW24/cow_seg_labelsTr/topcow_{modality}_{number}.nii.gz",
                (1, 4, 15),
            )
    truncate(os.path.join(root, "TopCoW24/cow_seg_labelsTr/topcow_mr_002.nii.gz"))
    return Expected(
        {"detection"},
        {"basilar artery", "right internal carotid artery", "third a2 segment"},
        {"topcow_001", "topcow_002"},
        {"topcow_mr_002": "truncated_gzip"},
    )


# TotalSegmentator structure masks: the rib overlaps the liver and the spleen; both lower values keep the overlap.
TOTALSEG_PARTS = {
    "liver": Cuboid(1, (-14.0, -14.0, -7.5), (-2.0, -2.0, 7.5)),
    "spleen": Cuboid(1, (2.0, -14.0, -7.5), (14.0, -2.0, 7.5)),
    "rib_left_1": Cuboid(1, (-8.0, -14.0, -7.5), (6.0, -2.0, 7.5)),
}


def totalsegmentator(root) -> Expected:
    affine = centred_affine(SHAPE, "LPS", SPACING_MM)
    folder = os.path.join(root, "Totalsegmentator_dataset_v201")
    for case in ("s0001", "s0002", "s0003"):
        masks = {name: rasterize(SHAPE, affine, (cuboid,)).astype(np.uint8) for name, cuboid in TOTALSEG_PARTS.items()}
        masks_per_voxel = sum(masks.values(), np.zeros(SHAPE, np.uint8))
        image = intensities(masks_per_voxel, {1: 300.0, 2: 500.0}, 0.0, 10.0, seed=next(_NOISE_SEEDS))
        write_nifti(os.path.join(folder, case, "ct.nii.gz"), np.rint(image).astype(np.int16), affine)
        for name, mask in masks.items():
            write_nifti(os.path.join(folder, case, "segmentations", f"{name}.nii.gz"), mask, affine)
    write_nifti(os.path.join(folder, "s0003/segmentations/not_a_structure.nii.gz"), np.zeros(SHAPE, np.uint8), affine)
    with open(os.path.join(folder, "meta.csv"), "w") as handle:
        handle.write("image_id;age;gender;split\ns0001;60;m;train\ns0002;71;f;test\ns0003;55;f;val\n")
    return Expected(
        {"detection"},
        {"liver", "spleen", "left 1st rib"},
        {"ct/s0001", "ct/s0002"},
        {"ct/s0003": "unknown_label"},
        splits={"ct/s0001": "train", "ct/s0002": "test"},
    )


FIXTURES = {
    "abdomenatlas": abdomenatlas,
    "abdomenct_1k": abdomenct_1k,
    "acdc": acdc,
    "amos22": amos22,
    "autopet_iii": autopet_iii,
    "bcv15": bcv15,
    "brats24": brats24,
    "camus": camus,
    "ceph_biometrics_400": ceph_biometrics_400,
    "crossmoda": crossmoda,
    "feta24": feta24,
    "flare22": flare22,
    "hntsmrg24": hntsmrg24,
    "isles24": isles24,
    "kipa22": kipa22,
    "kits23": kits23,
    "msd": msd,
    "oaizib_cm": oaizib_cm,
    "skm_tea": skm_tea,
    "toothfairy2": toothfairy2,
    "topcow24": topcow24,
    "totalsegmentator": totalsegmentator,
}
