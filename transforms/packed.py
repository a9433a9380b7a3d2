"""Immutable, picklable 2D arrays for slice records."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class PackedArray:
    """A numpy array as raw bytes with its shape and dtype.

    Slices are cut, encoded and measured in one fused step, so nothing is compressed: 8-bit image
    slices barely compress, and label slices never cross a shuffle.
    """

    data: bytes
    shape: tuple[int, ...]
    dtype: str

    @classmethod
    def pack(cls, array: np.ndarray) -> "PackedArray":
        return cls(np.ascontiguousarray(array).tobytes(), tuple(array.shape), array.dtype.str)

    def unpack(self) -> np.ndarray:
        return np.frombuffer(self.data, dtype=np.dtype(self.dtype)).reshape(self.shape)
