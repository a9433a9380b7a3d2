"""A case's files read into one canonical frame: the image sequences, the label map (or merged structure
masks, or a DICOM SEG) and the landmarks, checked against each other (`LoadedCase`). `LoadedCase` holds the
decoded volumes and lives only inside one worker step."""

from __future__ import annotations

import dataclasses
import os
from typing import NamedTuple

import nibabel as nib
import numpy as np
import PIL
import pydicom

from transforms import deadline, dicom, dicom_seg, nifti
from transforms.caseref import (
    PEAK_BYTES_PER_VOXEL,
    CaseRef,
    LandmarkSpec,
    ReadPolicy,
    RealignSpec,
)
from transforms.errors import PipelineError, Reason
from transforms.landmarks import (
    MeasuredValue,
    Measurement,
    measure,
    point_pairs_from_labels,
    read_xy_text,
    to_world_ras,
)
from transforms.readers import (
    ITK_SUFFIXES,
    itk_version,
    itk_voxel_count,
    read_itk,
    read_planar,
    resample_through_transform,
)
from transforms.volume import (
    Volume,
    as_integer_labels,
    check_orthonormal,
    grid_of,
    match_grid,
    place_nearest,
    present_labels,
    to_canonical,
)


class Measured(NamedTuple):
    """A landmark measurement of the case and its value."""

    measurement: Measurement
    value: MeasuredValue


class Unmeasured(NamedTuple):
    """A measurement the case's landmarks leave undefined, and why (never emitted as 0)."""

    measurement: str
    why: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReadGeometry:
    """The allowlisted facts of the grid a case was read on, for provenance (no header text)."""

    reader: str  # library and version
    orig_orientation: str  # axis codes as stored, e.g. "LPS"
    obliquity_deg: float
    orig_spacing_mm: tuple[float, ...]
    orig_shape: tuple[int, ...]
    affine_source: str  # which header form or DICOM positions gave the affine
    sform_qform_mismatch: bool = False
    uneven_slice_spacing: bool = False
    mask_resampled: bool = False  # a mask on another grid placed on the image's (nearest neighbour)


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedCase:
    """Decoded case in the canonical RAS+ frame, with the geometry facts kept for provenance."""

    case: CaseRef
    images: dict[str, Volume]  # by sequence name
    labels: Volume
    geometry: ReadGeometry
    landmarks_ras: dict = dataclasses.field(default_factory=dict)  # name -> world RAS+ mm
    measured: tuple[Measured, ...] = ()
    unmeasured: tuple[Unmeasured, ...] = ()


def check_label_values(labels: np.ndarray, known: dict[int, str], uri: str) -> None:
    """Every non-zero value must be in the dataset's label map."""
    present = present_labels(labels)
    unknown = sorted(present - set(known))
    if unknown:
        raise PipelineError(
            Reason.UNKNOWN_LABEL,
            f"label values {unknown} are not in the dataset's label map {sorted(known)}",
            uri,
        )


def _geometry(grid: Volume, affine_source: str, mismatch: bool, reader: str, uneven: bool = False) -> ReadGeometry:
    """The facts of the grid the case was read on."""
    return ReadGeometry(
        reader=reader,
        orig_orientation=grid.orientation_code,
        obliquity_deg=float(grid.obliquity_deg),
        orig_spacing_mm=tuple(float(s) for s in grid.spacing_mm),
        orig_shape=tuple(int(n) for n in grid.array.shape),
        affine_source=affine_source,
        sform_qform_mismatch=bool(mismatch),
        uneven_slice_spacing=bool(uneven),
    )


def image_format(uri: str) -> str:
    """'dicom' for a series folder (URI ending in '/'), 'itk' for MHA/NRRD, else 'nifti'."""
    if uri.endswith("/"):
        return "dicom"
    return "itk" if uri.lower().endswith(ITK_SUFFIXES) else "nifti"


def stored_weight(itemsize: int) -> float:
    """Voxels of `itemsize`-byte storage in budget voxels (int16 = 1; float64 costs 1.6)."""
    return (itemsize + 8) / PEAK_BYTES_PER_VOXEL


def check_budget(n_voxels: float, max_voxels: int | None, uri: str) -> None:
    """Refuse, from the header alone, a volume larger than the memory budget (decompression bombs)."""
    if max_voxels is not None and n_voxels > max_voxels:
        raise PipelineError(
            Reason.TOO_LARGE,
            f"declares {n_voxels:,.0f} voxels (int16-equivalent), over the "
            f"budget of {max_voxels:,} (--max-volume-mb / {PEAK_BYTES_PER_VOXEL} bytes)",
            uri,
        )


def _single(case: CaseRef, image: Volume, source: str, reader: str, uneven: bool = False):
    return (
        {case.sequences[0].name: image},
        grid_of(image.array.shape, image.affine_ras),
        _geometry(image, source, False, reader, uneven),
    )


def _read_realigned(case: CaseRef, realign: RealignSpec, local: dict[str, str], policy: ReadPolicy):
    reference = local[realign.reference_uri]
    for path in (local[case.image_uri], reference):  # the moving image is decoded whole too
        check_budget(itk_voxel_count(path, case.image_uri), policy.max_voxels, case.image_uri)
    image = resample_through_transform(local[case.image_uri], reference, local[realign.transform_uri], case.image_uri)
    return _single(case, image, "itk_resampled", itk_version())


def _read_dicom(case: CaseRef, path: str, policy: ReadPolicy):
    check_budget(dicom.voxel_count(path, case.image_uri), policy.max_voxels, case.image_uri)
    array, affine, uneven = dicom.read_series(path, case.image_uri, policy.allow_uneven_slices)
    check_orthonormal(affine)
    return _single(case, Volume(array, affine), "dicom_positions", f"pydicom {pydicom.__version__}", uneven)


def _read_itk(case: CaseRef, path: str, policy: ReadPolicy):
    check_budget(itk_voxel_count(path, case.image_uri), policy.max_voxels, case.image_uri)
    images = {seq.name: read_itk(path, case.image_uri, seq.channel) for seq in case.sequences}
    first = next(iter(images.values()))
    check_orthonormal(first.affine_ras)
    grid = grid_of(first.array.shape, first.affine_ras)
    return images, grid, _geometry(grid, "itk_header", False, itk_version())


def _read_nifti(case: CaseRef, path: str, policy: ReadPolicy):
    image_file = nifti.load(path, case.image_uri)
    weight = stored_weight(image_file.get_data_dtype().itemsize)
    check_budget(nifti.voxel_count(image_file) * weight, policy.max_voxels, case.image_uri)
    affine = nifti.resolve_affine(image_file.header, case.image_uri)
    check_orthonormal(affine.affine_ras)
    grid = grid_of(nifti.spatial_shape(image_file.shape), affine.affine_ras)
    images = {
        seq.name: Volume(nifti.read_channel(image_file, seq.channel, case.image_uri), affine.affine_ras)
        for seq in case.sequences
    }
    return images, grid, _geometry(grid, affine.source, affine.sform_qform_mismatch, f"nibabel {nib.__version__}")


def read_images(
    case: CaseRef, local: dict[str, str], policy: ReadPolicy = ReadPolicy()
) -> tuple[dict[str, Volume], Volume, ReadGeometry]:
    """Each sequence on the case's grid (as stored), the grid alone, and its geometry facts.

    A volume whose header declares more than `policy.max_voxels` is refused before it is decoded.
    """
    path = local[case.image_uri]
    if case.planar is not None:
        image = read_planar(path, case.planar, case.image_uri, policy.max_voxels)
        return _single(case, image, "declared", f"pillow {PIL.__version__}")
    if case.realign is not None:
        return _read_realigned(case, case.realign, local, policy)
    readers = {"dicom": _read_dicom, "itk": _read_itk, "nifti": _read_nifti}
    kind = "dicom" if os.path.isdir(path) else image_format(case.image_uri)  # a series named without '/'
    return readers[kind](case, path, policy)


def check_some_finite(array: np.ndarray, uri: str) -> None:
    """Refuse an image with no finite voxel (all NaN/inf, or scaled past float32): every slice would be
    blank while its pairs looked valid. Slab by slab, stopping at the first finite voxel."""
    for slab in range(array.shape[0]):
        if np.isfinite(array[slab]).any():
            return
    raise PipelineError(
        Reason.NONFINITE_IMAGE, "no finite voxel (all NaN or infinite, e.g. a scale factor that overflows float32)", uri
    )


def read_label_map(case: CaseRef, local: dict[str, str], grid: Volume) -> tuple[Volume, bool]:
    """The case's label map on the image grid (checked), or an empty one when the case has none,
    and whether it had to be resampled onto that grid (nearest neighbour)."""
    if case.mask_parts:
        return merge_structure_masks(case, local, grid)
    if not case.mask_uri:
        return grid.with_array(np.zeros(grid.array.shape, np.uint8)), False
    if case.planar is not None:  # a 2D label raster (nnU-Net's PNG/TIFF masks) shares the image's geometry
        raster = read_planar(local[case.mask_uri], case.planar, case.mask_uri, grid.array.size, labels=True)
        mask = match_grid(grid, raster.with_array(as_integer_labels(raster.array, case.mask_uri)), case.mask_uri)
        check_label_values(mask.array, case.label_names, case.mask_uri)
        return mask, False
    mask, resampled = _read_mask(local[case.mask_uri], case.mask_uri, grid, case.label_names, case.mask_placement)
    check_label_values(mask.array, case.label_names, case.mask_uri)
    return mask, resampled


def _read_mask(
    path: str, uri: str, grid: Volume, label_names: dict[int, str], placement: str = "exact"
) -> tuple[Volume, bool]:
    """One mask file (NIfTI, MHA/NRRD or DICOM SEG) as integer labels on the image grid, and
    whether it was resampled. A mask on another grid is `mask_grid_mismatch`, unless `placement`
    is "nearest" (then it may also hold up to 8x the image's voxels, e.g. a finer grid).
    """
    if uri.lower().endswith(".dcm"):  # a DICOM SEG: placed frame by frame, already on the grid
        return dicom_seg.read_label_map(path, uri, grid, label_names), False
    limit = int(np.prod(grid.array.shape)) * (8 if placement == "nearest" else 1)
    if image_format(uri) == "itk":
        check_budget(itk_voxel_count(path, uri), limit, uri)
        read = read_itk(path, uri)
        mask = read.with_array(as_integer_labels(read.array, uri))
    else:
        mask_file = nifti.load(path, uri)
        nifti.check_label_shape(mask_file, uri)
        check_budget(nifti.voxel_count(mask_file), limit, uri)
        mask = nifti.to_volume(nifti.read_labels(mask_file, uri), nifti.resolve_affine(mask_file.header, uri))
    try:
        return match_grid(grid, mask, uri), False
    except PipelineError:
        if placement != "nearest":
            raise
        return place_nearest(grid, mask, uri), True


def merge_structure_masks(case: CaseRef, local: dict[str, str], grid: Volume) -> tuple[Volume, bool]:
    """Per-structure binary masks (TotalSegmentator-style) merged into one label map.

    Parts are applied in ascending label order and a voxel keeps the first label that claims
    it, so overlaps resolve the same way on every run. One part is in memory at a time.
    """
    largest = max(value for value, _ in case.mask_parts)
    merged = np.zeros(grid.array.shape, np.uint8 if largest < 256 else np.uint16)
    any_resampled = False
    for value, uri in sorted(case.mask_parts):
        part, resampled = _read_mask(
            local[uri], uri, grid, {1: case.label_names.get(value, str(value))}, case.mask_placement
        )
        any_resampled |= resampled
        if part.array.max(initial=0) > 1:
            raise PipelineError(
                Reason.UNKNOWN_LABEL,
                f"structure mask holds values above 1 (max {int(part.array.max())}); expected a binary mask",
                uri,
            )
        np.copyto(merged, np.asarray(value, merged.dtype), where=(part.array != 0) & (merged == 0))
    return grid.with_array(merged), any_resampled


def read_landmarks(spec: LandmarkSpec, local: dict[str, str], grid: Volume) -> dict[str, np.ndarray]:
    """Landmarks in world RAS+ mm: text points index the image; a label-pair mask carries its own affine."""
    path = local[spec.uri]
    if spec.reader == "xy_text":
        with open(path, encoding="utf-8", errors="replace") as handle:
            points = read_xy_text(handle.read(), list(spec.names))
        on_slice = {name: (x, y, spec.space.index_base) for name, (x, y) in points.items()}
        return to_world_ras(on_slice, spec.space, grid.affine_ras)
    if spec.reader == "label_pairs":
        mask_file = nifti.load(path, spec.uri)
        pairs = point_pairs_from_labels(nifti.read_labels(mask_file, spec.uri))
        points_ijk: dict[str, tuple[float, ...]] = {}
        for label, first, second, axis in spec.pairs:
            if label not in pairs:
                continue  # a missing pair leaves only the measurements that need it undefined
            voxels = pairs[label][np.argsort(-pairs[label][:, axis], kind="stable")]
            points_ijk[first], points_ijk[second] = tuple(voxels[0]), tuple(voxels[1])
        return to_world_ras(points_ijk, spec.space, nifti.resolve_affine(mask_file.header, spec.uri).affine_ras)
    raise PipelineError(Reason.BAD_LANDMARKS, f"unknown landmark reader {spec.reader!r}", spec.uri)


def load_case(case: CaseRef, local: dict[str, str], policy: ReadPolicy = ReadPolicy()) -> LoadedCase:
    """Read a case (`local` maps each of `case.input_uris()` to a local file) into one canonical frame.

    Checks: readable files, orthonormal directions, mask on the image grid, integer labels
    from the label map, readable landmark files. Measurements are made
    here, in world mm; one whose points are missing is left out and listed in `unmeasured`.
    `policy` sets the memory budget and the DICOM spacing tolerance.
    Raises `PipelineError` with the reason on failure.
    """
    images, grid, geometry = read_images(case, local, policy)
    for volume in images.values():
        check_some_finite(volume.array, case.image_uri)
    deadline.check()
    labels, mask_resampled = read_label_map(case, local, grid)
    deadline.check()
    geometry = dataclasses.replace(geometry, mask_resampled=bool(mask_resampled))
    landmarks: dict[str, np.ndarray] = {}
    measured: list[Measured] = []
    unmeasured: list[Unmeasured] = []
    if case.landmarks is not None:
        landmarks = read_landmarks(case.landmarks, local, grid)
        for measurement in case.landmarks.measurements:
            try:
                measured.append(Measured(measurement, measure(measurement, landmarks)))
            except PipelineError as exc:  # undefined: reported with its reason, never emitted as 0
                unmeasured.append(Unmeasured(measurement.name, exc.message))
    canonical = {name: to_canonical(volume) for name, volume in images.items()}
    return LoadedCase(case, canonical, to_canonical(labels), geometry, landmarks, tuple(measured), tuple(unmeasured))


def load_nifti_case(case: CaseRef, image_path: str, mask_path: str) -> LoadedCase:
    """`load_case` for a NIfTI image and mask already on local disk."""
    return load_case(case, {case.image_uri: image_path, case.mask_uri: mask_path})
