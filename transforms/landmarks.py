"""Landmarks (SPEC §3.6, §4 A/D): declared coordinate spaces, conversion to world mm, distances and angles.

Every landmark file declares its space. A point is converted once, to world RAS+ mm, through the
affine of the volume it was annotated on; measurements are made there, so they cannot depend on
how the volume is stored (flips, axis order, translation). Only for display is a point mapped
into a plane's displayed pixels (see `transforms.planes.PlaneGrid.display_xy`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Optional

import numpy as np

from transforms.errors import PipelineError, Reason

_LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])


@dataclasses.dataclass(frozen=True)
class LandmarkSpace:
    """How a landmark file's numbers are to be read.

    kind = "voxel": indices (i, j, k) of the annotated array as stored, `index_base` 0 or 1;
    kind = "world": millimetres in `frame` "RAS" or "LPS".
    """

    kind: str
    index_base: int = 0
    frame: str = "RAS"

    def __post_init__(self):
        if self.kind not in ("voxel", "world") or self.index_base not in (0, 1) or self.frame not in ("RAS", "LPS"):
            raise ValueError(f"unsupported landmark space {self}")


@dataclasses.dataclass(frozen=True)
class Measurement:
    """A named distance (two points) or angle (two lines: points a-b and c-d), shown on `plane`."""

    name: str
    kind: str  # "distance" | "angle"
    points: tuple[str, ...]
    plane: Optional[str] = None  # None: the volume's only plane (2D images)
    description: str = ""

    def __post_init__(self):
        expected = {"distance": 2, "angle": 4}.get(self.kind)
        if expected != len(self.points):
            raise ValueError(f"measurement {self.name}: a {self.kind} takes {expected} points, got {self.points}")


@dataclasses.dataclass(frozen=True)
class MeasuredValue:
    """A measurement's value: mm for distances; for angles the unsigned acute angle (MedVision) and the directed one."""

    value: float
    unit: str  # "mm" | "deg"
    directed_angle_deg: Optional[float] = None


def to_world_ras(
    points: Mapping[str, tuple[float, ...]], space: LandmarkSpace, affine_ras: np.ndarray
) -> dict[str, np.ndarray]:
    """Landmarks in world RAS+ mm; voxel points go through the affine of the array they index."""
    world = {}
    for name, coordinates in points.items():
        point = np.asarray(coordinates, dtype=float)
        if point.shape != (3,) or not np.all(np.isfinite(point)):
            raise PipelineError(Reason.BAD_LANDMARKS, f"landmark {name} is not three finite numbers: {coordinates}")
        if space.kind == "voxel":
            world[name] = affine_ras[:3, :3] @ (point - space.index_base) + affine_ras[:3, 3]
        else:
            world[name] = point * _LPS_TO_RAS if space.frame == "LPS" else point
    return world


def distance_mm(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two world points in mm."""
    return float(np.linalg.norm(np.asarray(b, float) - np.asarray(a, float)))


def angle_between_lines_deg(a, b, c, d) -> tuple[float, float]:
    """(unsigned acute angle in [0, 90], directed angle in [0, 180]) between lines a->b and c->d."""
    u, v = np.asarray(b, float) - np.asarray(a, float), np.asarray(d, float) - np.asarray(c, float)
    norms = np.linalg.norm(u) * np.linalg.norm(v)
    if norms == 0:
        raise PipelineError(Reason.BAD_LANDMARKS, "an angle's line has two identical points")
    directed = math.degrees(math.acos(float(np.clip(np.dot(u, v) / norms, -1.0, 1.0))))
    return min(directed, 180.0 - directed), directed


def measure(measurement: Measurement, world: dict[str, np.ndarray]) -> MeasuredValue:
    """The value of one measurement from world-space landmarks; missing points are an error."""
    missing = [name for name in measurement.points if name not in world]
    if missing:
        raise PipelineError(Reason.BAD_LANDMARKS, f"measurement {measurement.name} needs missing landmarks {missing}")
    points = [world[name] for name in measurement.points]
    if measurement.kind == "distance":
        return MeasuredValue(distance_mm(*points), "mm")
    acute, directed = angle_between_lines_deg(*points)
    return MeasuredValue(acute, "deg", directed)


def read_xy_text(text: str, names: list[str]) -> dict[str, tuple[float, float]]:
    """`x,y` per line (x = column, y = row) for the first len(names) lines; later lines are ignored."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) < len(names):
        raise PipelineError(Reason.BAD_LANDMARKS, f"{len(lines)} landmark lines, expected at least {len(names)}")
    points = {}
    for number, (name, line) in enumerate(zip(names, lines), 1):
        try:
            x, y = (float(v) for v in line.replace(";", ",").split(",")[:2])
        except ValueError as exc:  # the line itself is input text: not quoted in the message
            raise PipelineError(Reason.BAD_LANDMARKS, f"landmark {name}: non-empty line {number} is not x,y") from exc
        points[name] = (x, y)
    return points


def point_pairs_from_labels(labels_ijk: np.ndarray) -> dict[int, np.ndarray]:
    """Each non-zero label of a landmark mask must hold exactly two voxels: {label: (2, 3) voxel indices}."""
    pairs = {}
    for label in np.unique(labels_ijk):
        if label == 0:
            continue
        voxels = np.argwhere(labels_ijk == label)
        if len(voxels) != 2:
            raise PipelineError(Reason.BAD_LANDMARKS, f"landmark label {int(label)} has {len(voxels)} voxels, not 2")
        pairs[int(label)] = voxels.astype(float)
    return pairs
