"""One build per output: claims raced on local disk, the GCS emulator and moto S3; two builds at once; builds
that fail, are stopped or killed leave no temporary files and an output that `report` and `evaluate` refuse."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from http import HTTPStatus

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import claim, scratch, storage
from pipeline.cli import main
from pipeline.config import UsageError
from tests.conftest import s3_client

RACERS = 6


def race_claims(uri: str, beam_args: Sequence[str] = ()) -> list:
    """Claim `uri` from RACERS threads released together; each gets its record or the UsageError it met."""
    options, start, results = PipelineOptions(list(beam_args)), threading.Barrier(RACERS), [None] * RACERS

    def claim_it(index):
        start.wait()
        try:
            results[index] = claim.claim_output(uri, f"run-{index}", options)
        except UsageError as exc:
            results[index] = exc

    threads = [threading.Thread(target=claim_it, args=(index,)) for index in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def check_one_winner(results: list, uri: str) -> None:
    winners = [r for r in results if isinstance(r, dict)]
    losers = [r for r in results if isinstance(r, UsageError)]
    assert len(winners) == 1 and len(losers) == RACERS - 1, results
    named = (winners[0]["run_id"], "its claim is being written")  # the claim may be read before it is written
    assert all("is claimed by another build" in str(e) and any(n in str(e) for n in named) for e in losers)
    assert json.loads(storage.read_bytes(storage.join(uri, claim.CLAIM_FILE))) == winners[0]


# --- the claim, raced ------------------------------------------------------------------------------


def test_local_claim_race_has_one_winner(tmp_path):
    output = str(tmp_path / "new" / "out")
    check_one_winner(race_claims(output), output)
    assert os.listdir(output) == [claim.CLAIM_FILE]


@pytest.fixture(scope="module")
def gcs_with_preconditions(gcs_emulator):
    """The GCS emulator, taught GCS's `ifGenerationMatch=0` (it ignores preconditions): an upload of an
    existing object is refused with 412. The emulator serves one request at a time, so check and write
    cannot interleave."""
    from gcp_storage_emulator.exceptions import NotFound
    from gcp_storage_emulator.handlers import objects

    def only_if_new(upload, name_of):
        def upload_if_new(request, response, storage_):
            if request.query.get("ifGenerationMatch") == ["0"]:
                try:
                    storage_.get_file_obj(request.params["bucket_name"], name_of(request))
                except NotFound:
                    pass
                else:
                    response.status = HTTPStatus.PRECONDITION_FAILED
                    response.json(
                        {
                            "error": {
                                "code": 412,
                                "message": "conditionNotMet",
                                "errors": [{"reason": "conditionNotMet"}],
                            }
                        }
                    )
                    return None
            return upload(request, response, storage_)

        return upload_if_new

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            objects, "_media_upload", only_if_new(objects._media_upload, lambda request: request.query["name"][0])
        )
        patch.setattr(
            objects,
            "_multipart_upload",
            only_if_new(
                objects._multipart_upload,
                lambda request: request.query.get("name", [request.data["meta"].get("name")])[0],
            ),
        )
        storage.gcs_filesystem().mkdir("medvision-claims")
        yield "gs://medvision-claims"


def test_gcs_claim_race_has_one_winner(gcs_with_preconditions):
    output = f"{gcs_with_preconditions}/out/run1"
    check_one_winner(race_claims(output), output)


@pytest.fixture(scope="module")
def s3_with_conditional_writes(s3_server):
    """The moto server with S3's atomic `If-None-Match: *`: moto checks it apart from the write, so two
    requests at once could both pass; one lock around its PutObject makes check and write one step."""
    from moto.s3.responses import S3Response

    lock, put_object = threading.Lock(), S3Response.put_object

    def put_object_atomically(self, *args, **kwargs):
        with lock:
            return put_object(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(S3Response, "put_object", put_object_atomically)
        s3_client(s3_server).create_bucket(Bucket="medvision-claims")
        yield "s3://medvision-claims", s3_server


def test_s3_claim_race_has_one_winner(s3_with_conditional_writes):
    bucket, beam_args = s3_with_conditional_writes
    output = f"{bucket}/out/run1"
    check_one_winner(race_claims(output, beam_args), output)


# --- whole builds ------------------------------------------------------------------------------------


def start_build(demo_root: str, output: str, tmpdir: str, *extra: str) -> subprocess.Popen:
    """A build in a subprocess whose temporary folder is `tmpdir`; its stderr goes to a file beside it."""
    command = [sys.executable, "-m", "pipeline.cli", "build", f"--source=demo={demo_root}", "--output", output, *extra]
    with open(tmpdir + ".stderr", "a") as stderr:
        return subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=stderr, text=True, env=dict(os.environ, TMPDIR=tmpdir)
        )


def stderr_of(tmpdir: str) -> str:
    with open(tmpdir + ".stderr") as handle:
        return handle.read()


def test_two_builds_at_once_into_one_location_one_finishes(tmp_path, demo_root):
    output, tmpdirs = str(tmp_path / "out"), [str(tmp_path / "tmp1"), str(tmp_path / "tmp2")]
    for tmpdir in tmpdirs:
        os.mkdir(tmpdir)
    builds = [start_build(demo_root, output, tmpdir, "--max-cases", "2") for tmpdir in tmpdirs]
    results = sorted((process.wait(timeout=600), stderr_of(tmpdir)) for process, tmpdir in zip(builds, tmpdirs))
    (winner, _), (loser, error) = results
    assert (winner, loser) == (0, 2), results
    line = error.strip()
    assert line.count("\n") == 0 and line.startswith("medvision-pipeline: error: output")
    assert "is claimed by another build" in line or "exists and is not empty" in line
    success = json.load(open(os.path.join(output, "_SUCCESS")))
    assert success["run_id"] == json.load(open(os.path.join(output, claim.CLAIM_FILE)))["run_id"]
    assert [os.listdir(tmpdir) for tmpdir in tmpdirs] == [[], []]


def wait_for_work(process: subprocess.Popen, output: str, tmpdir: str) -> None:
    """Until the build holds its claim and has planned a case (its progress markers, in its scratch
    folder, say so): the pipeline is running and has seconds of work left."""
    planned = os.path.join(tmpdir, scratch.PREFIX + "*", "medvision-progress-*", "cases", "*")
    while not (os.path.exists(os.path.join(output, claim.CLAIM_FILE)) and glob.glob(planned)):
        assert process.poll() is None, stderr_of(tmpdir)
        time.sleep(0.05)


def check_refused_as_unfinished(output: str, capsys) -> None:
    """No _SUCCESS: `report` and `evaluate` refuse it, and a build into it says whose unfinished output it is."""
    assert not os.path.exists(os.path.join(output, "_SUCCESS"))
    assert main(["build", "--source=demo", "--output", output]) == 2
    error = capsys.readouterr().err
    assert "exists and is not empty (claimed by run " in error and "; unfinished: no _SUCCESS)" in error
    assert main(["report", output]) == 2
    assert "not a finished build" in capsys.readouterr().err
    predictions = os.path.join(os.path.dirname(output), "answers.jsonl")
    with open(predictions, "w") as handle:
        handle.write(json.dumps({"sample_id": "x", "answer": "1"}) + "\n")
    assert main(["evaluate", "--pairs", output, "--predictions", predictions]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "not a finished build (no _SUCCESS)" in error


def test_stopped_build_removes_its_temporary_files_and_is_refused(tmp_path, demo_root, capsys):
    output, tmpdir = str(tmp_path / "out"), str(tmp_path / "tmp")
    os.mkdir(tmpdir)
    process = start_build(demo_root, output, tmpdir)
    wait_for_work(process, output, tmpdir)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 128 + signal.SIGTERM
    assert "stopped by SIGTERM" in stderr_of(tmpdir)
    assert os.listdir(tmpdir) == [] and not os.path.exists(os.path.join(output, "_work", "tmp"))
    assert os.path.exists(os.path.join(output, claim.CLAIM_FILE))
    check_refused_as_unfinished(output, capsys)


def test_killed_builds_scratch_goes_with_the_next_run(tmp_path, demo_root, capsys, monkeypatch):
    output, tmpdir = str(tmp_path / "out"), str(tmp_path / "tmp")
    os.mkdir(tmpdir)
    process = start_build(demo_root, output, tmpdir)
    wait_for_work(process, output, tmpdir)
    process.kill()
    process.wait(timeout=60)
    left = [n for n in os.listdir(tmpdir) if n.startswith(scratch.PREFIX)]
    assert len(left) == 1  # SIGKILL: nothing could clean up
    check_refused_as_unfinished(output, capsys)
    monkeypatch.setattr(tempfile, "tempdir", tmpdir)
    assert (
        main(
            [
                "build",
                f"--source=demo={demo_root}",
                "--output",
                str(tmp_path / "next"),
                "--dry-run",
                "--cases",
                "Ceph/001",
            ]
        )
        == 0
    )
    assert os.listdir(tmpdir) == []


def test_failed_build_removes_its_temporary_files_and_is_refused(tmp_path, demo_root, capsys, monkeypatch):
    output, tmpdir = str(tmp_path / "out"), str(tmp_path / "tmp")
    os.mkdir(tmpdir)
    monkeypatch.setattr(tempfile, "tempdir", tmpdir)
    temp_files = []

    def failing_rename(source, destination):
        temp_files.append(source)
        assert os.path.exists(source) and "/_work/tmp/" in source
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage, "rename", failing_rename)
    with pytest.raises(Exception, match="No space left on device"):
        main(["build", f"--source=demo={demo_root}", "--output", output, "--max-cases", "2"])
    assert temp_files and not any(os.path.exists(path) for path in temp_files)
    assert not os.path.exists(os.path.join(output, "_work", "tmp")) and os.listdir(tmpdir) == []
    monkeypatch.undo()
    check_refused_as_unfinished(output, capsys)
