"""PNG spill: the slice step writes each slice's PNG once to the build's scratch folder and passes on a
`SpilledPng`; the write step reads the PNGs of one row group back at a time.

Pixels then cross no runner buffer and no shuffle. The DirectRunner holds every element between steps in
memory (its GroupByKey of PNG bytes held about four times their size), and Dataflow bills shuffled bytes;
a reference is about 150 bytes per bundle. A spill object is written by one DoFn bundle and closed before
the runner commits that bundle, so every reference that reaches the write step points into a complete
object; objects of a retried bundle are left unreferenced and go with `_work/`.
"""

from __future__ import annotations

import collections
import uuid
from typing import BinaryIO

from pipeline import storage
from schemas.spilled import PNG_HEAD_BYTES, SpilledPng

SPILL_SUFFIX = ".pngs"


class SpillFile:
    """PNGs appended to one new scratch object under `folder`, created on the first `put`."""

    def __init__(self, folder: str):
        self._folder, self._uri, self._offset = folder, "", 0
        self._handle: BinaryIO | None = None

    def put(self, png: bytes) -> SpilledPng:
        if self._handle is None:
            self._uri = storage.join(self._folder, uuid.uuid4().hex + SPILL_SUFFIX)
            self._handle, self._offset = storage.create(self._uri), 0
        self._handle.write(png)
        spilled = SpilledPng(self._uri, self._offset, len(png), png[:PNG_HEAD_BYTES])
        self._offset += len(png)
        return spilled

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def read_spilled(spilled) -> dict[SpilledPng, bytes]:
    """The bytes of each reference, each object opened once and read in offset order."""
    by_uri = collections.defaultdict(set)
    for reference in spilled:
        by_uri[reference.uri].add(reference)
    found = {}
    for uri, references in by_uri.items():
        with storage.open_read(uri) as handle:
            for reference in sorted(references, key=lambda r: r.offset):
                handle.seek(reference.offset)
                data = handle.read(reference.length)
                if len(data) != reference.length or data[:PNG_HEAD_BYTES] != reference.head:
                    raise OSError(f"spilled PNG at {uri}:{reference.offset} is truncated or changed")
                found[reference] = data
    return found


def with_pngs_read(rows: list[dict]) -> list[dict]:
    """The rows with every spilled PNG read back (rows sharing a PNG share one bytes object)."""
    spilled = {row["image"]["bytes"] for row in rows if isinstance((row.get("image") or {}).get("bytes"), SpilledPng)}
    if not spilled:
        return rows
    found = read_spilled(spilled)
    return [
        {**row, "image": {**row["image"], "bytes": found[row["image"]["bytes"]]}}
        if isinstance((row.get("image") or {}).get("bytes"), SpilledPng)
        else row
        for row in rows
    ]
