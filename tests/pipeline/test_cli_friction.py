"""What a newcomer meets at the command line: errors that say what to type, a readable `sources`
list, and a dry-run estimate that samples every kind of case."""

from __future__ import annotations

import json
import os

import pytest

from pipeline.cli import main


def error_of(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "argv,wanted",
    [
        (["--spacing", "fine"], ["finest, native or a positive number of mm"]),
        (["--source", "kits="], ["unknown source 'kits'", "did you mean kits23?"]),
        (["--source", "kits=/data/kits"], ["did you mean kits23?"]),
        (["--source", "kits23=/no/such/folder"], ["folder not found: /no/such/folder"]),
    ],
)
def test_misuse_says_what_to_type(argv, wanted, tmp_path, capsys):
    argv = ["build", "--output", str(tmp_path / "out"), *argv]
    if "--source" not in argv:
        argv += ["--source", "demo"]
    message = error_of(argv, capsys)
    assert all(text in message for text in wanted), message


def test_a_root_without_the_layout_describes_it_in_words(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "kidney.nii.gz").write_bytes(b"x")
    message = error_of(["build", "--source", f"kits23={tmp_path / 'data'}", "--output", str(tmp_path / "out")], capsys)
    assert "case_NNNNN/{imaging,segmentation}.nii.gz" in message and "(?P<" not in message


def test_a_case_named_without_its_folder_gets_the_full_id(demo_root, tmp_path, capsys):
    message = error_of(
        ["build", "--source", "demo", "--cases", "demo_ct_00", "--output", str(tmp_path / "out"), "--dry-run"], capsys
    )
    assert "did you mean Task01_DemoCT/demo_ct_00?" in message


def test_sources_prints_short_lines_with_each_layout(capsys):
    assert main(["sources"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 100
    heads = [line for line in lines if not line.startswith(" ")]
    layouts = [line for line in lines if line.startswith("    layout: ")]
    assert len(heads) == len(layouts) >= 23
    demo = "\n".join(lines).split("\ndemo: ", 1)[1].split("\n    layout: ", 1)[0]
    assert demo.startswith("synthetic") and "X-ray" in demo and "cephalograms" in demo


def test_the_dry_run_estimate_samples_every_kind_of_case(demo_root, tmp_path, capsys):
    assert (
        main(["build", "--source", "demo", "--output", str(tmp_path / "out"), "--dry-run", "--dry-run-sample", "1"])
        == 0
    )
    summary = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"summary"' in line][0]
    # cephalograms, the fetal brain, its biometry and the two MSD-style tasks: one case each
    assert summary["sampled_cases"] == 5
    assert set(summary["estimated_pairs"]) == {"detection", "tumor_lesion_size", "angle_distance"}
    assert not os.path.exists(tmp_path / "out")


def test_the_build_summary_counts_bad_cases_apart_from_refused_measurements(capsys):
    from pipeline.cli import print_summary

    quarantine = [
        {"dataset": "demo", "stage": "load", "reason": "truncated_gzip", "rows": 1},
        {"dataset": "demo", "stage": "tumor_lesion_size", "reason": "too_few_pixels", "rows": 13},
    ]
    stats = {
        "cases": {"demo": {"listed": 10, "with_pairs": 8}},
        "rows": [],
        "quarantine": quarantine,
        "total_quarantined": 14,
        "total_rows": 0,
        "wall_seconds": 1.0,
    }
    print_summary(stats, "/out")
    out = capsys.readouterr().out
    assert "cases quarantined at load (their pairs not built): 1\n  demo/load/truncated_gzip: 1" in out
    assert "measurements refused (those pairs not written; their cases' other pairs kept): 13" in out


def test_every_landmark_measurement_has_a_name_for_its_prompt():
    from pipeline.sources import ceph_biometrics_400, feta24

    for measurement in (*ceph_biometrics_400.MEASUREMENTS, *feta24.MEASUREMENTS):
        assert measurement.description and "L_" not in measurement.description, measurement
