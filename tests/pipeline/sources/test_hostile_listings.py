"""A bad listing quarantines its own cases (or its task), never other tasks, other sources or the run.

Hostile `dataset.json` variants, names that collide (one stem twice, separator characters in names,
two labels of one name), names that are not UTF-8 and index files that are not CSV: each becomes
`bad_listing` cases next to good ones that still build; ids stay collision-free whatever the names
contain; a root with no recognisable layout is still a usage error.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os

import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.sources import SourceError, demo, get_source
from pipeline.sources.base import Source
from pipeline.sources.listing import checked_cases, unique_names
from tests.conftest import brain_case, write_nifti
from transforms import ids

GOOD_LABELS = {"0": "background", "1": "tumor", "2": "Tumor ", "3": "core"}  # 1 and 2 name one structure
HOSTILE_DATASET_JSON = {
    "not_json": b'{"labels": {"1": "tumor"}, "training": [',
    "not_utf8": b'{"labels": {"1": "tumor\xff"}, "training": []}',
    "not_an_object": b"[1, 2, 3]",
    "label_key_not_whole": json.dumps({"labels": {"1.5": "tumor"}, "training": []}).encode(),
    "label_key_negative": json.dumps({"labels": {"-1": "tumor"}, "training": []}).encode(),
    "label_key_huge": json.dumps({"labels": {"9" * 40: "tumor"}, "training": []}).encode(),
    "label_keys_alias": json.dumps({"labels": {"1": "a", "01": "b"}, "training": []}).encode(),
    "label_name_not_text": json.dumps({"labels": {"1": {"name": "tumor"}}, "training": []}).encode(),
    "labels_not_an_object": json.dumps({"labels": ["tumor"], "training": []}).encode(),
    "modality_not_an_object": json.dumps({"modality": "CT", "training": []}).encode(),
    "modality_empty": json.dumps({"modality": {}, "training": []}).encode(),
    "training_null": json.dumps({"labels": {"1": "tumor"}, "training": None}).encode(),
    "training_number": json.dumps({"labels": {"1": "tumor"}, "training": 5}).encode(),
    "nested_too_deep": b'{"training": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


def write_task(root, task: str, cases: dict[str, str], meta: dict, channels: int = 1) -> str:
    """An MSD task folder: `cases` maps image file names to label file names (brain phantoms, `channels`
    channels), `meta` is dataset.json without its `training` list."""
    folder = os.path.join(str(root), task)
    for seed, (image_name, label_name) in enumerate(cases.items()):
        image, labels, affine = brain_case(seed=seed)
        image = image[..., :channels] if channels > 1 else image[..., 0]
        write_nifti(os.path.join(folder, "imagesTr", image_name), image, affine)
        write_nifti(os.path.join(folder, "labelsTr", label_name), labels, affine)
    training = [{"image": f"./imagesTr/{image}", "label": f"./labelsTr/{label}"} for image, label in cases.items()]
    with open(os.path.join(folder, "dataset.json"), "w") as handle:
        json.dump({**meta, "training": training}, handle)
    return folder


def write_hostile_task(root, task: str, content: bytes) -> None:
    os.makedirs(os.path.join(str(root), task))
    with open(os.path.join(str(root), task, "dataset.json"), "wb") as handle:
        handle.write(content)


def listing_errors(cases) -> dict[str, str | None]:
    return {case.case_id: case.listing_error and case.listing_error[0] for case in cases}


# --- one build: hostile tasks next to good ones, and a second source with a bad listing ----------------


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    msd = root / "msd"
    write_task(msd, "Task01_Good", {"good_001.nii.gz": "good_001.nii.gz"}, {"labels": GOOD_LABELS})
    for name in ("not_json", "training_null", "label_key_not_whole"):
        write_hostile_task(msd, f"Task02_{name}", HOSTILE_DATASET_JSON[name])
    # one stem twice (a.nii.gz, a.nii): both refused; b is fine
    dup = write_task(
        msd,
        "Task03_Stems",
        {"a.nii.gz": "a.nii.gz", "b.nii.gz": "b.nii.gz"},
        {"labels": {"1": "edema", "2": "core", "3": "enhancing"}},
    )
    with open(os.path.join(dup, "imagesTr", "a.nii"), "wb") as handle:
        handle.write(gzip.decompress(open(os.path.join(dup, "imagesTr", "a.nii.gz"), "rb").read()))
    meta = json.load(open(os.path.join(dup, "dataset.json")))
    meta["training"].append({"image": "./imagesTr/a.nii", "label": "./labelsTr/a.nii.gz"})
    json.dump(meta, open(os.path.join(dup, "dataset.json"), "w"))
    # (case "a", sequence "FLAIR<US>T1") and (case "a<US>FLAIR", sequence "T1") join to one text
    write_task(
        msd,
        "Task04_Separators",
        {"a.nii.gz": "a.nii.gz", "a\x1fFLAIR.nii.gz": "a\x1fFLAIR.nii.gz"},
        {"modality": {"0": "FLAIR\x1fT1", "1": "T1"}, "labels": {"1": "edema", "2": "core", "3": "enh"}},
        channels=2,
    )
    ceph = root / "ceph"
    demo.write_ceph(str(ceph))  # TrainingData/001 and Test1Data/151; then 151 once more in TrainingData
    os.link(ceph / "RawImage" / "Test1Data" / "151.bmp", ceph / "RawImage" / "TrainingData" / "151.bmp")
    output = str(root / "out")
    code = main(["build", f"--source=msd={msd}", f"--source=ceph_biometrics_400={ceph}", "--output", output])
    return code, output


def rows(output: str, pattern: str, columns: list[str]) -> list[dict]:
    return [
        row
        for path in glob.glob(os.path.join(output, pattern))
        for row in pq.read_table(path, columns=columns).to_pylist()
    ]


def test_the_run_finishes_and_quarantines_only_the_bad_listings(build):
    code, output = build
    assert code == 0
    quarantined = {
        (row["dataset"], row["case_id"]): row
        for row in rows(output, "quarantine/*.parquet", ["dataset", "case_id", "stage", "reason", "message"])
        if row["stage"] == "load"
    }
    assert {key: row["reason"] for key, row in quarantined.items()} == {
        ("msd", "Task02_not_json"): "bad_listing",
        ("msd", "Task02_training_null"): "bad_listing",
        ("msd", "Task02_label_key_not_whole"): "bad_listing",
        ("msd", "Task03_Stems/a#1"): "bad_listing",
        ("msd", "Task03_Stems/a#2"): "bad_listing",
        ("ceph_biometrics_400", "151#1"): "bad_listing",
        ("ceph_biometrics_400", "151#2"): "bad_listing",
    }
    assert "line 1, column" in quarantined[("msd", "Task02_not_json")]["message"]
    assert "'training' is not a list" in quarantined[("msd", "Task02_training_null")]["message"]
    written = {
        (path.split("dataset=")[1].split("/")[0], case_id)
        for path in glob.glob(os.path.join(output, "dataset=*/task=*/split=*/*.parquet"))
        for case_id in pq.read_table(path, columns=["case_id"]).column("case_id").to_pylist()
    }
    assert written == {
        ("msd", "Task01_Good/good_001"),
        ("msd", "Task03_Stems/b"),
        ("msd", "Task04_Separators/a"),
        ("msd", "Task04_Separators/a\x1fFLAIR"),
        ("ceph_biometrics_400", "001"),
    }


def test_two_labels_of_one_name_get_distinct_names_in_the_rows(build):
    _, output = build
    names = {
        row["label_name"]
        for row in rows(output, "dataset=msd/task=detection/split=*/*.parquet", ["case_id", "label_name"])
        if row["case_id"] == "Task01_Good/good_001"
    }
    assert names == {"tumor (label 1)", "Tumor (label 2)", "core"}


def test_names_holding_the_id_separator_give_distinct_sample_ids(build):
    _, output = build
    pairs = rows(output, "dataset=msd/task=*/split=*/*.parquet", ["sample_id", "case_id", "sequence"])
    separated = {(row["case_id"], row["sequence"]) for row in pairs if row["case_id"].startswith("Task04")}
    assert ("Task04_Separators/a", "FLAIR\x1fT1") in separated and ("Task04_Separators/a\x1fFLAIR", "T1") in separated
    assert len({row["sample_id"] for row in pairs}) == len(pairs)


# --- listings, without a build ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HOSTILE_DATASET_JSON))
def test_a_hostile_dataset_json_quarantines_its_task_only(tmp_path, name):
    write_task(tmp_path, "Task01_Good", {"good_001.nii.gz": "good_001.nii.gz"}, {"labels": GOOD_LABELS})
    write_hostile_task(tmp_path, "Task02_Bad", HOSTILE_DATASET_JSON[name])
    cases = checked_cases(get_source("msd"), str(tmp_path))
    assert listing_errors(cases) == {"Task01_Good/good_001": None, "Task02_Bad": "bad_listing"}
    bad = cases[1]
    assert bad.listing_error[1].startswith("dataset.json ") and "tumor" not in bad.listing_error[1]


def test_malformed_entries_are_quarantined_without_quoting_them(tmp_path):
    task = write_task(tmp_path, "Task01_X", {"ok.nii.gz": "ok.nii.gz"}, {"labels": {"1": "a", "2": "b", "3": "c"}})
    meta = json.load(open(os.path.join(task, "dataset.json")))
    meta["training"] += [
        5,
        "text",
        {"image": ["list"], "label": "x"},
        {"image": "", "label": "x.nii.gz"},
        {"image": "./imagesTr/\x00.nii.gz", "label": "x.nii.gz"},
        {"image": "/etc/passwd", "label": "x.nii.gz"},
    ]
    json.dump(meta, open(os.path.join(task, "dataset.json"), "w"))
    cases = checked_cases(get_source("msd"), task)
    assert listing_errors(cases) == {
        "Task01_X/ok": None,
        "Task01_X/training[1]": "bad_listing",
        "Task01_X/training[2]": "bad_listing",
        "Task01_X/training[3]": "bad_listing",
        "Task01_X/training[4]": "unsafe_path",
        "Task01_X/training[5]": "unsafe_path",
        "Task01_X/training[6]": "unsafe_path",
    }
    assert not any(
        "passwd" in case.listing_error[1] or "text" in case.listing_error[1] for case in cases if case.listing_error
    )


def test_a_root_without_the_layout_is_still_a_usage_error(tmp_path, capsys):
    with pytest.raises(SourceError):
        checked_cases(get_source("msd"), str(tmp_path / "missing"))
    with pytest.raises(SourceError):
        checked_cases(get_source("kits23"), str(tmp_path))
    assert main(["build", f"--source=msd={tmp_path / 'missing'}", "--output", str(tmp_path / "out")]) == 2
    assert "folder not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["build", f"--source=msd={tmp_path / 'empty'}", "--output", str(tmp_path / "out")]) == 2
    assert "not an MSD-layout root" in capsys.readouterr().err


class _Breaks(Source):
    info = get_source("kits23").info

    def list_cases(self, root):
        raise TypeError(f"'NoneType' object is not subscriptable, reading {root}/secret-name")


def test_an_adapter_failing_on_its_listing_gives_one_quarantined_case_for_that_source():
    (case,) = checked_cases(_Breaks(), "/data/kits")
    assert (case.case_id, case.listing_error[0]) == ("(listing)", "bad_listing")
    assert "TypeError at tests.pipeline.sources.test_hostile_listings:" in case.listing_error[1]
    assert "secret-name" not in case.listing_error[1]


def test_names_that_are_not_utf8_are_refused_under_printable_ids(tmp_path):
    root = os.fsencode(str(tmp_path))
    for folder in (b"case_00001", b"\xffother/case_00002"):
        os.makedirs(os.path.join(root, folder))
        for name in (b"imaging.nii.gz", b"segmentation.nii.gz"):
            open(os.path.join(root, folder, name), "wb").close()
    cases = checked_cases(get_source("kits23"), str(tmp_path))
    assert listing_errors(cases) == {"case_00001": None, "case_00002": "bad_listing"}
    assert "\\xffother" in cases[1].image_uri and "not valid UTF-8" in cases[1].listing_error[1]
    cases[1].image_uri.encode("utf-8")  # printable: writes to Parquet


def test_a_json_name_that_is_not_utf8_is_refused(tmp_path):
    task = write_task(tmp_path, "Task01_X", {"ok.nii.gz": "ok.nii.gz"}, {"labels": {"1": "a", "2": "b", "3": "c"}})
    text = (
        open(os.path.join(task, "dataset.json"))
        .read()
        .replace("]}", ', {"image": "./imagesTr/\\udcff.nii.gz", "label": "./labelsTr/ok.nii.gz"}]}')
    )
    open(os.path.join(task, "dataset.json"), "w").write(text)
    cases = checked_cases(get_source("msd"), task)
    assert listing_errors(cases) == {"Task01_X/ok": None, "Task01_X/\\xff": "bad_listing"}


def test_a_file_name_ending_in_a_newline_is_not_its_namesake(tmp_path):
    for folder in ("case_00001", "case_00002"):
        os.makedirs(tmp_path / folder)
        (tmp_path / folder / "segmentation.nii.gz").touch()
    (tmp_path / "case_00001" / "imaging.nii.gz").touch()
    (tmp_path / "case_00002" / "imaging.nii.gz\n").touch()
    assert listing_errors(checked_cases(get_source("kits23"), str(tmp_path))) == {"case_00001": None}


def write_totalsegmentator(root, meta_csv: bytes) -> None:
    folder = os.path.join(str(root), "Totalsegmentator_dataset_v201")
    for case in ("s0001", "s0002"):
        os.makedirs(os.path.join(folder, case, "segmentations"))
        open(os.path.join(folder, case, "ct.nii.gz"), "wb").close()
        open(os.path.join(folder, case, "segmentations", "liver.nii.gz"), "wb").close()
    with open(os.path.join(folder, "meta.csv"), "wb") as handle:
        handle.write(meta_csv)


@pytest.mark.parametrize(
    "meta_csv, expected",
    [
        (b"image_id;split\ns0001;train\ns0002;../../elsewhere\n", {"ct/s0001": None, "ct/s0002": "bad_listing"}),
        (b"image_id;split\ns0001;val\n", {"ct/s0001": None, "ct/s0002": None}),
        (b"", {"ct/s0001": None, "ct/s0002": None}),
        (b'image_id,split\n"s0001,train\n' + b"x" * 200_000, {"ct/s0001": "bad_listing", "ct/s0002": "bad_listing"}),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe;;\n", {"ct/s0001": "bad_listing", "ct/s0002": "bad_listing"}),
    ],
    ids=["split_not_a_split", "val", "empty", "not_a_table", "binary"],
)
def test_a_hostile_meta_csv_refuses_only_what_it_cannot_place(tmp_path, meta_csv, expected):
    write_totalsegmentator(tmp_path, meta_csv)
    cases = checked_cases(get_source("totalsegmentator"), str(tmp_path))
    assert listing_errors(cases) == expected
    assert {case.official_split for case in cases} <= {None, "train", "validation", "test"}


def test_feta_masks_sit_beside_their_image_whatever_the_folders_are_named(tmp_path):
    anat = tmp_path / "x_T2w.y" / "sub-001" / "anat"
    anat.mkdir(parents=True)
    (anat / "sub-001_rec-mial_T2w.nii.gz").touch()
    (case,) = checked_cases(get_source("feta24"), str(tmp_path / "x_T2w.y"))
    assert case.mask_uri == str(anat / "sub-001_rec-mial_dseg.nii.gz")


def test_label_and_sequence_names_become_unique_deterministically():
    assert unique_names(((1, "tumor"), (2, "liver")), "label") == ((1, "tumor"), (2, "liver"))
    assert unique_names(((1, "tumor"), (2, "Tumor"), (3, "liver"), (4, " ")), "label") == (
        (1, "tumor (label 1)"),
        (2, "Tumor (label 2)"),
        (3, "liver"),
        (4, "label 4"),
    )
    tricky = unique_names(((1, "a"), (2, "a"), (3, "a (label 2)")), "label")
    assert len({name for _, name in tricky}) == 3 and unique_names(tricky, "label") == tricky
    built_to_collide = tuple((n, "x" + " (label 1)" * n) for n in range(1, 12))
    assert len({name for _, name in unique_names(built_to_collide, "label")}) == 11


def _old_sample_id(*parts) -> str:
    """The formula before separator escaping, for names without control characters."""
    return hashlib.sha256("\x1f".join(str(p) for p in (ids.SAMPLE_ID_VERSION, *parts)).encode()).hexdigest()[:32]


def test_sample_ids_are_collision_free_and_unchanged_for_ordinary_names():
    ordinary = ("msd", "Task01_BrainTumour/BRATS_001", "FLAIR", "axial", 12, "detection", "1", "abcd")
    assert ids.sample_id(*ordinary) == _old_sample_id(*ordinary)
    first = ids.sample_id("msd", "T/a\x1fFLAIR", "T1", "axial", 3, "detection", "1", "p")
    second = ids.sample_id("msd", "T/a", "FLAIR\x1fT1", "axial", 3, "detection", "1", "p")
    assert first != second
    escaped = ids.sample_id("msd", "T/a\x1es", "T1", "axial", 3, "detection", "1", "p")  # the escape itself
    assert len({first, second, escaped, ids.sample_id("msd", "T/a\x1f", "T1", "axial", 3, "detection", "1", "p")}) == 4
    assert ids.subject_split("d", "a\x1fb", "salt") in ("train", "test")
