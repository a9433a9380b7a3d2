"""Row builders: the one place where numpy and domain values become output rows (plain Python)."""

from __future__ import annotations

import dataclasses

from schemas.prompts import prompt_and_answer
from schemas.tables import SCHEMA_VERSION
from transforms import ids
from transforms.boxes import MAX_COMPONENTS_PER_LABEL, ComponentBox
from transforms.caseref import CaseRef
from transforms.errors import Reason
from transforms.lesions import LesionSize, Rejection
from transforms.loading import ReadGeometry
from transforms.medvision import CONVENTIONS, Conventions, benchmark_box_target
from transforms.slice_labels import SliceLabels, derive_slice
from transforms.slicing import PlacedMeasurement, SliceRecord


def provenance(
    case: CaseRef,
    geometry: ReadGeometry,
    sha256_by_uri: dict[str, str],
    resampling: str,
    pipeline_version: str,
    params_hash: str,
    conventions: str = "default",
    prompt_style: str = "default",
) -> dict:
    """The provenance struct of every pair of a case: an allowlist of geometry fields, no header text."""
    landmarks_uri = case.landmarks.uri if case.landmarks else None
    landmarks_sha256 = sha256_by_uri.get(landmarks_uri) if landmarks_uri is not None else None
    return {
        "dataset_version": case.dataset_version,
        "licence": case.licence,
        "redistributable": case.redistributable,
        "source_uri": case.image_uri,
        "source_sha256": sha256_by_uri.get(case.image_uri),
        "mask_uri": case.mask_uri or None,
        "mask_sha256": sha256_by_uri.get(case.mask_uri),
        "landmarks_uri": landmarks_uri,
        "landmarks_sha256": landmarks_sha256,
        "reader": geometry.reader,
        "orig_orientation": geometry.orig_orientation,
        "obliquity_deg": float(geometry.obliquity_deg),
        "orig_spacing_mm": [float(v) for v in geometry.orig_spacing_mm],
        "orig_shape": [int(v) for v in geometry.orig_shape],
        "affine_source": geometry.affine_source,
        "sform_qform_mismatch": geometry.sform_qform_mismatch,
        "uneven_slice_spacing": geometry.uneven_slice_spacing,
        "mask_resampled": geometry.mask_resampled,
        "resampling": resampling,
        "conventions": conventions,
        "prompt_style": prompt_style,
        "pipeline_version": pipeline_version,
        "params_hash": params_hash,
        "schema_version": SCHEMA_VERSION,
    }


def pair_sample_id(record: SliceRecord, task: str, target: str) -> str:
    case, content = record.case, record.content
    return ids.sample_id(
        case.dataset,
        case.case_id,
        content.sequence,
        content.plane,
        content.slice_index,
        task,
        target,
        record.provenance["params_hash"],
    )


def _common(record: SliceRecord, task: str, target: str) -> dict:
    case, content = record.case, record.content
    rows_px, cols_px = content.shape_rows_cols
    return {
        "dataset": case.dataset,
        "task": task,
        "split": record.split,
        "sample_id": pair_sample_id(record, task, target),
        "case_id": case.case_id,
        "subject_id": case.subject_id,
        "sequence": content.sequence,
        "modality": content.modality,
        "image": {"bytes": None if record.pointer else content.png, "path": None},
        "image_mode": "pointer" if record.pointer else "pixels",
        "volume_hash": record.volume_hash,
        "plane": content.plane,
        "slice_index": int(content.slice_index),
        "image_width_px": int(cols_px),
        "image_height_px": int(rows_px),
        "pixel_spacing_mm": None if content.square_spacing_mm is None else float(content.square_spacing_mm),
        "pixel_spacing_mm_row_col": [float(v) for v in content.spacing_mm_row_col],
        "intensity_window": {
            "name": content.window.name,
            "low": float(content.window.low),
            "high": float(content.window.high),
        },
        "provenance": record.provenance,
    }


def with_text(row: dict, record: SliceRecord, point_names: tuple[str, ...] = ()) -> dict:
    """The row with its `prompt` and `answer`, in the prompt style recorded in its provenance."""
    row.update(prompt_and_answer(row, record.provenance["prompt_style"], point_names))
    return row


def conventions_of(record: SliceRecord) -> Conventions:
    """The ground-truth conventions the slice was cut with (recorded in its provenance)."""
    return CONVENTIONS[record.provenance["conventions"]]


def detection_target(box: ComponentBox) -> str:
    """The target part of a detection pair's sample_id: the label and the component's raster index."""
    return f"label={box.label}/component={box.component_index}"


def detection_row(record: SliceRecord, box: ComponentBox) -> dict:
    """One detection pair: a component's box in displayed pixels, its size in mm and instance flags;
    MedVision's box target too under `--conventions medvision`."""
    content = record.content
    rows_px, cols_px = content.shape_rows_cols
    row = _common(record, "detection", detection_target(box))
    row.update(
        {
            "label": box.label,
            "label_name": record.case.label_names.get(box.label),
            "box_xyxy_px": [float(v) for v in box.box_xyxy_px],
            "box_xyxy_norm": [float(v) for v in box.normalised_xyxy(content.shape_rows_cols)],
            "box_size_mm": [float(v) for v in box.size_mm(content.spacing_mm_row_col)],
            "area_px": box.area_px,
            "component_index": box.component_index,
            "n_components": box.n_components,
            "single_instance": box.single_instance,
            "box_medvision_rel": benchmark_box_target(box.box_xyxy_px, cols_px, rows_px)
            if conventions_of(record).benchmark_box_target
            else None,
        }
    )
    return with_text(row, record)


def too_many_components(label: int, count: int) -> Rejection:
    return Rejection(
        Reason.TOO_MANY_COMPONENTS,
        f"label {label} is in {count} pieces in this slice, over "
        f"{MAX_COMPONENTS_PER_LABEL}: its pairs of this slice are refused together",
    )


def slice_labels(record: SliceRecord) -> SliceLabels:
    """The boxes and lesion components of a slice: derived when it was cut, else from its label slice now."""
    content = record.content
    if content.derived is not None:
        return content.derived
    conventions = conventions_of(record)
    return derive_slice(
        content.labels_2d,
        content.spacing_mm_row_col,
        record.case.lesion_labels,
        measure_several=not conventions.single_instance_only,
        measurement=conventions.lesion_measurement,
    )


def detection_pairs(record: SliceRecord) -> tuple[list[dict], list[tuple[str, Rejection]]]:
    """Detection pairs of a slice, and (sample_id, rejection) for the boxes the conventions'
    single-instance filter drops (none under the default conventions)."""
    conventions, pairs, dropped = conventions_of(record), [], []
    for box in slice_labels(record).boxes:
        if box.n_components > MAX_COMPONENTS_PER_LABEL:
            if box.component_index == 0:  # one refusal for the label's pieces in this slice
                dropped.append(
                    (
                        pair_sample_id(record, "detection", detection_target(box)),
                        too_many_components(box.label, box.n_components),
                    )
                )
        elif conventions.single_instance_only and not box.single_instance:
            detail = (
                f"label {box.label}: {box.n_components} component(s), box {box.width_px}x{box.height_px} px; "
                "MedVision keeps one component with both sides >= 10 px"
            )
            dropped.append(
                (
                    pair_sample_id(record, "detection", detection_target(box)),
                    Rejection(Reason.NOT_SINGLE_INSTANCE, detail),
                )
            )
        else:
            pairs.append(detection_row(record, box))
    return pairs, dropped


def detection_rows(record: SliceRecord) -> list[dict]:
    """Every detection pair of a slice that the conventions keep."""
    return detection_pairs(record)[0]


def _points(points) -> list[list[float]]:
    return [[float(x), float(y)] for x, y in points]


def lesion_size_row(record: SliceRecord, label: int, component_index: int, n_components: int, size: LesionSize) -> dict:
    """One tumour/lesion size pair: ellipse and RECIST diameters of a target-label component."""
    row = _common(record, "tumor_lesion_size", lesion_target(label, component_index))
    row.update(
        {
            "label": label,
            "label_name": record.case.label_names.get(label),
            "major_axis_mm": size.major_axis_mm,
            "minor_axis_mm": size.minor_axis_mm,
            "ellipse_center_xy_px": [float(v) for v in size.ellipse_center_xy_px],
            "ellipse_angle_deg": size.ellipse_angle_deg,
            "major_axis_endpoints_xy_px": _points(size.major_axis_endpoints_xy_px),
            "minor_axis_endpoints_xy_px": _points(size.minor_axis_endpoints_xy_px),
            "longest_diameter_mm": size.longest_diameter_mm,
            "perpendicular_diameter_mm": size.perpendicular_diameter_mm,
            "longest_diameter_endpoints_xy_px": _points(size.longest_diameter_endpoints_xy_px),
            "perpendicular_diameter_endpoints_xy_px": _points(size.perpendicular_diameter_endpoints_xy_px),
            "area_mm2": size.area_mm2,
            "component_index": component_index,
            "n_components": n_components,
        }
    )
    return with_text(row, record)


def lesion_target(label: int, component_index: int) -> str:
    return f"label={label}/component={component_index}"


def lesion_rows(record: SliceRecord) -> tuple[list[dict], list[tuple[str, Rejection]]]:
    """Tumour/lesion size pairs of a slice, and (sample_id, rejection) for components refused by a guard
    or by the conventions' single-instance filter."""
    conventions, pairs, rejected = conventions_of(record), [], []
    for entry in slice_labels(record).lesions:
        label, index, count, size = entry.label, entry.component_index, entry.n_components, entry.size
        if count > MAX_COMPONENTS_PER_LABEL:
            size = too_many_components(label, count)
        elif conventions.single_instance_only and count > 1:
            size = Rejection(
                Reason.NOT_SINGLE_INSTANCE,
                f"label {label} has {count} components in the slice; MedVision keeps slices with one",
            )
        elif size is None:
            raise ValueError(
                f"label {label} component {index} of {count} was cut without its measurement; "
                "cut the slices with measure_several=True for these conventions"
            )
        if isinstance(size, Rejection):
            rejected.append((pair_sample_id(record, "tumor_lesion_size", lesion_target(label, index)), size))
        else:
            pairs.append(lesion_size_row(record, label, index, count, size))
    return pairs, rejected


def measurement_row(record: SliceRecord, placed: PlacedMeasurement) -> dict:
    """One angle/distance pair: the measured value and its landmarks in this slice's pixels."""
    measurement, value = placed.measurement, placed.value
    row = _common(record, "angle_distance", f"measurement={measurement.name}")
    row.update(
        {
            "metric_name": measurement.name,
            "metric_description": measurement.description or None,
            "metric_type": measurement.kind,
            "value": float(value.value),
            "unit": value.unit,
            "directed_angle_deg": None if value.directed_angle_deg is None else float(value.directed_angle_deg),
            "landmarks_xy_px": [{"name": name, "x": float(x), "y": float(y)} for name, x, y in placed.landmarks_xy_px],
        }
    )
    return with_text(row, record, measurement.points)


def measurement_rows(record: SliceRecord) -> list[dict]:
    """Every angle/distance pair shown on a slice."""
    return [measurement_row(record, placed) for placed in record.content.measurements]


def quarantine_row(
    dataset: str,
    case_id: str,
    source_uri: str,
    stage: str,
    reason: str,
    message: str,
    pipeline_version: str,
    sample_id: str | None = None,
) -> dict:
    """A quarantined input or pair: where it came from, which stage refused it and why."""
    return {
        "dataset": dataset,
        "case_id": case_id,
        "source_uri": source_uri,
        "stage": stage,
        "reason": reason,
        "message": message,
        "sample_id": sample_id,
        "pipeline_version": pipeline_version,
    }


@dataclasses.dataclass(frozen=True)
class RowBundle:
    """Rows that travel together, with the image they share held once: a slice's pairs of one task (each
    shows the slice's PNG), or one quarantine row. Bundles, not rows, cross the runner's shuffles and
    buffers, so a slice's PNG is serialised once instead of once per pair (2.0-2.2 times on CT)."""

    rows: tuple[dict, ...]  # without "image"
    image: dict | None = None  # the "image" value of every row; None: the rows have no image column

    @classmethod
    def of(cls, rows: list[dict]) -> RowBundle:
        if not rows or "image" not in rows[0]:
            return cls(tuple(rows))
        image = rows[0]["image"]
        if any(row.get("image") != image for row in rows):
            raise ValueError("the rows of a bundle must share one image")
        return cls(tuple({key: value for key, value in row.items() if key != "image"} for row in rows), image)

    def full_rows(self) -> list[dict]:
        """The rows with their image."""
        if self.image is None:
            return list(self.rows)
        return [{**row, "image": self.image} for row in self.rows]

    def keeping(self, indices) -> RowBundle:
        return RowBundle(tuple(self.rows[i] for i in indices), self.image)

    def with_split(self, split: str) -> RowBundle:
        return RowBundle(tuple({**row, "split": split} for row in self.rows), self.image)

    def __len__(self) -> int:
        return len(self.rows)
