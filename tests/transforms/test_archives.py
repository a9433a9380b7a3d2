"""DICOM series delivered as archives: safe extraction, refused hostile members, end to end."""

from __future__ import annotations

import glob
import io
import json
import os
import shutil
import stat
import tarfile
import zipfile

import pyarrow.parquet as pq
import pytest

from pipeline import storage
from pipeline.cli import main
from tests.conftest import upload_tree, write_nifti
from tests.formats import write_dicom_series
from tests.transforms.test_formats_and_faults import phantom
from transforms import archives
from transforms.errors import PipelineError, Reason

BUDGET = 1 << 20


def zip_of(path, members: dict[str, bytes], modes: dict[str, int] | None = None) -> str:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (modes or {}).get(name, stat.S_IFREG | 0o644) << 16
            archive.writestr(info, data)
    return str(path)


def tar_of(path, members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> str:
    with tarfile.open(path, "w:gz") as archive:
        for member in members:
            payload = (data or {}).get(member.name, b"")
            member.size = len(payload) if member.isfile() else 0
            archive.addfile(member, io.BytesIO(payload) if member.isfile() else None)
    return str(path)


def tar_member(name: str, kind=tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.linkname = kind, link
    return member


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "../outside.dcm", "series/../../outside.dcm", "C:/x.dcm", "..\\outside.dcm"]
)
def test_zip_member_escaping_its_folder_is_refused(tmp_path, name):
    path = zip_of(tmp_path / "evil.zip", {"IM1.dcm": b"x", name: b"y"})
    with pytest.raises(PipelineError) as error:
        archives.extract(path, str(tmp_path / "out"), "evil.zip", BUDGET)
    assert error.value.reason is Reason.UNSAFE_PATH
    assert not os.path.exists(tmp_path / "outside.dcm")


def test_zip_symlink_member_is_refused(tmp_path):
    path = zip_of(tmp_path / "link.zip", {"IM1.dcm": b"/etc/passwd"}, {"IM1.dcm": stat.S_IFLNK | 0o777})
    with pytest.raises(PipelineError) as error:
        archives.extract(path, str(tmp_path / "out"), "link.zip", BUDGET)
    assert error.value.reason is Reason.UNSAFE_PATH


@pytest.mark.parametrize(
    "member",
    [
        tar_member("IM1.dcm", tarfile.SYMTYPE, "/etc/passwd"),
        tar_member("IM1.dcm", tarfile.LNKTYPE, "IM0.dcm"),
        tar_member("null", tarfile.CHRTYPE),
        tar_member("fifo", tarfile.FIFOTYPE),
    ],
    ids=["symlink", "hardlink", "device", "fifo"],
)
def test_tar_links_and_devices_are_refused(tmp_path, member):
    path = tar_of(tmp_path / "evil.tar.gz", [tar_member("IM0.dcm"), member], {"IM0.dcm": b"x"})
    with pytest.raises(PipelineError) as error:
        archives.extract(path, str(tmp_path / "out"), "evil.tar.gz", BUDGET)
    assert error.value.reason is Reason.UNSAFE_PATH


def test_decompression_bomb_stops_at_the_budget(tmp_path):
    """64 MiB of zeros compress to ~64 KiB; extraction stops at the 1 MiB budget while streaming."""
    path = tar_of(tmp_path / "bomb.tgz", [tar_member("IM1.dcm")], {"IM1.dcm": bytes(64 << 20)})
    assert os.path.getsize(path) < 1 << 20
    with pytest.raises(PipelineError) as error:
        archives.extract(path, str(tmp_path / "out"), "bomb.tgz", BUDGET)
    assert error.value.reason is Reason.TOO_LARGE
    assert (
        sum(os.path.getsize(p) for p in glob.glob(str(tmp_path / "out" / "**"), recursive=True) if os.path.isfile(p))
        <= BUDGET
    )


def test_broken_archive_is_unreadable(tmp_path):
    path = tmp_path / "cut.zip"
    data = open(zip_of(tmp_path / "whole.zip", {"IM1.dcm": os.urandom(5000)}), "rb").read()
    path.write_bytes(data[:2000])
    with pytest.raises(PipelineError) as error:
        archives.extract(str(path), str(tmp_path / "out"), "cut.zip", BUDGET)
    assert error.value.reason is Reason.UNREADABLE


def test_a_single_top_folder_is_stepped_into(tmp_path):
    path = zip_of(tmp_path / "series.zip", {"patient/series/IM1.dcm": b"a", "patient/series/IM2.dcm": b"b"})
    root = archives.extract(path, str(tmp_path / "out"), "series.zip", BUDGET)
    assert sorted(os.listdir(root)) == ["IM1.dcm", "IM2.dcm"] and root.endswith("series")


def archived_series_task(root) -> str:
    """An MSD-style task whose CT series come as a folder, a .zip, a .tar.gz and one hostile .zip."""
    task = os.path.join(str(root), "Task09_Archives")
    image, labels, affine = phantom()
    series = write_dicom_series(os.path.join(str(root), "series"), image, affine)
    write_nifti(os.path.join(task, "labelsTr", "cube.nii.gz"), labels, affine)
    os.makedirs(os.path.join(task, "imagesTr"))
    shutil.copytree(series, os.path.join(task, "imagesTr", "folder"))
    shutil.make_archive(os.path.join(task, "imagesTr", "zipped"), "zip", series)
    shutil.make_archive(os.path.join(task, "imagesTr", "tarred"), "gztar", root, "series")
    members = {os.path.basename(p): open(p, "rb").read() for p in glob.glob(os.path.join(series, "*"))}
    zip_of(os.path.join(task, "imagesTr", "evil.zip"), {**members, "../../escape.dcm": b"x"})
    images = ["./imagesTr/folder/", "./imagesTr/zipped.zip", "./imagesTr/tarred.tar.gz", "./imagesTr/evil.zip"]
    json.dump(
        {
            "modality": {"0": "CT"},
            "labels": {"0": "background", "1": "cube"},
            "training": [{"image": image, "label": "./labelsTr/cube.nii.gz"} for image in images],
        },
        open(os.path.join(task, "dataset.json"), "w"),
    )
    return task


def areas_by_case(output: str) -> dict[str, list]:
    rows = [
        r
        for f in glob.glob(os.path.join(output, "dataset=msd/task=detection/split=*/*.parquet"))
        for r in pq.read_table(f, columns=["case_id", "plane", "slice_index", "area_px"]).to_pylist()
    ]
    by_case: dict[str, list] = {}
    for row in rows:
        by_case.setdefault(row["case_id"].rsplit("/", 1)[-1], []).append(
            (row["plane"], row["slice_index"], row["area_px"])
        )
    return {case: sorted(values) for case, values in by_case.items()}


def test_archived_series_build_like_the_folder_and_a_hostile_archive_is_quarantined(tmp_path):
    task = archived_series_task(tmp_path)
    output = str(tmp_path / "out")
    assert main(["build", "--source", f"msd={task}", "--output", output]) == 0
    areas = areas_by_case(output)
    assert set(areas) == {"folder", "zipped", "tarred"}
    assert areas["folder"] == areas["zipped"] == areas["tarred"] and areas["folder"]
    quarantine = [
        r for f in glob.glob(os.path.join(output, "quarantine", "*.parquet")) for r in pq.read_table(f).to_pylist()
    ]
    assert [(q["case_id"].rsplit("/", 1)[-1], q["reason"]) for q in quarantine] == [("evil", "unsafe_path")]
    assert not os.path.exists(tmp_path / "escape.dcm")


def test_archived_and_slashless_series_localize_from_gcs(tmp_path, gcs_emulator):
    task = archived_series_task(tmp_path)
    storage.gcs_filesystem().mkdir("medvision-archives")
    upload_tree(task, "gs://medvision-archives/task")
    local_names = sorted(os.listdir(os.path.join(task, "imagesTr", "folder")))
    for uri in ("gs://medvision-archives/task/imagesTr/zipped.zip", "gs://medvision-archives/task/imagesTr/folder"):
        with storage.localized(uri) as (folder, digest):
            assert sorted(os.listdir(folder)) == local_names and len(digest) == 64
        assert not os.path.exists(folder)
