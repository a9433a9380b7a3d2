"""NIfTI reading with an explicit, resolved affine (SPEC §3.2) and integer-checked label maps."""
from __future__ import annotations

import contextlib
import dataclasses
import gzip
import io
import zlib

import nibabel as nib
import numpy as np

from transforms.errors import PipelineError, Reason
from transforms.volume import Volume, as_integer_labels

# sform and qform "agree" when every affine entry is within this many mm (or direction units).
FORM_AGREEMENT_TOL = 1e-3


@dataclasses.dataclass(frozen=True)
class ResolvedAffine:
    """The voxel-to-RAS+ affine a file declares, which header form it came from, and a disagreement flag."""

    affine_ras: np.ndarray
    source: str  # "sform" | "qform" | "pixdim"
    sform_qform_mismatch: bool


GZIP_MAGIC = b"\x1f\x8b"


def gzip_problem(path: str) -> Reason | None:
    """Why a `.gz` file is bad, if it is: not gzip at all, or a stream that ends early or is corrupt.

    Decompresses the whole file, so it runs only after a read has already failed.
    """
    with open(path, "rb") as handle:
        if handle.read(2) != GZIP_MAGIC:
            return Reason.NOT_GZIP
    try:
        with gzip.open(path) as stream:
            while stream.read(1 << 22):
                pass
    except (EOFError, zlib.error, gzip.BadGzipFile):
        return Reason.TRUNCATED_GZIP
    return None


@contextlib.contextmanager
def reading(uri: str, path: str = ""):
    """Turn the ways a NIfTI file can be bad into a quarantine reason naming the file.

    Only content errors are translated. Other I/O errors (network, full disk) propagate
    unchanged so the runner retries the work instead of quarantining a good file. `path` is
    the local copy of `uri`; for a `.gz` file it is checked to tell a damaged stream from a
    damaged header.
    """
    try:
        yield
    except PipelineError:
        raise
    except FileNotFoundError as exc:
        raise PipelineError(Reason.MISSING_FILE, f"file not found: {exc.filename}", uri) from exc
    except (gzip.BadGzipFile, EOFError, zlib.error, nib.filebasedimages.ImageFileError,
            nib.spatialimages.HeaderDataError, ValueError) as exc:
        raise _bad_file(exc, uri, gzip_problem(path) if path.endswith(".gz") else None) from exc
    except OSError as exc:
        problem = gzip_problem(path) if path.endswith(".gz") else None
        if problem is None:
            raise  # an I/O failure (network, disk), not a bad file: the runner retries it
        raise _bad_file(exc, uri, problem) from exc


def _bad_file(exc: Exception, uri: str, gzip_reason: Reason | None) -> PipelineError:
    messages = {
        Reason.NOT_GZIP: "named .gz but not gzip data",
        Reason.TRUNCATED_GZIP: "compressed stream ends early or is corrupt (truncated download?)",
        None: "not a readable NIfTI file",
    }
    return PipelineError(gzip_reason or Reason.UNREADABLE, f"{messages[gzip_reason]} ({type(exc).__name__}: {exc})",
                         uri)


def _usable(matrix: np.ndarray | None) -> bool:
    return matrix is not None and bool(np.all(np.isfinite(matrix))) and abs(np.linalg.det(matrix[:3, :3])) > 1e-12


def resolve_affine(header: nib.Nifti1Header) -> ResolvedAffine:
    """Prefer a coded, usable sform; else a coded qform; else the pixdim-only base affine."""
    sform, sform_code = header.get_sform(coded=True)
    qform, qform_code = header.get_qform(coded=True)
    mismatch = bool(
        sform_code and qform_code and _usable(sform) and _usable(qform)
        and not np.allclose(sform, qform, atol=FORM_AGREEMENT_TOL, rtol=0)
    )
    if sform_code and _usable(sform):
        return ResolvedAffine(sform, "sform", mismatch)
    if qform_code and _usable(qform):
        return ResolvedAffine(qform, "qform", mismatch)
    return ResolvedAffine(header.get_base_affine(), "pixdim", mismatch)


def load(path: str, uri: str = "") -> nib.Nifti1Image:
    """Open a NIfTI-1/2 file (pixels are read lazily, inside `reading`)."""
    with reading(uri or path, path):
        image = nib.load(path)
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise PipelineError(Reason.UNREADABLE, f"not a NIfTI image ({type(image).__name__})", uri or path)
    return image


def voxel_count(image: nib.Nifti1Image) -> int:
    """Voxels the header declares (all channels), known before any pixel is decompressed."""
    return int(np.prod(image.shape, dtype=np.int64))


NIFTI2_HEADER_BYTES = 540


def header_spatial_shape(head: bytes, gzipped: bool) -> tuple[int, int, int]:
    """Spatial shape from the first bytes of a (possibly gzipped) NIfTI-1/2 file: no pixel is read."""
    if gzipped:
        head = gzip.GzipFile(fileobj=io.BytesIO(head)).read(NIFTI2_HEADER_BYTES)
    header_class = nib.Nifti2Header if int.from_bytes(head[:4], "little") == NIFTI2_HEADER_BYTES else nib.Nifti1Header
    return spatial_shape(header_class.from_fileobj(io.BytesIO(head)).get_data_shape())


def spatial_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The three spatial dimensions of a NIfTI shape (2D images become one-slice volumes)."""
    if len(shape) == 2:
        return (shape[0], shape[1], 1)
    return tuple(shape[:3])


def read_channel(image: nib.Nifti1Image, channel: int | None, uri: str) -> np.ndarray:
    """Float32 voxels of one 3D channel; `channel` indexes axis 3 of a 4D file (never spatial)."""
    shape = image.shape
    n_channels = shape[3] if len(shape) >= 4 else 1
    if channel is None and n_channels != 1:
        raise PipelineError(Reason.BAD_SHAPE, f"4D image with {n_channels} channels but no channel map", uri)
    if channel is not None and not 0 <= channel < n_channels:
        raise PipelineError(Reason.BAD_SHAPE, f"channel {channel} requested, file has {n_channels}", uri)
    with reading(uri, image.get_filename() or ""):
        proxy = image.dataobj
        if len(shape) >= 4:
            data = np.asarray(proxy[..., channel], dtype=np.float32)  # one channel; scaled by nibabel
        else:
            data = _scaled_float32(np.asanyarray(proxy.get_unscaled()), proxy.slope, proxy.inter)
    return data.reshape(spatial_shape(shape))


SCALING_SLAB_VOXELS = 1 << 22


def _scaled_float32(raw: np.ndarray, slope: float, inter: float) -> np.ndarray:
    """raw * slope + inter as float32, computed in float64 one slab at a time (exactly as nibabel
    scales, without its whole-volume float64 copy).

    The result is row-major, which the slicing code is tuned for. A NIfTI is stored column-major,
    so slabs run along raw's last axis: a flat row-major view of raw would be a whole copy of it.
    """
    data = np.empty(raw.shape, dtype=np.float32)
    if slope == 1 and inter == 0:
        data[...] = raw
        return data
    axis = raw.ndim - 1 if raw.flags.f_contiguous and not raw.flags.c_contiguous else 0
    step = max(1, SCALING_SLAB_VOXELS * raw.shape[axis] // max(raw.size, 1))
    for start in range(0, raw.shape[axis], step):
        slab = (slice(None),) * axis + (slice(start, start + step),)
        data[slab] = raw[slab] * np.float64(slope) + np.float64(inter)
    return data


def read_labels(image: nib.Nifti1Image, uri: str) -> np.ndarray:
    """The label map as integers, refusing non-integer values instead of truncating them.

    Label values are codes, so the stored values are read and any scl_slope/scl_inter a
    writer put on the mask is ignored (scaling 1, 2, 3 by 0.5 would invent labels).
    """
    if len(image.shape) > 3 and int(np.prod(image.shape[3:])) != 1:
        raise PipelineError(Reason.BAD_SHAPE, f"label map must be 3D, got shape {image.shape}", uri)
    with reading(uri, image.get_filename() or ""):
        raw = np.asanyarray(image.dataobj.get_unscaled())
    raw = raw.reshape(spatial_shape(image.shape))
    return as_integer_labels(raw, uri)


def to_volume(array: np.ndarray, affine: ResolvedAffine) -> Volume:
    """A `Volume` on the file's resolved grid."""
    return Volume(array, affine.affine_ras)
