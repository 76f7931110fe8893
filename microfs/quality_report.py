"""The data quality report: one self-contained HTML page for a feature group's table version.

The page holds a summary table of the version's statistics, a bar chart per feature (the
stored histogram of a numeric feature, the most frequent values of a string or bool
feature) drawn as inline SVG, the group's expectations and its validation history. It
loads nothing from anywhere: no scripts, no fonts, no images, no links, so it opens
offline and can be mailed as one file.

This module only renders: the caller gathers the statistics, histograms and history.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

__all__ = ["ReportInput", "render_report"]

_WIDTH = 520
_HEIGHT = 170
_PAD_LEFT = 56
_PAD_BOTTOM = 34
_PAD_TOP = 10
_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; } h3 { font-size: 1em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border-bottom: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.text, table.expectations th, table.history th { text-align: left; }
.features { display: flex; flex-wrap: wrap; gap: 1.5em; }
.feature { border: 1px solid #ddd; border-radius: 6px; padding: .5em 1em; }
.passed { color: #1a7f37; } .failed { color: #b42318; }
svg text { font: 11px system-ui, sans-serif; fill: #444; }
svg rect.bar { fill: #4c78a8; } svg rect.bar:hover { fill: #f58518; }
.note { color: #666; font-style: italic; }
"""


@dataclass(frozen=True)
class ReportInput:
    """What one report shows.

    Attributes:
        group: the feature group's name.
        version: its definition version.
        table_version: the table version the statistics describe.
        statistics: the version's statistics frame (``FeatureGroup.statistics``).
        histograms: per numeric feature, its histogram frame (``bin_start, bin_end,
            count``).
        top_values: per string or bool feature, its most frequent values (``value,
            count``).
        features: the feature columns, in schema order.
        expectations: the group's expectations as dicts.
        policy: the group's validation policy.
        history: the validation history frame (``FeatureGroup.validation_history``).
        rejected_rows: rows in the group's rejects table.
    """

    group: str
    version: int
    table_version: int
    statistics: pl.DataFrame
    histograms: Mapping[str, pl.DataFrame]
    top_values: Mapping[str, pl.DataFrame]
    features: Sequence[str]
    expectations: Sequence[Mapping[str, Any]]
    policy: str
    history: pl.DataFrame
    rejected_rows: int


def render_report(data: ReportInput) -> str:
    """The report as one HTML document (a string).

    >>> page = render_report(ReportInput("g", 1, 0, pl.DataFrame(), {}, {}, [], [],
    ...                                  "strict", pl.DataFrame(), 0))
    >>> page.startswith("<!DOCTYPE html>") and "<script" not in page
    True
    """
    title = f"Data quality: {data.group} v{data.version}, table version {data.table_version}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        _summary(data),
        "<h2>Features</h2>",
        '<div class="features">',
        *(_feature(data, column) for column in data.features),
        "</div>",
        "<h2>Statistics</h2>",
        _frame_table(data.statistics, "statistics"),
        "<h2>Expectations</h2>",
        _expectations(data),
        "<h2>Validation history</h2>",
        _history(data),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _summary(data: ReportInput) -> str:
    rows = None
    if data.statistics.height:
        first = data.statistics.row(0, named=True)
        rows = int(first["count"]) + int(first["null_count"])
    failing = (
        int((~data.history.get_column("passed")).sum()) if "passed" in data.history.columns else 0
    )
    items = [
        ("rows", f"{rows:,}" if rows is not None else "-"),
        ("features", f"{len(data.features)}"),
        ("expectations", f"{len(data.expectations)} (policy {data.policy})"),
        ("validated writes", f"{data.history.height} ({failing} with failures)"),
        ("rows in the rejects table", f"{data.rejected_rows:,}"),
    ]
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in items)
    return f'<table class="summary">{body}</table>'


def _feature(data: ReportInput, column: str) -> str:
    head = f'<section class="feature" data-column="{_e(column)}"><h3>{_e(column)}</h3>'
    stats = data.statistics.filter(pl.col("column") == column) if data.statistics.height else None
    line = ""
    if stats is not None and stats.height:
        s = stats.row(0, named=True)
        line = (
            f"<div>{_e(s['dtype'])}: {int(s['count']):,} values, {int(s['null_count']):,} "
            f"nulls, about {int(s['approx_distinct']):,} distinct"
            + (
                f"; mean {_number(s['mean'])}, std {_number(s['std'])}"
                if s["mean"] is not None
                else ""
            )
            + "</div>"
        )
    if column in data.histograms:
        frame = data.histograms[column]
        labels = [
            f"({_number(a)}, {_number(b)}]" for a, b in frame.select("bin_start", "bin_end").rows()
        ]
        low = _number(frame["bin_start"][0]) if frame.height else ""
        high = _number(frame["bin_end"][-1]) if frame.height else ""
        chart = _bars(frame["count"].to_list(), labels, low, high, f"histogram of {column}")
    elif column in data.top_values:
        frame = data.top_values[column]
        labels = [v if v is not None else "null" for v in frame["value"].to_list()]
        chart = _bars(frame["count"].to_list(), labels, "", "", f"most frequent values of {column}")
    else:
        chart = '<p class="note">no chart for this column type</p>'
    return f"{head}{line}{chart}</section>"


def _bars(counts: Sequence[int], labels: Sequence[str], low: str, high: str, title: str) -> str:
    """A bar chart as inline SVG: one ``rect.bar`` per count, its label as a tooltip."""
    if not counts:
        return '<p class="note">no values</p>'
    top = max(max(counts), 1)
    plot_w = _WIDTH - _PAD_LEFT - 8
    plot_h = _HEIGHT - _PAD_BOTTOM - _PAD_TOP
    width = plot_w / len(counts)
    shapes = [
        f'<svg width="{_WIDTH}" height="{_HEIGHT}" '
        f'viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" aria-label="{_e(title)}">',
        f"<title>{_e(title)}</title>",
        f'<line x1="{_PAD_LEFT}" y1="{_PAD_TOP + plot_h}" x2="{_WIDTH - 8}" '
        f'y2="{_PAD_TOP + plot_h}" stroke="#888"/>',
        f'<text x="{_PAD_LEFT - 4}" y="{_PAD_TOP + 10}" text-anchor="end">{top:,}</text>',
        f'<text x="{_PAD_LEFT - 4}" y="{_PAD_TOP + plot_h}" text-anchor="end">0</text>',
    ]
    for i, (count, label) in enumerate(zip(counts, labels, strict=True)):
        h = plot_h * count / top
        x = _PAD_LEFT + i * width
        shapes.append(
            f'<rect class="bar" x="{x + 0.5:.2f}" y="{_PAD_TOP + plot_h - h:.2f}" '
            f'width="{max(width - 1, 0.5):.2f}" height="{h:.2f}" data-count="{count}">'
            f"<title>{_e(label)}: {count:,}</title></rect>"
        )
    if low or high:
        y = _PAD_TOP + plot_h + 14
        shapes.append(f'<text x="{_PAD_LEFT}" y="{y}">{_e(low)}</text>')
        shapes.append(f'<text x="{_WIDTH - 8}" y="{y}" text-anchor="end">{_e(high)}</text>')
    else:
        for i, label in enumerate(labels[:12]):
            x = _PAD_LEFT + (i + 0.5) * width
            shapes.append(
                f'<text x="{x:.2f}" y="{_PAD_TOP + plot_h + 14}" text-anchor="middle">'
                f"{_e(label[:10])}</text>"
            )
    shapes.append("</svg>")
    return "".join(shapes)


def _expectations(data: ReportInput) -> str:
    if not data.expectations:
        return '<p class="note">the group has no expectations</p>'
    keys = ["name", "kind", "column"]
    rows = []
    for e in data.expectations:
        options = ", ".join(f"{k}={v!r}" for k, v in e.items() if k not in (*keys,))
        rows.append([e.get("name"), e.get("kind"), e.get("column"), options])
    header = "".join(f"<th>{h}</th>" for h in ["name", "kind", "column", "options"])
    body = "".join(
        "<tr>" + "".join(f'<td class="text">{_e(_text(v))}</td>' for v in row) + "</tr>"
        for row in rows
    )
    return f'<table class="expectations"><tr>{header}</tr>{body}</table>'


def _history(data: ReportInput) -> str:
    if data.history.height == 0:
        return '<p class="note">no validated writes yet</p>'
    header = "".join(f"<th>{_e(c)}</th>" for c in data.history.columns)
    rows = []
    for row in data.history.iter_rows(named=True):
        mark = "passed" if row.get("passed") else "failed"
        cells = "".join(f'<td class="text">{_e(_text(v))}</td>' for v in row.values())
        rows.append(f'<tr class="{mark}">{cells}</tr>')
    return f'<table class="history"><tr>{header}</tr>{"".join(rows)}</table>'


def _frame_table(frame: pl.DataFrame, css: str) -> str:
    if frame.height == 0:
        return '<p class="note">no statistics</p>'
    header = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(_text(v))}</td>" for v in row) + "</tr>"
        for row in frame.iter_rows()
    )
    return f'<table class="{css}"><tr>{header}</tr>{body}</table>'


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _number(value: Any) -> str:
    if value is None:
        return "-"
    number = float(value)
    if not math.isfinite(number):
        return str(number)
    return f"{number:.4g}"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
