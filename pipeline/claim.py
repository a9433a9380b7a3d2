"""One build per output location: the location is checked, then claimed atomically before anything is written.

A build creates `OUTPUT/_CLAIM` (run id, host, pid, start time, pipeline version) with a create that fails
when the object already exists: `O_CREAT | O_EXCL` on local disk, a generation precondition
(`ifGenerationMatch=0`, through gcsfs) on gs://, a conditional PutObject (`If-None-Match: *`) on s3://.
Of builds started at once into one new location exactly one creates it; the others stop with a usage
error having written nothing there. The claim stays in the output: it names the run that wrote it and,
without `_SUCCESS`, marks a build that failed, was killed or is still running.

What the stores enforce: local disks and GCS refuse the second create atomically; AWS S3 does so for
conditional writes (since August 2024), while an S3-compatible store that ignores `If-None-Match` lets
a second build overwrite the claim (the emptiness check before it still refuses any build started
after the first one wrote). The test servers do not give those guarantees on their own:
gcp-storage-emulator ignores `ifGenerationMatch`, and moto checks `If-None-Match` apart from the write,
so two requests at once can both pass; the tests give both the real stores' behaviour.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import uuid

from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import storage
from pipeline.config import UsageError
from pipeline.version import __version__

CLAIM_FILE = "_CLAIM"


def new_run_id() -> str:
    """A run id that sorts by start time: `20260101T120000-1a2b3c4d` (UTC)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def claim_record(run_id: str) -> dict:
    return {
        "run_id": run_id,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "pipeline_version": __version__,
    }


def check_output_location(uri: str) -> None:
    """Refuse (UsageError) a local `--output` that can never become this build's folder: a file, a path
    below a file, a symbolic link to nothing, or a folder this user cannot write into. Object stores
    have no such cases (any key can be written below any other)."""
    if storage.is_remote(uri):
        return
    path = os.path.abspath(uri)
    existing = path
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if os.path.islink(existing) and not os.path.exists(existing):
        raise UsageError(
            f"--output {uri}: {existing} is a symbolic link to {os.readlink(existing)}, which does "
            "not exist; choose another location"
        )
    if not os.path.isdir(existing):
        where = "is a file" if existing == path else f"is below {existing}, which is a file"
        raise UsageError(f"--output {uri} {where}, not a folder; choose another location")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--output {uri}: this user cannot write into {existing}")


def claim_output(uri: str, run_id: str, options: PipelineOptions) -> dict:
    """Create `uri/_CLAIM` for this run, or raise UsageError naming the build that holds it.

    `options` are the build's Beam options (the s3:// endpoint and keys). Returns the claim record.
    """
    record = claim_record(run_id)
    data = json.dumps(record, indent=1).encode()
    target = storage.join(uri, CLAIM_FILE)
    try:
        _create_exclusive(target, data, options)
    except FileExistsError:
        holder = _read_claim(target)
        if holder.get("run_id") == run_id:  # our create succeeded, its reply was lost and the retry refused
            return record
        raise UsageError(
            f"output {uri} is claimed by another build ({_describe(holder)}); choose a new location"
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot create the output {uri}: {exc.strerror or exc}") from exc
    return record


def describe_existing(uri: str) -> str:
    """What the claim of a non-empty location says, as a parenthesis for an error message ('' if none)."""
    target = storage.join(uri, CLAIM_FILE)
    if not storage.exists(target):
        return ""
    state = "finished" if storage.exists(storage.join(uri, "_SUCCESS")) else "unfinished: no _SUCCESS"
    return f" (claimed by {_describe(_read_claim(target))}; {state})"


def _create_exclusive(uri: str, data: bytes, options: PipelineOptions) -> None:
    """Write a new object; FileExistsError when one exists at `uri` (the store decides, atomically)."""
    if uri.startswith(storage.GCS):
        storage.gcs_filesystem().pipe_file(uri[len(storage.GCS) :], data, mode="create")
    elif uri.startswith("s3://"):
        _put_if_absent(uri, data, options)
    elif storage.is_remote(uri):
        raise UsageError(f"cannot claim {uri}: only local paths, gs:// and s3:// outputs are supported")
    else:
        os.makedirs(os.path.dirname(uri), exist_ok=True)
        descriptor = os.open(uri, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)


def _put_if_absent(uri: str, data: bytes, options: PipelineOptions) -> None:
    """A conditional PutObject through a boto3 client configured from Beam's `--s3_*` options."""
    from apache_beam.io.aws.clients.s3.boto3_client import Client
    from botocore.exceptions import ClientError

    bucket, _, key = uri[len("s3://") :].partition("/")
    try:
        Client(options).client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
    except ClientError as exc:
        # 412: the object exists; 409: another conditional write of that key is in progress
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412):
            raise FileExistsError(uri) from exc
        raise


def _read_claim(uri: str) -> dict:
    """The claim at `uri`, or {} while its writer has created it but not yet written it."""
    try:
        record = json.loads(storage.read_bytes(uri))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _describe(record: dict) -> str:
    if not record.get("run_id"):
        return "its claim is being written"
    return (
        f"run {record['run_id']} on host {record.get('host')}, pid {record.get('pid')}, "
        f"started {record.get('started_utc')}"
    )
