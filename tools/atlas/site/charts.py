"""Build-time SVG charts: written by hand so the site needs no plotting library and no network.

Every chart is an accessible image (role="img" with <title> and <desc>); colours of text and axes
come from the theme's CSS variables (classes in site_src/assets/atlas.css) so dark mode works.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import escape

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")


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
