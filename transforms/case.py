"""A case from reference to slices: load image and mask into one canonical frame, then cut slices.

`CaseRef` is what a source adapter lists (small, picklable); `LoadedCase` holds the decoded
volumes and lives only inside one worker step; `SliceContent` is what leaves that step.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Optional

import numpy as np

from transforms import nifti
from transforms.errors import PipelineError, Reason
from transforms.intensity import Window, encode_png, to_uint8, window_for
from transforms.planes import SpacingMode, display_slice, labelled_slice_indices, plane_grid, planes_of
from transforms.volume import Volume, check_orthonormal, check_same_grid, grid_of, to_canonical


@dataclasses.dataclass(frozen=True)
class SequenceRef:
    """One image series of a case: its name, modality, channel in a 4D file and CT window."""

    name: str
    modality: str
    channel: Optional[int] = None
    ct_window: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class CaseRef:
    """Everything needed to load one case, as listed by a source adapter."""

    dataset: str
    case_id: str
    subject_id: str
    image_uri: str
    mask_uri: str
    sequences: tuple[SequenceRef, ...]
    labels: tuple[tuple[int, str], ...]  # (value, name) of the dataset's label map, background excluded
    lesion_labels: tuple[int, ...] = ()  # labels measured by the tumour/lesion size task
    licence: str = ""
    redistributable: bool = True
    official_split: Optional[str] = None

    @property
    def label_names(self) -> dict[int, str]:
        return dict(self.labels)


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedCase:
    """Decoded case in the canonical RAS+ frame, with the geometry facts kept for provenance."""

    case: CaseRef
    images: dict[str, Volume]  # by sequence name
    labels: Volume
    geometry: dict


@dataclasses.dataclass(frozen=True, eq=False)
class SliceContent:
    """One displayed slice of one sequence: PNG pixels plus its label slice, in the same pixel frame."""

    sequence: str
    modality: str
    plane: str
    slice_index: int  # along the plane's axis of the canonical RAS+ grid
    png: bytes
    shape_rows_cols: tuple[int, int]
    spacing_mm_row_col: tuple[float, float]
    square_spacing_mm: Optional[float]
    window: Window
    labels_2d: np.ndarray


def check_label_values(labels: np.ndarray, known: dict[int, str], uri: str) -> None:
    """Every non-zero value must be in the dataset's label map."""
    present = {int(v) for v in np.unique(labels)} - {0}
    unknown = sorted(present - set(known))
    if unknown:
        raise PipelineError(
            Reason.UNKNOWN_LABEL,
            f"label values {unknown} are not in the dataset's label map {sorted(known)}",
            uri,
        )


def load_nifti_case(case: CaseRef, image_path: str, mask_path: str) -> LoadedCase:
    """Read a NIfTI image (one or more channels) and its label map into one canonical frame.

    Checks, in order: readable files, orthonormal directions, mask on the image grid,
    integer labels from the label map. Raises `PipelineError` with the reason on failure.
    """
    image_file = nifti.load(image_path, case.image_uri)
    image_affine = nifti.resolve_affine(image_file.header)
    check_orthonormal(image_affine.affine_ras)
    mask_file = nifti.load(mask_path, case.mask_uri)
    mask = nifti.to_volume(nifti.read_labels(mask_file, case.mask_uri), nifti.resolve_affine(mask_file.header))
    raw_grid = grid_of(nifti.spatial_shape(image_file.shape), image_affine.affine_ras)
    check_same_grid(raw_grid, mask, case.mask_uri)
    check_label_values(mask.array, case.label_names, case.mask_uri)
    images = {
        seq.name: to_canonical(Volume(nifti.read_channel(image_file, seq.channel, case.image_uri), image_affine.affine_ras))
        for seq in case.sequences
    }
    geometry = {
        "orig_orientation": raw_grid.orientation_code,
        "obliquity_deg": raw_grid.obliquity_deg,
        "orig_spacing_mm": [float(s) for s in raw_grid.spacing_mm],
        "orig_shape": [int(n) for n in raw_grid.array.shape],
        "affine_source": image_affine.source,
        "sform_qform_mismatch": image_affine.sform_qform_mismatch,
    }
    return LoadedCase(case, images, to_canonical(mask), geometry)


def extract_slices(loaded: LoadedCase, spacing: SpacingMode) -> Iterator[SliceContent]:
    """Every labelled slice of every plane and sequence, resampled to square pixels and encoded.

    Slices without any label yield nothing (no detection target). The label slice of a
    (plane, index) is computed once and shared by all sequences.
    """
    labels = loaded.labels
    windows = {
        seq.name: window_for(seq.modality, seq.ct_window, loaded.images[seq.name].array)
        for seq in loaded.case.sequences
    }
    for plane in planes_of(labels.array.shape):
        grid = plane_grid(labels.array.shape, labels.spacing_mm, plane, spacing)
        for index in labelled_slice_indices(labels.array, plane):
            labels_2d = grid.resample_labels(display_slice(labels.array, plane, int(index)))
            for seq in loaded.case.sequences:
                pixels = grid.resample_image(display_slice(loaded.images[seq.name].array, plane, int(index)))
                yield SliceContent(
                    sequence=seq.name,
                    modality=seq.modality,
                    plane=plane,
                    slice_index=int(index),
                    png=encode_png(to_uint8(pixels, windows[seq.name])),
                    shape_rows_cols=grid.shape_rows_cols,
                    spacing_mm_row_col=grid.spacing_mm_row_col,
                    square_spacing_mm=grid.square_spacing_mm,
                    window=windows[seq.name],
                    labels_2d=labels_2d,
                )


@dataclasses.dataclass(frozen=True, eq=False)
class SliceRecord:
    """A slice with the case context its pairs need; the unit that crosses the slice shuffle."""

    case: CaseRef
    split: str
    provenance: dict
    content: SliceContent
