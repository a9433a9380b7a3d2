"""A PNG kept in the build's scratch folder instead of in a row (`pipeline.spill`): rows carry this reference
through the runner's buffers and shuffles, and the write step puts the bytes back."""

from __future__ import annotations

import dataclasses

PNG_HEAD_BYTES = 24  # signature and IHDR: enough for the PNG's width and height


@dataclasses.dataclass(frozen=True)
class SpilledPng:
    """`length` bytes at `offset` of the scratch object `uri`; `head` is their first `PNG_HEAD_BYTES`."""

    uri: str
    offset: int
    length: int
    head: bytes


def png_length(value) -> int:
    """Bytes of a row's PNG, held or spilled (0: none)."""
    if isinstance(value, SpilledPng):
        return value.length
    return len(value or b"")


def png_head(value) -> bytes | None:
    """The first bytes of a row's PNG, held or spilled (None: none)."""
    return value.head if isinstance(value, SpilledPng) else value
