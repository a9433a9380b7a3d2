"""The dataset card's figures, drawn with matplotlib's object API (Agg canvas, no pyplot state).

Each function returns PNG bytes. Overlays draw a pair's annotation on its stored slice, upscaled by
an integer factor with nearest-neighbour pixels (never blurred), in axes that fill the canvas's top-left
W*scale x H*scale px, so displayed pixel (edge-frame) coordinate (x, y) lands on PNG (column, row)
(x * scale, y * scale) exactly; a legend strip below the slice names each colour. Text drawn (dataset,
label and landmark names) is shown as it is: mathtext (`$...$`) and TeX are off while a figure is drawn.
"""

from __future__ import annotations

import functools
import io
import math

import matplotlib
import numpy as np
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from PIL import Image

from consumers.card import OVERLAY_COLOURS, measured_lines

# A power of two: figure inches = px / DPI and back are then exact, so a canvas is exactly W x H px.
DPI = 128
LINE_PX = 2.0  # drawn lines fully cover the pixel columns on each side of their centre
# The ellipse's axes are wide bands under the thin RECIST diameters: where a diameter runs along an axis
# (they often nearly coincide) both stay visible, the band as a casing around the line.
AXIS_BAND_PX = 7.0
OVERLAY_MIN_LONG_SIDE_PX = 512
LEGEND_FONT_PT = 9.0
LEGEND_ROW_PX = 22  # one legend line at LEGEND_FONT_PT, with matplotlib's default label spacing
LEGEND_PAD_PX = 10
LEGEND_TWO_COLUMNS_FROM_PX = 720  # narrower canvases list the entries in one column
# A tall, narrow slice (long side >= 512 px, so not upscaled) still gets a canvas its legend lines fit in:
# black on the slice's right.
OVERLAY_MIN_WIDTH_PX = 400
LEGEND_NAME_CHARS = 40  # a longer label name from the data is cut, so its line fits the canvas
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


def _over_slice_png(figure: Figure, background: np.ndarray) -> bytes:
    """PNG of `figure` (drawn on a transparent canvas) laid over `background` (H x W grey, uint8, the
    figure's size in px): the slice's pixels are never resampled by matplotlib, and this is faster."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    drawn = np.asarray(canvas.buffer_rgba()).astype(np.uint16)  # straight (not premultiplied) alpha
    alpha = drawn[..., 3:]
    # Rounded integer blend: alpha 255 gives the drawn colour exactly, alpha 0 the slice's grey.
    rgb = (drawn[..., :3] * alpha + background[..., None] * (255 - alpha) + 127) // 255
    buffer = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def overlay_scale(width_px: int, height_px: int) -> int:
    """The smallest integer upscale that brings the longer side to at least OVERLAY_MIN_LONG_SIDE_PX
    (1 for a slice that large already)."""
    return max(1, math.ceil(OVERLAY_MIN_LONG_SIDE_PX / max(width_px, height_px)))


def _colour(part: str) -> str:
    return OVERLAY_COLOURS[part][1]


def _segment(axes, segment_xy_px, part: str, width_px: float = LINE_PX, zorder: float = 2.0) -> None:
    (x0, y0), (x1, y1) = segment_xy_px
    axes.plot(
        [x0, x1], [y0, y1], color=_colour(part), linewidth=_points(width_px), zorder=zorder, solid_capstyle="butt"
    )


def _draw_box(axes, row: dict) -> None:
    x0, y0, x1, y1 = row["box_xyxy_px"]
    axes.add_patch(
        Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=_colour("box"), linewidth=_points(LINE_PX))
    )


def _draw_lesion(axes, row: dict) -> None:
    """The ellipse from its axis endpoints (conjugate semi-axes in px: right for any pixel aspect), its axes
    and the two diameters."""
    centre = np.asarray(row["ellipse_center_xy_px"])
    semi_major, semi_minor = (
        np.diff(np.asarray(row[f"{axis}_axis_endpoints_xy_px"]), axis=0)[0] / 2 for axis in ("major", "minor")
    )
    turn = np.linspace(0.0, 2 * np.pi, ELLIPSE_POINTS)[:, None]
    outline = centre + np.cos(turn) * semi_major + np.sin(turn) * semi_minor
    _segment(axes, row["major_axis_endpoints_xy_px"], "major axis", AXIS_BAND_PX, zorder=2.0)
    _segment(axes, row["minor_axis_endpoints_xy_px"], "minor axis", AXIS_BAND_PX, zorder=2.0)
    axes.plot(outline[:, 0], outline[:, 1], color=_colour("ellipse"), linewidth=_points(LINE_PX), zorder=2.5)
    _segment(axes, row["longest_diameter_endpoints_xy_px"], "longest diameter", zorder=3.0)
    _segment(axes, row["perpendicular_diameter_endpoints_xy_px"], "perpendicular diameter", zorder=3.0)


def _draw_landmarks(axes, row: dict) -> None:
    """The measurement's landmarks with their names, and the lines its key names (a distance's segment,
    an angle's two lines)."""
    points = {point["name"]: (point["x"], point["y"]) for point in row["landmarks_xy_px"]}
    for first, second in measured_lines(row["metric_name"]):
        if first in points and second in points:
            _segment(axes, (points[first], points[second]), "measured line")
    axes.scatter(
        [x for x, _ in points.values()],
        [y for _, y in points.values()],
        s=_points(4 * LINE_PX) ** 2,
        color=_colour("landmark"),
        zorder=3,
    )
    halo = [patheffects.withStroke(linewidth=2.0, foreground="black")]  # white names readable on white bone
    for name, xy in points.items():
        axes.annotate(
            name, xy, xytext=(6, 6), textcoords="offset pixels", color="white", fontsize=9, path_effects=halo, zorder=4
        )


DRAW = {"detection": _draw_box, "tumor_lesion_size": _draw_lesion, "angle_distance": _draw_landmarks}
LEGEND_WIDTH_PX = {"major axis": AXIS_BAND_PX, "minor axis": AXIS_BAND_PX}


def _name(value) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= LEGEND_NAME_CHARS else text[: LEGEND_NAME_CHARS - 1] + "…"


def legend_entries(task: str, row: dict) -> list[tuple[str, str]]:
    """(drawn part, what it is, with its measurement in mm or deg) per legend line of a pair's overlay;
    the parts are `consumers.card.OVERLAY_PARTS[task]`, in that order."""
    if task == "detection":
        width_mm, height_mm = row["box_size_mm"]
        return [("box", f"box of {_name(row['label_name'])}: {width_mm:.1f} x {height_mm:.1f} mm")]
    if task == "tumor_lesion_size":
        return [
            ("ellipse", f"ellipse fitted to {_name(row['label_name'])}"),
            ("major axis", f"ellipse major axis {row['major_axis_mm']:.1f} mm"),
            ("minor axis", f"ellipse minor axis {row['minor_axis_mm']:.1f} mm"),
            ("longest diameter", f"RECIST long diameter {row['longest_diameter_mm']:.1f} mm"),
            ("perpendicular diameter", f"RECIST short diameter {row['perpendicular_diameter_mm']:.1f} mm"),
        ]
    names = ", ".join(_name(point["name"]) for point in row["landmarks_xy_px"])
    measured = _name(row["metric_description"] or row["metric_name"])
    return [
        ("landmark", f"landmarks {names}"),
        ("measured line", f"{measured}: {row['value']:.1f} {_name(row['unit'])}"),
    ]


def _legend_layout(n_entries: int, width_px: int) -> tuple[int, int]:
    """(columns, strip height in px) of an overlay's legend."""
    columns = 2 if width_px >= LEGEND_TWO_COLUMNS_FROM_PX and n_entries > 2 else 1
    return columns, math.ceil(n_entries / columns) * LEGEND_ROW_PX + 2 * LEGEND_PAD_PX


def _legend_handle(part: str) -> Line2D:
    if part == "landmark":
        return Line2D([], [], linestyle="none", marker="o", markersize=_points(4 * LINE_PX), color=_colour(part))
    return Line2D([], [], color=_colour(part), linewidth=_points(LEGEND_WIDTH_PX.get(part, LINE_PX)))


def _draw_legend(figure: Figure, entries: list[tuple[str, str]], columns: int, strip_fraction: float) -> None:
    """The legend in the strip below the slice (figure's bottom `strip_fraction`), white on black. A figure
    legend: a second axes would cost as much again as the drawing."""
    figure.legend(
        [_legend_handle(part) for part, _ in entries],
        [text for _, text in entries],
        loc="center left",
        bbox_to_anchor=(0.0, strip_fraction / 2),
        ncols=columns,
        frameon=False,
        labelcolor="white",
        fontsize=LEGEND_FONT_PT,
        handlelength=2.2,
        borderaxespad=0.2,
        columnspacing=1.2,
    )


@_plain_text
def overlay_png(image_png: bytes, task: str, row: dict) -> bytes:
    """The stored slice (greyscale PNG bytes) upscaled by `overlay_scale` (nearest neighbour), with the
    pair's annotation of `task` drawn in the edge frame: the image spans [0, W] x [0, H] (y down), so an
    edge coordinate needs no half-pixel shift; below it, a legend strip naming each colour (`legend_entries`).
    Raises ValueError when the PNG's size is not the row's image size."""
    pixels = np.asarray(Image.open(io.BytesIO(image_png)).convert("L"))
    height_px, width_px = pixels.shape
    if (width_px, height_px) != (row["image_width_px"], row["image_height_px"]):
        raise ValueError(
            f"pair {row['sample_id']}: PNG is {width_px}x{height_px} px, the row says "
            f"{row['image_width_px']}x{row['image_height_px']}"
        )
    scale = overlay_scale(width_px, height_px)
    entries = legend_entries(task, row)
    canvas_width_px = max(width_px * scale, OVERLAY_MIN_WIDTH_PX)
    columns, strip_px = _legend_layout(len(entries), canvas_width_px)
    canvas_height_px = height_px * scale + strip_px
    figure = Figure(figsize=(canvas_width_px / DPI, canvas_height_px / DPI), dpi=DPI, facecolor="none")
    axes = figure.add_axes(
        (0.0, strip_px / canvas_height_px, width_px * scale / canvas_width_px, height_px * scale / canvas_height_px)
    )
    axes.patch.set_visible(False)
    axes.set_xlim(0, width_px)
    axes.set_ylim(height_px, 0)
    axes.set_axis_off()
    DRAW[task](axes, row)
    _draw_legend(figure, entries, columns, strip_px / canvas_height_px)
    upscaled = np.repeat(np.repeat(pixels, scale, axis=0), scale, axis=1)  # nearest neighbour, exact
    background = np.zeros((canvas_height_px, canvas_width_px), dtype=np.uint8)  # black around the slice
    background[: height_px * scale, : width_px * scale] = upscaled
    return _over_slice_png(figure, background)


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
