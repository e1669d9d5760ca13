"""SVG charts rendered on the server: no script, no CDN, they print and work offline.

Each function returns one `<svg>` element as text. Every drawn figure carries its value in
`data-*` attributes and a `<title>` (the browser's tooltip), so tests and people read
the same numbers the bars are drawn from.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from html import escape

from projections.dashboard.formatting import compact, decimal_text, grouped, instant_text

__all__ = ["PALETTE", "color", "nice_ceiling", "stacked_bars", "credit_gauge", "peak_offpeak_bars"]

#: Distinguishable on white and for the common colour blindnesses (Okabe-Ito, then extras).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#7F7F7F",
           "#332288", "#88CCEE")
WIDTH = 760
FONT = 'font-family="system-ui, sans-serif" font-size="11"'
OFFPEAK_FILL = "#eef1f8"


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 x 10^n at or above value (axis tops people can read)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value)


def _svg(height: int, body: list[str], label: str, css_class: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="{css_class}" width="100%" viewBox="0 0 {WIDTH} {height}" '
            f'role="img" aria-label="{escape(label)}" {FONT}>' + "".join(body) + "</svg>")


def _bucket_label(start: datetime, bucket: str, first: bool) -> str:
    if bucket == "day":
        return start.strftime("%b %d")
    if start.hour == 0 or first:
        return start.strftime("%b %d %H:00")
    return start.strftime("%H:00")


def _legend(names: Sequence[str], y: int) -> list[str]:
    parts, x = [], 60
    for index, name in enumerate(names):
        width = 22 + 7 * len(name)
        if x + width > WIDTH - 10:
            x, y = 60, y + 16
        parts.append(f'<g class="legend-item" data-model="{escape(name)}"><rect x="{x}" y="{y - 9}" width="10" '
                     f'height="10" fill="{color(index)}"/><text x="{x + 14}" y="{y}">{escape(name)}</text></g>')
        x += width
    return parts


def _y_axis(top: float, left: int, plot_top: int, plot_height: int, unit: str) -> list[str]:
    parts = []
    for tick in range(5):
        value = top * tick / 4
        y = plot_top + plot_height - plot_height * tick / 4
        parts.append(f'<line x1="{left}" x2="{WIDTH - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e6ea"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{compact(value)}</text>')
    parts.append(f'<text x="12" y="{plot_top + plot_height / 2}" transform="rotate(-90 12 {plot_top + plot_height / 2})"'
                 f' text-anchor="middle" fill="#555">{escape(unit)}</text>')
    return parts


def stacked_bars(buckets: Sequence[datetime], series: dict[str, Sequence[Decimal]], bucket: str,
                 unit: str = "credits") -> str:
    """One bar per bucket, stacked by series (model) in the given order; off-peak hours shaded.

    `series[name][i]` is the value of bucket i. Legend order and colours follow `series`."""
    names = list(series)
    left, plot_top, plot_height = 64, 12, 190
    legend_rows = 1 + sum(22 + 7 * len(name) for name in names) // (WIDTH - 80)
    height = plot_top + plot_height + 40 + 16 * legend_rows
    totals = [sum((series[name][i] for name in names), Decimal(0)) for i in range(len(buckets))]
    top = nice_ceiling(float(max(totals, default=Decimal(0))))
    slot = (WIDTH - 10 - left) / max(len(buckets), 1)
    body = _y_axis(top, left, plot_top, plot_height, unit)
    every = max(1, math.ceil(len(buckets) / 10))
    if bucket == "hour":
        body.extend(_offpeak_bands(buckets, left, slot, plot_top, plot_height))
    for i, start in enumerate(buckets):
        x = left + i * slot
        if i % every == 0:
            body.append(f'<text x="{x + slot / 2:.1f}" y="{plot_top + plot_height + 16}" text-anchor="middle" '
                        f'fill="#555">{escape(_bucket_label(start, bucket, i == 0))}</text>')
    for i, start in enumerate(buckets):
        body.extend(_stack(i, start, names, series, left + i * slot, slot, top, plot_top, plot_height, unit))
    if not any(totals):
        body.append(f'<text x="{WIDTH / 2}" y="{plot_top + plot_height / 2}" text-anchor="middle" fill="#888" '
                    f'font-size="14">no charged usage in this range</text>')
    body.append(f'<line x1="{left}" x2="{WIDTH - 10}" y1="{plot_top + plot_height}" y2="{plot_top + plot_height}" '
                f'stroke="#888"/>')
    body.extend(_legend(names, plot_top + plot_height + 38))
    return _svg(height, body, f"{unit} per {bucket}, stacked by model", "chart stacked")


def _offpeak_bands(buckets: Sequence[datetime], left: float, slot: float, plot_top: int, plot_height: int) -> list[str]:
    """One shaded band per run of consecutive off-peak hours (UTC 16:00-24:00)."""
    bands, run_start = [], None
    for i, start in enumerate([*buckets, None]):
        offpeak = start is not None and start.hour >= 16
        if offpeak and run_start is None:
            run_start = i
        elif not offpeak and run_start is not None:
            bands.append(f'<rect class="offpeak" x="{left + run_start * slot:.1f}" y="{plot_top}" '
                         f'width="{(i - run_start) * slot:.1f}" height="{plot_height}" fill="{OFFPEAK_FILL}" '
                         f'data-hours="{i - run_start}"/>')
            run_start = None
    return bands


def _stack(i: int, start: datetime, names: list[str], series: dict, x: float, slot: float, top: float,
           plot_top: int, plot_height: int, unit: str) -> list[str]:
    parts, base = [], float(plot_top + plot_height)
    for index, name in enumerate(names):
        value = series[name][i]
        if not value:
            continue
        height = plot_height * float(value) / top
        base -= height
        parts.append(f'<rect class="segment" x="{x + slot * 0.1:.1f}" y="{base:.2f}" width="{slot * 0.8:.1f}" '
                     f'height="{height:.2f}" fill="{color(index)}" data-model="{escape(name)}" '
                     f'data-bucket="{instant_text(start)}" data-value="{decimal_text(value)}">'
                     f'<title>{escape(name)} {instant_text(start)}: {grouped(value)} {unit}</title></rect>')
    return parts


def _gauge_color(used_percent: float) -> str:
    if used_percent >= 90:
        return "#D55E00"
    if used_percent >= 80:
        return "#E69F00"
    return "#009E73"


def credit_gauge(limit: Decimal, used: Decimal, remaining: Decimal, thresholds: Sequence[int] = (80, 90, 100)) -> str:
    """A bar of the pool: used part coloured by the alert threshold reached, the thresholds ticked."""
    used_percent = float(used * 100 / limit) if limit > 0 else 100.0
    left, width, y = 10, WIDTH - 20, 22
    filled = width * min(max(used_percent, 0.0), 100.0) / 100
    body = [f'<rect x="{left}" y="{y}" width="{width}" height="22" rx="4" fill="#e9ecef"/>',
            f'<rect class="used" x="{left}" y="{y}" width="{filled:.1f}" height="22" rx="4" '
            f'fill="{_gauge_color(used_percent)}" data-used="{decimal_text(used)}" data-limit="{decimal_text(limit)}">'
            f'<title>used {grouped(used)} of {grouped(limit)} credits</title></rect>']
    for threshold in thresholds:
        x = left + width * threshold / 100
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y - 4}" y2="{y + 26}" stroke="#333" stroke-dasharray="2,2"/>'
                    f'<text x="{min(x, WIDTH - 14):.1f}" y="{y - 7}" text-anchor="middle" fill="#333">{threshold}%</text>')
    body.append(f'<text x="{left}" y="{y + 40}" fill="#333">{used_percent:.1f}% used · '
                f'{grouped(remaining)} of {grouped(limit)} credits left</text>')
    return _svg(70, body, f"{used_percent:.1f}% of the credits used", "chart gauge")


def peak_offpeak_bars(peak: Decimal, offpeak: Decimal, saved: Decimal) -> str:
    """Credits charged at peak and off-peak, and what the 0.8x saved (drawn after off-peak)."""
    top = nice_ceiling(float(max(peak, offpeak + saved, Decimal(0))))
    left, width = 110, WIDTH - 130
    rows = (("peak", peak, "#0072B2"), ("off-peak", offpeak, "#56B4E9"))
    body = []
    for row, (name, value, fill) in enumerate(rows):
        y = 10 + row * 34
        bar = width * float(value) / top
        body.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{name}</text>'
                    f'<rect class="bar" x="{left}" y="{y}" width="{bar:.1f}" height="22" fill="{fill}" '
                    f'data-series="{name}" data-value="{decimal_text(value)}"><title>{name}: {grouped(value)} '
                    f'credits</title></rect>')
        if name == "off-peak" and saved > 0:
            extra = width * float(saved) / top
            body.append(f'<rect class="bar saved" x="{left + bar:.1f}" y="{y}" width="{extra:.1f}" height="22" '
                        f'fill="none" stroke="#009E73" stroke-dasharray="4,2" data-series="saved" '
                        f'data-value="{decimal_text(saved)}"><title>saved by the 0.8x: {grouped(saved)} credits'
                        f'</title></rect>')
        label = f"{grouped(value)}" + (f"  (+{grouped(saved)} saved)" if name == "off-peak" and saved > 0 else "")
        body.append(f'<text x="{WIDTH - 12}" y="{y + 15}" text-anchor="end" fill="#333">{escape(label)}</text>')
    return _svg(80, body, "credits at peak and off-peak", "chart peak-offpeak")
