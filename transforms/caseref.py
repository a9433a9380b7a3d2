"""What a source adapter lists about a case, and how strictly it is read: small, picklable declarations.

Nothing here decodes or imports an imaging library, so listing sources and parsing options stay cheap;
`transforms.case` does the reading.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, NamedTuple, Optional

if TYPE_CHECKING:
    from transforms.landmarks import LandmarkSpace, Measurement


@dataclasses.dataclass(frozen=True)
class PlanarGeometry:
    """Anatomy of a 2D raster (e.g. an X-ray): where columns, rows and the viewing normal point.

    `axes` gives three letters for (columns, rows, normal), e.g. "AIR": columns run anterior,
    rows run inferior (top of the image is superior), seen from the patient's right.
    """

    axes: str
    spacing_mm_col_row: tuple[float, float]


@dataclasses.dataclass(frozen=True)
class SequenceRef:
    """One image series of a case: its name, modality, channel in a 4D file and CT window."""

    name: str
    modality: str
    channel: Optional[int] = None
    ct_window: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class LandmarkSpec:
    """A case's landmark file, how to read it, and the measurements made from it.

    reader "xy_text": `x,y` lines naming `names` in order, in voxels of the (2D) image;
    reader "label_pairs": a NIfTI mask whose label L holds two voxels, named by `pairs`
    entries (L, first, second, axis): `first` is the voxel with the larger index on `axis`.
    """

    uri: str
    reader: str
    space: LandmarkSpace
    measurements: tuple[Measurement, ...]
    names: tuple[str, ...] = ()
    pairs: tuple[LandmarkPair, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "pairs", tuple(LandmarkPair(*pair) for pair in self.pairs))


class LabelName(NamedTuple):
    """One value of a dataset's label map and its name."""

    value: int
    name: str


class ListingError(NamedTuple):
    """Why a source's listing already found a case bad (a `Reason` value and a message)."""

    reason: str
    message: str


class MaskPart(NamedTuple):
    """A per-structure binary mask merged into the label map as `label`."""

    label: int
    uri: str


class LandmarkPair(NamedTuple):
    """Label `label` of a landmark mask holds two voxels: `first` (the larger index on `axis`) and `second`."""

    label: int
    first: str
    second: str
    axis: int


@dataclasses.dataclass(frozen=True)
class RealignSpec:
    """Resample the image onto `reference_uri`'s grid through the ITK transform at `transform_uri`."""

    reference_uri: str
    transform_uri: str


@dataclasses.dataclass(frozen=True)
class CaseRef:
    """Everything needed to load one case, as listed by a source adapter."""

    dataset: str
    case_id: str
    subject_id: str
    image_uri: str
    mask_uri: str  # "" when the case has no label map
    sequences: tuple[SequenceRef, ...]
    labels: tuple[LabelName, ...]  # the dataset's label map, background excluded
    lesion_labels: tuple[int, ...] = ()  # labels measured by the tumour/lesion size task
    licence: str = ""
    redistributable: bool = True
    dataset_version: Optional[str] = None
    official_split: Optional[str] = None
    listing_error: Optional[ListingError] = None  # when the listing already found it bad
    planar: Optional[PlanarGeometry] = None  # set for 2D rasters (BMP, PNG); NIfTI otherwise
    landmarks: Optional[LandmarkSpec] = None
    realign: Optional[RealignSpec] = None
    mask_parts: tuple[MaskPart, ...] = ()  # per-structure binary masks, merged
    mask_placement: str = "exact"  # "nearest": a mask on another grid is resampled onto the image grid
    negatives_expected: bool = False  # an all-empty mask is a negative control, not a defect
    planes: tuple[str, ...] = ()  # planes to cut; () = every plane the volume has
    source_root: str = ""  # the root the case was listed under: nothing outside it is read ("" confines nothing)

    def __post_init__(self):
        # adapters may list plain pairs; every case carries the named ones
        object.__setattr__(self, "labels", tuple(LabelName(*label) for label in self.labels))
        object.__setattr__(self, "mask_parts", tuple(MaskPart(*part) for part in self.mask_parts))
        if self.listing_error is not None:
            object.__setattr__(self, "listing_error", ListingError(*self.listing_error))

    @property
    def label_names(self) -> dict[int, str]:
        return dict(self.labels)

    def input_uris(self) -> list[str]:
        """Every object the case reads."""
        uris = [self.image_uri, self.mask_uri, *(uri for _, uri in self.mask_parts)]
        if self.landmarks:
            uris.append(self.landmarks.uri)
        if self.realign:
            uris += [self.realign.reference_uri, self.realign.transform_uri]
        return [uri for uri in uris if uri]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReadPolicy:
    """How strict reading is: the memory budget, and whether uneven DICOM slices are resampled (flagged)."""

    max_voxels: Optional[int] = None
    allow_uneven_slices: bool = False
    max_read_seconds: Optional[float] = None  # wall time to localize and decode a case (`transforms.deadline`)


# Peak bytes that decoding and cutting a case hold per image voxel (measured: benchmarks/memory.py and
# README): the stored voxels (2 bytes for int16 CT), their float32 copy (4), and working copies of
# about that size (window percentiles, the label map). A budget in bytes is this many times a budget
# in voxels, so a file of a few KB that declares a huge volume is refused before it is inflated.
PEAK_BYTES_PER_VOXEL = 10


def label_name_key(name: str) -> str:
    """Names compared case- and separator-insensitively ('Liver', 'liver', 'left-kidney' ~ 'Left Kidney')."""
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())
