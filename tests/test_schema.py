from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microfs.errors import DuplicateKeyError, InvalidNameError, SchemaError, TimestampError
from microfs.schema import (
    CANONICAL_TYPES,
    DATETIME,
    canonical_type,
    check_name,
    normalize_schema,
    polars_dtype,
    prepare_batch,
    to_polars,
)

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


# --- type spellings -------------------------------------------------------------------------

SPELLINGS: dict[object, str] = {
    "int64": "int64",
    "INT64": "int64",
    " int32 ": "int32",
    "int": "int64",
    "float64": "float64",
    "float": "float64",
    "double": "float64",
    "float32": "float32",
    "bool": "bool",
    "boolean": "bool",
    "string": "string",
    "str": "string",
    "object": "string",
    "category": "string",
    "utf8": "string",
    "date": "date",
    "datetime64[ns, utc]": "datetime",
    "datetime64[ns, UTC]": "datetime",
    "datetime64[ms, Europe/Paris]": "datetime",
    "datetime64[us]": "datetime",
    "datetime": "datetime",
    "timestamp": "datetime",
    pl.Int64: "int64",
    pl.Int16(): "int16",
    pl.Float32: "float32",
    pl.Boolean: "bool",
    pl.String: "string",
    pl.Categorical: "string",
    pl.Date: "date",
    pl.Datetime: "datetime",
    pl.Datetime("ns", "UTC"): "datetime",
    pl.Datetime("ms"): "datetime",
}


@pytest.mark.parametrize(("spelled", "canonical"), SPELLINGS.items(), ids=map(repr, SPELLINGS))
def test_every_spelling_maps_to_one_canonical_type(spelled: object, canonical: str) -> None:
    assert canonical_type(spelled) == canonical


@pytest.mark.parametrize("spelled", ["decimal", "int128", "list", "", 5, None, pl.List(pl.Int64)])
def test_unknown_types_are_refused(spelled: object) -> None:
    with pytest.raises(SchemaError, match="column 'c'"):
        canonical_type(spelled, column="c")


def test_canonical_types_round_trip_through_polars() -> None:
    for name in CANONICAL_TYPES:
        assert canonical_type(polars_dtype(name)) == name
    assert polars_dtype("datetime") == DATETIME == pl.Datetime("us", "UTC")


def test_normalize_schema_keeps_column_order() -> None:
    schema = normalize_schema({"z": "category", "a": pl.Int32, "t": "datetime64[ns, utc]"})
    assert list(schema.items()) == [("z", "string"), ("a", "int32"), ("t", "datetime")]


@pytest.mark.parametrize("schema", [{}, {"": "int64"}, {"a`b": "int64"}, {"a": "nope"}])
def test_normalize_schema_refuses_bad_schemas(schema: dict[str, Any]) -> None:
    with pytest.raises(SchemaError):
        normalize_schema(schema)


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "user_profile", "fg2", "a" * 64, "x_1_y"])
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "A", "User", "1a", "_a", "a" * 65, "a b", "a-b", "a/b", "..", "../a", "a\n", "é", 3],
)
def test_invalid_names(name: object) -> None:
    with pytest.raises(InvalidNameError, match="invalid group name"):
        check_name(name, what="group name")


# --- input frames ---------------------------------------------------------------------------


def test_to_polars_accepts_polars_lazy_pandas_and_arrow() -> None:
    frame = pl.DataFrame({"a": [1, 2]})
    assert to_polars(frame) is frame
    assert to_polars(frame.lazy()).equals(frame)
    assert to_polars(frame.to_pandas()).equals(frame)
    assert to_polars(frame.to_arrow()).equals(frame)
    assert to_polars(pa.RecordBatch.from_pydict({"a": [1, 2]})).equals(frame)


@pytest.mark.parametrize("data", [[1, 2], {"a": [1]}, "a,b", None, pl.Series("a", [1])])
def test_to_polars_refuses_other_objects(data: object) -> None:
    with pytest.raises(SchemaError, match="polars.DataFrame, a pandas.DataFrame or a pyarrow"):
        to_polars(data)


# --- prepare_batch --------------------------------------------------------------------------

SCHEMA = {"id": "int64", "t": "datetime", "x": "float64", "n": "int32", "s": "string"}


def _prepare(frame: object, schema: dict[str, str] | None = None) -> pl.DataFrame:
    return prepare_batch(frame, schema or SCHEMA, primary_keys=["id"], event_time="t")


def _batch(**overrides: Any) -> pl.DataFrame:
    columns: dict[str, Any] = {
        "id": [1, 2, 3],
        "t": [T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)],
        "x": [0.5, None, 2.0],
        "n": [1, 2, 3],
        "s": ["a", "b", None],
    }
    columns.update(overrides)
    return pl.DataFrame(columns)


def test_prepare_batch_casts_losslessly_and_orders_columns() -> None:
    given_frame = _batch(
        id=pl.Series([1, 2, 3], dtype=pl.Int8),
        x=pl.Series([1, 2, 3], dtype=pl.Int32),
        n=pl.Series([1.0, 2.0, None]),
        s=pl.Series(["a", "b", "a"], dtype=pl.Categorical),
    ).select("s", "n", "x", "t", "id")
    before = given_frame.clone()
    batch = _prepare(given_frame)
    assert given_frame.equals(before)
    assert batch.schema == pl.Schema(
        {"id": pl.Int64, "t": DATETIME, "x": pl.Float64, "n": pl.Int32, "s": pl.String}
    )
    assert batch.rows() == [
        (1, T0, 1.0, 1, "a"),
        (2, T0 + timedelta(hours=1), 2.0, 2, "b"),
        (3, T0 + timedelta(hours=2), 3.0, None, "a"),
    ]


@pytest.mark.parametrize(
    ("column", "values", "match"),
    [
        ("n", pl.Series([1, 2, 2**31]), "'n'.*2147483648"),
        ("n", pl.Series([1.0, 2.25, 3.0]), "'n' holds 2.25"),
        ("n", pl.Series([1.0, float("inf"), 3.0]), "'n'"),
        ("n", pl.Series([1.0, float("nan"), 3.0]), "'n'"),
        ("id", pl.Series([1, -1, 2], dtype=pl.Int64).cast(pl.Float32) * 1e20, "'id'"),
        ("x", pl.Series(["1.0", "two", "3"]), "'x'"),
        ("n", pl.Series(["1", "2", "3"]), "'n' holds text \\('1'\\) but the schema says int32"),
        ("x", pl.Series(["1.5", None, "3"]), "'x' holds text"),
        ("n", pl.Series([True, False, True]), None),
        ("t", pl.Series([date(2024, 1, 1)] * 3), "'t' has type Date"),
        ("s", pl.Series([[1], [2], [3]]), "'s'"),
    ],
)
def test_prepare_batch_refuses_lossy_casts(
    column: str, values: pl.Series, match: str | None
) -> None:
    frame = _batch(**{column: values})
    if match is None:  # booleans into integers are exact: 1 and 0
        assert _prepare(frame)[column].to_list() == [1, 0, 1]
        return
    with pytest.raises(SchemaError, match=match):
        _prepare(frame)


def test_integer_floats_cast_into_integers() -> None:
    batch = _prepare(_batch(n=pl.Series([1.0, -2.0, None])))
    assert batch["n"].to_list() == [1, -2, None]


def test_prepare_batch_sorts_by_event_time_stably() -> None:
    times = [T0 + timedelta(hours=h) for h in (2, 0, 1)]
    batch = _prepare(_batch(t=times))
    assert batch["id"].to_list() == [2, 3, 1]
    assert batch["t"].is_sorted()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_large_batch_with_many_ties_keeps_its_input_order_within_a_time(seed: int) -> None:
    # Large enough to be sorted in parallel chunks, handed over in several chunks itself;
    # the reference is numpy's stable argsort.
    rng = np.random.default_rng(seed)
    rows = 300_000
    micros = rng.integers(0, 2_000, rows)
    parts = np.array_split(np.arange(rows), 7)
    frame = pl.concat(
        [
            pl.DataFrame(
                {
                    "id": part,
                    "t": [T0 + timedelta(microseconds=int(m)) for m in micros[part]],
                    "x": part.astype(float),
                    "n": part.astype(np.int32),
                    "s": ["s"] * len(part),
                }
            )
            for part in parts
        ],
        rechunk=False,
    )
    batch = prepare_batch(frame, SCHEMA, primary_keys=["id", "s"], event_time="t")
    assert batch["id"].to_numpy().tolist() == np.argsort(micros, kind="stable").tolist()
    assert batch["x"].to_numpy().tolist() == np.argsort(micros, kind="stable").tolist()


@pytest.mark.parametrize(
    ("zone", "hour"), [("UTC", 0), ("Europe/Paris", 1), ("America/New_York", 19), ("Etc/GMT-5", 5)]
)
def test_time_zones_become_utc(zone: str, hour: int) -> None:
    local = _batch().with_columns(pl.col("t").dt.convert_time_zone(zone))
    assert local["t"].dt.hour()[0] == hour
    batch = _prepare(local)
    assert batch.schema["t"] == DATETIME
    assert batch["t"].to_list() == _batch()["t"].to_list()


def test_precision_of_times() -> None:
    ms = _batch().with_columns(pl.col("t").cast(pl.Datetime("ms", "UTC")))
    assert _prepare(ms)["t"].to_list() == _batch()["t"].to_list()
    ns = _batch().with_columns(pl.col("t").cast(pl.Datetime("ns", "UTC")))
    assert _prepare(ns)["t"].to_list() == _batch()["t"].to_list()
    off = ns.with_columns(pl.Series("t", [0, 1_000, 1_001]).cast(pl.Datetime("ns", "UTC")))
    with pytest.raises(TimestampError, match=r"1970-01-01T00:00:00\.000001001.*truncate"):
        _prepare(off)


def test_pandas_nanosecond_times() -> None:
    frame = _batch().to_pandas()
    frame["t"] = frame["t"].astype("datetime64[ns, UTC]")
    assert _prepare(frame)["t"].to_list() == _batch()["t"].to_list()
    frame.loc[1, "t"] = pd.Timestamp("2024-01-01T00:00:00.000000001", tz="UTC")
    with pytest.raises(TimestampError, match="sub-microsecond"):
        _prepare(frame)


def test_datetime_feature_columns_follow_the_same_rules() -> None:
    schema = {**SCHEMA, "seen": "datetime"}
    good = _batch().with_columns(seen=pl.col("t"))
    assert _prepare(good, schema)["seen"].dtype == DATETIME
    nulls = _batch().with_columns(seen=pl.lit(None, dtype=DATETIME))
    assert _prepare(nulls, schema)["seen"].null_count() == 3  # nulls are fine off the key
    with pytest.raises(TimestampError, match="'seen' holds naive"):
        _prepare(good.with_columns(pl.col("seen").dt.replace_time_zone(None)), schema)


def test_all_null_columns_take_the_stored_type() -> None:
    batch = _prepare(_batch(x=[None] * 3, s=[None] * 3))
    assert batch.schema["x"] == pl.Float64
    assert batch.schema["s"] == pl.String


def test_empty_batch_keeps_the_schema() -> None:
    empty = pl.DataFrame(
        schema={"id": pl.Int64, "t": DATETIME, "x": pl.Float64, "n": pl.Int32, "s": pl.String}
    )
    batch = _prepare(empty)
    assert batch.height == 0
    assert list(batch.schema) == list(SCHEMA)


def test_null_keys_are_refused() -> None:
    with pytest.raises(SchemaError, match="1 row\\(s\\) have a null in primary key column 'id'"):
        _prepare(_batch(id=[1, None, 3]))
    with pytest.raises(TimestampError, match="null in event time column 't'"):
        _prepare(_batch(t=[T0, None, T0]))


def test_duplicates_are_found_even_when_far_apart() -> None:
    times = [T0 + timedelta(hours=1), T0, T0 + timedelta(hours=1)]
    with pytest.raises(DuplicateKeyError, match="'id': 1"):
        _prepare(_batch(id=[1, 2, 1], t=times))
    # the same key at other times, and other keys at the same time, are fine
    assert _prepare(_batch(id=[1, 2, 1])).height == 3
    assert _prepare(_batch(t=[T0, T0, T0])).height == 3


def test_static_groups_check_duplicates_on_keys_alone() -> None:
    frame = _batch(id=[7, 8, 7])
    with pytest.raises(DuplicateKeyError, match="'id': 7"):
        prepare_batch(frame, SCHEMA, primary_keys=["id"], event_time=None)
    both = prepare_batch(frame, SCHEMA, primary_keys=["id", "n"], event_time=None)
    assert both["id"].to_list() == [7, 8, 7]  # no event time: the input order is kept


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from(["a", "b"]), st.integers(0, 4)),
        max_size=12,
    )
)
def test_duplicate_check_agrees_with_a_set(rows: list[tuple[int, str, int]]) -> None:
    frame = pl.DataFrame(
        {
            "id": [r[0] for r in rows],
            "s": [r[1] for r in rows],
            "t": [T0 + timedelta(microseconds=r[2]) for r in rows],
            "x": [float(i) for i in range(len(rows))],
            "n": list(range(len(rows))),
        },
        schema={"id": pl.Int64, "s": pl.String, "t": DATETIME, "x": pl.Float64, "n": pl.Int32},
    )
    has_duplicates = len(set(rows)) < len(rows)
    if has_duplicates:
        with pytest.raises(DuplicateKeyError):
            prepare_batch(frame, SCHEMA, primary_keys=["id", "s"], event_time="t")
        return
    batch = prepare_batch(frame, SCHEMA, primary_keys=["id", "s"], event_time="t")
    # the same rows, sorted by time, ties in input order
    assert batch.rows() == frame.select(list(SCHEMA)).sort("t", maintain_order=True).rows()


@pytest.mark.parametrize("spelled", ["uint8", "UInt64", pl.UInt32, pl.UInt16()])
def test_unsigned_types_are_refused_with_a_signed_suggestion(spelled: object) -> None:
    with pytest.raises(SchemaError, match=r"unsigned.*int64"):
        normalize_schema({"x": spelled})
