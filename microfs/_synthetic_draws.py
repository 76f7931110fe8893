"""The random draws behind :mod:`microfs.synthetic`: update batches and shared helpers.

:func:`corrections` and :func:`append_batch` are public as ``microfs.synthetic.corrections``
and ``microfs.synthetic.append_batch``; import them from there. The rest are what the
generators of :mod:`microfs.synthetic` and the update batches share: the random streams,
argument checks, microsecond times, and the vectorised draws (entity versions and their
times, sorted distinct times, power-law popularity, grouped cumulative sums).

:mod:`microfs.synthetic` imports this module, so the few of its names needed here
(``SCHEMAS``, ``GROUPS``, ``DEFAULT_START``) are imported where they are used.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from microfs.errors import DefinitionError, SchemaError, TimestampError

# the public update batches, then the names microfs.synthetic uses
__all__ = [
    "append_batch",
    "corrections",
    "_STREAM_ACTIVITY",
    "_STREAM_ITEMS",
    "_STREAM_PROFILES",
    "_TIME",
    "_check_count",
    "_check_versions",
    "_decode",
    "_group_cumsum",
    "_popular",
    "_require",
    "_rng",
    "_sorted_distinct_times",
    "_version_times",
    "_versions",
    "_window",
]

_IntArray = npt.NDArray[np.int64]
_FloatArray = npt.NDArray[np.float64]

_TIME = pl.Datetime("us", "UTC")

# Random streams (one per generator) and the shape of event times
_STREAM_PROFILES = 1
_STREAM_ITEMS = 2
_STREAM_ACTIVITY = 3
_STREAM_CORRECTIONS = 4
_STREAM_APPEND = 5
_FIRST_VERSION_WINDOW = 0.1  # first versions fall in the first 10% of the window, skewed early
_ACTIVITY_GROWTH = 0.7  # activity density grows by e**0.7 (about 2x) over the window


# ---------------------------------------------------------------------------------------
# Update batches
# ---------------------------------------------------------------------------------------


def corrections(
    frame: pl.DataFrame,
    *,
    fraction: float,
    seed: int = 0,
    recent_fraction: float | None = None,
    time_col: str = "timestamp",
    keys: list[str] | None = None,
) -> pl.DataFrame:
    """Pick rows at random and change their feature values: an upsert batch.

    Returns ``round(fraction * frame.height)`` distinct rows of ``frame`` (in frame order)
    with the same keys and event times and every feature changed: floats scaled by 5-30 %
    up or down (kept at the column's decimals), integer 0/1 columns and booleans flipped,
    other integers raised by 1 or 2, strings replaced by another value of the column.
    Nulls stay null.

    Args:
        frame: Rows of one feature group; not modified.
        fraction: Share of all of ``frame``'s rows to correct, in ``[0, 1]``.
        seed: Seed of every random draw.
        recent_fraction: If given, draw only from the most recent ``recent_fraction`` of
            rows by event time (the usual shape of late corrections); must be at least
            ``fraction``.
        time_col: The event-time column.
        keys: Primary-key columns; inferred for the groups of :data:`SCHEMAS`.

    Returns:
        The corrected rows, same schema as ``frame``.

    Raises:
        DefinitionError: A fraction out of range.
        SchemaError: A missing column or keys that cannot be inferred.

    >>> from microfs.synthetic import generate_world
    >>> w = generate_world("tiny")
    >>> batch = corrections(w.item_feature, fraction=0.1, seed=1)
    >>> batch.height, batch.schema == w.item_feature.schema
    (20, True)
    """
    _check_fraction("fraction", fraction)
    if recent_fraction is not None:
        _check_fraction("recent_fraction", recent_fraction)
        if recent_fraction < fraction:
            raise DefinitionError(
                f"recent_fraction={recent_fraction} is smaller than fraction={fraction}; "
                "the corrected rows must fit in the recent part"
            )
    features = _features(frame, keys, time_col)
    rng = _rng(seed, _STREAM_CORRECTIONS)
    n = frame.height
    k = round(fraction * n)
    if recent_fraction is None or k == 0:
        candidates = np.arange(n, dtype=np.int64)
    else:
        times = frame[time_col].dt.epoch("us").to_numpy()
        m = max(k, math.ceil(recent_fraction * n))
        cutoff = np.partition(times, n - m)[n - m]
        candidates = np.flatnonzero(times >= cutoff)
    picked = np.sort(rng.choice(candidates, size=k, replace=False))
    rows = frame[picked]
    return rows.with_columns(_changed(rows, frame, features, rng))


def append_batch(
    frame: pl.DataFrame,
    *,
    n_rows: int,
    seed: int = 0,
    after: datetime | None = None,
    span: timedelta = timedelta(hours=1),
    time_col: str = "timestamp",
    keys: list[str] | None = None,
) -> pl.DataFrame:
    """Make new rows for known keys, all strictly later than ``after``: an append batch.

    Keys come from rows of ``frame`` drawn at random (with replacement); event times are
    distinct, sorted, and in ``(after, after + span]``, so the batch cannot overlap stored
    rows. Floats drift by a few percent (kept at the column's decimals); other features are
    copied from the drawn row.

    Args:
        frame: Rows of one feature group; not modified.
        n_rows: Rows to make; at least 0.
        seed: Seed of every random draw.
        after: Every event time is later than this (time-zone aware); by default the
            latest event time of ``frame``.
        span: Event times are at most ``after + span``.
        time_col: The event-time column.
        keys: Primary-key columns; inferred for the groups of :data:`SCHEMAS`.

    Returns:
        New rows, same schema as ``frame``, sorted by event time.

    Raises:
        DefinitionError: ``n_rows < 0``, a span shorter than ``n_rows`` microseconds, or
            an empty ``frame`` with rows asked for.
        SchemaError: A missing column or keys that cannot be inferred.
        TimestampError: ``after`` without a time zone.

    >>> from microfs.synthetic import generate_world
    >>> w = generate_world("tiny")
    >>> batch = append_batch(w.user_profile, n_rows=5, seed=1)
    >>> bool(batch["timestamp"].min() > w.user_profile["timestamp"].max())
    True
    """
    _check_count("n_rows", n_rows, minimum=0)
    features = _features(frame, keys, time_col)
    span_us = _span_us(span)
    if span_us <= n_rows:
        raise DefinitionError(
            f"span {span} has fewer microseconds than n_rows={n_rows}; give a longer span"
        )
    if n_rows > 0 and frame.height == 0:
        raise DefinitionError("frame has no rows to draw keys from; give a non-empty frame")
    if after is None:
        from microfs.synthetic import DEFAULT_START  # it imports this module

        latest = frame[time_col].dt.epoch("us").max()
        after_us = int(latest) if isinstance(latest, int) else _to_us(DEFAULT_START, "after")
    else:
        after_us = _to_us(after, "after")
    rng = _rng(seed, _STREAM_APPEND)
    drawn = rng.integers(0, max(frame.height, 1), size=n_rows)
    rows = frame[drawn]
    t = _sorted_distinct_times(n_rows, after_us + 1, after_us + 1 + span_us, rng)
    return rows.with_columns(
        _as_time(pl.Series(time_col, t), frame.schema[time_col]),
        *_drifted(rows, features, rng),
    )


# ---------------------------------------------------------------------------------------
# Private helpers
# ---------------------------------------------------------------------------------------


def _check_count(name: str, value: int, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise DefinitionError(f"{name}={value!r} is not an integer >= {minimum}")


def _rng(seed: int, stream: int) -> np.random.Generator:
    """An independent random stream per generator, so sizes of one do not shift another."""
    _check_count("seed", seed, minimum=0)
    return np.random.default_rng([int(seed), stream])


def _check_versions(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 1.0:
        raise DefinitionError(f"{name}={value!r} must be a finite number >= 1")


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise DefinitionError(f"{name}={value!r} must be between 0 and 1")


def _to_us(moment: datetime, name: str) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise TimestampError(
            f"{name}={moment.isoformat()} has no time zone; attach one, e.g. "
            f"{name}.replace(tzinfo=datetime.timezone.utc)"
        )
    delta = moment.astimezone(timezone.utc) - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return _span_us(delta)


def _span_us(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _window(start: datetime, end: datetime) -> tuple[int, int]:
    start_us, end_us = _to_us(start, "start"), _to_us(end, "end")
    if end_us <= start_us:
        raise DefinitionError(
            f"end={end.isoformat()} is not after start={start.isoformat()}; "
            "give an end later than the start"
        )
    return start_us, end_us


def _as_time(micros: pl.Series, dtype: pl.DataType) -> pl.Series:
    """Microseconds since the epoch (UTC) as a series of the given Datetime type."""
    out = micros.cast(_TIME)
    zone = dtype.time_zone if isinstance(dtype, pl.Datetime) else "UTC"
    if zone is None:
        out = out.dt.replace_time_zone(None)
    elif zone != "UTC":
        out = out.dt.convert_time_zone(zone)
    return out.cast(dtype)


def _require(frame: pl.DataFrame, name: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"{name} lacks column(s) {', '.join(missing)}; it has {', '.join(frame.columns)}"
        )
    if frame.height == 0:
        raise SchemaError(f"{name} has no rows; sessions need at least one {columns[0]}")


def _decode(codes: npt.NDArray[np.integer[Any]], names: tuple[str, ...]) -> pl.Series:
    """Turn integer codes into strings, vectorised (no Python objects per row)."""
    return pl.Series(names, dtype=pl.String).gather(codes.astype(np.int64))


def _versions(n: int, per_entity: float, rng: np.random.Generator) -> _IntArray:
    """Versions per entity: one each, the rest spread over entities at random."""
    extra = max(round(n * per_entity) - n, 0)
    counts = np.bincount(rng.integers(0, n, size=extra), minlength=n).astype(np.int64)
    return counts + 1


def _group_cumsum(values: npt.NDArray[Any], counts: _IntArray) -> npt.NDArray[Any]:
    """Inclusive cumulative sum restarting at each group (rows grouped in order)."""
    total = np.cumsum(values)
    ends = np.cumsum(counts)
    before = np.concatenate([np.zeros(1, dtype=total.dtype), total[ends[:-1] - 1]])
    out: npt.NDArray[Any] = total - np.repeat(before, counts)
    return out


def _version_times(
    counts: _IntArray, start_us: int, end_us: int, rng: np.random.Generator
) -> tuple[_IntArray, _IntArray, _IntArray]:
    """Event times of entity versions, strictly increasing within each entity.

    The first version falls early in the window (skewed towards ``start``); later versions
    are spread uniformly over the rest of it.

    Returns:
        Times (µs) per row, first time per entity, version number (0, 1, ...) per row.
    """
    n, rows = counts.size, int(counts.sum())
    span = end_us - start_us
    first = start_us + np.floor(span * _FIRST_VERSION_WINDOW * rng.random(n) ** 3).astype(np.int64)
    starts = np.cumsum(counts) - counts
    version = np.arange(rows, dtype=np.int64) - np.repeat(starts, counts)
    gaps = rng.exponential(1.0, size=rows)
    before = _group_cumsum(gaps, counts) - gaps  # exclusive: 0 for each first version
    total = np.add.reduceat(gaps, starts)
    position = before / np.repeat(total, counts)  # in [0, 1), sorted within each entity
    room_per_entity = end_us - first - counts  # leaves a microsecond per version
    if rows and int(room_per_entity.min()) < 0:
        raise DefinitionError(
            f"the window of {span} microseconds cannot hold {int(counts.max())} distinct "
            "versions of one entity; widen the window or ask for fewer versions"
        )
    room = np.repeat(room_per_entity, counts)
    t = np.repeat(first, counts) + np.floor(position * room).astype(np.int64) + version
    return t, first, version


def _sorted_distinct_times(
    n: int, start_us: int, end_us: int, rng: np.random.Generator
) -> _IntArray:
    """``n`` distinct sorted times in ``[start_us, end_us)``, denser towards the end."""
    gaps = rng.exponential(1.0, size=n + 1)
    cum = np.cumsum(gaps)
    uniform = cum[:n] / cum[n]  # sorted uniform order statistics, no sort needed
    g = _ACTIVITY_GROWTH
    warped = np.log1p(np.expm1(g) * uniform) / g  # density grows like exp(g * t)
    offset = np.floor(warped * (end_us - start_us - n)).astype(np.int64)
    np.maximum.accumulate(offset, out=offset)  # guard against rounding wobble
    out: _IntArray = start_us + offset + np.arange(n, dtype=np.int64)
    return out


def _popular(n: int, size: int, skew: float, rng: np.random.Generator) -> _IntArray:
    """Draw ``size`` indexes into ``range(n)`` with a power-law popularity.

    Index ``floor(n * u**skew)`` favours low ranks; a random permutation spreads the
    popular ranks over the ids.
    """
    rank = np.minimum(np.floor(n * rng.random(size) ** skew).astype(np.int64), n - 1)
    out: _IntArray = rng.permutation(n).astype(np.int64)[rank]
    return out


def _features(frame: pl.DataFrame, keys: list[str] | None, time_col: str) -> list[str]:
    if time_col not in frame.columns:
        raise SchemaError(
            f"time_col {time_col!r} is not a column; columns are {', '.join(frame.columns)}"
        )
    if not isinstance(frame.schema[time_col], pl.Datetime):
        raise SchemaError(
            f"time_col {time_col!r} has type {frame.schema[time_col]}; it must be a Datetime"
        )
    if keys is None:
        from microfs.synthetic import GROUPS, SCHEMAS  # it imports this module

        known = [n for n, s in SCHEMAS.items() if set(s) == set(frame.columns)]
        if not known:
            raise SchemaError(
                f"cannot infer the keys of a frame with columns {', '.join(frame.columns)}; "
                f"pass keys=[...] (known groups: {', '.join(SCHEMAS)})"
            )
        keys = list(GROUPS[known[0]]["primary_keys"])
    missing = [k for k in keys if k not in frame.columns]
    if missing:
        raise SchemaError(
            f"key column(s) {', '.join(missing)} not in frame; columns are "
            f"{', '.join(frame.columns)}"
        )
    return [c for c in frame.columns if c not in keys and c != time_col]


def _decimals(values: pl.Series) -> int | None:
    """The fewest decimals (up to 3) that every value of a float column is rounded to."""
    finite = values.drop_nulls().filter(values.drop_nulls().is_finite())
    for d in range(4):
        if ((finite.round(d) - finite).abs() <= 1e-9 * finite.abs().clip(1.0)).all():
            return d
    return None


def _round_to(
    new: _FloatArray, old: _FloatArray, decimals: int | None, must_change: bool
) -> _FloatArray:
    if decimals is None:
        return new
    out: _FloatArray = np.round(new, decimals)
    if must_change:
        step = 10.0**-decimals
        out = np.where(out == old, out + np.where(new >= old, step, -step), out)
    return out


def _keep_nulls(new: pl.Series, old: pl.Series) -> pl.Series:
    if old.null_count() == 0:
        return new
    return pl.select(pl.when(old.is_null()).then(None).otherwise(new)).to_series().alias(new.name)


def _changed(
    rows: pl.DataFrame, whole: pl.DataFrame, features: list[str], rng: np.random.Generator
) -> list[pl.Series]:
    """Every feature of ``rows`` changed to a different value (nulls stay null)."""
    n, out = rows.height, []
    for name in features:
        col, dtype = rows[name], rows.schema[name]
        if dtype.is_float():
            old = col.cast(pl.Float64).to_numpy()
            factor = 1.0 + rng.choice([-1.0, 1.0], size=n) * rng.uniform(0.05, 0.30, size=n)
            new = np.where(old == 0.0, 1.0, old * factor)
            new = _round_to(new, old, _decimals(whole[name]), must_change=True)
            out.append(_keep_nulls(pl.Series(name, new).cast(dtype), col))
        elif dtype == pl.Boolean:
            out.append(~col)
        elif dtype.is_integer():
            is_binary = bool(whole[name].drop_nulls().is_in([0, 1]).all())
            if is_binary:
                out.append((1 - col).cast(dtype))
            else:
                out.append((col + pl.Series(rng.integers(1, 3, size=n))).cast(dtype))
        elif dtype == pl.String:
            values = whole[name].drop_nulls().unique().sort()
            k = values.len()
            if k < 2:
                out.append(col + "_corrected")
                continue
            code = col.replace_strict(values, pl.Series(np.arange(k)), return_dtype=pl.Int64)
            shifted = (code + pl.Series(rng.integers(1, k, size=n))) % k
            out.append(shifted.replace_strict(pl.Series(np.arange(k)), values).alias(name))
    return out


def _drifted(rows: pl.DataFrame, features: list[str], rng: np.random.Generator) -> list[pl.Series]:
    """Float features moved by a few percent; other features as drawn."""
    out = []
    for name in features:
        dtype = rows.schema[name]
        if dtype.is_float():
            old = rows[name].cast(pl.Float64).to_numpy()
            new = old * np.exp(rng.normal(0.0, 0.05, size=rows.height))
            new = _round_to(new, old, _decimals(rows[name]), must_change=False)
            out.append(_keep_nulls(pl.Series(name, new).cast(dtype), rows[name]))
    return out
