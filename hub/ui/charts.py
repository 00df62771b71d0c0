"""Charts as inline SVG, drawn on the server: no script, no library, nothing to fetch.

Each function returns the markup of one ``<svg class="chart">``; every bar is a ``<rect
class="bar sN">`` with a ``<title>`` (the browser's tooltip) naming its label and value, and
the colours come from the stylesheet by class (the page's Content-Security-Policy allows no
inline styles).  ``data-points`` says how many values were drawn, so a page with no data says
so in words rather than an empty frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]


def _num(value: float) -> str:
    """Coordinates with one decimal: short markup, no visible rounding."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def plain(value: float) -> str:
    """A value for people: whole numbers without decimals, others with at most two."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def nice_ceiling(value: float) -> float:
    """The axis top: the next 1, 2, 2.5 or 5 × 10^k at or above ``value`` (1 for nothing)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def _axis(peak: float, integral: bool) -> tuple[float, int]:
    """The axis top and how many steps to it, so that every tick is a round number (and a
    whole one for counts: no 0.25 of a message)."""
    if integral and peak <= 5:
        steps = max(1, math.ceil(peak))
        return float(steps), steps
    top = nice_ceiling(peak)
    lead = top / 10 ** math.floor(math.log10(top))
    return top, 4 if lead == 2 else 5


def _text_width(text: str) -> int:
    """About how wide a legend text is drawn: CJK characters are twice a Latin one."""
    return sum(12 if ord(c) > 0x2E80 else 7 for c in text)


def _frame(width: int, height: int, title: str, points: int, body: list[str]) -> Markup:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}"'
        f' width="{width}" height="{height}" role="img" aria-label="{escape(title)}"'
        f' data-points="{points}"><title>{escape(title)}</title>'
    )
    return Markup(head + "".join(body) + "</svg>")


def _empty(width: int, height: int, title: str, empty_text: str) -> Markup:
    text = (
        f'<text class="empty" x="{width // 2}" y="{height // 2}" text-anchor="middle">'
        f"{escape(empty_text)}</text>"
    )
    return _frame(width, height, title, 0, [text])


def bar_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    stacked: bool = True,
    width: int = 640,
    height: int = 240,
    empty_text: str = "no data",
    fmt: Callable[[float], str] = plain,
) -> Markup:
    """Vertical bars per label; several series stacked (or side by side), with a legend."""
    count = sum(1 for s in series for v in s.values if v)
    if not labels or count == 0:
        return _empty(width, height, title, empty_text)
    left, right, top = 48, 8, 12 + (18 if len(series) > 1 else 0)
    widest = max(_text_width(label) for label in labels)
    # Labels wider than their slot are turned 40°: they then reach down (0.64 of their width)
    # and to the left (0.77), so the plot leaves room for the longest below, the first left.
    rotate = widest > (width - left - right) / len(labels) * 0.9
    bottom = int(24 + 0.64 * widest) if rotate else 28
    if rotate:
        first = _text_width(labels[0])
        left = max(left, int(0.77 * first - (width - left - right) / len(labels) / 2 + 8))
    plot_w, plot_h = width - left - right, height - top - bottom
    if stacked:
        peak = max(sum(s.values[i] for s in series) for i in range(len(labels)))
    else:
        peak = max(max(s.values) for s in series)
    integral = all(float(v).is_integer() for s in series for v in s.values)
    axis_top, steps = _axis(peak, integral)
    body: list[str] = []
    for k in range(steps + 1):  # grid lines and their values
        value = axis_top * k / steps
        y = top + plot_h - plot_h * k / steps
        body.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{_num(y)}" y2="{_num(y)}"/>'
            f'<text class="tick" x="{left - 4}" y="{_num(y + 4)}" text-anchor="end">'
            f"{escape(fmt(value))}</text>"
        )
    slot = plot_w / len(labels)
    bar_w = slot * 0.7 if stacked else slot * 0.8 / len(series)
    for i, label in enumerate(labels):
        x0 = left + slot * i + (slot - (bar_w if stacked else bar_w * len(series))) / 2
        base = 0.0
        for j, s in enumerate(series):
            value = float(s.values[i])
            if value <= 0:
                continue
            h = plot_h * value / axis_top
            x = x0 if stacked else x0 + j * bar_w
            y = top + plot_h - plot_h * (base / axis_top) - h
            named = f"{label} · {s.name}" if len(series) > 1 else label
            tip = f"{named}: {fmt(value)}"
            body.append(
                f'<rect class="bar s{j % 6}" x="{_num(x)}" y="{_num(y)}" width="{_num(bar_w)}"'
                f' height="{_num(max(h, 0.5))}" data-value="{escape(fmt(value))}">'
                f"<title>{escape(tip)}</title></rect>"
            )
            if stacked:
                base += value
        cx = left + slot * (i + 0.5)
        ly = top + plot_h + 14
        if rotate:
            body.append(
                f'<text class="label" x="{_num(cx)}" y="{ly}" text-anchor="end"'
                f' transform="rotate(-40 {_num(cx)} {ly})">{escape(label)}</text>'
            )
        else:
            body.append(
                f'<text class="label" x="{_num(cx)}" y="{ly}" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    body.append(
        f'<line class="axis" x1="{left}" x2="{width - right}" y1="{top + plot_h}"'
        f' y2="{top + plot_h}"/>'
    )
    if len(series) > 1:
        x = left
        for j, s in enumerate(series):
            body.append(
                f'<rect class="swatch s{j % 6}" x="{x}" y="4" width="10" height="10"/>'
                f'<text class="legend" x="{x + 14}" y="13">{escape(s.name)}</text>'
            )
            x += 24 + _text_width(s.name)
    return _frame(width, height, title, count, body)


def hbar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    width: int = 480,
    row: int = 24,
    empty_text: str = "no data",
    fmt: Callable[[float], str] = plain,
) -> Markup:
    """Horizontal bars, one row per label (reasons, centres): long labels stay readable."""
    # A zero is a figure here (an order accepted at once has a median wait of 0 minutes).
    count = len(values)
    if not labels:
        return _empty(width, 60, title, empty_text)
    label_w, right = 140, 56
    height = row * len(labels) + 8
    plot_w = width - label_w - right
    peak = nice_ceiling(max(values)) if max(values) > 0 else 1.0
    body: list[str] = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 4 + row * i
        w = plot_w * float(value) / peak
        body.append(
            f'<text class="label" x="{label_w - 6}" y="{y + row * 0.65:.1f}" text-anchor="end">'
            f"{escape(label)}</text>"
        )
        if value > 0:
            body.append(
                f'<rect class="bar s{i % 6}" x="{label_w}" y="{y + 3}" width="{_num(max(w, 0.5))}"'
                f' height="{row - 6}" data-value="{escape(fmt(value))}">'
                f"<title>{escape(label)}: {escape(fmt(value))}</title></rect>"
            )
        body.append(
            f'<text class="value" x="{_num(label_w + w + 4)}" y="{y + row * 0.65:.1f}">'
            f"{escape(fmt(value))}</text>"
        )
    return _frame(width, height, title, count, body)


def sparkline(
    values: Sequence[float],
    *,
    title: str,
    errors: Sequence[float] | None = None,
    width: int = 168,
    height: int = 34,
) -> Markup:
    """A small bar per value (an hour), errors drawn over the total in the error colour."""
    count = sum(1 for v in values if v)
    peak = max(values) if values else 0
    body = [f'<line class="axis" x1="0" x2="{width}" y1="{height - 1}" y2="{height - 1}"/>']
    if peak > 0:
        slot = width / len(values)
        for i, value in enumerate(values):
            if value <= 0:
                continue
            h = (height - 3) * value / peak
            x = slot * i + slot * 0.1
            err = errors[i] if errors else 0
            tip = f"{i - len(values) + 1} h: {plain(value)}" + (f" ({plain(err)} ✗)" if err else "")
            body.append(
                f'<rect class="bar s0" x="{_num(x)}" y="{_num(height - 1 - h)}"'
                f' width="{_num(slot * 0.8)}" height="{_num(h)}" data-value="{plain(value)}">'
                f"<title>{escape(tip)}</title></rect>"
            )
            if err:
                eh = (height - 3) * err / peak
                body.append(
                    f'<rect class="bar err" x="{_num(x)}" y="{_num(height - 1 - eh)}"'
                    f' width="{_num(slot * 0.8)}" height="{_num(eh)}"/>'
                )
    return _frame(width, height, title, count, body)
