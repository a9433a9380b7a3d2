"""The dataset card's figures, drawn with matplotlib's object API (Agg canvas, no pyplot state).

Each function returns PNG bytes. Overlays draw a pair's annotation on its stored slice at an
integer upscale, with the axes filling the whole canvas, so displayed pixel (edge-frame)
coordinate x lands on PNG column x * scale exactly. Text drawn (dataset, landmark names) is shown
as it is: mathtext (`$...$`) and TeX are off while a figure is drawn.
"""
from __future__ import annotations

import functools
import io

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from transforms.card import OVERLAY_COLOURS, measured_lines

# A power of two: figure inches = px / DPI and back are then exact, so a canvas is exactly W x H px.
DPI = 128
LINE_PX = 2.0  # drawn lines fully cover the pixel columns on each side of their centre
OVERLAY_TARGET_SIDE_PX = 512
HISTOGRAM_BINS = 40
ELLIPSE_POINTS = 181


def _plain_text(draw):
    """Run `draw` with matplotlib text taken literally: a name holding `$...$` never becomes mathtext.
    Tick labels are made while the figure is saved, so the setting covers the whole function."""
    @functools.wraps(draw)
    def drawn(*args, **kwargs):
        with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
            return draw(*args, **kwargs)
    return drawn


def _points(line_px: float) -> float:
    return line_px * 72.0 / DPI


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def overlay_scale(width_px: int, height_px: int) -> int:
    """Integer upscale that brings the longer side near OVERLAY_TARGET_SIDE_PX (never below 1)."""
    return max(1, OVERLAY_TARGET_SIDE_PX // max(width_px, height_px))


def _colour(part: str) -> str:
    return OVERLAY_COLOURS[part][1]


def _segment(axes, segment_xy_px, part: str) -> None:
    (x0, y0), (x1, y1) = segment_xy_px
    axes.plot([x0, x1], [y0, y1], color=_colour(part), linewidth=_points(LINE_PX))


def _draw_box(axes, row: dict) -> None:
    x0, y0, x1, y1 = row["box_xyxy_px"]
    axes.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=_colour("box"),
                             linewidth=_points(LINE_PX)))


def _draw_lesion(axes, row: dict) -> None:
    """The ellipse from its axis endpoints (conjugate semi-axes in px: right for any pixel aspect), its axes
    and the two diameters."""
    centre = np.asarray(row["ellipse_center_xy_px"])
    semi_major, semi_minor = (np.diff(np.asarray(row[f"{axis}_axis_endpoints_xy_px"]), axis=0)[0] / 2
                              for axis in ("major", "minor"))
    turn = np.linspace(0.0, 2 * np.pi, ELLIPSE_POINTS)[:, None]
    outline = centre + np.cos(turn) * semi_major + np.sin(turn) * semi_minor
    axes.plot(outline[:, 0], outline[:, 1], color=_colour("ellipse"), linewidth=_points(LINE_PX))
    _segment(axes, row["major_axis_endpoints_xy_px"], "major axis")
    _segment(axes, row["minor_axis_endpoints_xy_px"], "minor axis")
    _segment(axes, row["longest_diameter_endpoints_xy_px"], "longest diameter")
    _segment(axes, row["perpendicular_diameter_endpoints_xy_px"], "perpendicular diameter")


def _draw_landmarks(axes, row: dict) -> None:
    """The measurement's landmarks with their names, and the lines its key names (a distance's segment,
    an angle's two lines)."""
    points = {point["name"]: (point["x"], point["y"]) for point in row["landmarks_xy_px"]}
    for first, second in measured_lines(row["metric_name"]):
        if first in points and second in points:
            _segment(axes, (points[first], points[second]), "measured line")
    axes.scatter([x for x, _ in points.values()], [y for _, y in points.values()], s=_points(3 * LINE_PX) ** 2,
                 color=_colour("landmark"), zorder=3)
    for name, xy in points.items():
        axes.annotate(name, xy, xytext=(4, 4), textcoords="offset pixels", color=_colour("landmark"), fontsize=8)


DRAW = {"detection": _draw_box, "tumor_lesion_size": _draw_lesion, "angle_distance": _draw_landmarks}


@_plain_text
def overlay_png(image_png: bytes, task: str, row: dict) -> bytes:
    """The stored slice (greyscale PNG bytes) upscaled by `overlay_scale`, with the pair's annotation of
    `task` drawn in the edge frame: the image spans [0, W] x [0, H] (y down), so an edge coordinate needs
    no half-pixel shift. Raises ValueError when the PNG's size is not the row's image size."""
    pixels = np.asarray(Image.open(io.BytesIO(image_png)).convert("L"))
    height_px, width_px = pixels.shape
    if (width_px, height_px) != (row["image_width_px"], row["image_height_px"]):
        raise ValueError(f"pair {row['sample_id']}: PNG is {width_px}x{height_px} px, the row says "
                         f"{row['image_width_px']}x{row['image_height_px']}")
    scale = overlay_scale(width_px, height_px)
    figure = Figure(figsize=(width_px * scale / DPI, height_px * scale / DPI), dpi=DPI)
    axes = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    axes.imshow(pixels, cmap="gray", vmin=0, vmax=255, interpolation="nearest",
                extent=(0, width_px, height_px, 0))
    axes.set_xlim(0, width_px)
    axes.set_ylim(height_px, 0)
    axes.set_axis_off()
    DRAW[task](axes, row)
    return png_bytes(figure)


@_plain_text
def distributions_png(dataset: str, panels: dict[str, dict[str, np.ndarray]]) -> bytes:
    """One histogram panel per measurement kind (title with its unit), one outlined series per quantity."""
    figure = Figure(figsize=(4.0 * len(panels), 3.2), dpi=DPI, layout="constrained")
    figure.suptitle(f"{dataset}: measurement distributions")
    for axes, (title, series) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels.items()):
        for name, values in series.items():
            axes.hist(values, bins=HISTOGRAM_BINS, histtype="step", linewidth=1.2, label=f"{name} (n={len(values)})")
        axes.set_xlabel(title)
        axes.set_ylabel("pairs")
        axes.legend(fontsize=7)
    return png_bytes(figure)


@_plain_text
def pairs_per_dataset_png(rows: list[dict]) -> bytes:
    """Horizontal bars of pairs per dataset, stacked by task (stats.json `rows`)."""
    datasets = sorted({row["dataset"] for row in rows})
    tasks = sorted({row["task"] for row in rows})
    counts = {(d, t): 0 for d in datasets for t in tasks}
    for row in rows:
        counts[row["dataset"], row["task"]] += row["rows"]
    figure = Figure(figsize=(7.0, 1.2 + 0.4 * len(datasets)), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    left = np.zeros(len(datasets))
    for task in tasks:
        widths = np.array([counts[d, task] for d in datasets], dtype=float)
        axes.barh(datasets, widths, left=left, label=task)
        left += widths
    axes.set_xlabel("pairs (rows)")
    axes.invert_yaxis()
    if tasks:  # a build without pairs draws empty axes, without a legend
        figure.legend(loc="outside lower center", ncols=len(tasks), fontsize=8)
    axes.set_title("pairs per dataset and task")
    return png_bytes(figure)
