"""Scratch space of a build: the temporary files of the driver and of its local workers in one folder per
run, removed when the build ends, whether it succeeded, failed or was stopped by a signal.

The folder, `$TMPDIR/medvision-run-<run id>/`, becomes this process's temporary directory (`tempfile`)
and `TMPDIR` for the worker processes it starts, so progress markers and local copies of remote inputs
land there. A build killed outright (SIGKILL, power loss) cannot clean up: the next build on the same
host removes the folders whose driver process is gone (`owner.json` names host and pid; a folder of
another host, or of a live process, is left alone).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from typing import Iterator

from pipeline.config import UsageError

PREFIX = "medvision-run-"
OWNER_FILE = "owner.json"


@contextlib.contextmanager
def run_scratch(run_id: str) -> Iterator[str]:
    """Yield this run's scratch folder, the process's temporary directory until the block exits."""
    base = tempfile.gettempdir()
    remove_stale(base)
    folder = os.path.join(base, PREFIX + run_id)
    try:
        os.mkdir(folder, 0o700)
        with open(os.path.join(folder, OWNER_FILE), "w") as handle:
            json.dump({"host": socket.gethostname(), "pid": os.getpid()}, handle)
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise UsageError(
            f"cannot create a temporary folder in {base} ({exc.strerror or exc}); set TMPDIR to a writable folder"
        ) from exc
    saved_env, saved_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = folder, folder
    try:
        yield folder
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(folder, ignore_errors=True)


def remove_stale(base: str) -> list[str]:
    """Remove the scratch folders under `base` left by dead runs of this host; returns their paths."""
    removed = []
    for name in sorted(os.listdir(base)):
        folder = os.path.join(base, name)
        if name.startswith(PREFIX) and _owner_is_gone(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _owner_is_gone(folder: str) -> bool:
    try:
        with open(os.path.join(folder, OWNER_FILE)) as handle:
            owner = json.load(handle)
        if owner.get("host") != socket.gethostname():
            return False
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError, KeyError, TypeError):  # unreadable, being written, another user's: keep it
        return False
    return False
