"""Build-time SVG charts: written by hand so the site needs no plotting library and no network.

Every chart is an accessible image (role="img" with <title> and <desc>); colours of text and axes
come from the theme's CSS variables (classes in site_src/assets/atlas.css) so dark mode works.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import escape

# Okabe-Ito: distinguishable with the common colour-vision deficiencies. Vermillion before sky blue, so that the
# five-series charts (one per FM type) never pair the two blues.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#999999")


def palette_color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


@dataclass(frozen=True)
class Series:
    label: str
    color: str
    values: tuple[int, ...]  # one per x label


def _open_svg(uid: str, width: int, height: int, title: str, desc: str, css_class: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="atlas-svg {css_class}" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-labelledby="svg-title-{uid} svg-desc-{uid}">'
        f'<title id="svg-title-{uid}">{escape(title)}</title><desc id="svg-desc-{uid}">{escape(desc)}</desc>'
    )


def _text(x: float, y: float, label: str, anchor: str = "start", css_class: str = "atlas-svg__text") -> str:
    return (
        f'<text class="{css_class}" x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" '
        f'dominant-baseline="middle">{escape(label)}</text>'
    )


def _nice_step(maximum: int, ticks: int = 5) -> int:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000):
        if maximum / step <= ticks:
            return step
    return max(1, maximum // ticks)


def _legend(series: Sequence[Series], x: float, width: float) -> tuple[list[str], float]:
    """Colour keys laid out in rows that fit `width`; returns the parts and the height used."""
    parts, cursor, y = [], x, 14.0
    for item in series:
        item_width = 16 + 7.2 * len(item.label) + 18
        if cursor > x and cursor + item_width > width:
            cursor, y = x, y + 20
        parts.append(
            f'<rect x="{cursor:.1f}" y="{y - 6:.1f}" width="12" height="12" fill="{escape(item.color)}"/>'
        )
        parts.append(_text(cursor + 16, y, item.label))
        cursor += item_width
    return parts, y + 16


def stacked_bars(uid: str, x_labels: Sequence[str], series: Sequence[Series], title: str, desc: str) -> str:
    """A vertical stacked bar chart: one bar per x label, one stacked segment per series."""
    plot_left, plot_height = 44, 220
    bar_slot = max(18, min(48, 640 // max(1, len(x_labels))))
    width = max(plot_left + bar_slot * len(x_labels) + 16, 480)
    legend, plot_top = _legend(series, plot_left, width)
    plot_top += 8
    height = int(plot_top + plot_height + 56)
    totals = [sum(s.values[i] for s in series) for i in range(len(x_labels))]
    step = _nice_step(max(totals, default=0) or 1)
    top = -(-(max(totals, default=0) or 1) // step) * step
    scale = plot_height / top
    parts = [_open_svg(uid, width, height, title, desc, "atlas-svg--bars"), *legend]
    for tick in range(0, top + 1, step):
        y = plot_top + plot_height - tick * scale
        parts.append(
            f'<line class="atlas-svg__grid" x1="{plot_left}" x2="{width - 16}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(_text(plot_left - 6, y, str(tick), "end"))
    rotate = bar_slot < 40
    for i, label in enumerate(x_labels):
        x = plot_left + i * bar_slot + bar_slot * 0.15
        y = plot_top + plot_height
        for item in series:
            value = item.values[i]
            if not value:
                continue
            h = value * scale
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_slot * 0.7:.1f}" height="{h:.1f}" '
                f'fill="{escape(item.color)}"><title>{escape(f"{label}, {item.label}: {value}")}</title></rect>'
            )
        label_x, label_y = x + bar_slot * 0.35, plot_top + plot_height + 14
        if rotate:
            parts.append(
                f'<text class="atlas-svg__text" x="{label_x:.1f}" y="{label_y:.1f}" text-anchor="end" '
                f'transform="rotate(-45 {label_x:.1f} {label_y:.1f})">{escape(label)}</text>'
            )
        else:
            parts.append(_text(label_x, label_y, label, "middle"))
    parts.append("</svg>")
    return "".join(parts)


def matrix(
    uid: str,
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    counts: Sequence[Sequence[int]],
    title: str,
    desc: str,
) -> str:
    """A heat map: darker cells hold more papers; every cell also prints its count."""
    label_width = int(7.2 * max((len(r) for r in row_labels), default=4)) + 16
    cell_w, cell_h, top = 72, 36, 30
    width = label_width + cell_w * len(column_labels) + 8
    height = top + cell_h * len(row_labels) + 8
    peak = max((max(row, default=0) for row in counts), default=0) or 1
    parts = [_open_svg(uid, width, height, title, desc, "atlas-svg--matrix")]
    for j, label in enumerate(column_labels):
        parts.append(_text(label_width + cell_w * (j + 0.5), top / 2, label, "middle"))
    for i, label in enumerate(row_labels):
        y = top + cell_h * i
        parts.append(_text(label_width - 8, y + cell_h / 2, label, "end"))
        for j, count in enumerate(counts[i]):
            x = label_width + cell_w * j
            opacity = 0.08 + 0.92 * count / peak
            strong = " atlas-svg__text--on-dark" if count / peak > 0.5 else ""
            parts.append(
                f'<rect x="{x + 1}" y="{y + 1}" width="{cell_w - 2}" height="{cell_h - 2}" fill="{PALETTE[0]}" '
                f'fill-opacity="{opacity:.2f}"/>'
            )
            parts.append(
                _text(x + cell_w / 2, y + cell_h / 2, str(count), "middle", f"atlas-svg__text{strong}")
            )
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class TreeNode:
    label: str
    href: str
    color: str
    children: tuple[TreeNode, ...] = ()


def tree(uid: str, root: TreeNode, title: str, desc: str) -> str:
    """A left-to-right tree of depth two (root, categories, subcategories) with clickable nodes."""
    row_h, box_h, gap = 30, 24, 48
    levels = [[root], list(root.children), [c for n in root.children for c in n.children]]
    widths = [int(7.4 * max((len(n.label) for n in level), default=0)) + 20 for level in levels]
    xs = [8, 8 + widths[0] + gap, 8 + widths[0] + gap + widths[1] + gap]
    slots = sum(max(1, len(n.children)) for n in root.children)
    height = slots * row_h + 16
    width = xs[2] + widths[2] + 8 if levels[2] else xs[1] + widths[1] + 8
    positions: dict[int, float] = {}
    slot = 0
    for category in root.children:
        span = max(1, len(category.children))
        for k, child in enumerate(category.children):
            positions[id(child)] = 8 + (slot + k + 0.5) * row_h
        positions[id(category)] = 8 + (slot + span / 2) * row_h
        slot += span
    positions[id(root)] = height / 2

    def box(node: TreeNode, level: int) -> str:
        x, y = xs[level], positions[id(node)] - box_h / 2
        return (
            f'<a href="{escape(node.href)}"><rect class="atlas-svg__node" x="{x}" y="{y:.1f}" '
            f'width="{widths[level]}" height="{box_h}" rx="5" stroke="{escape(node.color)}"/>'
            f"{_text(x + 10, y + box_h / 2, node.label)}</a>"
        )

    def edge(parent: TreeNode, child: TreeNode, level: int) -> str:
        x1, y1 = xs[level] + widths[level], positions[id(parent)]
        x2, y2 = xs[level + 1], positions[id(child)]
        mid = (x1 + x2) / 2
        return (
            f'<path class="atlas-svg__edge" d="M{x1} {y1:.1f} C{mid} {y1:.1f} {mid} {y2:.1f} {x2} {y2:.1f}" '
            f'stroke="{escape(child.color)}"/>'
        )

    parts = [_open_svg(uid, width, int(height), title, desc, "atlas-svg--tree")]
    for category in root.children:
        parts.append(edge(root, category, 0))
        parts += [edge(category, child, 1) for child in category.children]
    parts.append(box(root, 0))
    for category in root.children:
        parts.append(box(category, 1))
        parts += [box(child, 2) for child in category.children]
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    series: str  # the legend entry (and colour) it belongs to
    label: str  # printed beside the point when there are few points
    href: str  # "" for no link
    hover: str
    key: str  # data-key, so that a page script can hide the point with its table row


def _axis(values: Sequence[float], log: bool, anchor: float | None) -> tuple[float, float, list[float]]:
    """(low, high, ticks) covering `values` and `anchor`: decades (or 1-2-5 steps) when log, a nice step if not."""
    values = [*values, *([anchor] if anchor is not None else [])]
    if log:  # a margin of a fifth of a decade keeps points off the frame
        low = 10 ** math.floor(math.log10(min(values)) - 0.2)
        high = 10 ** math.ceil(math.log10(max(values)) + 0.2)
        steps = (1, 2, 5) if high / low <= 100 else (1,)
        decades = range(round(math.log10(low)), round(math.log10(high)))
        return low, high, [m * 10**d for d in decades for m in steps] + [high]
    low, high = min(values), max(values)
    margin = (high - low) * 0.08 or abs(high) * 0.1 or 1.0
    low, high = low - margin, high + margin
    raw = (high - low) / 5
    step = min((m * 10 ** math.floor(math.log10(raw)) for m in (1, 2, 5, 10)), key=lambda s: abs(s - raw))
    low, high = math.floor(low / step) * step, math.ceil(high / step) * step
    return low, high, [low + i * step for i in range(round((high - low) / step) + 1)]


def scatter(
    uid: str,
    points: Sequence[Point],
    colors: dict[str, str],
    axes: tuple[str, str],
    log: tuple[bool, bool],
    reference: tuple[float, str] | None,
    title: str,
    desc: str,
) -> str:
    """A scatter plot with optional log axes and a dashed horizontal reference line (value, label).

    `colors` maps each series to its colour, in legend order; `axes` are the (x, y) labels, whose tick
    values are printed with `g` format."""
    width, plot_left, plot_right, plot_height = 680, 64, 24, 300
    legend_series = [Series(name, color, ()) for name, color in colors.items()]
    legend, plot_top = _legend(legend_series, plot_left, width)
    plot_top += 12
    height = int(plot_top + plot_height + 52)
    plot_width = width - plot_left - plot_right
    x_low, x_high, x_ticks = _axis([p.x for p in points] or [1.0], log[0], None)
    y_low, y_high, y_ticks = _axis([p.y for p in points] or [1.0], log[1], reference and reference[0])

    def position(value: float, low: float, high: float, is_log: bool) -> float:
        if is_log:
            return (math.log10(value) - math.log10(low)) / (math.log10(high) - math.log10(low))
        return (value - low) / (high - low)

    def px(value: float) -> float:
        return plot_left + plot_width * position(value, x_low, x_high, log[0])

    def py(value: float) -> float:
        return plot_top + plot_height * (1 - position(value, y_low, y_high, log[1]))

    parts = [_open_svg(uid, width, height, title, desc, "atlas-svg--scatter"), *legend]
    bottom = plot_top + plot_height
    for tick in y_ticks:
        parts.append(
            f'<line class="atlas-svg__grid" x1="{plot_left}" x2="{width - plot_right}" y1="{py(tick):.1f}" y2="{py(tick):.1f}"/>'
        )
        parts.append(_text(plot_left - 6, py(tick), f"{tick:g}", "end"))
    for tick in x_ticks:
        parts.append(
            f'<line class="atlas-svg__grid" x1="{px(tick):.1f}" x2="{px(tick):.1f}" y1="{plot_top}" y2="{bottom}"/>'
        )
        parts.append(_text(px(tick), bottom + 12, f"{tick:g}", "middle"))
    parts.append(_text(plot_left + plot_width / 2, bottom + 34, axes[0], "middle"))
    y_mid = plot_top + plot_height / 2
    parts.append(
        f'<text class="atlas-svg__text" x="14" y="{y_mid:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {y_mid:.1f})">{escape(axes[1])}</text>'
    )
    if reference is not None:
        value, label = reference
        parts.append(
            f'<line class="atlas-svg__reference" x1="{plot_left}" x2="{width - plot_right}" '
            f'y1="{py(value):.1f}" y2="{py(value):.1f}"/>'
        )
        parts.append(_text(plot_left + 6, py(value) - 8, label))
    labelled = len(points) <= 15
    placed = [(px(p.x), py(p.y)) for p in points]

    def label(x: float, y: float, text: str) -> str:
        """Right of the point, or left of it when another point sits where the text would go."""
        reach = 7 * len(text) + 12
        crowded = any(0 < ox - x < reach and abs(oy - y) < 10 for ox, oy in placed)
        return _text(x - 8, y, text, "end") if crowded else _text(x + 8, y, text)

    for point in points:
        x, y = px(point.x), py(point.y)
        tag, link = ("a", f' href="{escape(point.href)}"') if point.href else ("g", "")
        parts.append(
            f'<{tag} class="atlas-svg__point"{link} data-key="{escape(point.key)}">'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{escape(colors[point.series])}">'
            f"<title>{escape(point.hover)}</title></circle>"
            + (label(x, y, point.label) if labelled else "")
            + f"</{tag}>"
        )
    parts.append("</svg>")
    return "".join(parts)
