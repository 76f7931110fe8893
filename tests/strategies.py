"""Hypothesis strategies shared by the test suite, one section per topic."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import polars as pl
from hypothesis import strategies as st

# ---------------------------------------------------------------------------------------
# Point-in-time joins (tests/test_pit.py): random label spines and feature groups with
# small key and time domains, so that exact-time ties, duplicates and misses are frequent.
# ---------------------------------------------------------------------------------------

PIT_BASE_TIME = datetime(2024, 1, 1, tzinfo=timezone.utc)
PIT_TIME = pl.Datetime("us", "UTC")
PIT_LABEL_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Int64(),
    "item_id": pl.String(),
    "t": PIT_TIME,
    "y": pl.Int8(),
}
PIT_LABEL_KEYS = ("user_id", "item_id")


@dataclass(frozen=True)
class PitGroup:
    """A joined group as plain rows (tuples in `schema` order) plus its join options."""

    schema: dict[str, pl.DataType]
    rows: list[tuple[Any, ...]]
    on: tuple[str, ...]
    event_time: str | None
    features: tuple[str, ...]
    prefix: str = ""
    max_age: timedelta | None = None
    sorted_by_time: bool = False


@dataclass(frozen=True)
class PitWorld:
    """Label rows (tuples in `label_schema` order) and the groups to join, in join order."""

    label_schema: dict[str, pl.DataType]
    label_rows: list[tuple[Any, ...]]
    label_keys: tuple[str, ...]
    label_time: str
    labels_sorted: bool
    groups: list[PitGroup]


def _none_first(value: Any) -> tuple[int, Any]:
    return (0, 0) if value is None else (1, value)


def pit_sort_key(row: tuple[Any, ...], positions: list[int]) -> tuple[Any, ...]:
    """Sort key of a row by the columns at `positions`, ascending with nulls first."""
    return tuple(_none_first(row[p]) for p in positions)


# Seconds 0..12 plus 0 or 1 microsecond: many exact ties, and max_age boundaries hit exactly.
pit_times = st.builds(
    lambda s, us: PIT_BASE_TIME + timedelta(seconds=s, microseconds=us),
    st.integers(0, 12),
    st.sampled_from([0, 0, 0, 1]),
)
# Small key domains with an occasional null key.
pit_user_ids = st.sampled_from([0, 1, 2, 3, None])
pit_item_ids = st.sampled_from(["a", "b", "ab", None])
pit_max_ages = st.one_of(
    st.none(),
    st.builds(
        lambda s, us: timedelta(seconds=s, microseconds=us),
        st.integers(0, 6),
        st.sampled_from([0, 1]),
    ),
)


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The strategy's values, null about one time in four."""
    return st.one_of(strategy, strategy, strategy, st.none())


_floats = st.floats(-1e6, 1e6, allow_nan=False, width=64)


@st.composite
def _timed_rows(
    draw: st.DrawFn, keys: st.SearchStrategy[tuple[Any, ...]], values: st.SearchStrategy[Any]
) -> list[tuple[Any, ...]]:
    """Rows (*key, time, *values), unique on (key, time), in arbitrary order."""
    size = draw(st.integers(0, 25))
    rows = draw(
        st.lists(
            st.tuples(keys, pit_times, values),
            min_size=size,
            max_size=size,
            unique_by=lambda r: (r[0], r[1]),
        )
    )
    return [(*key, time, *vals) for key, time, vals in rows]


@st.composite
def _static_group(draw: st.DrawFn) -> PitGroup:
    """A group without event time, unique on user_id (which may be null once)."""
    schema: dict[str, pl.DataType] = {
        "user_id": pl.Int64(),
        "country": pl.String(),
        "age": pl.Int16(),
    }
    rows = draw(
        st.lists(
            st.tuples(
                pit_user_ids,
                _optional(st.sampled_from(["fr", "de"])),
                _optional(st.integers(0, 120)),
            ),
            min_size=draw(st.integers(0, 5)),
            max_size=5,
            unique_by=lambda r: r[0],
        )
    )
    features = tuple(draw(st.lists(st.sampled_from(["country", "age"]), min_size=1, unique=True)))
    return PitGroup(schema, rows, ("user_id",), None, features)


@st.composite
def _timed_group(draw: st.DrawFn, name: str) -> PitGroup:
    """One of three timed group shapes, with random rows and options."""
    keys: st.SearchStrategy[tuple[Any, ...]]
    values: st.SearchStrategy[tuple[Any, ...]]
    if name == "user":
        schema: dict[str, pl.DataType] = {
            "user_id": pl.Int64(),
            "ts": PIT_TIME,
            "score": pl.Float64(),
            "level": pl.String(),
        }
        keys = st.tuples(pit_user_ids)
        values = st.tuples(_optional(_floats), _optional(st.sampled_from(["gold", "red"])))
        on: tuple[str, ...] = ("user_id",)
        event_time = "ts"
        prefix = draw(st.sampled_from(["", "u_"]))
    elif name == "item":
        # Its event-time column is called like the label time: it must not clash.
        schema = {
            "item_id": pl.String(),
            "t": PIT_TIME,
            "price": pl.Float32(),
            "in_stock": pl.Boolean(),
        }
        keys = st.tuples(pit_item_ids)
        values = st.tuples(_optional(st.sampled_from([0.5, 1.25, 3.0])), _optional(st.booleans()))
        on, event_time, prefix = ("item_id",), "t", ""
    else:
        # `score` is also a feature of "user": the prefix keeps them apart.
        schema = {
            "user_id": pl.Int64(),
            "item_id": pl.String(),
            "ts": PIT_TIME,
            "score": pl.Float64(),
            "clicks": pl.Int32(),
        }
        keys = st.tuples(pit_user_ids, pit_item_ids)
        values = st.tuples(_optional(_floats), _optional(st.integers(-(2**31), 2**31 - 1)))
        on, event_time, prefix = ("user_id", "item_id"), "ts", "pair_"

    rows = draw(_timed_rows(keys, values))
    value_columns = [c for c in schema if c not in (*on, event_time)]
    features = tuple(draw(st.lists(st.sampled_from(value_columns), min_size=1, unique=True)))
    max_age = draw(pit_max_ages)
    sorted_by_time = draw(st.booleans())
    if sorted_by_time:
        time_at = list(schema).index(event_time)
        rows = sorted(rows, key=lambda r: r[time_at])
    return PitGroup(schema, rows, on, event_time, features, prefix, max_age, sorted_by_time)


@st.composite
def pit_worlds(draw: st.DrawFn) -> PitWorld:
    """A label spine and up to four joined groups (user, item, user+item, static user)."""
    size = draw(st.integers(0, 30))
    label_rows = draw(
        st.lists(
            st.tuples(pit_user_ids, pit_item_ids, pit_times, st.integers(0, 1)),
            min_size=size,
            max_size=size,
        )
    )
    # Exact duplicates of some label rows: both must be kept.
    copies = draw(st.lists(st.sampled_from(label_rows), max_size=5)) if label_rows else []
    label_rows = label_rows + copies
    if copies:
        label_rows = draw(st.permutations(label_rows))
    labels_sorted = draw(st.booleans())
    if labels_sorted:
        label_rows = sorted(label_rows, key=lambda r: pit_sort_key(r, [2, 0, 1]))
    names = draw(st.lists(st.sampled_from(["user", "item", "pair", "static"]), unique=True))
    groups = [draw(_static_group() if name == "static" else _timed_group(name)) for name in names]
    return PitWorld(PIT_LABEL_SCHEMA, list(label_rows), PIT_LABEL_KEYS, "t", labels_sorted, groups)


# ---------------------------------------------------------------------------------------
# Transformations (tests/test_transformations.py): training and test frames with ints,
# floats, strings and bools (nulls, NaN, infinities, constant columns, categories unseen in
# training) and random chains of transformations valid for each column's type.
# ---------------------------------------------------------------------------------------

TF_DTYPES: dict[str, tuple[pl.DataType, ...]] = {
    "int": (pl.Int64(), pl.Int32()),
    "float": (pl.Float64(), pl.Float32()),
    "string": (pl.String(), pl.Categorical()),
    "bool": (pl.Boolean(),),
}
# One usable value per kind, put in every training frame so that fitting has data.
TF_ANCHORS: dict[str, Any] = {"int": 3, "float": 2.5, "string": "a", "bool": True}


@dataclass(frozen=True)
class TransformCase:
    """Training and test rows, the feature columns, and transformation definitions."""

    train: pl.DataFrame
    test: pl.DataFrame
    features: list[str]
    specs: list[dict[str, Any]]


def tf_values(kind: str, *, unseen: bool = False) -> st.SearchStrategy[Any]:
    """Values of one kind, null one time in four; `unseen` widens the domain (test rows)."""
    if kind == "int":
        base: st.SearchStrategy[Any] = st.integers(-40, 40) if unseen else st.integers(-20, 20)
    elif kind == "float":
        specials = [0.0, -0.0, -1.0, -0.5, 1.5, float("nan"), float("inf"), float("-inf")]
        base = st.one_of(st.floats(-1e3, 1e3, allow_nan=False), st.sampled_from(specials))
    elif kind == "string":
        base = st.sampled_from(list("abcde" if unseen else "abc"))
    else:
        base = st.booleans()
    return st.one_of(base, base, base, st.none())


def _tf_number(*, integer: bool) -> st.SearchStrategy[Any]:
    halves = st.integers(-40, 40).map(lambda v: v / 2)
    return st.integers(-20, 20) if integer else halves


@st.composite
def tf_step(draw: st.DrawFn, kind: str) -> tuple[dict[str, Any], str | None]:
    """One definition (without its column) valid for `kind`, and the kind it outputs.

    The output kind is None after one_hot_encode, which ends a chain.
    """
    numeric = kind in ("int", "float")
    names = ["impute"] + (
        ["scale", "standard_scale", "min_max_scale", "robust_scale", "log1p", "clip", "bucketize"]
        if numeric
        else ["one_hot_encode", "label_encode"]
    )
    if kind == "int":
        names += ["one_hot_encode", "label_encode"]
    name = draw(st.sampled_from(names))
    if name in ("one_hot_encode", "label_encode"):
        return {"type": name}, (None if name == "one_hot_encode" else "int")
    if name in ("scale", "standard_scale", "min_max_scale", "robust_scale", "log1p"):
        return {"type": name}, "float"
    if name == "clip":
        bounds = sorted(draw(st.lists(_tf_number(integer=False), min_size=2, max_size=2)))
        which = draw(st.sampled_from(["lower", "upper", "both"]))
        spec: dict[str, Any] = {"type": "clip"}
        if which != "upper":
            spec["lower"] = bounds[0]
        if which != "lower":
            spec["upper"] = bounds[1]
        return spec, "float"
    if name == "bucketize":
        if draw(st.booleans()):
            return {"type": "bucketize", "n_buckets": draw(st.integers(2, 6))}, "int"
        edges = draw(st.lists(_tf_number(integer=False), min_size=1, max_size=5, unique=True))
        return {"type": "bucketize", "boundaries": sorted(edges)}, "int"
    strategies = ["most_frequent", "constant"] + (["mean", "median"] if numeric else [])
    strategy = draw(st.sampled_from(strategies))
    spec = {"type": "impute", "strategy": strategy}
    if strategy in ("mean", "median"):
        return spec, "float"
    if strategy == "most_frequent":
        return spec, kind
    if kind == "bool":
        spec["value"] = draw(st.booleans())
    elif kind == "string":
        spec["value"] = draw(st.sampled_from(["a", "zz"]))
    else:
        spec["value"] = draw(_tf_number(integer=draw(st.booleans())))
    out = "float" if kind == "float" or isinstance(spec["value"], float) else kind
    return spec, out


@st.composite
def tf_chain(draw: st.DrawFn, kind: str) -> list[dict[str, Any]]:
    """One to three chained definitions (without their column) starting from `kind`."""
    chain: list[dict[str, Any]] = []
    current: str | None = kind
    for _ in range(draw(st.integers(1, 3))):
        if current is None:
            break
        spec, current = draw(tf_step(current))
        chain.append(spec)
    return chain


@st.composite
def transform_cases(draw: st.DrawFn) -> TransformCase:
    """Feature columns of random kinds (some constant, some untransformed) and an `id`."""
    kinds = draw(st.lists(st.sampled_from(list(TF_DTYPES)), min_size=1, max_size=4))
    n_train = draw(st.integers(0, 20))
    n_test = draw(st.integers(0, 15))
    train: dict[str, pl.Series] = {"id": pl.Series("id", range(n_train + 1))}
    test: dict[str, pl.Series] = {"id": pl.Series("id", range(n_test))}
    specs: list[dict[str, Any]] = []
    features: list[str] = []
    for i, kind in enumerate(kinds):
        column = f"f{i}"
        dtype = draw(st.sampled_from(TF_DTYPES[kind]))
        if draw(st.integers(0, 4)) == 0:  # a constant column, with some nulls
            value = TF_ANCHORS[kind]
            values = st.sampled_from([value, value, None])
            train_values = draw(st.lists(values, min_size=n_train, max_size=n_train))
        else:
            train_values = draw(st.lists(tf_values(kind), min_size=n_train, max_size=n_train))
        test_values = draw(st.lists(tf_values(kind, unseen=True), min_size=n_test, max_size=n_test))
        train[column] = pl.Series(column, [TF_ANCHORS[kind], *train_values], dtype=dtype)
        test[column] = pl.Series(column, test_values, dtype=dtype)
        features.append(column)
        if draw(st.integers(0, 5)) > 0:
            specs.extend({**spec, "column": column} for spec in draw(tf_chain(kind)))
    return TransformCase(pl.DataFrame(train), pl.DataFrame(test), features, specs)


# ---------------------------------------------------------------------------------------
# Feature-group upserts (tests/test_feature_group.py): sequences of batches over a tiny key
# and time domain, so that later batches often replace stored rows. Times include
# neighbours less than a millisecond apart (Delta keeps millisecond statistics only).
# ---------------------------------------------------------------------------------------

UPSERT_T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
UPSERT_TIMES = tuple(
    UPSERT_T0 + delta
    for delta in (
        timedelta(0),
        timedelta(microseconds=1),
        timedelta(microseconds=500),
        timedelta(microseconds=999),
        timedelta(milliseconds=1),
        timedelta(hours=1),
    )
)
UPSERT_SCHEMA = {
    "k": "int64",
    "s": "string",
    "t": "datetime64[us, UTC]",
    "x": "float64",
    "n": "int32",
}
"""Keys ``k`` and ``s``; ``t`` is the event time, or a plain column in a static group."""

UpsertRow = tuple[int, str, datetime, float | None, int]
"""One row in ``UPSERT_SCHEMA`` order."""


@dataclass(frozen=True)
class UpsertCase:
    """Batches to insert one after another; no batch holds two rows with the same key."""

    static: bool
    batches: list[list[UpsertRow]]

    @property
    def key_width(self) -> int:
        """How many leading fields of a row form its upsert key."""
        return 2 if self.static else 3


@st.composite
def upsert_cases(draw: st.DrawFn) -> UpsertCase:
    """A random static or event-time group and 1-5 batches of 0-5 rows each."""
    static = draw(st.booleans())
    row = st.tuples(
        st.integers(0, 3),
        st.sampled_from(["a", "b"]),
        st.sampled_from(UPSERT_TIMES),
        st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)),
        st.integers(-(2**31), 2**31 - 1),
    )
    width = 2 if static else 3
    batch = st.lists(row, max_size=5, unique_by=lambda r: r[:width])
    return UpsertCase(static, draw(st.lists(batch, min_size=1, max_size=5)))


# ---------------------------------------------------------------------------------------
# Online store (tests/test_online_store.py): batches for groups of several shapes (online
# keys equal to or a subset of the primary keys, string and composite keys, static groups)
# over tiny key and time domains, so that upserts, equal event times and appends older than
# the stored row are frequent.
# ---------------------------------------------------------------------------------------

ONLINE_T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
ONLINE_TIMES = tuple(
    ONLINE_T0 + delta
    for delta in (
        timedelta(0),
        timedelta(microseconds=1),
        timedelta(microseconds=900),
        timedelta(hours=1),
        timedelta(hours=2),
        timedelta(days=-1),
    )
)
ONLINE_LEVELS = ("gold", "silver", "bronze", "iron", "wood", "")


@dataclass(frozen=True)
class OnlineShape:
    """A feature group layout: its schema, primary keys, online keys and event time."""

    name: str
    schema: dict[str, str]
    primary_keys: tuple[str, ...]
    online_keys: tuple[str, ...]
    event_time: str | None


_ONLINE_VALUES = {"score": "float64", "level": "string", "flag": "bool", "day": "date"}
ONLINE_SHAPES = (
    OnlineShape(
        "int_key",
        {"user_id": "int64", "ts": "datetime64[us, UTC]", **_ONLINE_VALUES},
        ("user_id",),
        ("user_id",),
        "ts",
    ),
    OnlineShape(
        "subset_key",
        {"user_id": "int64", "item": "string", "ts": "datetime64[us, UTC]", **_ONLINE_VALUES},
        ("user_id", "item"),
        ("user_id",),
        "ts",
    ),
    OnlineShape(
        "composite_key",
        {"region": "string", "user_id": "int32", "ts": "datetime64[us, UTC]", **_ONLINE_VALUES},
        ("region", "user_id"),
        ("region", "user_id"),
        "ts",
    ),
    OnlineShape(
        "static_subset",
        {"user_id": "int64", "item": "string", **_ONLINE_VALUES},
        ("user_id", "item"),
        ("user_id",),
        None,
    ),
    OnlineShape("static", {"user_id": "int16", **_ONLINE_VALUES}, ("user_id",), ("user_id",), None),
)
_ONLINE_DOMAINS: dict[str, st.SearchStrategy[Any]] = {
    "user_id": st.integers(0, 5),
    "item": st.sampled_from(["a", "b", "c"]),
    "region": st.sampled_from(["eu", "us", "é"]),
    "ts": st.sampled_from(ONLINE_TIMES),
    "score": st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
    "level": st.one_of(st.none(), st.sampled_from(ONLINE_LEVELS)),
    "flag": st.one_of(st.none(), st.booleans()),
    "day": st.one_of(st.none(), st.dates()),
}


@dataclass(frozen=True)
class OnlineCase:
    """A group shape, batches of row dicts to insert in turn, and whether to shrink limits."""

    shape: OnlineShape
    batches: list[list[dict[str, Any]]]
    tiny_limits: bool


@st.composite
def online_cases(draw: st.DrawFn) -> OnlineCase:
    """One of ``ONLINE_SHAPES`` and 1-4 batches of 1-8 rows, unique by upsert key per batch."""
    shape = draw(st.sampled_from(ONLINE_SHAPES))
    row = st.fixed_dictionaries({c: _ONLINE_DOMAINS[c] for c in shape.schema})
    upsert = (*shape.primary_keys, *([shape.event_time] if shape.event_time else []))
    batch = st.lists(row, min_size=1, max_size=8, unique_by=lambda r: tuple(r[k] for k in upsert))
    return OnlineCase(shape, draw(st.lists(batch, min_size=1, max_size=4)), draw(st.booleans()))
