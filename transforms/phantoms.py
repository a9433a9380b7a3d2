"""Synthetic volumes with analytic geometry, for the demo source and the geometry tests.

Structures are defined in world RAS+ millimetres, independently of any voxel grid; a grid
(shape, spacing, orientation, rotation) is then rasterised by testing voxel centres. The
same structures on any grid have the same physical extent, so measurements have known answers.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from transforms.volume import grid_affine

__all__ = [
    "Cuboid",
    "Ellipsoid",
    "grid_affine",
    "centred_affine",
    "rasterize",
    "intensities",
    "ellipse_mask",
    "reorient",
]


@dataclasses.dataclass(frozen=True)
class Cuboid:
    """Axis-aligned box in world mm: voxels whose centre lies in [low, high) on every axis."""

    label: int
    low_mm: tuple[float, float, float]
    high_mm: tuple[float, float, float]

    def contains(self, points: np.ndarray) -> np.ndarray:
        return np.all((points >= self.low_mm) & (points < self.high_mm), axis=-1)


@dataclasses.dataclass(frozen=True)
class Ellipsoid:
    """Axis-aligned ellipsoid in world mm."""

    label: int
    centre_mm: tuple[float, float, float]
    radii_mm: tuple[float, float, float]

    def contains(self, points: np.ndarray) -> np.ndarray:
        scaled = (points - np.asarray(self.centre_mm)) / np.asarray(self.radii_mm)
        return np.sum(scaled * scaled, axis=-1) <= 1.0


def centred_affine(shape, orientation: str, spacing_mm, rotation_z_deg: float = 0.0) -> np.ndarray:
    """Like `grid_affine`, with the origin chosen so the grid's centre sits at world (0, 0, 0)."""
    affine = grid_affine(orientation, spacing_mm, rotation_z_deg=rotation_z_deg)
    centre_ijk = (np.asarray(shape, dtype=float) - 1) / 2
    affine[:3, 3] = -affine[:3, :3] @ centre_ijk
    return affine


def voxel_centres_mm(shape, affine: np.ndarray) -> np.ndarray:
    """World RAS+ mm of every voxel centre, shape (*shape, 3)."""
    ijk = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"), axis=-1)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def rasterize(shape, affine: np.ndarray, structures) -> np.ndarray:
    """Label map of the structures on a grid (later structures are drawn over earlier ones)."""
    points = voxel_centres_mm(shape, affine)
    labels = np.zeros(shape, dtype=np.uint8)
    for structure in structures:
        labels[structure.contains(points)] = structure.label
    return labels


def intensities(
    labels: np.ndarray, value_by_label: dict[int, float], background: float, noise_sd: float, seed: int
) -> np.ndarray:
    """Piecewise-constant image of a label map plus Gaussian noise (deterministic for a seed)."""
    lookup = np.full(int(labels.max()) + 1, background, dtype=np.float32)
    for label, value in value_by_label.items():
        if label < lookup.size:
            lookup[label] = value
    noise = np.random.default_rng(seed).normal(0.0, noise_sd, labels.shape).astype(np.float32)
    return lookup[labels] + noise


def ellipse_mask(
    semi_major_mm: float, semi_minor_mm: float, angle_deg: float, spacing_mm_row_col, field_mm: float = 80.0
) -> np.ndarray:
    """A 2D mask: pixels whose centre lies in an ellipse centred in a square field of `field_mm`.

    The major axis is at `angle_deg` from +x (columns) towards +y (rows, down), in mm.
    """
    row_mm, col_mm = spacing_mm_row_col
    y = (np.arange(int(field_mm / row_mm)) + 0.5) * row_mm - field_mm / 2
    x = (np.arange(int(field_mm / col_mm)) + 0.5) * col_mm - field_mm / 2
    xx, yy = np.meshgrid(x, y)
    angle = np.radians(angle_deg)
    along = xx * np.cos(angle) + yy * np.sin(angle)
    across = -xx * np.sin(angle) + yy * np.cos(angle)
    return (along / semi_major_mm) ** 2 + (across / semi_minor_mm) ** 2 <= 1.0


def reorient(array: np.ndarray, affine: np.ndarray, orientation: str) -> tuple[np.ndarray, np.ndarray]:
    """The same voxels stored with axes along `orientation` (exact: a permutation and flips)."""
    from nibabel import orientations  # nibabel is slow to import; listing the demo source must not pay it

    current = orientations.io_orientation(affine)
    target = orientations.axcodes2ornt(tuple(orientation))
    transform = orientations.ornt_transform(current, target)
    stored = orientations.apply_orientation(array, transform)
    return np.ascontiguousarray(stored), affine @ orientations.inv_ornt_aff(transform, array.shape)
