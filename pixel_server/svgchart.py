"""A time-series chart as inline SVG, drawn on the server: no script, no third-party code, so
the dashboard's Content-Security-Policy can refuse every script. Pure.

One metric over the buckets: a line with a dot per point, outliers as red squares with
a ``<title>`` (a tooltip), the smoothed series as a dashed line, the y axis from 0 to a round
maximum with its labels, the first, middle and last bucket labelled on the x axis. Every
text is escaped (a label could come from anywhere); the styling is CSS classes and
presentation attributes, never a ``style`` attribute (which the policy refuses).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 800, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 40


@dataclass(frozen=True)
class Point:
    label: str
    value: float | None
    outlier: bool = False
    smoothed: float | None = None


def nice_ceiling(value: float) -> float:
    """1, 2 or 5 times a power of ten, at least ``value`` (1 for nothing)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)


def render(points: Sequence[Point], title: str) -> str:
    """The chart of ``points`` titled ``title`` (both escaped here)."""
    values = [p.value for p in points if p.value is not None]
    values += [p.smoothed for p in points if p.smoothed is not None]
    top = nice_ceiling(max(values, default=0.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(points) - 1, 1)

    def x(i: int) -> float:
        return LEFT + i * step

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction in (0, 0.5, 1):
        level = top * fraction
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(level):.1f}"'
            f' y2="{y(level):.1f}"/>'
            f'<text class="axis" x="{LEFT - 6}" y="{y(level) + 4:.1f}" text-anchor="end">'
            f"{escape(_number(level))}</text>"
        )
    for i in sorted({0, len(points) // 2, len(points) - 1}):
        if 0 <= i < len(points):
            anchor = "start" if i == 0 else "end" if i == len(points) - 1 else "middle"
            parts.append(
                f'<text class="axis" x="{x(i):.1f}" y="{HEIGHT - 12}" text-anchor="{anchor}">'
                f"{escape(points[i].label[:16])}</text>"
            )
    parts.append(_line(points, lambda p: p.value, x, y, "series"))
    if any(p.smoothed is not None for p in points):
        parts.append(_line(points, lambda p: p.smoothed, x, y, "smoothed"))
    for i, point in enumerate(points):
        if point.value is None:
            continue
        tip = escape(f"{point.label}: {_number(point.value)}" + (" (outlier)" * point.outlier))
        if point.outlier:
            parts.append(
                f'<rect class="outlier" x="{x(i) - 5:.1f}" y="{y(point.value) - 5:.1f}"'
                f' width="10" height="10"><title>{tip}</title></rect>'
            )
        else:
            parts.append(
                f'<circle class="point" cx="{x(i):.1f}" cy="{y(point.value):.1f}" r="3">'
                f"<title>{tip}</title></circle>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _line(
    points: Sequence[Point],
    value: Callable[[Point], float | None],
    x: Callable[[int], float],
    y: Callable[[float], float],
    css: str,
) -> str:
    coords = []
    for i, point in enumerate(points):
        v = value(point)
        if v is not None:
            coords.append(f"{x(i):.1f},{y(v):.1f}")
    return f'<polyline class="{css}" fill="none" points="{" ".join(coords)}"/>'


def _number(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.3g}"
