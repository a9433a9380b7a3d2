"""Header text never reaches an output: quarantine messages name the field and the reason, not its content.

One build of an MSD-layout task whose DICOM series and SEG objects carry a planted secret in their text
fields (next to a good case), and a cephalogram whose landmark file carries it: every bad case is
quarantined with its reason, and the secret is in no byte of any output file, nor in any decoded
Parquet value.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import traceback
import warnings

import apache_beam as beam
import pyarrow.parquet as pq
import pydicom
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamPipeline
from apache_beam.testing.util import assert_that

from pipeline.cli import main
from pipeline.sources import demo
from pipeline.stages import Guarded
from tests.conftest import write_nifti
from tests.formats import write_dicom_series
from tests.transforms.test_formats_and_faults import liver_seg, phantom
from transforms import ids
from transforms.caseref import CaseRef
from transforms.tracebacks import describe_exception

SECRET = "SECRET-7f3a"
PLACEHOLDER = "9" * len(SECRET)  # a valid DS/IS/UI/LO value of the secret's length, replaced byte for byte
TASK = "Task01_Headers"


def plant(path: str, keyword: str, value) -> None:
    """Store `value` (holding PLACEHOLDER) in `keyword` of the DICOM file at `path`, then turn the
    placeholder's bytes into the secret's: the field then holds text its value type does not allow."""
    dataset = pydicom.dcmread(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        setattr(dataset, keyword, value)
        dataset.save_as(path)
    data = open(path, "rb").read()
    assert data.count(PLACEHOLDER.encode()) == 1, (path, keyword)
    open(path, "wb").write(data.replace(PLACEHOLDER.encode(), SECRET.encode()))


def plant_in_series(folder: str, keyword: str, value) -> None:
    for name in os.listdir(folder):
        plant(os.path.join(folder, name), keyword, value)


# (case, where the secret goes, expected reason, field the message must name)
FAULTS = (
    ("pixel_spacing", "PixelSpacing", "dicom_missing_tags", "PixelSpacing"),
    ("position", "ImagePositionPatient", "dicom_missing_tags", "ImagePositionPatient"),
    ("frames", "NumberOfFrames", "dicom_missing_tags", "NumberOfFrames"),
    ("rescale", "RescaleSlope", "dicom_missing_tags", "RescaleSlope"),
    ("seg_label", "SegmentLabel", "unknown_label", "SegmentLabel"),
    ("seg_class", "SOPClassUID", "unreadable", "SOPClassUID"),
)
VALUES = {
    "PixelSpacing": [PLACEHOLDER, "0.9"],
    "ImagePositionPatient": [PLACEHOLDER, "0", "0"],
    "NumberOfFrames": PLACEHOLDER,
    "RescaleSlope": PLACEHOLDER,
    "SegmentLabel": PLACEHOLDER,
    "SOPClassUID": PLACEHOLDER,
}


def write_task(root: str) -> str:
    task = os.path.join(root, TASK)
    image, labels, affine = phantom()
    mask = write_nifti(os.path.join(task, "labelsTr", "cube.nii.gz"), labels, affine)
    entries = [{"image": "./imagesTr/good/", "label": "./labelsTr/cube.nii.gz"}]
    write_dicom_series(os.path.join(task, "imagesTr", "good"), image, affine)
    for name, keyword, _, _ in FAULTS:
        folder = write_dicom_series(os.path.join(task, "imagesTr", name), image, affine)
        label = os.path.relpath(mask, task)
        if keyword in ("SegmentLabel", "SOPClassUID"):  # the secret in the mask, a DICOM SEG
            seg = os.path.join(task, "labelsTr", f"{name}.dcm")
            shutil.copy(liver_seg(), seg)
            if keyword == "SegmentLabel":
                dataset = pydicom.dcmread(seg)
                dataset.SegmentSequence[0].SegmentLabel = PLACEHOLDER
                dataset.save_as(seg)
                data = open(seg, "rb").read()
                open(seg, "wb").write(data.replace(PLACEHOLDER.encode(), SECRET.encode()))
            else:
                plant(seg, keyword, VALUES[keyword])
            label = os.path.relpath(seg, task)
        else:
            plant_in_series(folder, keyword, VALUES[keyword])
        entries.append({"image": f"./imagesTr/{name}/", "label": label})
    json.dump(
        {"modality": {"0": "CT"}, "labels": {"0": "background", "1": "liver"}, "training": entries},
        open(os.path.join(task, "dataset.json"), "w"),
    )
    return task


def write_cephalograms(root: str) -> str:
    """The demo's two cephalograms; the landmark file of 151 has the secret on its first line."""
    ceph = os.path.join(root, "ceph")
    demo.write_ceph(ceph)
    landmarks = os.path.join(ceph, "AnnotationsByMD", "400_senior", "151.txt")
    lines = open(landmarks).read().splitlines()
    open(landmarks, "w").write("\n".join([f"{SECRET},12", *lines[1:]]) + "\n")
    return ceph


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("headers"))
    task, ceph = write_task(root), write_cephalograms(root)
    output = os.path.join(root, "out")
    argv = ["build", f"--source=msd={task}", f"--source=ceph_biometrics_400={ceph}", "--output", output]
    assert main(argv) == 0
    return output


def quarantine(output: str) -> list[dict]:
    return [
        row
        for path in glob.glob(os.path.join(output, "quarantine", "*.parquet"))
        for row in pq.read_table(path).to_pylist()
    ]


def test_header_faults_are_quarantined_with_the_field_named(build):
    rows = {(row["dataset"], row["case_id"]): row for row in quarantine(build) if row["stage"] == "load"}
    for name, _, reason, field in FAULTS:
        row = rows[("msd", f"{TASK}/{name}")]
        assert (row["reason"], field in row["message"]) == (reason, True), row
    assert rows[("ceph_biometrics_400", "151")]["reason"] == "bad_landmarks"
    assert set(rows) == {("msd", f"{TASK}/{name}") for name, *_ in FAULTS} | {("ceph_biometrics_400", "151")}
    written = {path.split(os.sep)[-4] for path in glob.glob(os.path.join(build, "dataset=*/task=*/split=*/*.parquet"))}
    assert written == {"dataset=msd", "dataset=ceph_biometrics_400"}


def test_the_secret_is_in_no_output_byte_nor_decoded_value(build):
    files = [os.path.join(folder, name) for folder, _, names in os.walk(build) for name in names]
    assert any(path.endswith(".parquet") for path in files) and any(path.endswith("README.md") for path in files)
    for path in files:
        assert SECRET.encode() not in open(path, "rb").read(), path
        if path.endswith(".parquet"):
            table = pq.read_table(path)
            for column in table.column_names:
                if column != "image":
                    assert SECRET not in json.dumps(table.column(column).to_pylist(), default=str), (path, column)


class _RaisesWithInputText(beam.DoFn):
    def process(self, case):
        raise ValueError(f"could not convert string to float: '{SECRET}' in /worker/tmp/{case.case_id}.dcm")


def test_an_unexpected_error_is_quarantined_as_its_type_and_code_location_only():
    case = CaseRef("demo", "c", "c", "/data/c.nii.gz", "", (), ())

    def check(rows):
        (row,) = rows
        assert row["reason"] == "unexpected_error"
        assert SECRET not in row["message"] and "/" not in row["message"], row["message"]
        assert row["message"].startswith("ValueError at tests.pipeline.test_header_text:"), row["message"]
        assert row["message"].endswith("in process"), row["message"]

    with BeamPipeline() as pipeline:
        _, bad = pipeline | beam.Create([case]) | Guarded("load", _RaisesWithInputText())
        assert_that(bad, check)


def test_an_error_inside_a_library_names_the_library_frame_and_ours():
    try:
        ids.params_hash({"spacing": object()})
    except TypeError as exc:
        summary = describe_exception(type(exc), traceback.format_exception(exc))
    assert re.fullmatch(r"TypeError at json\.encoder:\d+ in default, from transforms\.ids:\d+ in params_hash", summary)
