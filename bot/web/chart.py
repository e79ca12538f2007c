"""A line chart as inline SVG, drawn on the server: no script, no style attribute, no fetch.

The maintainers' page shows money per day with it. Everything the browser needs is in the
markup: shapes with presentation attributes (`stroke`, `fill`), which the page's strict
Content-Security-Policy allows where it forbids inline styles, text labels for the axes,
a legend, and a `<title>`/`<desc>` plus a table beside it for screen readers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from html import escape

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 72, 16, 16, 56


@dataclass(frozen=True)
class Series:
    label: str
    colour: str
    values: Sequence[int]  # one per day, integer minor units
    dashed: bool = False


def _nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above `value` (at least 1)."""
    if value <= 0:
        return 1
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= value:
                return m * step
        step *= 10


def _points(values: Sequence[int], top: int) -> str:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(1, len(values) - 1)
    return " ".join(
        f"{LEFT + plot_w * i / n:.1f},{TOP + plot_h * (1 - v / top):.1f}"
        for i, v in enumerate(values)
    )


def line_chart(
    days: Sequence[date],
    series: Sequence[Series],
    *,
    title: str,
    money: Callable[[int], str],
) -> str:
    """An SVG document fragment: one line per series over `days`, y from zero."""
    top = _nice_ceiling(max([0, *(v for s in series for v in s.values)]))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' role="img" aria-labelledby="chart-title chart-desc" class="chart">',
        f'<title id="chart-title">{escape(title)}</title>',
        '<desc id="chart-desc">'
        + escape(
            "; ".join(
                f"{s.label}: {money(s.values[-1] if s.values else 0)} on the last day"
                for s in series
            )
        )
        + "</desc>",
    ]
    for i in range(5):  # gridlines and y labels: 0, 1/4, ... top
        value = top * i // 4
        y = TOP + plot_h * (1 - i / 4)
        out.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"'
            ' stroke="#d5dbd8" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11"'
            f' fill="#4a5560">{escape(money(value))}</text>'
        )
    if days:
        n = max(1, len(days) - 1)
        last = len(days) - 1
        for i in sorted({0, len(days) // 3, 2 * len(days) // 3, last}):
            x = LEFT + plot_w * i / n
            # The first and last labels align inwards so that neither is cut off.
            anchor = "start" if i == 0 else "end" if i == last else "middle"
            out.append(
                f'<text x="{x:.1f}" y="{TOP + plot_h + 16}" text-anchor="{anchor}"'
                f' font-size="11" fill="#4a5560">{days[i]:%b %d}</text>'
            )
    for s in series:
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        out.append(
            f'<polyline fill="none" stroke="{escape(s.colour)}" stroke-width="2"{dash}'
            f' points="{_points(s.values, top)}"><title>{escape(s.label)}</title></polyline>'
        )
    x = LEFT
    for s in series:  # the legend, under the axis
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        y = HEIGHT - 14
        out.append(
            f'<line x1="{x}" y1="{y}" x2="{x + 24}" y2="{y}" stroke="{escape(s.colour)}"'
            f' stroke-width="3"{dash}/>'
        )
        out.append(
            f'<text x="{x + 30}" y="{y + 4}" font-size="12" fill="#14171a">{escape(s.label)}</text>'
        )
        x += 40 + 7 * len(s.label)
    out.append("</svg>")
    return "\n".join(out)
