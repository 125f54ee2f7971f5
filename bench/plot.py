"""Line charts as standalone SVG, so a benchmark can draw its own figure for the docs
without a plotting library: one panel per series over a shared time axis."""

import pathlib

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def panels(path, seconds, series, title=""):
    """`series`: (label, values) pairs, each as long as `seconds` (the x axis)."""
    width, panel, margin = 720, 150, 56
    top0 = 34 if title else 14
    span = max(seconds[-1] - seconds[0], 1e-9)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{top0 + panel * len(series)}" font-family="sans-serif" font-size="11">',
             '<rect width="100%" height="100%" fill="white"/>']
    if title:
        parts.append(f'<text x="{margin}" y="18" font-size="13">{title}</text>')
    for i, (label, values) in enumerate(series):
        top = top0 + i * panel
        high = max(values) * 1.1 or 1.0

        def x(s):
            return margin + (width - 2 * margin) * (s - seconds[0]) / span

        def y(v, top=top, high=high):
            return top + panel - 28 - (panel - 48) * v / high

        points = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in zip(seconds, values))
        parts += [
            f'<text x="{margin}" y="{top + 10}">{label}: min {min(values):.1f}, max {max(values):.1f}</text>',
            f'<line x1="{margin}" y1="{y(0):.1f}" x2="{width - margin}" y2="{y(0):.1f}" stroke="#999"/>',
            f'<line x1="{margin}" y1="{y(0):.1f}" x2="{margin}" y2="{y(high):.1f}" stroke="#999"/>',
            f'<text x="{margin - 4}" y="{y(0) + 4:.1f}" text-anchor="end">0</text>',
            f'<text x="{margin - 4}" y="{y(high / 1.1) + 4:.1f}" text-anchor="end">{high / 1.1:.0f}</text>',
            f'<polyline fill="none" stroke="{COLOURS[i % len(COLOURS)]}" stroke-width="1.5" points="{points}"/>',
            f'<text x="{margin}" y="{y(0) + 14:.1f}">{seconds[0]:.0f} s</text>',
            f'<text x="{width - margin}" y="{y(0) + 14:.1f}" text-anchor="end">{seconds[-1]:.0f} s</text>',
        ]
    parts.append("</svg>")
    pathlib.Path(path).write_text("\n".join(parts) + "\n")
