"""Intensity windows (SPEC §5) and 8-bit PNG encoding."""

from __future__ import annotations

import dataclasses
import io

import cv2
import numpy as np
from PIL import Image

# CT windows by anatomy, as (level, width) in HU.
CT_WINDOWS_HU = {
    "soft_tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "brain": (40.0, 80.0),
    "bone": (400.0, 1800.0),
    "angio": (300.0, 600.0),  # contrast-filled vessels (CTA)
}
# Non-CT images: percentiles of the whole volume (never per slice, so slices stay comparable).
PERCENTILE_WINDOW = (0.5, 99.5)


@dataclasses.dataclass(frozen=True)
class Window:
    """Input values mapped to 0 and 255, in the image's own units (HU for CT), and the rule used."""

    name: str
    low: float
    high: float


def ct_window(name: str) -> Window:
    """A named CT window; raises KeyError naming the known ones."""
    if name not in CT_WINDOWS_HU:
        raise KeyError(f"unknown CT window {name!r}; known: {sorted(CT_WINDOWS_HU)}")
    level, width = CT_WINDOWS_HU[name]
    return Window(name, level - width / 2, level + width / 2)


def percentile_window(volume: np.ndarray) -> Window:
    """0.5-99.5 percentile window of a whole volume's finite voxels; a constant volume gets a 1-unit window."""
    finite = volume[np.isfinite(volume)] if not np.all(np.isfinite(volume)) else volume
    low, high = (float(v) for v in np.percentile(finite, PERCENTILE_WINDOW)) if finite.size else (0.0, 1.0)
    if high <= low:
        high = low + 1.0
    return Window(f"p{PERCENTILE_WINDOW[0]:g}-p{PERCENTILE_WINDOW[1]:g}", low, high)


def window_for(modality: str, ct_window_name: str | None, volume: np.ndarray) -> Window:
    """CT gets its anatomy window (soft tissue by default); every other modality gets percentiles."""
    if modality.upper() == "CT":
        return ct_window(ct_window_name or "soft_tissue")
    return percentile_window(volume)


def to_uint8(slice_2d: np.ndarray, window: Window) -> np.ndarray:
    """Linear map of [low, high] to [0, 255], clipped and rounded half to even; non-finite voxels become 0."""
    scaled = np.subtract(slice_2d, np.float32(window.low), dtype=np.float32)  # float32 throughout, as before
    scaled *= 255.0 / (window.high - window.low)
    np.fmax(scaled, 0, out=scaled)  # fmax ignores NaN: NaN and -inf become 0, in one pass
    np.fmin(scaled, 255, out=scaled)  # +inf becomes 255, and OpenCV's rounding below sees no value past int32
    return cv2.convertScaleAbs(scaled)  # rounds half to even, as np.rint, and casts in the same pass


# Chosen by measurement (benchmarks/png_encoders.py): OpenCV's libpng at zlib level 1 with run-length
# matching, libpng choosing each row's filter: much faster than Pillow at level 6 and, on real CT and MR
# slices, smaller; a month of storing the output costs more than the CPU it saves, so the faster but
# larger OpenCV defaults were not taken (figures: README, Benchmarks; benchmarks/cost_model.py).
PNG_PARAMS = (cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE)


def encode_png(pixels: np.ndarray) -> bytes:
    """Lossless 8-bit greyscale PNG of a 2D uint8 array (rows, cols)."""
    if pixels.dtype != np.uint8 or pixels.ndim != 2:
        raise ValueError(f"expected a 2D uint8 array, got {pixels.dtype} {pixels.shape}")
    ok, encoded = cv2.imencode(".png", pixels, PNG_PARAMS)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {pixels.shape} slice as PNG")
    return encoded.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """The pixels of a PNG as a numpy array (for validation and tests)."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)
