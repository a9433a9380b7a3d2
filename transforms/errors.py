"""The one list of reasons an input or a pair is put aside, and the error that carries it.

Quarantine rows and metric counters both use `Reason` values, so a count in `stats.json`
can always be traced to rows of the quarantine table.
"""

from __future__ import annotations

import enum


class Reason(str, enum.Enum):
    """Why a case, slice or pair was quarantined. Values are stable strings (part of the output)."""

    MISSING_FILE = "missing_file"
    UNREADABLE = "unreadable"
    TRUNCATED_GZIP = "truncated_gzip"
    TRUNCATED_FILE = "truncated_file"  # fewer bytes than the header declares
    NOT_GZIP = "not_gzip"
    TOO_LARGE = "too_large"
    TIMEOUT = "timeout"  # reading the case took longer than its wall-time limit
    UNSUPPORTED_PIXEL_TYPE = "unsupported_pixel_type"  # complex, RGB and other non-scalar voxels
    NONFINITE_IMAGE = "nonfinite_image"  # no finite voxel (all NaN/inf, or scaled past float32)
    IMPLAUSIBLE_GEOMETRY = "implausible_geometry"  # voxel sizes or output slices outside physical sense
    TOO_MANY_COMPONENTS = "too_many_components"  # a label of a slice in more pieces than a pair budget allows
    BAD_SHAPE = "bad_shape"
    BAD_AFFINE = "bad_affine"
    NON_ORTHONORMAL = "non_orthonormal"
    MASK_GRID_MISMATCH = "mask_grid_mismatch"
    DICOM_MISSING_TAGS = "dicom_missing_tags"
    DUPLICATE_SLICE_POSITION = "duplicate_slice_position"
    UNEVEN_SPACING = "uneven_spacing"
    MULTIPLE_SERIES = "multiple_series"
    NONINT_LABELS = "nonint_labels"
    UNKNOWN_LABEL = "unknown_label"
    OVERLAPPING_SEGMENTS = "overlapping_segments"
    BAD_LANDMARKS = "bad_landmarks"
    BAD_LISTING = "bad_listing"
    UNSAFE_PATH = "unsafe_path"
    INPUT_CHANGED = "input_changed"  # an input's bytes changed between planning a case and cutting it
    EMPTY_CASE = "empty_case"
    NEGATIVE_CASE = "negative_case"  # an empty mask where the source says negatives occur (not a failure)
    LABEL_LOST_IN_RESAMPLING = "label_lost_in_resampling"
    FIT_TOO_FEW_POINTS = "fit_too_few_points"
    TOO_FEW_PIXELS = "too_few_pixels"
    FIT_DEGENERATE = "fit_degenerate"
    FIT_MINOR_BELOW_PIXEL = "fit_minor_below_pixel"
    FIT_MAJOR_EXCEEDS_BOX = "fit_major_exceeds_box"
    BELOW_SIZE_FLOOR = "below_size_floor"
    # Dropped by `--conventions medvision`'s single-instance filter (a selection rule, not a failure).
    NOT_SINGLE_INSTANCE = "not_single_instance"
    INVALID_PAIR = "invalid_pair"
    UNEXPECTED_ERROR = "unexpected_error"


class PipelineError(Exception):
    """An input that cannot be turned into pairs, with the reason code and where it happened.

    `message` says what was wrong and, where possible, how to fix it; `uri` names the input.
    """

    def __init__(self, reason: Reason, message: str, uri: str = ""):
        super().__init__(reason, message, uri)
        self.reason = Reason(reason)
        self.message = message
        self.uri = uri

    def __str__(self) -> str:
        where = f" [{self.uri}]" if self.uri else ""
        return f"{self.reason.value}: {self.message}{where}"
