"""A case from reference to slices: load image and mask into one canonical frame, then cut slices.

`CaseRef` is what a source adapter lists (small, picklable); `LoadedCase` holds the decoded
volumes and lives only inside one worker step; `SliceContent` is what leaves that step.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Iterator, Optional

import nibabel as nib
import numpy as np
import PIL
import pydicom
import SimpleITK as sitk

from transforms import deadline, dicom, dicom_seg, nifti
from transforms.caseref import (
    PEAK_BYTES_PER_VOXEL,
    CaseRef,
    LandmarkSpec,
    ReadPolicy,
    RealignSpec,
)
from transforms.errors import PipelineError, Reason
from transforms.intensity import Window, encode_png, to_uint8, window_for
from transforms.landmarks import (
    MeasuredValue,
    Measurement,
    measure,
    point_pairs_from_labels,
    read_xy_text,
    to_world_ras,
)
from transforms.packed import PackedArray
from transforms.planes import SpacingMode, in_plane_axes, labelled_slices, plane_grid, planes_of, target_spacing_mm
from transforms.readers import ITK_SUFFIXES, itk_voxel_count, read_itk, read_planar, resample_through_transform
from transforms.slice_labels import SliceLabels, derive_plane
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


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedCase:
    """Decoded case in the canonical RAS+ frame, with the geometry facts kept for provenance."""

    case: CaseRef
    images: dict[str, Volume]  # by sequence name
    labels: Volume
    geometry: dict
    landmarks_ras: dict = dataclasses.field(default_factory=dict)  # name -> world RAS+ mm
    measured: tuple[tuple[Measurement, MeasuredValue], ...] = ()
    unmeasured: tuple[tuple[str, str], ...] = ()  # (measurement, why it is undefined)


@dataclasses.dataclass(frozen=True)
class PlacedMeasurement:
    """A measurement with its landmarks placed in the displayed slice it is shown on."""

    measurement: Measurement
    value: MeasuredValue
    landmarks_xy_px: tuple[tuple[str, float, float], ...]  # (name, x, y), edge frame


@dataclasses.dataclass(frozen=True, eq=False)
class SliceContent:
    """One displayed slice of one sequence: its 8-bit pixels plus its label slice, in the same pixel frame.

    The pixels are PNG-encoded by `with_png` once the slice is cut, in the same worker step.
    """

    sequence: str
    modality: str
    plane: str
    slice_index: int  # along the plane's axis of the canonical RAS+ grid
    pixels: Optional[PackedArray]  # uint8 displayed slice until encoded
    shape_rows_cols: tuple[int, int]
    spacing_mm_row_col: tuple[float, float]
    square_spacing_mm: Optional[float]
    window: Window
    packed_labels: PackedArray
    measurements: tuple[PlacedMeasurement, ...] = ()
    labels_lost: tuple[int, ...] = ()  # labels of the source slice that resampling removed
    png: Optional[bytes] = None  # set by `with_png`; the build then spills it (a `schemas.spilled.SpilledPng`)
    derived: Optional[SliceLabels] = None  # boxes and lesion components, when cut with them (then packed_labels
    # holds only the labelled box, and `labels_2d` is made from it)

    @property
    def labels_2d(self) -> np.ndarray:
        """The label slice in this slice's displayed pixel frame."""
        if self.derived is not None:
            return self.derived.labels_2d(self.shape_rows_cols)
        return self.packed_labels.unpack()

    def encoded_png(self) -> bytes:
        """This slice's pixels as PNG bytes (a slice whose pixels `with_png` dropped has none to encode)."""
        if self.pixels is None:
            raise ValueError(f"{self.plane} slice {self.slice_index} of {self.sequence} is encoded already")
        return encode_png(self.pixels.unpack())

    def with_png(self) -> "SliceContent":
        """This slice with its pixels encoded as PNG (and the packed pixels dropped)."""
        return dataclasses.replace(self, png=self.encoded_png(), pixels=None)


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


def _geometry(grid: Volume, affine_source: str, mismatch: bool, reader: str, uneven: bool = False) -> dict:
    """The allowlisted geometry facts of the grid the case was read on (for provenance)."""
    return {
        "uneven_slice_spacing": uneven,
        "reader": reader,
        "orig_orientation": grid.orientation_code,
        "obliquity_deg": grid.obliquity_deg,
        "orig_spacing_mm": [float(s) for s in grid.spacing_mm],
        "orig_shape": [int(n) for n in grid.array.shape],
        "affine_source": affine_source,
        "sform_qform_mismatch": mismatch,
    }


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
    return _single(case, image, "itk_resampled", f"SimpleITK {sitk.Version.VersionString()}")


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
    return images, grid, _geometry(grid, "itk_header", False, f"SimpleITK {sitk.Version.VersionString()}")


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
) -> tuple[dict[str, Volume], Volume, dict]:
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
    geometry = {**geometry, "mask_resampled": mask_resampled}
    landmarks, measured, unmeasured = {}, [], []
    if case.landmarks is not None:
        landmarks = read_landmarks(case.landmarks, local, grid)
        for measurement in case.landmarks.measurements:
            try:
                measured.append((measurement, measure(measurement, landmarks)))
            except PipelineError as exc:  # undefined: reported with its reason, never emitted as 0
                unmeasured.append((measurement.name, exc.message))
    canonical = {name: to_canonical(volume) for name, volume in images.items()}
    return LoadedCase(case, canonical, to_canonical(labels), geometry, landmarks, tuple(measured), tuple(unmeasured))


def load_nifti_case(case: CaseRef, image_path: str, mask_path: str) -> LoadedCase:
    """`load_case` for a NIfTI image and mask already on local disk."""
    return load_case(case, {case.image_uri: image_path, case.mask_uri: mask_path})


def place_measurements(
    loaded: LoadedCase, spacing: SpacingMode, display: str = "radiological"
) -> dict[tuple[str, int], list[PlacedMeasurement]]:
    """Each measurement on its plane's slice through its first point, with all its points in display pixels."""
    shape, planes = loaded.labels.array.shape, planes_of(loaded.labels.array.shape)
    to_ijk = np.linalg.inv(loaded.labels.affine_ras)
    placed: dict[tuple[str, int], list[PlacedMeasurement]] = {}
    for measurement, value in loaded.measured:
        plane = measurement.plane or planes[0]
        if plane not in planes:
            raise PipelineError(Reason.BAD_LANDMARKS, f"{measurement.name} is shown on {plane}; volume has {planes}")
        grid = plane_grid(shape, loaded.labels.spacing_mm, plane, spacing, display)
        ijk = {name: to_ijk[:3, :3] @ loaded.landmarks_ras[name] + to_ijk[:3, 3] for name in measurement.points}
        shown = tuple((name, *grid.display_xy(ijk[name])) for name in dict.fromkeys(measurement.points))
        key = (plane, grid.slice_of(ijk[measurement.points[0]]))
        placed.setdefault(key, []).append(PlacedMeasurement(measurement, value, shown))
    return placed


def slice_plan(loaded: LoadedCase, placed: dict) -> dict[str, tuple[int, ...]]:
    """The slices a case yields, per plane: every index that holds a label or shows a measurement
    (`placed`, from `place_measurements`)."""
    labels = loaded.labels
    labelled = labelled_slices(labels.array)
    return {
        plane: tuple(sorted(set(labelled[plane].tolist()) | {index for p, index in placed if p == plane}))
        for plane in planes_of(labels.array.shape, loaded.case.planes)
    }


# Output slices are bounded before any pixel work: a header can declare any voxel size, and a plane is
# resampled to its finer spacing, so a 1e6 mm slice gap would make slices of millions of rows.
MAX_VOXEL_MM = 50.0  # thicker than any CT/MR slice or X-ray pixel
MAX_SLICE_PIXELS = 1 << 24  # 4096 x 4096; whole-body CT at its finest spacing is ~1.3 Mpx per slice


def check_output_geometry(loaded: LoadedCase, spacing: SpacingMode, display: str = "radiological") -> None:
    """Refuse (`implausible_geometry`) a case whose cut planes have in-plane voxels over `MAX_VOXEL_MM`, or
    whose resampled slices would exceed `MAX_SLICE_PIXELS`; computed from the header geometry alone."""
    shape, spacing_mm = loaded.labels.array.shape, loaded.labels.spacing_mm
    for plane in planes_of(shape, loaded.case.planes):
        row_axis, col_axis = in_plane_axes(plane, display)
        sizes_mm = (float(spacing_mm[row_axis]), float(spacing_mm[col_axis]))
        if not all(0 < size <= MAX_VOXEL_MM for size in sizes_mm):
            raise PipelineError(
                Reason.IMPLAUSIBLE_GEOMETRY,
                f"{plane} voxels of {sizes_mm[0]:.3g} x {sizes_mm[1]:.3g} "
                f"mm; in-plane voxel sizes above {MAX_VOXEL_MM:g} mm are not an image of a body",
                loaded.case.image_uri,
            )
        row_mm, col_mm = target_spacing_mm(*sizes_mm, spacing)
        pixels = math.ceil(shape[row_axis] * sizes_mm[0] / row_mm) * math.ceil(shape[col_axis] * sizes_mm[1] / col_mm)
        if pixels > MAX_SLICE_PIXELS:
            raise PipelineError(
                Reason.IMPLAUSIBLE_GEOMETRY,
                f"{plane} slices would hold {pixels:,} pixels after resampling, over {MAX_SLICE_PIXELS:,}",
                loaded.case.image_uri,
            )


def case_windows(loaded: LoadedCase) -> dict[str, Window]:
    """The intensity window of each sequence (from the whole volume, so every slice shares it)."""
    return {
        seq.name: window_for(seq.modality, seq.ct_window, loaded.images[seq.name].array)
        for seq in loaded.case.sequences
    }


def extract_slices(
    loaded: LoadedCase,
    spacing: SpacingMode,
    display: str = "radiological",
    plan: Optional[dict[str, tuple[int, ...]]] = None,
    windows: Optional[dict[str, Window]] = None,
    measure_several: bool = True,
    with_labels: bool = True,
    measurement: str = "pixel_edge",
) -> Iterator[SliceContent]:
    """The slices of `plan` (default: the whole `slice_plan`) of every sequence, resampled, in the
    `display` orientation ("radiological" or "raw", see `transforms.planes`), in `windows`
    (default: `case_windows`).

    Windows and landmark placement are computed now, so their errors raise before any slice exists;
    the slices are cut lazily. The label side of a plane's planned slices (boxes, lesion components,
    `transforms.slice_labels`) is derived at once when the plane is reached, and shared by all
    sequences; `measure_several=False` leaves unmeasured the lesion components of a label in several
    pieces, `measurement` names the conventions' lesion measurement (`transforms.lesions.MEASUREMENTS`),
    `with_labels=False` derives nothing (slices for their pixels only).
    """
    windows = case_windows(loaded) if windows is None else windows
    placed = place_measurements(loaded, spacing, display)
    return _cut_slices(
        loaded,
        spacing,
        display,
        windows,
        placed,
        slice_plan(loaded, placed) if plan is None else plan,
        measure_several,
        with_labels,
        measurement,
    )


_NO_LABELS = PackedArray.pack(np.zeros((0, 0), np.uint8))


def _cut_slices(
    loaded: LoadedCase,
    spacing: SpacingMode,
    display: str,
    windows: dict,
    placed: dict,
    plan: dict[str, tuple[int, ...]],
    measure_several: bool = True,
    with_labels: bool = True,
    measurement: str = "pixel_edge",
) -> Iterator[SliceContent]:
    """The slices of `extract_slices`, one at a time (only the current one and its plane's labels are held)."""
    labels = loaded.labels
    for plane, indices in plan.items():
        grid = plane_grid(labels.array.shape, labels.spacing_mm, plane, spacing, display)
        derived = derive_plane(
            labels.array, grid, indices if with_labels else (), loaded.case.lesion_labels, measure_several, measurement
        )
        for index in indices:
            mine = derived.get(index)
            lost = mine.labels_lost if mine is not None else ()
            packed = mine.crop if mine is not None and mine.crop is not None else _NO_LABELS
            for seq in loaded.case.sequences:
                pixels = grid.resample_image(grid.cut(loaded.images[seq.name].array, index))
                yield SliceContent(
                    sequence=seq.name,
                    modality=seq.modality,
                    plane=plane,
                    slice_index=index,
                    pixels=PackedArray.pack(to_uint8(pixels, windows[seq.name])),
                    shape_rows_cols=grid.shape_rows_cols,
                    spacing_mm_row_col=grid.spacing_mm_row_col,
                    square_spacing_mm=grid.square_spacing_mm,
                    window=windows[seq.name],
                    packed_labels=packed,
                    measurements=tuple(placed.get((plane, index), ())),
                    labels_lost=lost,
                    derived=mine,
                )


def lost_labels(source: np.ndarray, resampled: np.ndarray) -> tuple[int, ...]:
    """Labels present before resampling and gone after (possible only when downsampling)."""
    return tuple(sorted(present_labels(source) - present_labels(resampled)))


@dataclasses.dataclass(frozen=True, eq=False)
class SliceRecord:
    """A slice with the case context its pairs need."""

    case: CaseRef
    split: str
    provenance: dict
    content: SliceContent
    pointer: bool = False  # published without pixels (the source may not be redistributed)
    volume_hash: str = ""  # `ids.volume_hash` of the decoded volume of this slice's sequence
