"""A loaded case cut into displayed slices: measurements placed on their planes, the slice plan, each
slice resampled, windowed and encoded with its label side (`SliceContent`, `SliceRecord`: what leaves the
worker step)."""

from __future__ import annotations

import dataclasses
import math
from typing import Iterator, NamedTuple, Optional

import numpy as np

from transforms.caseref import (
    CaseRef,
)
from transforms.errors import PipelineError, Reason
from transforms.intensity import Window, encode_png, to_uint8, window_for
from transforms.landmarks import (
    MeasuredValue,
    Measurement,
)
from transforms.loading import LoadedCase
from transforms.packed import PackedArray
from transforms.planes import SpacingMode, in_plane_axes, labelled_slices, plane_grid, planes_of, target_spacing_mm
from transforms.slice_labels import SliceLabels, derive_plane
from transforms.volume import (
    present_labels,
)


class PlacedLandmark(NamedTuple):
    """A landmark in a slice's displayed pixels (edge frame: pixel (c, r) spans [c, c+1) x [r, r+1))."""

    name: str
    x_px: float
    y_px: float


@dataclasses.dataclass(frozen=True)
class PlacedMeasurement:
    """A measurement with its landmarks placed in the displayed slice it is shown on."""

    measurement: Measurement
    value: MeasuredValue
    landmarks_xy_px: tuple[PlacedLandmark, ...]


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
        shown = tuple(PlacedLandmark(name, *grid.display_xy(ijk[name])) for name in dict.fromkeys(measurement.points))
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
