"""Hypothesis strategies shared by the test suite, one section per topic."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import polars as pl
from hypothesis import strategies as st

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
