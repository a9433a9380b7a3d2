"""Untrusted inputs: a hostile corpus next to good cases in one run, from local disk and from the GCS
emulator. The run exits 0, writes every good case, quarantines each bad one with its reason, reads
nothing outside the source root (planted secrets appear in no output byte, decoded pixels included)
and stays within its memory budget (`tests/hostile_corpus.py` says what each file does)."""

from __future__ import annotations

import collections
import glob
import io
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline import storage
from pipeline.cli import main
from tests.conftest import make_msd_task, s3_client, upload_tree
from tests.hostile_corpus import CLI_WITH_PEAK, SECRET_ENV, TASK, make_corpus
from transforms import deadline
from transforms.errors import PipelineError, Reason

BUDGET_MB = 1024


def output_rows(output: str) -> tuple[list[dict], list[dict]]:
    """(pair rows, quarantine rows) of a local output."""
    pairs = [
        row
        for path in glob.glob(f"{output}/dataset=*/task=*/split=*/*.parquet")
        for row in pq.read_table(path).to_pylist()
    ]
    quarantine = [
        row for path in glob.glob(f"{output}/quarantine/*.parquet") for row in pq.read_table(path).to_pylist()
    ]
    return pairs, quarantine


def load_reasons(quarantine: list[dict]) -> dict[str, str]:
    return {row["case_id"]: row["reason"] for row in quarantine if row["stage"] == "load"}


@pytest.fixture(scope="module")
def local_build(tmp_path_factory):
    """The corpus built once by the CLI in a child process whose environment holds planted credentials."""
    base = str(tmp_path_factory.mktemp("hostile"))
    root, expected, secrets = make_corpus(base)
    output = os.path.join(base, "out")
    env = dict(os.environ, **SECRET_ENV)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CLI_WITH_PEAK,
            "build",
            "--source",
            f"msd={root}",
            "--output",
            output,
            "--max-volume-mb",
            str(BUDGET_MB),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    peak_mib = int(done.stderr.strip().splitlines()[-1].split("=")[1]) / 1024
    return done, output, expected, secrets, peak_mib


def test_the_run_finishes_and_writes_every_good_case(local_build):
    done, output, expected, _, _ = local_build
    assert done.returncode == 0, done.stderr[-3000:]
    pairs, quarantine = output_rows(output)
    cases_with_pairs = {row["case_id"] for row in pairs}
    good = {case for case, reason in expected.items() if reason is None} - {f"{TASK}/checkerboard"}
    assert cases_with_pairs == good
    assert os.path.exists(os.path.join(output, "_SUCCESS"))


def test_each_bad_case_is_quarantined_with_its_reason(local_build):
    _, output, expected, _, _ = local_build
    _, quarantine = output_rows(output)
    assert load_reasons(quarantine) == {case: reason for case, reason in expected.items() if reason}


def test_a_label_in_too_many_pieces_is_refused_slice_by_slice(local_build):
    _, output, _, _, _ = local_build
    _, quarantine = output_rows(output)
    checkerboard = collections.Counter(row["reason"] for row in quarantine if row["case_id"] == f"{TASK}/checkerboard")
    assert set(checkerboard) == {Reason.TOO_MANY_COMPONENTS.value}
    assert checkerboard[Reason.TOO_MANY_COMPONENTS.value] == 10 + 28 + 32  # every slice of the three planes, once


def _every_output_byte(output: str):
    for folder, _, names in os.walk(output):
        for name in names:
            with open(os.path.join(folder, name), "rb") as handle:
                yield os.path.join(folder, name), handle.read()
    pairs, quarantine = output_rows(output)
    for row in pairs:
        if row["image"]["bytes"]:
            yield row["sample_id"], np.asarray(Image.open(io.BytesIO(row["image"]["bytes"]))).tobytes()
    yield "quarantine messages", "\n".join(str(row) for row in quarantine).encode()


def test_no_secret_reaches_any_output_byte(local_build):
    done, output, _, secrets, _ = local_build
    leaks = [(where, secret) for where, data in _every_output_byte(output) for secret in secrets if secret in data]
    assert not leaks
    assert not any(secret.decode() in done.stdout + done.stderr for secret in secrets)


def test_names_from_inputs_are_text_in_the_dataset_card(local_build):
    _, output, _, _, _ = local_build
    with open(os.path.join(output, "README.md"), encoding="utf-8") as handle:
        card = handle.read()
    assert "<script" not in card and "<img src=x" not in card
    assert not any(line.startswith("# Injected") for line in card.splitlines())


def test_peak_memory_stays_within_the_budget(local_build):
    """The corpus declares volumes of gigabytes (a 1 Gvoxel bomb, a NIfTI-2 of 2^93 voxels): all are
    refused from their headers, so the whole run (imports and runner included) stays under the budget."""
    _, _, _, _, peak_mib = local_build
    print(f"hostile corpus: peak RSS {peak_mib:.0f} MiB (budget {BUDGET_MB} MiB)")
    assert peak_mib < BUDGET_MB


def test_no_worker_path_or_header_text_in_messages(local_build):
    _, output, _, _, _ = local_build
    _, quarantine = output_rows(output)
    for row in quarantine:
        body = row["message"].rsplit(" [", 1)[0]  # the trailing [uri] names the input itself
        assert "/tmp/" not in body and "site-packages" not in body and "/proc/" not in body, row["message"]


def _check_object_store_build(output: str, expected: dict, secrets: list[bytes], prefix: str) -> None:
    pairs, quarantine = output_rows(output)
    assert load_reasons(quarantine) == {case: reason for case, reason in expected.items() if reason}
    assert {row["case_id"] for row in pairs} == {c for c, r in expected.items() if r is None} - {f"{TASK}/checkerboard"}
    detached = [row for row in pairs if row["case_id"] == f"{TASK}/good_nhdr"]
    assert detached and all(row["provenance"]["source_uri"].startswith(prefix) for row in detached)
    leaks = [(where, secret) for where, data in _every_output_byte(output) for secret in secrets if secret in data]
    assert not leaks


def test_object_store_path_is_confined_too(gcs_emulator, tmp_path):
    """The same headers from the GCS emulator: a detached header's data file is fetched next to its copy
    only when it lies below the header's folder; absolute paths, `..` and lists are refused."""
    _, expected, secrets = make_corpus(str(tmp_path / "corpus"), links=False)
    storage.gcs_filesystem().mkdir("hostile")
    upload_tree(str(tmp_path / "corpus"), "gs://hostile/base")
    output = str(tmp_path / "out")
    assert (
        main(
            [
                "build",
                "--source",
                "msd=gs://hostile/base/data",
                "--output",
                output,
                "--gcs-anonymous",
                "--max-volume-mb",
                str(BUDGET_MB),
            ]
        )
        == 0
    )
    _check_object_store_build(output, expected, secrets, "gs://hostile/base/data/")
    assert storage.exists("gs://hostile/base/secret.raw")  # it was there to be read, and was not


S3_CASES = {
    "good_nifti",
    "good_nhdr",
    "good_mhd",
    "nhdr_environ",
    "nhdr_stdin",
    "nrrd_dotdot",
    "nrrd_list",
    "nhdr_pattern",
    "mhd_passwd",
    "mha_secret",
    "zeros_bomb",
}


def test_s3_path_is_confined_too(s3_server, tmp_path):
    s3_client(s3_server).create_bucket(Bucket="hostile")
    _, expected, secrets = make_corpus(str(tmp_path / "corpus"), links=False)
    upload_tree(str(tmp_path / "corpus"), "s3://hostile/base")
    # the header cases only: moto answers each metadata call in ~0.2 s
    headers = {case: reason for case, reason in expected.items() if case.rsplit("/", 1)[-1] in S3_CASES}
    output = str(tmp_path / "out")
    assert (
        main(
            [
                "build",
                "--source",
                "msd=s3://hostile/base/data",
                "--output",
                output,
                "--cases",
                ",".join(headers),
                "--max-volume-mb",
                str(BUDGET_MB),
                *s3_server,
            ]
        )
        == 0
    )
    _check_object_store_build(output, headers, secrets, "s3://hostile/base/data/")


def test_a_read_past_its_time_limit_is_timeout_and_the_run_goes_on(tmp_path):
    """Every case of this build outlives a limit of 1 ns: each is quarantined (timeout), none ends the run."""
    task = make_msd_task(tmp_path / "msd", n_cases=2)
    output = str(tmp_path / "out")
    assert main(["build", "--source", f"msd={task}", "--output", output, "--case-timeout-s", "1e-9"]) == 0
    _, quarantine = output_rows(output)
    assert set(load_reasons(quarantine).values()) == {Reason.TIMEOUT.value} and len(quarantine) == 2


def test_the_time_limit_is_checked_while_copying_and_decoding(tmp_path):
    path = tmp_path / "volume.raw"
    path.write_bytes(b"\0" * (3 * storage.COPY_CHUNK_BYTES))
    with deadline.limit(None):
        deadline.check()  # no limit: never raises
    with pytest.raises(PipelineError) as error, deadline.limit(0.0, "the-case"):
        with storage.localized(str(path)):
            pass
    assert error.value.reason is Reason.TIMEOUT and error.value.uri == "the-case"
