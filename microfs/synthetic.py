"""Seeded, deterministic synthetic feature data for the seed's recommendation world.

Three feature groups, as in the seed's pipelines:

- ``user_profile`` (key ``user_id``): ``user_level``, ``age``, ``country``. Each user has
  one or more versions at distinct event times; levels only move up, ages grow.
- ``item_feature`` (key ``item_id``): ``price`` (changes over time, with temporary
  discounts) and ``category``.
- ``user_activity`` (keys ``user_id``, ``item_id``; the label group): ``duration_sec`` and
  the label ``conversion``. The chance of a conversion depends on the user's level and age
  and the item's price and category *as of the activity time*, on ``duration_sec``, and on
  hidden per-user and per-item tastes, so a model trained on point-in-time features
  learns something real but not everything.

Identifiers: user ids are ``1..n_users`` and item ids ``100..100 + n_items - 1``, so the
seed's demo entity (user 1, item 102) exists at every size; the latest activity row is
always (user 1, item 102). Every frame is sorted by event time, every event time is a
``pl.Datetime("us", "UTC")`` in ``[start, end)``, and (primary keys, event time) is unique
in every frame. A few activity rows precede the first version of their user or item, as in
real logs: their point-in-time features are missing.

Everything is vectorised (NumPy and Polars; no Python loop over rows) and deterministic:
the same arguments and seed give identical frames. Ten million activity rows take a few
seconds.

Update batches for upsert and append paths: :func:`corrections` changes feature values of
existing rows (same keys and event times), :func:`append_batch` makes new rows for known
keys with event times after everything stored.

>>> world = generate_world("tiny", seed=7)
>>> world.user_activity.columns
['user_id', 'item_id', 'timestamp', 'duration_sec', 'conversion']
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from microfs.errors import DefinitionError, NotFoundError, SchemaError
from microfs.schema import aware_utc

__all__ = [
    "CATEGORIES",
    "COUNTRIES",
    "DEFAULT_END",
    "DEFAULT_START",
    "DEMO_ITEM_ID",
    "DEMO_USER_ID",
    "FIRST_ITEM_ID",
    "FIRST_USER_ID",
    "GROUPS",
    "LABEL_COL",
    "LABEL_GROUP",
    "POLARS_SCHEMAS",
    "QUALITY",
    "SCHEMAS",
    "SIZES",
    "USER_LEVELS",
    "World",
    "activity_windows",
    "append_batch",
    "corrections",
    "generate_world",
    "item_features",
    "user_activity",
    "user_profiles",
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
    delta = aware_utc(moment, what=name) - datetime(1970, 1, 1, tzinfo=timezone.utc)
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


# ---------------------------------------------------------------------------------------
# The world's vocabulary and contract
# ---------------------------------------------------------------------------------------

FIRST_USER_ID = 1
"""User ids are ``FIRST_USER_ID .. FIRST_USER_ID + n_users - 1``."""
FIRST_ITEM_ID = 100
"""Item ids are ``FIRST_ITEM_ID .. FIRST_ITEM_ID + n_items - 1``."""
DEMO_USER_ID = 1
"""The user of the seed's inference demo; exists at every size."""
DEMO_ITEM_ID = 102
"""The item of the seed's inference demo; exists at every size (``n_items >= 3``)."""

LABEL_GROUP = "user_activity"
LABEL_COL = "conversion"

USER_LEVELS: tuple[str, ...] = ("bronze", "silver", "gold", "platinum")
COUNTRIES: tuple[str, ...] = ("US", "GB", "DE", "FR", "IN", "BR", "JP", "CA", "ES", "SE")
CATEGORIES: tuple[str, ...] = (
    "electronics",
    "books",
    "fashion",
    "home",
    "sports",
    "toys",
    "grocery",
    "beauty",
)

DEFAULT_START = datetime(2024, 1, 1, tzinfo=timezone.utc)
DEFAULT_END = datetime(2025, 1, 1, tzinfo=timezone.utc)

SCHEMAS: dict[str, dict[str, str]] = {
    "user_profile": {
        "user_id": "int64",
        "timestamp": "datetime64[ns, utc]",
        "user_level": "string",
        "age": "int64",
        "country": "string",
    },
    "item_feature": {
        "item_id": "int64",
        "timestamp": "datetime64[ns, utc]",
        "price": "float64",
        "category": "string",
    },
    "user_activity": {
        "user_id": "int64",
        "item_id": "int64",
        "timestamp": "datetime64[ns, utc]",
        "duration_sec": "float64",
        "conversion": "int64",
    },
}
"""Per group, the schema in the seed's spellings, ready for ``create_feature_group``."""

POLARS_SCHEMAS: dict[str, pl.Schema] = {
    "user_profile": pl.Schema(
        {
            "user_id": pl.Int64(),
            "timestamp": _TIME,
            "user_level": pl.String(),
            "age": pl.Int64(),
            "country": pl.String(),
        }
    ),
    "item_feature": pl.Schema(
        {"item_id": pl.Int64(), "timestamp": _TIME, "price": pl.Float64(), "category": pl.String()}
    ),
    "user_activity": pl.Schema(
        {
            "user_id": pl.Int64(),
            "item_id": pl.Int64(),
            "timestamp": _TIME,
            "duration_sec": pl.Float64(),
            "conversion": pl.Int64(),
        }
    ),
}
"""Per group, the exact Polars schema of the generated frames."""

GROUPS: dict[str, dict[str, Any]] = {
    "user_profile": {
        "primary_keys": ["user_id"],
        "event_time": "timestamp",
        "online_keys": ["user_id"],
        "description": "User profiles over time: loyalty level, age and country.",
    },
    "item_feature": {
        "primary_keys": ["item_id"],
        "event_time": "timestamp",
        "online_keys": ["item_id"],
        "description": "Item catalogue over time: price (with discounts) and category.",
    },
    "user_activity": {
        "primary_keys": ["user_id", "item_id"],
        "event_time": "timestamp",
        "online_keys": ["user_id", "item_id"],
        "description": "User-item sessions: time spent and whether the session converted.",
    },
}
"""Per group, keyword arguments for ``create_feature_group`` other than name and schema.

Use as ``fs.create_feature_group(name=n, schema=SCHEMAS[n], **GROUPS[n])``; treat as
read-only.
"""

QUALITY: dict[str, dict[str, Any]] = {
    "user_profile": {
        "expectations": [
            {"column": "user_level", "kind": "in_set", "values": list(USER_LEVELS)},
            {"column": "age", "kind": "between", "min": 0, "max": 120},
            {"column": "country", "kind": "in_set", "values": list(COUNTRIES)},
        ],
        "validation": "strict",
    },
    "item_feature": {
        "expectations": [
            {"column": "price", "kind": "between", "min": 0},
            {"column": "category", "kind": "in_set", "values": list(CATEGORIES)},
        ],
        "validation": "quarantine",
    },
    "user_activity": {
        "expectations": [
            {"column": "duration_sec", "kind": "between", "min": 0},
            {"column": "conversion", "kind": "in_set", "values": [0, 1]},
        ],
        "validation": "strict",
    },
}
"""Per group, the data checks the demo adds: ``expectations`` the generated data meets and
a ``validation`` policy (``user_profile`` and ``user_activity`` refuse a failing batch,
``item_feature`` quarantines failing rows).

Use as ``fs.create_feature_group(name=n, schema=SCHEMAS[n], **GROUPS[n], **QUALITY[n])``.
Kept apart from :data:`GROUPS` so that benchmarks compare plain writes with plain writes.
"""

SIZES: dict[str, dict[str, int]] = {
    "tiny": {
        "n_labels": 2_000,
        "n_users": 100,
        "n_items": 50,
        "n_profile_rows": 250,
        "n_item_rows": 200,
    },
    "small": {
        "n_labels": 1_000_000,
        "n_users": 50_000,
        "n_items": 10_000,
        "n_profile_rows": 100_000,
        "n_item_rows": 100_000,
    },
    "medium": {
        "n_labels": 10_000_000,
        "n_users": 400_000,
        "n_items": 100_000,
        "n_profile_rows": 1_000_000,
        "n_item_rows": 1_000_000,
    },
    "large": {
        "n_labels": 50_000_000,
        "n_users": 2_000_000,
        "n_items": 500_000,
        "n_profile_rows": 5_000_000,
        "n_item_rows": 5_000_000,
    },
}
"""Named sizes: label rows, entities and feature-group rows (versions) of each group."""

# ---------------------------------------------------------------------------------------
# Model parameters (private): what makes the data look real and the label learnable
# ---------------------------------------------------------------------------------------

_US_PER_YEAR = 365.25 * 86_400 * 1_000_000

_LEVEL_START_P = (0.55, 0.28, 0.12, 0.05)  # level at sign-up
_LEVEL_STEP_P = (0.55, 0.40, 0.05)  # levels gained at each later version: 0, 1, 2
_COUNTRY_P = (0.30, 0.10, 0.10, 0.08, 0.12, 0.08, 0.07, 0.06, 0.05, 0.04)
_CATEGORY_P = (0.16, 0.14, 0.16, 0.14, 0.10, 0.08, 0.12, 0.10)
_CATEGORY_MEDIAN_PRICE = (180.0, 14.0, 45.0, 60.0, 50.0, 25.0, 6.0, 22.0)

_LEVEL_EFFECT = {"bronze": -0.7, "silver": -0.1, "gold": 0.5, "platinum": 1.1}
_CATEGORY_EFFECT = {
    "electronics": -0.4,
    "books": 0.3,
    "fashion": 0.0,
    "home": -0.1,
    "sports": 0.1,
    "toys": 0.2,
    "grocery": 0.6,
    "beauty": 0.25,
}
_INTERCEPT = -2.4
_PRICE_SLOPE = -0.45  # per unit of log(price / 30)
_AGE_PEAK, _AGE_WIDTH, _AGE_DEPTH = 38.0, 14.0, 0.6
_DURATION_MU, _DURATION_SIGMA = 3.3, 0.9  # log seconds: median about 27 s
_DURATION_SLOPE = 0.75  # per unit of log(duration)
_USER_TASTE_SD, _ITEM_TASTE_SD = 0.5, 0.4  # hidden effects no feature reveals


# ---------------------------------------------------------------------------------------
# The world
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """The three generated feature groups.

    Attributes:
        user_profile: Versions of user profiles (``POLARS_SCHEMAS["user_profile"]``).
        item_feature: Versions of item features (``POLARS_SCHEMAS["item_feature"]``).
        user_activity: Label rows (``POLARS_SCHEMAS["user_activity"]``).
    """

    user_profile: pl.DataFrame
    item_feature: pl.DataFrame
    user_activity: pl.DataFrame

    def frames(self) -> dict[str, pl.DataFrame]:
        """Return the frames keyed by feature group name, in ingestion order.

        Returns:
            ``{"user_profile": ..., "item_feature": ..., "user_activity": ...}``.

        >>> sorted(generate_world("tiny").frames())
        ['item_feature', 'user_activity', 'user_profile']
        """
        return {
            "user_profile": self.user_profile,
            "item_feature": self.item_feature,
            "user_activity": self.user_activity,
        }


def generate_world(
    size: str | None = None,
    *,
    n_labels: int | None = None,
    n_users: int | None = None,
    n_items: int | None = None,
    n_profile_rows: int | None = None,
    n_item_rows: int | None = None,
    seed: int = 0,
    start: datetime = DEFAULT_START,
    end: datetime = DEFAULT_END,
) -> World:
    """Generate all three feature groups.

    Counts not given come from ``SIZES[size]`` (``"tiny"`` when ``size`` is None). When
    ``n_users`` (``n_items``) is given but ``n_profile_rows`` (``n_item_rows``) is not, the
    rows per entity of the named size are kept.

    Args:
        size: A key of :data:`SIZES`, or None.
        n_labels: Activity (label) rows.
        n_users: Users (ids ``1..n_users``); at least 1.
        n_items: Items (ids ``100..99 + n_items``); at least 3.
        n_profile_rows: Profile versions in total; at least ``n_users``.
        n_item_rows: Item versions in total; at least ``n_items``.
        seed: Seed of every random draw.
        start: First possible event time (time-zone aware).
        end: Event times are before ``end``.

    Returns:
        The world. Same arguments, same frames.

    Raises:
        NotFoundError: ``size`` is not a key of :data:`SIZES`.
        DefinitionError: A count out of range or ``end <= start``.
        TimestampError: ``start`` or ``end`` without a time zone.

    >>> w = generate_world("tiny", n_labels=10, seed=3)
    >>> (w.user_activity.height, w.user_profile.height, w.item_feature.height)
    (10, 250, 200)
    """
    name = "tiny" if size is None else size
    if name not in SIZES:
        raise NotFoundError(f"size {size!r} not found; known sizes: {', '.join(SIZES)}")
    base = SIZES[name]
    users = base["n_users"] if n_users is None else n_users
    items = base["n_items"] if n_items is None else n_items
    _check_count("n_users", users, minimum=1)
    _check_count("n_items", items, minimum=DEMO_ITEM_ID - FIRST_ITEM_ID + 1)
    if n_profile_rows is None:
        n_profile_rows = round(users * base["n_profile_rows"] / base["n_users"])
    if n_item_rows is None:
        n_item_rows = round(items * base["n_item_rows"] / base["n_items"])
    labels = base["n_labels"] if n_labels is None else n_labels
    for name_, rows, entities in (
        ("n_profile_rows", n_profile_rows, users),
        ("n_item_rows", n_item_rows, items),
    ):
        _check_count(name_, rows, minimum=1)
        if rows < entities:
            raise DefinitionError(
                f"{name_}={rows} is fewer than the {entities} entities; every entity needs "
                f"at least one version, so give {name_} >= {entities}"
            )
    profiles = user_profiles(
        users,
        seed=seed,
        start=start,
        end=end,
        versions_per_user=n_profile_rows / users,
    )
    catalogue = item_features(
        items,
        seed=seed,
        start=start,
        end=end,
        versions_per_item=n_item_rows / items,
    )
    activity = user_activity(labels, profiles, catalogue, seed=seed, start=start, end=end)
    return World(user_profile=profiles, item_feature=catalogue, user_activity=activity)


# ---------------------------------------------------------------------------------------
# Feature groups
# ---------------------------------------------------------------------------------------


def user_profiles(
    n_users: int,
    *,
    seed: int = 0,
    start: datetime = DEFAULT_START,
    end: datetime = DEFAULT_END,
    versions_per_user: float = 2.5,
) -> pl.DataFrame:
    """Generate user profile versions.

    Every user gets a first version early in the window (most in its first few percent)
    and ``round(n_users * versions_per_user) - n_users`` further versions are spread over
    users at random and over the rest of the window. Levels never go down; ages grow with
    time; the country stays.

    Args:
        n_users: Users, with ids ``1..n_users``; at least 1.
        seed: Seed of every random draw.
        start: First possible event time (time-zone aware).
        end: Event times are before ``end``.
        versions_per_user: Mean versions per user; at least 1.

    Returns:
        A frame with schema ``POLARS_SCHEMAS["user_profile"]``, sorted by event time and
        user, unique on (user_id, timestamp).

    Raises:
        DefinitionError: ``n_users < 1``, ``versions_per_user < 1`` or ``end <= start``.
        TimestampError: ``start`` or ``end`` without a time zone.

    >>> df = user_profiles(3, seed=1, versions_per_user=2)
    >>> (df.height, sorted(df["user_id"].unique().to_list()))
    (6, [1, 2, 3])
    """
    _check_count("n_users", n_users, minimum=1)
    _check_versions("versions_per_user", versions_per_user)
    start_us, end_us = _window(start, end)
    rng = _rng(seed, _STREAM_PROFILES)
    counts = _versions(n_users, versions_per_user, rng)
    t, first_t, version = _version_times(counts, start_us, end_us, rng)
    owner = np.repeat(np.arange(n_users, dtype=np.int64), counts)

    first_level = rng.choice(len(USER_LEVELS), size=n_users, p=_LEVEL_START_P)
    steps = rng.choice(len(_LEVEL_STEP_P), size=t.size, p=_LEVEL_STEP_P)
    steps[version == 0] = 0
    level = np.minimum(first_level[owner] + _group_cumsum(steps, counts), len(USER_LEVELS) - 1)

    first_age = np.clip(np.rint(rng.normal(36.0, 12.0, size=n_users)), 18, 80).astype(np.int64)
    birthday = rng.random(n_users)  # fraction of a year since the last birthday at sign-up
    years = (t - first_t[owner]) / _US_PER_YEAR + birthday[owner]
    age = first_age[owner] + np.floor(years).astype(np.int64)
    country = rng.choice(len(COUNTRIES), size=n_users, p=_COUNTRY_P)[owner]

    frame = pl.DataFrame(
        {
            "user_id": owner + FIRST_USER_ID,
            "timestamp": pl.Series(t).cast(_TIME),
            "user_level": _decode(level, USER_LEVELS),
            "age": age,
            "country": _decode(country, COUNTRIES),
        }
    )
    return frame.sort("timestamp", "user_id")


def item_features(
    n_items: int,
    *,
    seed: int = 0,
    start: datetime = DEFAULT_START,
    end: datetime = DEFAULT_END,
    versions_per_item: float = 4.0,
) -> pl.DataFrame:
    """Generate item feature versions.

    Each item has a category and a base price around its category's median; the price
    drifts from version to version (a random walk in log price) and about one version in
    six is a temporary discount of 15-30 %. Prices are rounded to cents.

    Args:
        n_items: Items, with ids ``100..99 + n_items``; at least 3 (item 102 is the demo
            item).
        seed: Seed of every random draw.
        start: First possible event time (time-zone aware).
        end: Event times are before ``end``.
        versions_per_item: Mean versions (price changes plus one) per item; at least 1.

    Returns:
        A frame with schema ``POLARS_SCHEMAS["item_feature"]``, sorted by event time and
        item, unique on (item_id, timestamp).

    Raises:
        DefinitionError: ``n_items < 3``, ``versions_per_item < 1`` or ``end <= start``.
        TimestampError: ``start`` or ``end`` without a time zone.

    >>> df = item_features(3, seed=1, versions_per_item=1)
    >>> sorted(df["item_id"].to_list())
    [100, 101, 102]
    """
    _check_count("n_items", n_items, minimum=DEMO_ITEM_ID - FIRST_ITEM_ID + 1)
    _check_versions("versions_per_item", versions_per_item)
    start_us, end_us = _window(start, end)
    rng = _rng(seed, _STREAM_ITEMS)
    counts = _versions(n_items, versions_per_item, rng)
    t, _, version = _version_times(counts, start_us, end_us, rng)
    owner = np.repeat(np.arange(n_items, dtype=np.int64), counts)

    category = rng.choice(len(CATEGORIES), size=n_items, p=_CATEGORY_P)
    median = np.asarray(_CATEGORY_MEDIAN_PRICE)[category]
    log_base = np.log(median) + rng.normal(0.0, 0.6, size=n_items)
    walk = rng.normal(0.0, 0.07, size=t.size)
    walk[version == 0] = 0.0
    discount = np.where(rng.random(t.size) < 1 / 6, rng.uniform(0.70, 0.85, size=t.size), 1.0)
    discount[version == 0] = 1.0
    price = np.exp(log_base[owner] + _group_cumsum(walk, counts)) * discount
    price = np.maximum(np.round(price, 2), 0.5)

    frame = pl.DataFrame(
        {
            "item_id": owner + FIRST_ITEM_ID,
            "timestamp": pl.Series(t).cast(_TIME),
            "price": price,
            "category": _decode(category[owner], CATEGORIES),
        }
    )
    return frame.sort("timestamp", "item_id")


def user_activity(
    n_labels: int,
    profiles: pl.DataFrame,
    items: pl.DataFrame,
    *,
    seed: int = 0,
    start: datetime = DEFAULT_START,
    end: datetime = DEFAULT_END,
) -> pl.DataFrame:
    """Generate user-item sessions with a conversion label.

    Users and items are drawn from those in ``profiles`` and ``items`` with skewed
    popularity; event times are all distinct and grow denser over the window (so
    (user_id, item_id, timestamp) is unique). The conversion probability is a logistic
    function of the user's level and age and the item's price and category as of the
    session (point in time, looked up with as-of joins), of ``duration_sec``, and of
    hidden per-user and per-item tastes. Sessions before their user's or item's first
    version get the average effect for the missing part.

    Args:
        n_labels: Sessions; at least 0.
        profiles: User profile versions: ``user_id``, ``timestamp``, ``user_level``,
            ``age`` (other columns are ignored); not modified.
        items: Item versions: ``item_id``, ``timestamp``, ``price``, ``category``; not
            modified.
        seed: Seed of every random draw.
        start: First possible event time (time-zone aware).
        end: Event times are before ``end``.

    Returns:
        A frame with schema ``POLARS_SCHEMAS["user_activity"]``, sorted by event time. If
        both exist, the last row is (``DEMO_USER_ID``, ``DEMO_ITEM_ID``).

    Raises:
        SchemaError: ``profiles`` or ``items`` lacks a needed column or has no rows.
        DefinitionError: ``n_labels < 0``, ``end <= start`` or a window shorter than
            ``n_labels`` microseconds.
        TimestampError: ``start`` or ``end`` without a time zone.

    >>> w = generate_world("tiny")
    >>> df = user_activity(5, w.user_profile, w.item_feature, seed=2)
    >>> df.row(-1)[:2]
    (1, 102)
    """
    _check_count("n_labels", n_labels, minimum=0)
    start_us, end_us = _window(start, end)
    if end_us - start_us <= n_labels:
        raise DefinitionError(
            f"window {start.isoformat()} .. {end.isoformat()} has fewer microseconds than "
            f"n_labels={n_labels}; widen the window so every session gets its own time"
        )
    _require(profiles, "profiles", ("user_id", "timestamp", "user_level", "age"))
    _require(items, "items", ("item_id", "timestamp", "price", "category"))
    rng = _rng(seed, _STREAM_ACTIVITY)

    user_ids = np.sort(profiles["user_id"].unique().to_numpy()).astype(np.int64)
    item_ids = np.sort(items["item_id"].unique().to_numpy()).astype(np.int64)
    user_taste = rng.normal(0.0, _USER_TASTE_SD, size=user_ids.size)
    item_taste = rng.normal(0.0, _ITEM_TASTE_SD, size=item_ids.size)
    u = _popular(user_ids.size, n_labels, 1.6, rng)
    i = _popular(item_ids.size, n_labels, 2.2, rng)
    demo_u = np.flatnonzero(user_ids == DEMO_USER_ID)
    demo_i = np.flatnonzero(item_ids == DEMO_ITEM_ID)
    if n_labels > 0 and demo_u.size and demo_i.size:
        u[-1], i[-1] = demo_u[0], demo_i[0]
    t = _sorted_distinct_times(n_labels, start_us, end_us, rng)

    engagement = rng.normal(0.0, 1.0, size=n_labels)
    log_duration = _DURATION_MU + _DURATION_SIGMA * (0.8 * engagement + 0.6 * user_taste[u])
    duration = np.round(np.exp(log_duration), 3)

    sessions = pl.DataFrame(
        {
            "user_id": user_ids[u],
            "item_id": item_ids[i],
            "timestamp": pl.Series(t).cast(_TIME),
        }
    )
    level_effect = pl.col("user_level").replace_strict(
        _LEVEL_EFFECT, default=0.0, return_dtype=pl.Float64
    )
    age_effect = -_AGE_DEPTH * ((pl.col("age").cast(pl.Float64) - _AGE_PEAK) / _AGE_WIDTH) ** 2
    user_effect = (
        profiles.lazy()
        .select(
            pl.col("user_id").cast(pl.Int64),
            pl.col("timestamp").cast(_TIME),
            (level_effect + age_effect + _AGE_DEPTH / 2).alias("user_effect"),
        )
        .sort("timestamp")
    )
    category_effect = pl.col("category").replace_strict(
        _CATEGORY_EFFECT, default=0.0, return_dtype=pl.Float64
    )
    price_effect = _PRICE_SLOPE * (pl.col("price").cast(pl.Float64) / 30.0).log()
    item_effect = (
        items.lazy()
        .select(
            pl.col("item_id").cast(pl.Int64),
            pl.col("timestamp").cast(_TIME),
            (category_effect + price_effect).alias("item_effect"),
        )
        .sort("timestamp")
    )
    # Both sides are sorted on timestamp (sessions by construction, features just above);
    # Polars cannot verify that when `by` is given, hence check_sortedness=False.
    try:
        effects = (
            sessions.lazy()
            .join_asof(user_effect, on="timestamp", by="user_id", check_sortedness=False)
            .join_asof(item_effect, on="timestamp", by="item_id", check_sortedness=False)
            .select(pl.col("user_effect", "item_effect").fill_null(0.0))
            .collect()
        )
    except pl.exceptions.PolarsError as exc:
        raise SchemaError(
            "profiles or items have columns of the wrong type; expected "
            f"{dict(POLARS_SCHEMAS['user_profile'])} and {dict(POLARS_SCHEMAS['item_feature'])}"
            f" ({exc})"
        ) from exc
    logit = (
        _INTERCEPT
        + effects["user_effect"].to_numpy()
        + effects["item_effect"].to_numpy()
        + user_taste[u]
        + item_taste[i]
        + _DURATION_SLOPE * (log_duration - _DURATION_MU)
    )
    conversion = (rng.random(n_labels) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    return sessions.with_columns(
        pl.Series("duration_sec", duration, dtype=pl.Float64),
        pl.Series("conversion", conversion, dtype=pl.Int64),
    )


def activity_windows(
    n_labels: int,
    parts: int,
    *,
    start: datetime = DEFAULT_START,
    end: datetime = DEFAULT_END,
) -> list[tuple[int, datetime, datetime]]:
    """Split ``n_labels`` sessions over ``parts`` consecutive sub-windows of equal length.

    Each sub-window gets its share of the window's sessions as the activity density of
    :func:`user_activity` (growing over the window) gives it, so the label rows of a world
    too large to generate at once can be made one sub-window at a time, with
    ``user_activity(n, profiles, items, seed=..., start=lo, end=hi)`` for each: every
    sub-window's rows come after the previous one's, ``n_labels`` in all. Within each
    sub-window the density grows again as over a whole window, and each call draws its
    own hidden tastes and popularity from its seed.

    Args:
        n_labels: Sessions in all; at least 0.
        parts: Sub-windows; at least 1.
        start: First possible event time (time-zone aware).
        end: Event times are before ``end``.

    Returns:
        ``(sessions, lo, hi)`` per sub-window, in time order: ``lo`` of the first is
        ``start``, ``hi`` of each is ``lo`` of the next, ``hi`` of the last is ``end``
        (all in UTC).

    Raises:
        DefinitionError: ``n_labels < 0``, ``parts < 1`` or ``end <= start``.
        TimestampError: ``start`` or ``end`` without a time zone.

    >>> [n for n, _, _ in activity_windows(1_000, 4)]
    [189, 224, 268, 319]
    """
    _check_count("n_labels", n_labels, minimum=0)
    _check_count("parts", parts, minimum=1)
    start_us, end_us = _window(start, end)
    edges = start_us + (np.arange(parts + 1, dtype=np.int64) * (end_us - start_us)) // parts
    g = _ACTIVITY_GROWTH
    share = np.expm1(g * np.arange(parts + 1) / parts) / np.expm1(g)  # the density's integral
    before = np.rint(n_labels * share).astype(np.int64)
    before[0], before[-1] = 0, n_labels
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    moments = [epoch + timedelta(microseconds=int(us)) for us in edges]
    return [(int(before[k + 1] - before[k]), moments[k], moments[k + 1]) for k in range(parts)]
