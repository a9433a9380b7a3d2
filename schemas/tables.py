"""The one declaration of each output table, with units and frames in field metadata.

Files hold every column except the hive partition keys (`dataset`, `task`, `split`), which
live in the path only. Changing a schema means bumping `SCHEMA_VERSION` and regenerating
the snapshot in `schemas/snapshots/` (see tests/schemas/test_schemas.py).
"""

from __future__ import annotations

import json

import pyarrow as pa

SCHEMA_VERSION = "3"
PARTITION_KEYS = ("dataset", "task", "split")
TASKS = ("detection", "tumor_lesion_size", "angle_distance")


def _field(name: str, type_: pa.DataType, doc: str, unit: str = "", nullable: bool = True) -> pa.Field:
    metadata = {"doc": doc}
    if unit:
        metadata["unit"] = unit
    return pa.field(name, type_, nullable=nullable, metadata=metadata)


# Hugging Face `Image` layout: PNG bytes plus an optional path.
IMAGE_TYPE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])

WINDOW_TYPE = pa.struct(
    [
        _field("name", pa.string(), "window rule: a CT anatomy window or the volume percentiles used"),
        _field("low", pa.float64(), "input value mapped to 0", "image units (HU for CT)"),
        _field("high", pa.float64(), "input value mapped to 255", "image units (HU for CT)"),
    ]
)

PROVENANCE_TYPE = pa.struct(
    [
        _field("dataset_version", pa.string(), "version of the source dataset, when the adapter knows it"),
        _field("licence", pa.string(), "SPDX id of the source dataset's licence"),
        _field("redistributable", pa.bool_(), "whether the source's pixels may be republished"),
        _field("source_uri", pa.string(), "image file read"),
        _field("source_sha256", pa.string(), "sha256 of the image file's bytes"),
        _field("mask_uri", pa.string(), "label map file read"),
        _field("mask_sha256", pa.string(), "sha256 of the label map file's bytes"),
        _field("landmarks_uri", pa.string(), "landmark file read"),
        _field("landmarks_sha256", pa.string(), "sha256 of the landmark file's bytes"),
        _field("reader", pa.string(), "reader library and version"),
        _field("orig_orientation", pa.string(), "axis code of the stored array, e.g. LPS"),
        _field("obliquity_deg", pa.float64(), "largest angle between a stored axis and its world axis", "deg"),
        _field("orig_spacing_mm", pa.list_(pa.float64()), "stored voxel size along the stored axes i, j, k", "mm"),
        _field("orig_shape", pa.list_(pa.int32()), "stored array size along i, j, k", "voxels"),
        _field("affine_source", pa.string(), "header form the affine came from: sform, qform or pixdim"),
        _field("sform_qform_mismatch", pa.bool_(), "both forms set and disagreeing beyond 1e-3"),
        _field(
            "uneven_slice_spacing",
            pa.bool_(),
            "DICOM slices were unevenly spaced and linearly resampled to the median gap",
        ),
        _field(
            "mask_resampled",
            pa.bool_(),
            "the mask lived on another grid and was placed on the image grid by "
            "nearest neighbour (only for sources that declare it)",
        ),
        _field("resampling", pa.string(), "spacing mode: finest, native or a spacing in mm"),
        _field(
            "conventions",
            pa.string(),
            "ground-truth conventions (--conventions): default (radiological display, "
            "every component) or medvision (the MedVision benchmark's: native grid, raw RAS+ array display, "
            "single-instance pairs only, box_medvision_rel filled); see README",
        ),
        _field(
            "prompt_style",
            pa.string(),
            "template set of the prompt and answer columns (--prompt-style): default "
            "(our pixel-edge frame stated in the prompt) or medvision (the MedVision benchmark's templates); "
            "see README",
        ),
        _field("pipeline_version", pa.string(), "medvision-pipeline version"),
        _field("params_hash", pa.string(), "hash of the parameters that shape the output"),
        _field("schema_version", pa.string(), "version of this schema"),
    ]
)

COMMON_FIELDS = [
    _field("sample_id", pa.string(), "stable unique id of the pair", nullable=False),
    _field("case_id", pa.string(), "case within the dataset", nullable=False),
    _field("subject_id", pa.string(), "patient-level id; splits are made per subject", nullable=False),
    _field("sequence", pa.string(), "image series / channel of the case, e.g. CT, T1w"),
    _field("modality", pa.string(), "imaging modality of the sequence"),
    _field(
        "image", IMAGE_TYPE, "8-bit PNG of the displayed slice (Hugging Face Image layout); null bytes in pointer mode"
    ),
    _field(
        "image_mode",
        pa.string(),
        "pixels: the PNG is embedded; pointer: a --publish row of a source whose "
        "pixels may not be republished (rebuild from provenance.source_uri/source_sha256 and the slice spec)",
    ),
    _field(
        "volume_hash",
        pa.string(),
        "content hash of the decoded image volume (canonical voxels and geometry "
        "to 0.01 mm): equal across datasets that ship the same scan, whose subjects then share a split",
    ),
    _field("plane", pa.string(), "axial | coronal | sagittal"),
    _field("slice_index", pa.int32(), "index along the plane normal in the canonical RAS+ grid", "voxels"),
    _field("image_width_px", pa.int32(), "displayed image width (columns)", "px"),
    _field("image_height_px", pa.int32(), "displayed image height (rows)", "px"),
    _field("pixel_spacing_mm", pa.float64(), "side of the square pixel; null when pixels are not square", "mm"),
    _field("pixel_spacing_mm_row_col", pa.list_(pa.float64()), "pixel size along rows (y) and columns (x)", "mm"),
    _field("intensity_window", WINDOW_TYPE, "how voxel values were mapped to 8 bits"),
    _field("provenance", PROVENANCE_TYPE, "where the pair came from and how it was made (geometry allowlist only)"),
    _field(
        "prompt",
        pa.string(),
        "question for a vision-language model: the task, the structure or measurement, the "
        "image size, the pixel spacing (size and angle/distance tasks) and the answer format; "
        "template set in provenance.prompt_style",
        nullable=False,
    ),
    _field("answer", pa.string(), "the ground truth written in the prompt's answer format", nullable=False),
]

DETECTION_FIELDS = [
    _field("label", pa.int32(), "label value in the source label map"),
    _field("label_name", pa.string(), "label name from the dataset's label map"),
    _field(
        "box_xyxy_px",
        pa.list_(pa.float64()),
        "[x0, y0, x1, y1] of the component: pixel edges, end-exclusive, origin top-left, x = column",
        "px",
    ),
    _field("box_xyxy_norm", pa.list_(pa.float64()), "box_xyxy_px divided by image width (x) and height (y)", "1"),
    _field("box_size_mm", pa.list_(pa.float64()), "[width, height] of the box", "mm"),
    _field("area_px", pa.int64(), "pixels in the component", "px"),
    _field("component_index", pa.int32(), "component of this label in this slice, raster order, 0-based"),
    _field("n_components", pa.int32(), "connected components (4-connectivity) of this label in this slice"),
    _field("single_instance", pa.bool_(), "one component and both box sides >= 10 px (benchmark filter)"),
    _field(
        "box_medvision_rel",
        pa.list_(pa.float64()),
        "MedVision's benchmark box target [x_min, y_min, x_max, y_max]: relative to width (x) and height (y), "
        "origin at the image's lower-left corner, from inclusive pixel indices (1 px short of the far edges: "
        "x_max = (x1 - 1) / W, y_min = (H - (y1 - 1)) / H); null unless provenance.conventions = medvision",
        "1",
    ),
]

POINT = pa.list_(pa.float64())  # [x, y] in displayed pixels, edge frame
SEGMENT = pa.list_(POINT)  # [[x0, y0], [x1, y1]]
EDGE_FRAME = "displayed px: origin at the top-left image corner, pixel (c, r) spans [c, c+1) x [r, r+1)"

TUMOR_LESION_SIZE_FIELDS = [
    _field("label", pa.int32(), "target label value in the source label map"),
    _field("label_name", pa.string(), "target label name"),
    _field("major_axis_mm", pa.float64(), "major axis of the ellipse fitted to the outer contour in mm", "mm"),
    _field("minor_axis_mm", pa.float64(), "minor axis of that ellipse", "mm"),
    _field("ellipse_center_xy_px", POINT, f"ellipse centre [x, y]; {EDGE_FRAME}", "px"),
    _field(
        "ellipse_angle_deg",
        pa.float64(),
        "major-axis angle in the mm frame, from image +x towards +y (down), in [0, 180)",
        "deg",
    ),
    _field("major_axis_endpoints_xy_px", SEGMENT, f"major-axis endpoints [[x, y], [x, y]]; {EDGE_FRAME}", "px"),
    _field("minor_axis_endpoints_xy_px", SEGMENT, f"minor-axis endpoints; {EDGE_FRAME}", "px"),
    _field("longest_diameter_mm", pa.float64(), "maximal caliper over boundary points (RECIST long axis)", "mm"),
    _field(
        "perpendicular_diameter_mm",
        pa.float64(),
        "longest chord inside the component perpendicular to the longest diameter",
        "mm",
    ),
    _field("longest_diameter_endpoints_xy_px", SEGMENT, f"endpoints of the longest diameter; {EDGE_FRAME}", "px"),
    _field(
        "perpendicular_diameter_endpoints_xy_px",
        SEGMENT,
        f"endpoints of the perpendicular diameter; {EDGE_FRAME}",
        "px",
    ),
    _field("area_mm2", pa.float64(), "component area", "mm2"),
    _field("component_index", pa.int32(), "component of this label in this slice, raster order, 0-based"),
    _field("n_components", pa.int32(), "components of this label in this slice, counted before any guard"),
]

LANDMARK_TYPE = pa.struct(
    [
        _field("name", pa.string(), "landmark id, e.g. P1"),
        _field("x", pa.float64(), "column position; " + EDGE_FRAME, "px"),
        _field("y", pa.float64(), "row position; " + EDGE_FRAME, "px"),
    ]
)

ANGLE_DISTANCE_FIELDS = [
    _field("metric_name", pa.string(), "measurement key, e.g. L-1-10 or A-L_2_5-L_2_6"),
    _field("metric_description", pa.string(), "what is measured, e.g. the clinical name"),
    _field("metric_type", pa.string(), "angle | distance"),
    _field(
        "value",
        pa.float64(),
        "distance in mm (3D, world space) or angle in degrees (unsigned acute, [0, 90], as MedVision)",
        "mm|deg",
    ),
    _field("unit", pa.string(), "mm | deg"),
    _field(
        "directed_angle_deg",
        pa.float64(),
        "angle between the directed lines a->b and c->d, [0, 180]; null for distances",
        "deg",
    ),
    _field(
        "landmarks_xy_px",
        pa.list_(LANDMARK_TYPE),
        "the measurement's landmarks projected into this slice (a 3D point may lie off the slice)",
    ),
]

QUARANTINE_FIELDS = [
    _field("dataset", pa.string(), "source dataset"),
    _field("case_id", pa.string(), "case within the dataset"),
    _field("source_uri", pa.string(), "input that failed"),
    _field("stage", pa.string(), "pipeline stage that put it aside"),
    _field("reason", pa.string(), "reason code (transforms.errors.Reason)"),
    _field("message", pa.string(), "what was wrong and where"),
    _field("sample_id", pa.string(), "the pair concerned, for pair-level failures"),
    _field("pipeline_version", pa.string(), "medvision-pipeline version"),
]

# Hugging Face `datasets` reads this to decode the image column into PIL images. It takes a
# declared feature per column, where the feature's Arrow type equals the file's (so IMAGE_TYPE must
# stay the `Image` layout, nullable), and the other columns' types from the Arrow schema. Declaring
# only `image` keeps this readable by datasets 3 and by 4+, whose list feature names differ.
HF_FEATURES_METADATA = {b"huggingface": json.dumps({"info": {"features": {"image": {"_type": "Image"}}}}).encode()}


def _schema(fields: list[pa.Field], *, images: bool) -> pa.Schema:
    metadata = {b"medvision_schema_version": SCHEMA_VERSION.encode()}
    if images:
        metadata.update(HF_FEATURES_METADATA)
    return pa.schema(fields, metadata=metadata)


SCHEMAS = {
    "detection": _schema(COMMON_FIELDS + DETECTION_FIELDS, images=True),
    "tumor_lesion_size": _schema(COMMON_FIELDS + TUMOR_LESION_SIZE_FIELDS, images=True),
    "angle_distance": _schema(COMMON_FIELDS + ANGLE_DISTANCE_FIELDS, images=True),
    "quarantine": _schema(QUARANTINE_FIELDS, images=False),
}


def schema_for(table: str) -> pa.Schema:
    """The file schema of a table ('detection', 'quarantine', ...)."""
    try:
        return SCHEMAS[table]
    except KeyError:
        raise KeyError(f"no schema for table {table!r}; known: {sorted(SCHEMAS)}") from None


def describe(schema: pa.Schema) -> str:
    """A reviewable text form of a schema: one line per field (nested fields indented), with units."""
    lines = [f"schema_version: {SCHEMA_VERSION}"]

    def visit(field: pa.Field, depth: int) -> None:
        meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
        unit = f" [{meta['unit']}]" if "unit" in meta else ""
        nullable = "" if field.nullable else " not null"
        type_name = "struct" if pa.types.is_struct(field.type) else str(field.type)
        lines.append(f"{'  ' * depth}{field.name}: {type_name}{nullable}{unit}")
        if pa.types.is_struct(field.type):
            for child in field.type:
                visit(child, depth + 1)

    for field in schema:
        visit(field, 0)
    return "\n".join(lines) + "\n"


def column_paths(fields, prefix: str = "") -> list[str]:
    """Parquet leaf column paths of Arrow fields ("image.bytes", "box_xyxy_px.list.element", ...)."""
    paths = []
    for field in fields:
        name = prefix + field.name
        if pa.types.is_struct(field.type):
            paths += column_paths(list(field.type), name + ".")
        elif pa.types.is_list(field.type):
            paths += column_paths([field.type.value_field.with_name("element")], name + ".list.")
        else:
            paths.append(name)
    return paths
