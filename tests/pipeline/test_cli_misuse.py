"""The command line under misuse: mistyped options, outputs that cannot be, unfinished builds, `--dry-run`,
and `evaluate`'s exit codes over repeated runs."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from tests.conftest import REPO

SMALL = ["--max-cases", "2"]  # the two demo cephalograms: the quickest demo build


@pytest.fixture(scope="module")
def small_build(tmp_path_factory, demo_root) -> str:
    output = str(tmp_path_factory.mktemp("misuse") / "build")
    assert main(["build", f"--source=demo={demo_root}", "--output", output, *SMALL]) == 0
    return output


def sample_ids(output: str) -> list[str]:
    files = glob.glob(os.path.join(output, "dataset=*", "task=*", "split=*", "*.parquet"))
    return sorted(i for path in files for i in pq.read_table(path, columns=["sample_id"]).column(0).to_pylist())


def one_error_line(capsys) -> str:
    error = capsys.readouterr().err.strip()
    assert error.startswith("medvision-pipeline: error:") and error.count("\n") == 0, error
    return error


# --- evaluate exits 0 or 2, never 134 -----------------------------------------------------------


def test_evaluate_exits_0_or_2_run_after_run(small_build, tmp_path):
    """Arrow's pool threads once released Python objects after the interpreter began to exit (exit 134)
    in one run of three; each kind of run twice, all at once."""
    good, malformed = tmp_path / "good.jsonl", tmp_path / "malformed.jsonl"
    good.write_text("".join(json.dumps({"sample_id": i, "answer": "12.5"}) + "\n" for i in sample_ids(small_build)))
    malformed.write_text("{not json\n")
    expected = {str(tmp_path / "missing.jsonl"): 2, str(malformed): 2, str(good): 0}
    runs = [
        (
            path,
            subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "evaluate", "--pairs", small_build, "--predictions", path],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            ),
        )
        for path in expected
        for _ in range(2)
    ]
    codes = [(path, process.wait(timeout=300), process.stderr.read().decode()) for path, process in runs]
    assert [(path, code) for path, code, _ in codes] == [(path, expected[path]) for path, _ in runs], "\n".join(
        f"{path}: exit {code}: {error}" for path, code, error in codes
    )


def test_evaluate_reads_pairs_from_object_storage(small_build, tmp_path, gcs_emulator, capsys):
    """The object-store branch of `read_parquet`: the Python handle, read on this thread only."""
    from pipeline import storage
    from tests.conftest import upload_tree

    storage.gcs_filesystem().mkdir("medvision-evaluate")
    upload_tree(small_build, "gs://medvision-evaluate/build")
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"sample_id": i, "answer": "12.5"}) + "\n" for i in sample_ids(small_build)))
    assert main(["evaluate", "--pairs", "gs://medvision-evaluate/build", "--predictions", str(good)]) == 0
    assert "predictions for sample_ids not in the pairs: 0" in capsys.readouterr().out


def test_nothing_reads_parquet_through_arrows_thread_pool():
    """`pq.read_table` on a Python file object releases it on a pool thread (see evaluate.read_parquet)."""
    root = str(REPO)
    offenders = [
        path
        for path in glob.glob(os.path.join(root, "pipeline", "**", "*.py"), recursive=True)
        if "pq.read_table(" in open(path).read()
    ]
    assert offenders == []


# --- options that neither this tool nor Beam knows ------------------------------------------------


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["build", "dry-run"])
@pytest.mark.parametrize(
    "arguments, named",
    [
        (["--spcing", "1.0"], "--spcing (did you mean --spacing?)"),
        (["--spcing=1.0"], "--spcing (did you mean --spacing?)"),
        (["--modalities", "CT"], "--modalities"),
        (["--runer", "DirectRunner"], "--runer (did you mean --runner?)"),
        (["--max_cases=1"], "--max_cases (did you mean --max-cases?)"),
        (["leftover"], "leftover:"),
    ],
)
def test_unknown_argument_is_refused_before_any_work(tmp_path, demo_root, capsys, dry_run, arguments, named):
    before = sorted(os.listdir(demo_root))
    output = tmp_path / "out"
    argv = ["build", f"--source=demo={demo_root}", "--output", str(output), *dry_run, *arguments]
    assert main(argv) == 2
    assert f"unrecognized argument {named}" in one_error_line(capsys)
    assert not output.exists() and capsys.readouterr().out == "" and sorted(os.listdir(demo_root)) == before


def test_bad_value_of_a_beam_option_is_one_line(tmp_path, demo_root, capsys):
    argv = ["build", f"--source=demo={demo_root}", "--output", str(tmp_path / "out"), "--direct_num_workers=two"]
    assert main(argv) == 2
    assert "--direct_num_workers" in one_error_line(capsys)


def test_report_refuses_unknown_arguments_too(small_build, capsys):
    assert main(["report", small_build, "--gcs-anonymus"]) == 2
    assert "--gcs-anonymus (did you mean --gcs-anonymous?)" in one_error_line(capsys)


@pytest.mark.parametrize("form", ["=", " "])
def test_beam_options_still_pass_in_both_forms(tmp_path, demo_root, capsys, form):
    beam = {
        "--runner": "DirectRunner",
        "--direct_num_workers": "2",
        "--s3_endpoint_url": "http://127.0.0.1:9",
        "--job_endpoint": "localhost:9",
        "--environment_type": "EXTERNAL",
        "--environment_config": "localhost:9",
    }
    arguments = [
        part for option, value in beam.items() for part in ([f"{option}={value}"] if form == "=" else [option, value])
    ]
    argv = [
        "build",
        f"--source=demo={demo_root}",
        "--output",
        str(tmp_path / "out"),
        "--dry-run",
        "--cases",
        "Ceph/001",
        "--dry-run-sample",
        "1",
        *arguments,
        "--save_main_session",
    ]
    assert main(argv) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out.splitlines()[0])["case_id"] == "Ceph/001"


# --- outputs that can never be this build's folder ----------------------------------------------------


def tree(root) -> dict[str, tuple[int, int]]:
    """Every path under `root` with its size and mtime (ns): equal trees mean nothing was written."""
    listing = {}
    for folder, folders, files in os.walk(root):
        for name in folders + files:
            path = os.path.join(folder, name)
            status = os.lstat(path)
            listing[os.path.relpath(path, root)] = (status.st_size, status.st_mtime_ns)
    return listing


@pytest.mark.parametrize(
    "output, message",
    [
        ("a_file", "is a file, not a folder"),
        ("a_file/below/it", "is below {tmp}/a_file, which is a file"),
        ("dangling", "is a symbolic link to {tmp}/nowhere, which does not exist"),
        ("dangling/below", "is a symbolic link to {tmp}/nowhere, which does not exist"),
    ],
)
def test_output_that_cannot_be_a_folder_is_refused_before_any_work(tmp_path, demo_root, capsys, output, message):
    (tmp_path / "a_file").write_text("keep me")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    before = tree(tmp_path)
    assert main(["build", f"--source=demo={demo_root}", "--output", str(tmp_path / output), *SMALL]) == 2
    assert message.format(tmp=tmp_path) in one_error_line(capsys)
    assert tree(tmp_path) == before


def test_output_below_a_system_file_is_refused(demo_root, capsys):
    assert main(["build", f"--source=demo={demo_root}", "--output", "/etc/passwd/x", *SMALL]) == 2
    assert "is below /etc/passwd, which is a file" in one_error_line(capsys)


def test_report_and_evaluate_refuse_an_output_without_success(small_build, tmp_path, capsys):
    partial = str(tmp_path / "partial")
    shutil.copytree(small_build, partial)
    os.remove(os.path.join(partial, "_SUCCESS"))
    predictions = tmp_path / "answers.jsonl"
    predictions.write_text("".join(json.dumps({"sample_id": i, "answer": "1"}) + "\n" for i in sample_ids(partial)))
    assert main(["evaluate", "--pairs", partial, "--predictions", str(predictions)]) == 2
    assert "is not a finished build (no _SUCCESS)" in one_error_line(capsys)
    assert main(["report", partial]) == 2
    assert "is not a finished build" in one_error_line(capsys)


# --- --dry-run writes nothing; the demo writes only where nothing else is -------------------------------


def test_dry_run_of_a_generated_demo_writes_nothing(tmp_path, demo_root, capsys, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the run's scratch folder would show here
    before = tree(tmp_path), tree(demo_root)
    assert main(["build", f"--source=demo={demo_root}", "--output", str(tmp_path / "out"), "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["summary"] == "demo"
    assert (tree(tmp_path), tree(demo_root)) == before


def test_dry_run_does_not_generate_the_demo(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    before = tree(tmp_path)
    root = str(tmp_path / "demo")
    assert main(["build", f"--source=demo={root}", "--output", str(tmp_path / "out"), "--dry-run"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["summary"] == "demo" and "not generated yet" in line["not_listed"]
    assert tree(tmp_path) == before


def test_demo_is_not_generated_into_a_folder_holding_other_files(tmp_path, capsys):
    root = tmp_path / "data"
    root.mkdir()
    (root / "mine.txt").write_text("keep me")
    before = tree(tmp_path)
    for dry_run in ([], ["--dry-run"]):
        assert main(["build", f"--source=demo={root}", "--output", str(tmp_path / "out"), *dry_run]) == 2
        assert "holds other files (mine.txt)" in one_error_line(capsys)
        assert tree(tmp_path) == before


def test_demo_never_overwrites_a_file_of_its_own_name(tmp_path, capsys):
    """A folder holding only the demo's folders (an interrupted generation) is completed, but a file that
    differs from the demo's is never replaced."""
    from pipeline.sources import demo

    impostor = tmp_path / "data" / "Task01_DemoCT" / "dataset.json"
    impostor.parent.mkdir(parents=True)
    impostor.write_text("{}")
    before = tree(tmp_path)
    assert main(["build", f"--source=demo={tmp_path / 'data'}", "--output", str(tmp_path / "out"), *SMALL]) == 2
    assert "exists and differs from the demo's file" in one_error_line(capsys)
    assert impostor.read_text() == "{}" and not os.path.exists(tmp_path / "data" / demo.COMPLETE_MARKER)
    assert tree(tmp_path) == before
