"""Progress of a local run: workers drop marker files, the driver prints one line every few seconds.

The DirectRunner runs the pipeline inside `Pipeline.run()`, in this process or in worker
processes on this machine, and exposes no metrics until the end. So workers leave a marker
per planned case (holding its number of work units), per cut work unit and per written Parquet
file in a local folder, and a driver thread counts them. On Dataflow the counters and
distributions of `pipeline.stages` show in the job UI.
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

    def case_done(self, case_key: str, units: int = 0) -> None:
        self._write("cases", case_key, str(units))

    def unit_done(self, unit_key: str) -> None:
        self._write("units", unit_key, "")

    def rows_written(self, file_uri: str, rows: int) -> None:
        self._write("rows", file_uri, str(rows))

    def _write(self, kind: str, name: str, text: str) -> None:
        if self.folder:
            os.makedirs(os.path.join(self.folder, kind), exist_ok=True)
            with open(_marker(self.folder, kind, name), "w") as handle:
                handle.write(text)


@dataclasses.dataclass(frozen=True)
class Progress:
    cases: int  # planned (read and validated)
    units_planned: int  # work units of the planned cases
    units_done: int
    rows: int  # written to Parquet files


def read_progress(folder: str) -> Progress:
    """What the markers say so far (a marker being written right now is counted next time)."""

    def names(kind):
        path = os.path.join(folder, kind)
        return os.listdir(path) if os.path.isdir(path) else []

    def total(kind):
        n = 0
        for name in names(kind):
            try:
                with open(os.path.join(folder, kind, name)) as handle:
                    n += int(handle.read() or 0)
            except (OSError, ValueError):
                pass
        return n

    return Progress(len(names("cases")), total("cases"), len(names("units")), total("rows"))


class ProgressLine:
    """Driver side: a thread printing cases planned, work units cut and rows written while the pipeline runs."""

    def __init__(self, folder: str, total_cases: int, stream: TextIO | None = None, interval_s: float = 3.0):
        # sys.stderr as it is now, not as it was when this module was imported (it may have been replaced since)
        self._stream = sys.stderr if stream is None else stream
        self._folder, self._total, self._interval_s = folder, total_cases, interval_s
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
        done = read_progress(self._folder)
        line = (
            f"progress: {done.cases}/{self._total} cases loaded, {done.units_done}/{done.units_planned} units cut, "
            f"{done.rows} rows written, {time.monotonic() - self._started:.0f} s"
        )
        if line != self._last:
            self._stream.write(("\r" if self._stream.isatty() else "\n") + line)
            self._stream.flush()
            self._last = line
