"""A wall-time limit on reading one case, checked between chunks, files, frames and slabs.

Reading is the part of a case whose cost an input decides (a slow object store, a series of ten
thousand files, a huge archive), so `casework.load` reads under `limit(seconds)` and the loops
that copy, hash, extract and decode call `check()`: past the limit the case becomes `timeout`.
A single native call (one ITK read of one file) is not interrupted; the byte and voxel budgets
bound its cost, and special files that could block forever are refused before they are opened.
The limit is per thread, so worker threads reading different cases do not share it.
"""

from __future__ import annotations

import contextlib
import threading
import time

from transforms.errors import PipelineError, Reason

_state = threading.local()


@contextlib.contextmanager
def limit(seconds: float | None, uri: str = ""):
    """Run the block under a wall-time limit of `seconds` (None: no limit) for reading `uri`."""
    previous = getattr(_state, "deadline", None)
    _state.deadline = (time.monotonic() + seconds, seconds, uri) if seconds is not None else None
    try:
        yield
    finally:
        _state.deadline = previous


def check() -> None:
    """Raise `timeout` if the current limit has passed; free when no limit is set."""
    deadline = getattr(_state, "deadline", None)
    if deadline is not None and time.monotonic() > deadline[0]:
        raise PipelineError(
            Reason.TIMEOUT, f"reading the case took longer than {deadline[1]:g} s (--case-timeout-s)", deadline[2]
        )
