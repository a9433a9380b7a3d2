"""Image readers beyond plain NIfTI: 2D rasters with declared anatomy, and resampling through an ITK transform.

SimpleITK works in LPS; conversion to our RAS+ `Volume` happens here, at the boundary, and
nowhere else. It is imported by the readers that use it (60 ms that a NIfTI or DICOM build never needs).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from transforms.caseref import PlanarGeometry
from transforms.errors import PipelineError, Reason
from transforms.volume import Volume, grid_affine

if TYPE_CHECKING:
    import SimpleITK as sitk

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


# Raster formats read for 2D sources; Pillow is not left to guess among all the formats it knows.
PLANAR_FORMATS = ("BMP", "PNG", "TIFF", "JPEG")


# Single-channel raster modes whose values are a label map as stored (palette indices included).
PLANAR_LABEL_MODES = ("1", "L", "P", "I;16", "I")


def read_planar(
    path: str, geometry: PlanarGeometry, uri: str, max_pixels: int | None = None, labels: bool = False
) -> Volume:
    """A 2D raster (BMP, PNG, ...) as a one-slice volume with i = column, j = row, k = normal.

    The size in the header is checked against `max_pixels` before any pixel is decoded. With `labels`,
    the stored values are kept (a palette PNG gives its indices, not their colours' grey) and a
    colour raster is refused (`bad_shape`); otherwise colour is converted to grey.
    """
    try:
        with Image.open(path, formats=PLANAR_FORMATS) as image:
            width, height = image.size
            if max_pixels is not None and width * height > max_pixels:
                raise PipelineError(Reason.TOO_LARGE, f"declares {width} x {height} pixels, over the budget", uri)
            if labels and image.mode not in PLANAR_LABEL_MODES:
                raise PipelineError(
                    Reason.BAD_SHAPE, f"a label raster must have one channel, got mode {image.mode!r}", uri
                )
            pixels = np.asarray(image if labels or image.mode in ("L", "I;16", "I", "F") else image.convert("F"))
    except Image.DecompressionBombError as exc:
        raise PipelineError(Reason.TOO_LARGE, str(exc), uri) from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise PipelineError(
            Reason.UNREADABLE, f"not a readable {'/'.join(PLANAR_FORMATS)} image ({type(exc).__name__})", uri
        ) from exc
    if pixels.ndim != 2:
        raise PipelineError(Reason.BAD_SHAPE, f"expected a greyscale 2D image, got {pixels.ndim} dimensions", uri)
    col_mm, row_mm = geometry.spacing_mm_col_row
    affine = grid_affine(geometry.axes, (col_mm, row_mm, min(col_mm, row_mm)))
    return Volume(np.ascontiguousarray(pixels.T[:, :, None], dtype=None if labels else np.float32), affine)


def volume_from_itk(image: sitk.Image) -> Volume:
    """A SimpleITK image (LPS, array z-y-x) as a Volume (RAS+, array i-j-k)."""
    import SimpleITK as sitk

    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = LPS_TO_RAS @ direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = LPS_TO_RAS @ np.asarray(image.GetOrigin(), dtype=float)
    return Volume(sitk.GetArrayFromImage(image).transpose(2, 1, 0), affine)  # a view of one copy: no second


ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
# The ImageIO for each suffix: ITK would otherwise try every IO it has on the file's content, and a
# file named .nrrd could then be read as, say, a MetaImage whose header names another file.
IMAGE_IO_BY_SUFFIX = {
    ".nrrd": "NrrdImageIO",
    ".nhdr": "NrrdImageIO",
    ".mha": "MetaImageIO",
    ".mhd": "MetaImageIO",
    ".nii": "NiftiImageIO",
    ".nii.gz": "NiftiImageIO",
}
TRANSFORM_SUFFIXES = (".txt", ".tfm")  # ITK text transforms (HDF5 ones can link to other files)


def itk_version() -> str:
    """The reader named in a row's provenance."""
    import SimpleITK as sitk

    return f"SimpleITK {sitk.Version.VersionString()}"


def _complex(pixel_id: int) -> bool:
    """Complex voxels have no intensity window (vectors are read one component at a time)."""
    import SimpleITK as sitk

    return pixel_id in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64)


def image_io(uri: str) -> str:
    """The one ImageIO that reads `uri`, by its suffix; other files are `unreadable`."""
    lowered = uri.lower()
    for suffix, io_name in IMAGE_IO_BY_SUFFIX.items():
        if lowered.endswith(suffix):
            return io_name
    raise PipelineError(
        Reason.UNREADABLE, f"no image reader for this file type (expected one of {', '.join(IMAGE_IO_BY_SUFFIX)})", uri
    )


def _itk_failure(what: str, uri: str) -> PipelineError:
    """ITK's messages name worker paths and quote header fields: the row gets neither (the chained
    exception keeps them for the worker's log)."""
    return PipelineError(Reason.UNREADABLE, f"not a readable {what} (ITK refused it)", uri)


def itk_voxel_count(path: str, uri: str) -> int:
    """Voxels (times components) an ITK-readable file declares, from its header alone."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetImageIO(image_io(uri))
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise _itk_failure("image header", uri) from exc
    size = reader.GetSize()
    if reader.GetDimension() > 3 and math.prod(size[3:]) != 1:
        raise PipelineError(Reason.BAD_SHAPE, f"{reader.GetDimension()}D image: only 2D and 3D are read", uri)
    if _complex(reader.GetPixelID()):
        raise PipelineError(Reason.UNSUPPORTED_PIXEL_TYPE, "complex voxels", uri)
    return math.prod(int(n) for n in size) * reader.GetNumberOfComponents()


def read_itk(path: str, uri: str, channel: int | None = None) -> Volume:
    """An MHA/NRRD (or other ITK) image as a RAS+ Volume; `channel` picks a vector component."""
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(path, imageIO=image_io(uri))
    except RuntimeError as exc:
        raise _itk_failure("image", uri) from exc
    if _complex(image.GetPixelID()):
        raise PipelineError(Reason.UNSUPPORTED_PIXEL_TYPE, "complex voxels", uri)
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    components = image.GetNumberOfComponentsPerPixel()
    if components > 1:
        if channel is None:
            raise PipelineError(
                Reason.UNSUPPORTED_PIXEL_TYPE, f"{components} components per voxel (e.g. RGB) and no channel map", uri
            )
        if not 0 <= channel < components:
            raise PipelineError(Reason.BAD_SHAPE, f"{components}-component image; channel {channel} requested", uri)
        image = sitk.VectorIndexSelectionCast(image, channel)
    elif channel not in (None, 0):
        raise PipelineError(Reason.BAD_SHAPE, f"one-component image; channel {channel} requested", uri)
    if image.GetDimension() != 3:
        raise PipelineError(Reason.BAD_SHAPE, f"expected a 2D or 3D image, got {image.GetDimension()}D", uri)
    return volume_from_itk(image)


def resample_through_transform(image_path: str, reference_path: str, transform_path: str, uri: str) -> Volume:
    """The image resampled (linear) onto the reference image's grid through an ITK transform file.

    ITK convention: the transform maps points of the reference (output) space to the image
    (input) space, as a registration of the image onto the reference produces it.
    """
    import SimpleITK as sitk

    if not transform_path.lower().endswith(TRANSFORM_SUFFIXES):
        raise PipelineError(
            Reason.UNREADABLE, f"transform file must be an ITK text transform ({', '.join(TRANSFORM_SUFFIXES)})", uri
        )
    try:
        image = sitk.ReadImage(image_path, sitk.sitkFloat32, imageIO=image_io(image_path))
        reference = sitk.ReadImage(reference_path, imageIO=image_io(reference_path))
        transform = sitk.ReadTransform(transform_path)
    except RuntimeError as exc:
        raise _itk_failure("image, reference or transform", uri) from exc
    resampled = sitk.Resample(image, reference, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return volume_from_itk(resampled)
