"""The `nnunet` source: user datasets in nnU-Net v2's raw layout, built end to end with user-chosen T/L labels.

The fixture is generated here: a two-channel 3D dataset (NIfTI) whose patients have two visits, a 2D PNG
dataset, a 2D TIFF case, a MetaImage dataset listed through dataset.json's `dataset` object, and the
hostile kinds: a region-based label map, a wrong `file_ending`, stray and oddly named files, paths that
leave the dataset folder, a case missing one channel.
"""

from __future__ import annotations

import collections
import glob
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.cli import main
from pipeline.config import BuildConfig, SourceSpec
from tests.conftest import make_msd_task
from tests.source_fixtures import write_pair

LABELS_3D = {"background": 0, "organ": 1, "tumor": 2, "cyst": 3}
LABELS_2D = {"background": 0, "lesion": 1, "vessel": 2}
RASTER_SHAPE_ROWS_COLS = (48, 64)
LESION_BOX_XYXY_PX = (10, 12, 30, 30)  # stored pixels: x = column, y = row, end exclusive
SUBJECT_REGEX = r"^([a-z]+[0-9]*)"  # pat01_visit2 -> pat01, img_a -> img, c1 -> c1


def write_json(path, meta: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(meta, handle)


def dataset_json(channels: dict, labels: dict, ending: str, count: int, **extra) -> dict:
    return {"channel_names": channels, "labels": labels, "file_ending": ending, "numTraining": count, **extra}


def write_raster(path: str, array: np.ndarray, mode: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = Image.fromarray(array.astype(np.uint8), mode="L")
    if mode == "P":  # a palette label PNG: its indices are the labels, its colours are not
        image = image.convert("P")
        image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    image.save(path)


def raster_case(folder: str, case: str, ending: str, mask_mode: str) -> None:
    rng = np.random.default_rng(len(case))
    labels = np.zeros(RASTER_SHAPE_ROWS_COLS, np.uint8)
    x0, y0, x1, y1 = LESION_BOX_XYXY_PX
    labels[y0:y1, x0:x1] = 1
    labels[36:44, 40:60] = 2
    image = 40 + 60 * labels + rng.integers(0, 20, labels.shape)
    write_raster(os.path.join(folder, "imagesTr", f"{case}_0000{ending}"), image, "L")
    write_raster(os.path.join(folder, "labelsTr", f"{case}{ending}"), labels, mask_mode)


def make_nnunet_root(root) -> str:
    """nnUNet_raw-like folder of six datasets; see the module docstring."""
    root = str(root)
    multi = os.path.join(root, "Dataset042_Phantom")
    for case in ("pat01_visit1", "pat01_visit2", "pat02_visit1", "pat03_visit1"):
        for channel in ("0000", "0001"):
            if case == "pat03_visit1" and channel == "0001":
                continue  # a missing channel: that channel's case is quarantined, the other builds
            mask = f"labelsTr/{case}.nii.gz" if channel == "0000" else ""
            write_pair(multi, f"imagesTr/{case}_{channel}.nii.gz", mask, (1, 2, 3), seed=int(channel))
    write_pair(multi, "imagesTr/pat04_0007.nii.gz", "", (1,))  # channel 7 is not in channel_names
    open(os.path.join(multi, "imagesTr", "notes.txt"), "w").write("not an image")
    write_json(
        os.path.join(multi, "dataset.json"),
        dataset_json({"0": "T2", "1": "ADC"}, LABELS_3D, ".nii.gz", 4, licence="CC-BY-4.0"),
    )

    raster = os.path.join(root, "Dataset043_Raster")
    raster_case(raster, "img_a", ".png", "L")
    raster_case(raster, "img_b", ".png", "P")
    write_json(os.path.join(raster, "dataset.json"), dataset_json({"0": "endoscopy"}, LABELS_2D, ".png", 2))
    tiff = os.path.join(root, "Dataset047_Tiff")
    raster_case(tiff, "img_c", ".tif", "L")
    write_json(os.path.join(tiff, "dataset.json"), dataset_json({"0": "microscopy"}, LABELS_2D, ".tif", 1))

    entries = os.path.join(root, "Dataset045_Entries")
    write_pair(entries, "scans/c1_image.mha", "segs/c1_label.mha", (1, 2))
    write_json(
        os.path.join(entries, "dataset.json"),
        dataset_json(
            {"0": "CT"},
            LABELS_3D,
            ".mha",
            3,
            dataset={
                "c1": {"images": ["scans/c1_image.mha"], "label": "segs/c1_label.mha"},
                "c2": {
                    "images": ["../Dataset042_Phantom/imagesTr/pat01_visit1_0000.nii.gz"],
                    "label": "segs/c1_label.mha",
                },
                "c3": {"images": "/etc/passwd", "label": 7},
            },
        ),
    )

    regions = os.path.join(root, "Dataset044_Regions")
    write_pair(regions, "imagesTr/r1_0000.nii.gz", "labelsTr/r1.nii.gz", (1, 2))
    write_json(
        os.path.join(regions, "dataset.json"),
        dataset_json(
            {"0": "T1"}, {"background": 0, "whole tumor": [1, 2], "core": [2]}, ".nii.gz", 1, regions_class_order=[1, 2]
        ),
    )
    wrong = os.path.join(root, "Dataset046_WrongEnding")
    write_pair(wrong, "imagesTr/w1_0000.nii.gz", "labelsTr/w1.nii.gz", (1,))
    write_json(os.path.join(wrong, "dataset.json"), dataset_json({"0": "T1"}, LABELS_3D, ".nrrd", 1))
    return root


EXPECTED_QUARANTINE = {
    "Dataset042_Phantom/pat03_visit1_0001": "missing_file",
    "Dataset042_Phantom/imagesTr/pat04_0007.nii.gz": "bad_listing",
    "Dataset042_Phantom/imagesTr/notes.txt": "bad_listing",
    "Dataset044_Regions": "bad_listing",
    "Dataset045_Entries/dataset[1]": "unsafe_path",
    "Dataset045_Entries/dataset[2]": "bad_listing",
    "Dataset046_WrongEnding/imagesTr/w1_0000.nii.gz": "bad_listing",
    "Dataset046_WrongEnding/labelsTr/w1.nii.gz": "bad_listing",
}


@pytest.fixture(scope="module")
def nnunet_build(tmp_path_factory):
    root = make_nnunet_root(tmp_path_factory.mktemp("nnunet_raw"))
    output = str(tmp_path_factory.mktemp("nnunet_out") / "out")
    code = main(
        [
            "build",
            "--source",
            f"nnunet={root}",
            "--lesion-labels",
            "tumor,Cyst,lesion",
            "--subject-regex",
            SUBJECT_REGEX,
            "--output",
            output,
        ]
    )
    return output, code


def rows(output: str, task: str, columns: list[str]) -> list[dict]:
    return [
        row
        for path in sorted(glob.glob(os.path.join(output, f"dataset=nnunet/task={task}/split=*/*.parquet")))
        for row in pq.read_table(path, columns=columns).to_pylist()
    ]


def test_nnunet_dataset_builds_with_user_chosen_lesion_labels(nnunet_build):
    output, code = nnunet_build
    assert code == 0
    detection = rows(output, "detection", ["case_id", "subject_id", "sequence", "modality", "label_name"])
    assert {row["label_name"] for row in detection} == {"organ", "tumor", "cyst", "lesion", "vessel"}
    sizes = rows(output, "tumor_lesion_size", ["case_id", "label_name"])
    assert {row["label_name"] for row in sizes} == {"tumor", "cyst", "lesion"}  # organ, vessel: not named
    assert {row["case_id"].split("/")[0] for row in sizes} == {
        "Dataset042_Phantom",
        "Dataset043_Raster",
        "Dataset047_Tiff",
        "Dataset045_Entries",
    }


def test_each_channel_is_a_sequence_and_visits_of_a_patient_share_a_subject_and_split(nnunet_build):
    output, _ = nnunet_build
    found = collections.defaultdict(set)
    for path in glob.glob(os.path.join(output, "dataset=nnunet/task=*/split=*/*.parquet")):
        split = path.split("split=")[1].split("/")[0]
        for row in pq.read_table(path, columns=["case_id", "subject_id", "sequence", "modality"]).to_pylist():
            found[row["subject_id"]].add((row["case_id"], row["sequence"], row["modality"], split))
    phantom = {case: sequence for case, sequence, _, _ in found["Dataset042_Phantom/pat01"]}
    assert phantom == {
        "Dataset042_Phantom/pat01_visit1_0000": "T2",
        "Dataset042_Phantom/pat01_visit1_0001": "ADC",
        "Dataset042_Phantom/pat01_visit2_0000": "T2",
        "Dataset042_Phantom/pat01_visit2_0001": "ADC",
    }
    assert {case for case, *_ in found["Dataset042_Phantom/pat03"]} == {"Dataset042_Phantom/pat03_visit1_0000"}
    assert {case for case, *_ in found["Dataset043_Raster/img"]} == {
        "Dataset043_Raster/img_a",
        "Dataset043_Raster/img_b",
    }
    assert {modality for *_, modality, _ in found["Dataset045_Entries/c1"]} == {"CT"}
    assert {modality for *_, modality, _ in found["Dataset043_Raster/img"]} == {"image"}
    assert all(len({split for *_, split in cases}) == 1 for cases in found.values())


def test_2d_cases_keep_their_pixels_and_palette_masks_their_indices(nnunet_build):
    output, _ = nnunet_build
    found = rows(
        output,
        "detection",
        [
            "case_id",
            "plane",
            "label_name",
            "image_width_px",
            "image_height_px",
            "box_xyxy_px",
            "pixel_spacing_mm_row_col",
        ],
    )
    lesions = {row["case_id"]: row for row in found if row["label_name"] == "lesion"}
    assert set(lesions) == {"Dataset043_Raster/img_a", "Dataset043_Raster/img_b", "Dataset047_Tiff/img_c"}
    for row in lesions.values():
        assert (row["image_height_px"], row["image_width_px"]) == RASTER_SHAPE_ROWS_COLS
        assert tuple(row["box_xyxy_px"]) == pytest.approx(LESION_BOX_XYXY_PX)  # displayed as stored
        assert tuple(row["pixel_spacing_mm_row_col"]) == (1.0, 1.0)


def test_hostile_entries_are_quarantined_with_their_reasons(nnunet_build):
    output, _ = nnunet_build
    quarantined = {
        row["case_id"]: row["reason"]
        for path in glob.glob(os.path.join(output, "quarantine/*.parquet"))
        for row in pq.read_table(path, columns=["dataset", "case_id", "reason"]).to_pylist()
        if row["dataset"] == "nnunet"
    }
    assert {case: quarantined.get(case) for case in EXPECTED_QUARANTINE} == EXPECTED_QUARANTINE
    assert not any(case.startswith("Dataset045_Entries/c") and case != "Dataset045_Entries/c1" for case in quarantined)


def test_unknown_lesion_label_names_are_a_usage_error_naming_the_labels(tmp_path, capsys):
    root = make_nnunet_root(tmp_path / "raw")
    code = main(["build", "--source", f"nnunet={root}", "--lesion-labels", "tumour", "--output", str(tmp_path / "o")])
    message = capsys.readouterr().err
    assert code == 2 and "'tumour'" in message and "'tumor'" in message and "'vessel'" in message
    assert not os.path.exists(tmp_path / "o")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lesion-labels", " , "], "--lesion-labels takes NAME"),
        (["--subject-regex", "patient"], "needs a group"),
        (["--subject-regex", "(unclosed"], "not a regular expression"),
    ],
)
def test_malformed_options_are_usage_errors(tmp_path, capsys, argv, message):
    code = main(["build", "--source", f"nnunet={tmp_path}", "--output", str(tmp_path / "o"), *argv])
    assert code == 2 and message in capsys.readouterr().err


def test_subject_regex_needs_an_nnunet_source(tmp_path, capsys):
    code = main(["build", "--source", "demo", "--subject-regex", "(x)", "--output", str(tmp_path / "o")])
    assert code == 2 and "--source nnunet" in capsys.readouterr().err


def test_lesion_labels_override_msd_targets_and_enter_the_params_hash(tmp_path):
    from pipeline.run import list_cases

    task = make_msd_task(tmp_path)
    base = BuildConfig(sources=(SourceSpec("msd", task),), output=str(tmp_path / "o"))
    chosen = BuildConfig(
        sources=(SourceSpec("msd", task),), output=str(tmp_path / "o"), lesion_label_names=("enhancing-tumour",)
    )
    assert {case.lesion_labels for case in list_cases(base)} == {(1, 2, 3)}
    enhancing = next(value for value, name in list_cases(base)[0].labels if name == "enhancing tumour")
    assert {case.lesion_labels for case in list_cases(chosen)} == {(enhancing,)}
    assert base.params_hash != chosen.params_hash
    assert base.output_params() == {
        key: value for key, value in chosen.output_params().items() if key != "lesion_labels"
    }


def test_dataset_json_fields_of_the_wrong_form_are_refused_by_field():
    from pipeline.sources.msd import TaskError
    from pipeline.sources.nnunet import MAX_CHANNELS, channels_of, labels_of, parse_meta

    refused = [
        (channels_of, {"channel_names": {str(n): "T1" for n in range(MAX_CHANNELS + 1)}}, "more than"),
        (channels_of, {"channel_names": {"0": "T1", "2": "T2"}}, "numbered 0 to 1"),
        (labels_of, {"labels": {"background": 0, "a": 1, "b": 1}}, "two names give one value"),
        (labels_of, {"labels": {"background": 0, "a": True}}, "whole number"),
        (parse_meta, {"channel_names": {"0": "CT"}, "labels": {}, "file_ending": ".nii.gz\n<b>"}, "file_ending"),
    ]
    for parse, meta, message in refused:
        with pytest.raises(TaskError, match=message):
            parse(meta)
