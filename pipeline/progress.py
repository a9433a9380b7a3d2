"""Progress of a local run: workers drop marker files, the driver prints one line every few seconds.

The DirectRunner runs the pipeline inside `Pipeline.run()`, in this process or in worker
processes on this machine, and exposes no metrics until the end. So workers leave a marker
per finished case and per written Parquet file in a local folder, and a driver thread counts
them. On Dataflow the counters and distributions of `pipeline.stages` show in the job UI.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import threading
import time
from typing import Optional, TextIO


def _marker(folder: str, kind: str, name: str) -> str:
    return os.path.join(folder, kind, hashlib.sha1(name.encode()).hexdigest())


@dataclasses.dataclass(frozen=True)
class ProgressMarks:
    """Worker side (picklable); does nothing without a folder. Retried work rewrites the same marker."""

    folder: Optional[str] = None

    def case_done(self, case_key: str) -> None:
        self._write("cases", case_key, "")

    def rows_written(self, file_uri: str, rows: int) -> None:
        self._write("rows", file_uri, str(rows))

    def _write(self, kind: str, name: str, text: str) -> None:
        if self.folder:
            os.makedirs(os.path.join(self.folder, kind), exist_ok=True)
            with open(_marker(self.folder, kind, name), "w") as handle:
                handle.write(text)


def read_progress(folder: str) -> tuple[int, int]:
    """(cases done, rows written) from the markers."""
    def names(kind):
        path = os.path.join(folder, kind)
        return os.listdir(path) if os.path.isdir(path) else []

    rows = 0
    for name in names("rows"):
        try:
            with open(os.path.join(folder, "rows", name)) as handle:
                rows += int(handle.read() or 0)
        except (OSError, ValueError):
            pass  # being written right now: counted next time
    return len(names("cases")), rows


class ProgressLine:
    """Driver side: a thread printing `cases done/total, rows written` while the pipeline runs."""

    def __init__(self, folder: str, total_cases: int, stream: TextIO = sys.stderr, interval_s: float = 3.0):
        self._folder, self._total, self._stream, self._interval_s = folder, total_cases, stream, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()
        self._last = ""

    def __enter__(self) -> "ProgressLine":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._print()
        self._stream.write("\n")

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._print()

    def _print(self) -> None:
        cases, rows = read_progress(self._folder)
        line = f"progress: {cases}/{self._total} cases loaded, {rows} rows written, " \
               f"{time.monotonic() - self._started:.0f} s"
        if line != self._last:
            self._stream.write(("\r" if self._stream.isatty() else "\n") + line)
            self._stream.flush()
            self._last = line
