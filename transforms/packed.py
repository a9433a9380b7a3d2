"""Compact, picklable 2D arrays for data that crosses a shuffle (label slices compress ~100x)."""
from __future__ import annotations

import dataclasses
import zlib

import numpy as np


@dataclasses.dataclass(frozen=True)
class PackedArray:
    """A numpy array stored as zlib-compressed bytes with its shape and dtype."""

    data: bytes
    shape: tuple[int, ...]
    dtype: str

    @classmethod
    def pack(cls, array: np.ndarray) -> "PackedArray":
        array = np.ascontiguousarray(array)
        return cls(zlib.compress(array.tobytes(), 1), tuple(array.shape), array.dtype.str)

    def unpack(self) -> np.ndarray:
        return np.frombuffer(zlib.decompress(self.data), dtype=np.dtype(self.dtype)).reshape(self.shape)
