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

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import polars as pl

from microfs._synthetic_draws import (
    _STREAM_ACTIVITY,
    _STREAM_ITEMS,
    _STREAM_PROFILES,
    _TIME,
    _check_count,
    _check_versions,
    _decode,
    _group_cumsum,
    _popular,
    _require,
    _rng,
    _sorted_distinct_times,
    _version_times,
    _versions,
    _window,
    append_batch,
    corrections,
)
from microfs.errors import DefinitionError, NotFoundError, SchemaError

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
    "SCHEMAS",
    "SIZES",
    "USER_LEVELS",
    "World",
    "append_batch",
    "corrections",
    "generate_world",
    "item_features",
    "user_activity",
    "user_profiles",
]

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
        "expectations": [
            {"column": "user_level", "kind": "in_set", "values": list(USER_LEVELS)},
            {"column": "age", "kind": "between", "min": 0, "max": 120},
            {"column": "country", "kind": "in_set", "values": list(COUNTRIES)},
        ],
        "validation": "strict",
    },
    "item_feature": {
        "primary_keys": ["item_id"],
        "event_time": "timestamp",
        "online_keys": ["item_id"],
        "description": "Item catalogue over time: price (with discounts) and category.",
        "expectations": [
            {"column": "price", "kind": "between", "min": 0},
            {"column": "category", "kind": "in_set", "values": list(CATEGORIES)},
        ],
        "validation": "quarantine",
    },
    "user_activity": {
        "primary_keys": ["user_id", "item_id"],
        "event_time": "timestamp",
        "online_keys": ["user_id", "item_id"],
        "description": "User-item sessions: time spent and whether the session converted.",
        "expectations": [
            {"column": "duration_sec", "kind": "between", "min": 0},
            {"column": "conversion", "kind": "in_set", "values": [0, 1]},
        ],
        "validation": "strict",
    },
}
"""Per group, keyword arguments for ``create_feature_group`` other than name and schema.

Every group has expectations that the generated data meets: ``user_profile`` and
``user_activity`` refuse a failing batch (``strict``), ``item_feature`` quarantines
failing rows.

Use as ``fs.create_feature_group(name=n, schema=SCHEMAS[n], **GROUPS[n])``; treat as
read-only.
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
