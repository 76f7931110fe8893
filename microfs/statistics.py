"""Statistics of a feature group's table versions: summaries, histograms and drift (PSI).

:func:`compute` summarises a frame in one Polars query: per column the count of values,
nulls and approximately distinct values, and for numeric columns min, max, mean, standard
deviation, seven percentiles and a 20-bin histogram. The result is a plain JSON document
that the feature group stores once per table version (:func:`write_document`), so an old
version's statistics are read, never recomputed from newer data.

Conventions:

- ``count`` counts non-null values (a float NaN is a value); ``null_count`` the nulls.
- The numeric summaries (min, max, mean, std, percentiles) skip nulls and NaN; std is the
  sample standard deviation (``ddof=1``); percentiles interpolate linearly between ranks,
  as ``numpy.percentile`` does. They are exact up to :data:`SAMPLE_LIMIT` values; above
  that they come from every k-th value (about :data:`SAMPLE_LIMIT` of them, rank error
  around 0.1%). ``approx_distinct`` is a HyperLogLog estimate.
- A histogram has equal-width bins from the least to the greatest finite value; each bin
  holds the values in ``(bin_start, bin_end]``, the first one also its ``bin_start``. A
  column of one value gets bins from value - 0.5 to value + 0.5.
- :func:`psi` compares two frames column by column over ten bins cut at the first frame's
  deciles (fractions below 0.0001 count as 0.0001).

This module is pure logic over frames and JSON files; it knows nothing of Delta tables.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

__all__ = [
    "FORMAT",
    "HISTOGRAM_BINS",
    "NUMERIC_TYPES",
    "PERCENTILES",
    "SAMPLE_LIMIT",
    "STATISTICS_SCHEMA",
    "compare",
    "compute",
    "histogram",
    "psi",
    "read_document",
    "statistics_frame",
    "top_values",
    "with_null_columns",
    "write_document",
]

FORMAT = 1
"""The version of the stored document's layout."""
HISTOGRAM_BINS = 20
PERCENTILES: tuple[int, ...] = (1, 5, 25, 50, 75, 95, 99)
SAMPLE_LIMIT = 1_000_000
"""Values per column above which percentiles are taken from an evenly spaced sample."""
NUMERIC_TYPES = ("int8", "int16", "int32", "int64", "float32", "float64")
PSI_FLOOR = 1e-4

STATISTICS_SCHEMA = pl.Schema(
    {
        "column": pl.String(),
        "dtype": pl.String(),
        "count": pl.Int64(),
        "null_count": pl.Int64(),
        "min": pl.Float64(),
        "max": pl.Float64(),
        "mean": pl.Float64(),
        "std": pl.Float64(),
        "approx_distinct": pl.Int64(),
        **{f"p{p:02d}": pl.Float64() for p in PERCENTILES},
    }
)
HISTOGRAM_SCHEMA = pl.Schema(
    {"bin_start": pl.Float64(), "bin_end": pl.Float64(), "count": pl.Int64()}
)
_COMPARE_SCHEMA = pl.Schema(
    {
        "column": pl.String(),
        "psi": pl.Float64(),
        "mean_change": pl.Float64(),
        "null_fraction_change": pl.Float64(),
    }
)


def compute(
    frame: pl.LazyFrame | pl.DataFrame,
    schema: Mapping[str, str],
    *,
    rows: int,
    sequential: bool = False,
) -> dict[str, Any]:
    """The statistics document of ``frame`` (columns and canonical types in ``schema``).

    Args:
        frame: the data, lazy (e.g. a scan of a table version) or in memory.
        schema: column name to canonical type name, in column order.
        rows: the frame's row count (from the Delta log for a scan): it sets the
            percentile sample's stride, so the query runs once.
        sequential: evaluate one statistic after another, on about one core, instead of
            all at once on Polars' thread pool: for a summary computed beside deltalake's
            encoder, which writes a file on one thread and would otherwise share its core.

    >>> doc = compute(pl.DataFrame({"x": [1.0, 2.0, None]}), {"x": "float64"}, rows=3)
    >>> statistics_frame(doc).select("column", "count", "null_count", "mean").row(0)
    ('x', 2, 1, 1.5)
    """
    lazy = frame.lazy()
    stride = max(1, math.ceil(rows / SAMPLE_LIMIT))
    exprs: list[pl.Expr] = []
    numeric = [c for c, t in schema.items() if t in NUMERIC_TYPES]
    for i, (column, _) in enumerate(schema.items()):
        col = pl.col(column)
        exprs += [
            col.count().alias(f"{i}:count"),
            col.null_count().alias(f"{i}:null_count"),
            # no values, no distinct values: Polars' in-memory engine counts one for a
            # column that a scan fills with nulls (files written before it was added)
            pl.when(col.count() == 0)
            .then(pl.lit(0, pl.Int64))
            .otherwise(col.drop_nulls().approx_n_unique().cast(pl.Int64))
            .alias(f"{i}:approx_distinct"),
        ]
        if column in numeric:
            values = _values(column, schema[column])
            finite = _finite(values, schema[column])
            exprs += [
                values.min().cast(pl.Float64).alias(f"{i}:min"),
                values.max().cast(pl.Float64).alias(f"{i}:max"),
                values.mean().cast(pl.Float64).alias(f"{i}:mean"),
                values.std().cast(pl.Float64).alias(f"{i}:std"),
                finite.min().cast(pl.Float64).alias(f"{i}:finite_min"),
                finite.max().cast(pl.Float64).alias(f"{i}:finite_max"),
                finite.hist(bin_count=HISTOGRAM_BINS, include_breakpoint=True)
                .implode()
                .alias(f"{i}:hist"),
                values.drop_nulls().gather_every(stride).sort().implode().alias(f"{i}:sample"),
            ]
    # the in-memory engine: this one-row aggregate runs faster there than streamed
    select = lazy.select_seq if sequential else lazy.select
    result = select(exprs).collect(engine="in-memory")
    sampled = [c for c in result.columns if c.endswith(":sample")]
    row = result.drop(sampled).row(0, named=True)
    columns: list[dict[str, Any]] = []
    histograms: dict[str, dict[str, list[Any]]] = {}
    for i, (column, dtype) in enumerate(schema.items()):
        entry: dict[str, Any] = {
            "column": column,
            "dtype": dtype,
            "count": int(row[f"{i}:count"]),
            "null_count": int(row[f"{i}:null_count"]),
            "min": None,
            "max": None,
            "mean": None,
            "std": None,
            "approx_distinct": int(row[f"{i}:approx_distinct"]),
            **{f"p{p:02d}": None for p in PERCENTILES},
        }
        if column in numeric:
            entry.update({k: _number(row[f"{i}:{k}"]) for k in ("min", "max", "mean", "std")})
            sample = _array(result, f"{i}:sample")
            for p, v in zip(PERCENTILES, _percentiles(sample, PERCENTILES), strict=True):
                entry[f"p{p:02d}"] = v
            histograms[column] = _histogram_lists(
                row[f"{i}:hist"], row[f"{i}:finite_min"], row[f"{i}:finite_max"]
            )
        columns.append(entry)
    return {
        "format": FORMAT,
        "rows": rows,
        "sampled_every": stride,
        "columns": columns,
        "histograms": histograms,
    }


def with_null_columns(document: Mapping[str, Any], added: Mapping[str, str]) -> dict[str, Any]:
    """The document of the same rows with columns added that are null in every row.

    What :func:`compute` gives for such columns, without reading a value: a version that
    only added columns (schema evolution) has its predecessor's statistics plus these.

    >>> doc = compute(pl.DataFrame({"x": [1.0, 2.0]}), {"x": "float64"}, rows=2)
    >>> wider = with_null_columns(doc, {"y": "int64"})
    >>> statistics_frame(wider).select("column", "count", "null_count").rows()
    [('x', 2, 0), ('y', 0, 2)]
    """
    rows = int(document["rows"])
    columns = [dict(entry) for entry in document["columns"]]
    histograms = {c: dict(h) for c, h in document["histograms"].items()}
    for column, dtype in added.items():
        columns.append(
            {
                "column": column,
                "dtype": dtype,
                "count": 0,
                "null_count": rows,
                "min": None,
                "max": None,
                "mean": None,
                "std": None,
                "approx_distinct": 0,
                **{f"p{p:02d}": None for p in PERCENTILES},
            }
        )
        if dtype in NUMERIC_TYPES:
            histograms[column] = {"bin_start": [], "bin_end": [], "count": []}
    return {**document, "columns": columns, "histograms": histograms}


def statistics_frame(document: Mapping[str, Any]) -> pl.DataFrame:
    """The public statistics frame (one row per column) of a stored document."""
    names = list(STATISTICS_SCHEMA)
    return pl.DataFrame(
        [[entry.get(n) for n in names] for entry in document["columns"]],
        schema=STATISTICS_SCHEMA,
        orient="row",
    )


def histogram(
    frame: pl.LazyFrame | pl.DataFrame, column: str, dtype: str, *, bins: int
) -> pl.DataFrame:
    """The ``bins``-bin histogram of one numeric column: ``bin_start, bin_end, count``."""
    values = _values(column, dtype)
    finite = _finite(values, dtype)
    row = (
        frame.lazy()
        .select(
            finite.hist(bin_count=bins, include_breakpoint=True).implode().alias("hist"),
            finite.min().cast(pl.Float64).alias("low"),
            finite.max().cast(pl.Float64).alias("high"),
        )
        .collect()
        .row(0)
    )
    return histogram_frame(_histogram_lists(row[0], row[1], row[2]))


def histogram_frame(lists: Mapping[str, Sequence[Any]]) -> pl.DataFrame:
    """A stored histogram as a frame."""
    return pl.DataFrame(dict(lists), schema=HISTOGRAM_SCHEMA)


def psi(
    expected: pl.LazyFrame | pl.DataFrame,
    actual: pl.LazyFrame | pl.DataFrame,
    columns: Mapping[str, str],
    *,
    rows: int,
) -> dict[str, float | None]:
    """Population stability index per numeric column, ``actual`` against ``expected``.

    The bins are cut at ``expected``'s deciles (repeated cut points merged): ``(-inf,
    d1], (d1, d2], ..., (dk, inf)``. PSI is ``sum((a - e) * ln(a / e))`` over the bins'
    fractions of non-null, non-NaN values. None where either frame has no such values.

    Args:
        expected: the baseline frame.
        actual: the frame compared with it.
        columns: numeric column name to canonical type.
        rows: ``expected``'s row count (sets the decile sample's stride).
    """
    stride = max(1, math.ceil(rows / SAMPLE_LIMIT))
    if not columns:
        return {}
    samples = (
        expected.lazy()
        .select(
            [
                _values(c, t).drop_nulls().gather_every(stride).sort().implode().alias(c)
                for c, t in columns.items()
            ]
        )
        .collect()
    )
    cuts: dict[str, list[float]] = {}
    for column in columns:
        values = _array(samples, column)
        cuts[column] = (
            sorted({float(v) for v in np.quantile(values, np.arange(1, 10) / 10)})
            if values.size
            else []
        )

    def tallies(frame: pl.LazyFrame | pl.DataFrame) -> dict[str, Any]:
        exprs = []
        for column, dtype in columns.items():
            values = _values(column, dtype)
            exprs.append(values.count().alias(f"{column}\x00n"))
            exprs += [
                (values <= cut).sum().alias(f"{column}\x00{k}")
                for k, cut in enumerate(cuts[column])
            ]
        return frame.lazy().select(exprs).collect().row(0, named=True)

    counted = {"expected": tallies(expected), "actual": tallies(actual)}
    out: dict[str, float | None] = {}
    for column in columns:
        fractions = []
        for side in ("expected", "actual"):
            row = counted[side]
            total = int(row[f"{column}\x00n"])
            below = [int(row[f"{column}\x00{k}"]) for k in range(len(cuts[column]))]
            bins = np.diff([0, *below, total])
            fractions.append(bins / total if total else None)
        e, a = fractions
        if e is None or a is None:
            out[column] = None
            continue
        e, a = np.maximum(e, PSI_FLOOR), np.maximum(a, PSI_FLOOR)
        out[column] = float(np.sum((a - e) * np.log(a / e)))
    return out


def compare(
    a: Mapping[str, Any], b: Mapping[str, Any], drift: Mapping[str, float | None]
) -> pl.DataFrame:
    """One row per numeric column: ``column, psi, mean_change, null_fraction_change``.

    Args:
        a: the baseline version's statistics document.
        b: the compared version's statistics document.
        drift: PSI per column, from :func:`psi`.
    """
    before = {e["column"]: e for e in a["columns"]}
    rows = []
    for entry in b["columns"]:
        column = entry["column"]
        if entry["dtype"] not in NUMERIC_TYPES or column not in before:
            continue
        old = before[column]
        mean_change = (
            entry["mean"] - old["mean"]
            if entry["mean"] is not None and old["mean"] is not None
            else None
        )
        fractions = [_null_fraction(old), _null_fraction(entry)]
        null_change = (
            fractions[1] - fractions[0] if None not in fractions else None  # type: ignore[operator]
        )
        rows.append([column, drift.get(column), mean_change, null_change])
    return pl.DataFrame(rows, schema=_COMPARE_SCHEMA, orient="row")


def top_values(frame: pl.LazyFrame | pl.DataFrame, column: str, *, limit: int = 20) -> pl.DataFrame:
    """The ``limit`` most frequent values of a column as text: ``value, count``."""
    return (
        frame.lazy()
        .select(pl.col(column).cast(pl.String).alias("value"))
        .group_by("value")
        .agg(pl.len().cast(pl.Int64).alias("count"))
        .sort(["count", "value"], descending=[True, False], nulls_last=True)
        .head(limit)
        .collect()
    )


def read_document(path: Path) -> dict[str, Any] | None:
    """A stored statistics document, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    return data


def write_document(path: Path, document: Mapping[str, Any]) -> None:
    """Store a document once: a temporary file linked into place (an existing one stays).

    Statistics of a table version never change, so a second writer's identical document
    is simply dropped.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{random.getrandbits(32):08x}")
    try:
        temporary.write_text(json.dumps(document, indent=1), encoding="utf-8")
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _array(frame: pl.DataFrame, column: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The one list in a one-row list column, as a float array (no Python objects)."""
    series = frame.get_column(column).explode().drop_nulls()
    return series.cast(pl.Float64).to_numpy()


def _values(column: str, dtype: str) -> pl.Expr:
    """A numeric column with NaN as null."""
    col = pl.col(column)
    return col.fill_nan(None) if dtype.startswith("float") else col


def _percentiles(ordered: np.ndarray[Any, np.dtype[np.float64]], ps: Sequence[int]) -> list[Any]:
    """Linearly interpolated percentiles of a sorted array (``numpy.percentile``'s rule).

    Equal neighbours give their value and -inf next to a finite value gives -inf, so
    infinities come back as themselves, never as NaN.
    """
    if ordered.size == 0:
        return [None] * len(ps)
    position = np.asarray(ps, dtype=np.float64) / 100 * (ordered.size - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, ordered.size - 1)
    a, b = ordered[low], ordered[high]
    t = position - low
    with np.errstate(invalid="ignore", over="ignore"):
        between = a + (b - a) * t
        # finite ends further apart than the float range (b - a overflows): the weighted
        # sum of the two stays finite
        wide = np.isfinite(a) & np.isfinite(b) & ~np.isfinite(between)
        between = np.where(wide, a * (1 - t) + b * t, between)
    # -inf next to a finite value interpolates to NaN: the infinite end stands
    return [float(v) for v in np.where((a == b) | np.isnan(between), a, between)]


def _finite(values: pl.Expr, dtype: str) -> pl.Expr:
    """The finite values (integers always are: no copy for them)."""
    return values.filter(values.is_finite()) if dtype.startswith("float") else values


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _null_fraction(entry: Mapping[str, Any]) -> float | None:
    total = int(entry["count"]) + int(entry["null_count"])
    return int(entry["null_count"]) / total if total else None


def _histogram_lists(
    hist: Sequence[Mapping[str, Any]], low: float | None, high: float | None
) -> dict[str, list[Any]]:
    """Bins from Polars' ``hist`` rows (right edges and counts); no values, no bins."""
    if low is None or high is None:
        return {"bin_start": [], "bin_end": [], "count": []}
    ends = [float(h["breakpoint"]) for h in hist]
    first = float(low) if low < high else float(low) - 0.5
    return {
        "bin_start": [first, *ends[:-1]],
        "bin_end": ends,
        "count": [int(h["count"]) for h in hist],
    }
