from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import tempfile
import threading
import zlib
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from microfs import DefinitionError, FeatureGroup, FeatureStore, SchemaError
from microfs.online import OnlineTable
from microfs.online import columns as online_columns
from microfs.online import table as online_table
from microfs.online.columns import polars_type
from microfs.online.index import Snapshot
from microfs.online.keys import Keys
from microfs.schema import canonical_type, polars_dtype
from tests.strategies import OnlineCase, OnlineShape, online_cases

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
PROFILE_SCHEMA = {
    "user_id": "int64",
    "ts": "datetime64[us, UTC]",
    "age": "int64",
    "level": "string",
    "score": "float64",
}
FEATURES = ("age", "level", "score")


def frame(schema: dict[str, str], rows: list[dict[str, Any]]) -> pl.DataFrame:
    types = {c: polars_dtype(canonical_type(t)) for c, t in schema.items()}
    return pl.DataFrame(rows, schema=types, orient="row")


def profile(rows: list[tuple[int, float, int | None, str | None, float | None]]) -> pl.DataFrame:
    """Profile rows (user, hours after T0, age, level, score)."""
    return frame(
        PROFILE_SCHEMA,
        [
            {"user_id": u, "ts": T0 + timedelta(hours=h), "age": a, "level": v, "score": s}
            for u, h, a, v, s in rows
        ],
    )


@pytest.fixture
def profiles(store: FeatureStore) -> FeatureGroup:
    group = store.create_feature_group(
        name="user_profile",
        primary_keys=["user_id"],
        event_time="ts",
        schema=PROFILE_SCHEMA,
        online_keys=["user_id"],
    )
    group.insert(
        profile([(1, 0, 30, "gold", 1.5), (2, 0, 40, None, None), (3, 1, 50, "iron", 3.0)])
    )
    return group


class ScanCounter:
    """Counts full snapshot reads (FeatureGroup.scan), which only a rebuild makes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = FeatureGroup.scan

        def counting(group: FeatureGroup, *args: Any, **kwargs: Any) -> pl.LazyFrame:
            self.calls += 1
            return original(group, *args, **kwargs)

        monkeypatch.setattr(FeatureGroup, "scan", counting)


def other_process(lake: Path, code: str) -> str:
    """Run ``code`` in a new Python process with ``fs`` opened on ``lake``; return stdout."""
    script = (
        "from datetime import datetime, timedelta, timezone\n"
        "import polars as pl, microfs\n"
        f"fs = microfs.FeatureStore({str(lake)!r})\n"
        "T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)\n" + code
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


# -- latest row per key against a brute-force reference ------------------------------------


def reference(
    shape: OnlineShape, batches: list[list[dict[str, Any]]]
) -> dict[tuple[Any, ...], Any]:
    """Latest row per online key, computed with plain loops from upsert semantics."""
    upsert = (*shape.primary_keys, *([shape.event_time] if shape.event_time else []))
    stored: dict[tuple[Any, ...], dict[str, Any]] = {}
    for batch in batches:
        for row in batch:
            stored[tuple(row[k] for k in upsert)] = row
    rest = [k for k in shape.primary_keys if k not in shape.online_keys]
    order = ([shape.event_time] if shape.event_time else []) + rest
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in stored.values():
        key = tuple(row[k] for k in shape.online_keys)
        best = latest.get(key)
        if best is None or [row[k] for k in order] > [best[k] for k in order]:
            latest[key] = row
    return latest


DOMAINS = {"user_id": range(7), "item": ["a", "b", "c"], "region": ["eu", "us", "é", "x"]}


def all_keys(shape: OnlineShape) -> list[tuple[Any, ...]]:
    return list(itertools.product(*(DOMAINS[k] for k in shape.online_keys)))


def check_table(
    table: OnlineTable, shape: OnlineShape, expected: dict[tuple[Any, ...], Any]
) -> None:
    columns = list(table.columns)
    assert len(table) == len(expected)
    keys = all_keys(shape)
    wanted = [tuple(expected[k][c] for c in columns) if k in expected else None for k in keys]
    assert [table.get(k, columns) for k in keys] == wanted
    request = frame(
        {k: shape.schema[k] for k in shape.online_keys},
        [dict(zip(shape.online_keys, k, strict=True)) for k in keys]
        + [dict.fromkeys(shape.online_keys)],
    )
    many = table.get_many(request, columns)
    assert many.columns == [*columns, "__found"]
    assert many["__found"].to_list() == [w is not None for w in wanted] + [False]
    nulls = (None,) * len(columns)
    assert many.select(columns).rows() == [w or nulls for w in wanted] + [nulls]


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=online_cases())
def test_latest_row_per_key_matches_reference(case: OnlineCase) -> None:
    shape = case.shape
    with tempfile.TemporaryDirectory() as root, contextlib.ExitStack() as limits:
        if case.tiny_limits:
            limits.enter_context(mock.patch.object(online_columns, "_DICT_LIMIT", 2))
            limits.enter_context(mock.patch.object(online_table, "_MIN_COMPACT", 0))
        fs = FeatureStore(root)
        group = fs.create_feature_group(
            name="g",
            primary_keys=list(shape.primary_keys),
            event_time=shape.event_time,
            schema=shape.schema,
            online_keys=list(shape.online_keys),
        )
        for done, batch in enumerate(case.batches, start=1):
            group.insert(frame(shape.schema, batch))
            table = fs.online.table(group)  # built after the first batch, then kept fresh
            check_table(table, shape, reference(shape, case.batches[:done]))
            assert table.table_version == group.table_version()
        check_table(OnlineTable(group), shape, reference(shape, case.batches))


def test_equal_event_times_are_broken_by_the_greatest_other_primary_key(
    store: FeatureStore,
) -> None:
    schema = {"user_id": "int64", "item": "string", "ts": "datetime64[us, UTC]", "x": "int64"}
    group = store.create_feature_group(
        name="clicks",
        primary_keys=["user_id", "item"],
        event_time="ts",
        schema=schema,
        online_keys=["user_id"],
    )
    group.insert(frame(schema, [{"user_id": 1, "item": "b", "ts": T0, "x": 1}]))
    table = store.online.table(group)
    group.insert(frame(schema, [{"user_id": 1, "item": "a", "ts": T0, "x": 2}]))
    assert table.get((1,), ["item", "x"]) == ("b", 1)
    group.insert(frame(schema, [{"user_id": 1, "item": "c", "ts": T0, "x": 3}]))
    assert table.get((1,), ["item", "x"]) == ("c", 3)
    earlier = T0 - timedelta(microseconds=1)
    group.insert(frame(schema, [{"user_id": 1, "item": "z", "ts": earlier, "x": 4}]))
    assert table.get((1,), ["item", "x"]) == ("c", 3)


@pytest.mark.parametrize("static", [False, True], ids=["event_time", "static"])
def test_a_snapshot_out_of_order_is_built_to_its_latest_rows(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch, static: bool
) -> None:
    # Later files hold older rows, so the snapshot is not in order; numpy sorts it.
    schema = {"user_id": "int64", "n": "int32", "ts": "datetime64[us, UTC]", "x": "int64"}
    group = store.create_feature_group(
        name="late",
        primary_keys=["user_id", "n"] if static else ["user_id"],
        event_time=None if static else "ts",
        schema=schema,
        online_keys=["user_id"],
    )
    users = np.random.default_rng(3).permutation(50).tolist()
    slices = {5: users[10:40], 1: users[:30], 3: users[20:]}  # hour (static: n) -> users
    for step, chosen in slices.items():
        rows = [
            {"user_id": u, "n": step, "ts": T0 + timedelta(hours=step), "x": 10 * u + step}
            for u in chosen
        ]
        group.insert(frame(schema, rows))
    # the snapshot the table is built from is out of order in its order column
    assert not group.scan().collect().get_column("n" if static else "ts").is_sorted()
    monkeypatch.setattr(pl, "arg_sort_by", mock.Mock(side_effect=AssertionError("numpy sorts")))
    table = store.online.table(group)
    expected = {u: 10 * u + max(s for s, c in slices.items() if u in c) for u in users}
    assert sorted({v % 10 for v in expected.values()}) == [1, 3, 5]
    assert [table.get((u,), ["x"]) for u in range(51)] == [
        (expected[u],) if u in expected else None for u in range(51)
    ]
    many = table.get_many(pl.DataFrame({"user_id": range(51)}), ["x"])
    assert many["x"].to_list() == [expected.get(u) for u in range(51)]


# -- freshness -----------------------------------------------------------------------------


def test_insert_in_this_process_is_seen_by_the_next_lookup(
    store: FeatureStore, profiles: FeatureGroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = store.online.table(profiles)
    assert table.get((1,), FEATURES) == (30, "gold", 1.5)
    scans = ScanCounter(monkeypatch)
    result = profiles.insert(profile([(1, 5, 31, "silver", 2.5), (4, 5, 20, "wood", None)]))
    assert result.mode == "append"
    assert table.get((1,), FEATURES) == (31, "silver", 2.5)
    assert table.get((4,), FEATURES) == (20, "wood", None)
    # an appended row older than the stored one does not replace it
    profiles.insert(profile([(1, -3, 99, "old", 0.0)]))
    assert table.get((1,), FEATURES) == (31, "silver", 2.5)
    assert scans.calls == 0, "appends must be applied without reading the snapshot"
    assert table.table_version == profiles.table_version()
    # an upsert of the stored (key, time): a merge, after which the table is rebuilt
    result = profiles.insert(profile([(4, 5, 21, "oak", 1.0)]))
    assert result.mode == "merge"
    assert table.get((4,), FEATURES) == (21, "oak", 1.0)
    assert scans.calls == 1
    assert store.online.table(profiles) is table


def test_refresh_brings_in_other_processes_commits(
    store: FeatureStore, profiles: FeatureGroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = store.online.table(profiles)
    before = table.table_version
    mode = other_process(
        store.root,
        "g = fs.get_feature_group('user_profile')\n"
        "rows = pl.DataFrame({'user_id': [5, 1], 'ts': [T0 + timedelta(hours=9)] * 2,"
        " 'age': [55, 32], 'level': ['new', 'newer'], 'score': [5.0, 6.0]})\n"
        "print(g.insert(rows.with_columns(pl.col('ts').cast(pl.Datetime('us', 'UTC')))).mode)",
    )
    assert mode == "append"
    assert table.get((5,), FEATURES) is None
    assert table.get((1,), FEATURES) == (30, "gold", 1.5)
    assert table.table_version == before
    scans = ScanCounter(monkeypatch)
    store.refresh()
    assert table.get((5,), FEATURES) == (55, "new", 5.0)
    assert table.get((1,), FEATURES) == (32, "newer", 6.0)
    assert table.table_version == before + 1
    assert scans.calls == 0, "a refresh after appends must read only the new files"
    mode = other_process(
        store.root,
        "g = fs.get_feature_group('user_profile')\n"
        "rows = pl.DataFrame({'user_id': [5], 'ts': [T0 + timedelta(hours=9)],"
        " 'age': [56], 'level': [None], 'score': [7.0]}, schema=g.schema)\n"
        "print(g.insert(rows).mode)",
    )
    assert mode == "merge"
    assert table.get((5,), FEATURES) == (55, "new", 5.0)
    store.refresh()
    assert table.get((5,), FEATURES) == (56, None, 7.0)
    assert scans.calls == 1
    store.refresh()  # nothing new: nothing read
    assert scans.calls == 1


def test_lookups_stay_consistent_while_inserts_are_applied(store: FeatureStore) -> None:
    schema = {"user_id": "int64", "ts": "datetime64[us, UTC]", "v": "int64", "s": "string"}
    group = store.create_feature_group(
        name="counters",
        primary_keys=["user_id"],
        event_time="ts",
        schema=schema,
        online_keys=["user_id"],
    )

    def generation(v: int, users: range) -> pl.DataFrame:
        rows = [
            {"user_id": u, "ts": T0 + timedelta(hours=v), "v": v, "s": f"{u}:{v}"} for u in users
        ]
        return frame(schema, rows)

    group.insert(generation(0, range(300)))
    table = store.online.table(group)
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        rng = np.random.default_rng(0)
        try:
            while not stop.is_set():
                user = int(rng.integers(0, 300))
                v, s = table.get((user,), ["v", "s"]) or (None, None)
                assert s == f"{user}:{v}"
        except BaseException as exc:  # reported to the main thread
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for v in range(1, 5):
            group.insert(generation(v, range(v * 100, 300 + v * 100)))  # new keys, newer rows
            assert table.get((v * 100,), ["v"]) == (v,)
    finally:
        stop.set()
        reader.join()
    assert not errors, errors
    assert len(table) == 700


# -- lookups -------------------------------------------------------------------------------


def test_unknown_keys_give_none(store: FeatureStore, profiles: FeatureGroup) -> None:
    table = store.online.table(profiles)
    assert table.get((42,), FEATURES) is None
    assert table.row_index((42,)) is None
    assert table.get((None,), FEATURES) is None
    assert table.row_index((2,)) is not None


def test_get_many_keeps_request_order_and_gives_nulls(
    store: FeatureStore, profiles: FeatureGroup
) -> None:
    table = store.online.table(profiles)
    request = pl.DataFrame({"other": list("abcde"), "user_id": [3, 9, 1, None, 3]})
    got = table.get_many(request, ["level", "age", "ts"])
    assert got.schema == pl.Schema(
        {
            "level": pl.String(),
            "age": pl.Int64(),
            "ts": pl.Datetime("us", "UTC"),
            "__found": pl.Boolean(),
        }
    )
    assert got.rows() == [
        ("iron", 50, T0 + timedelta(hours=1), True),
        (None, None, None, False),
        ("gold", 30, T0, True),
        (None, None, None, False),
        ("iron", 50, T0 + timedelta(hours=1), True),
    ]
    assert request.columns == ["other", "user_id"]
    empty = table.get_many(request.clear(), ["age"])
    assert empty.height == 0
    assert empty.columns == ["age", "__found"]


def test_keys_are_typed(store: FeatureStore) -> None:
    schema = {"user_id": "int64", "item_id": "int64", "x": "float64"}
    group = store.create_feature_group(
        name="pairs",
        primary_keys=["user_id", "item_id"],
        schema=schema,
        online_keys=["user_id", "item_id"],
    )
    group.insert(frame(schema, [{"user_id": 1, "item_id": 102, "x": 0.5}]))
    table = store.online.table(group)
    assert table.get((1, 102), ["x"]) == (0.5,)
    assert table.get((np.int64(1), np.int32(102)), ["x"]) == (0.5,)
    assert table.get((1.0, 102), ["x"]) == (0.5,)
    assert table.get([1, 102], ["x"]) == (0.5,)
    with pytest.raises(SchemaError, match=r"'user_id'.*int64.*'1'"):
        table.get(("1", "102"), ["x"])
    for bad in [(1.5, 102), (True, 102), (1, 2**63)]:
        with pytest.raises(SchemaError, match="int64"):
            table.row_index(bad)
    with pytest.raises(SchemaError, match=r"\(user_id, item_id\)"):
        table.get((1,), ["x"])
    with pytest.raises(SchemaError, match="'nope'"):
        table.get((1, 102), ["x", "nope"])
    request = pl.DataFrame(
        {"user_id": [1, 1], "item_id": [102, 103]},
        schema=[("user_id", pl.Int32), ("item_id", pl.Float64)],
    )
    assert table.get_many(request, ["x"])["x"].to_list() == [0.5, None]
    with pytest.raises(SchemaError, match=r"'user_id'.*int64"):
        table.get_many(pl.DataFrame({"user_id": ["1"], "item_id": [102]}), ["x"])
    with pytest.raises(SchemaError, match="item_id"):
        table.get_many(pl.DataFrame({"user_id": [1], "item_id": [102.5]}), ["x"])
    with pytest.raises(SchemaError, match="lacks online key column"):
        table.get_many(pl.DataFrame({"user_id": [1]}), ["x"])


def test_values_come_back_as_python_values_of_the_training_rows(store: FeatureStore) -> None:
    schema = {
        "key": "int64",
        "ts": "datetime64[us, UTC]",
        "i8": "int8",
        "i32": "int32",
        "f32": "float32",
        "f64": "float64",
        "flag": "bool",
        "day": "date",
        "when": "datetime64[us, UTC]",
        "text": "string",
    }
    rows = [
        {
            "key": 2**63 - 1,
            "ts": T0,
            "i8": -128,
            "i32": 2**31 - 1,
            "f32": 0.1,
            "f64": float("nan"),
            "flag": True,
            "day": date(1969, 12, 31),
            "when": T0 + timedelta(microseconds=7),
            "text": "ünïcödé",
        },
        {
            "key": 0,
            "ts": T0,
            "i8": None,
            "i32": None,
            "f32": None,
            "f64": None,
            "flag": None,
            "day": None,
            "when": None,
            "text": None,
        },
        {
            "key": 7,
            "ts": T0,
            "i8": 1,
            "i32": 2,
            "f32": -0.0,
            "f64": float("inf"),
            "flag": False,
            "day": date(2024, 2, 29),
            "when": datetime(1900, 1, 1, tzinfo=timezone.utc),
            "text": "",
        },
    ]
    group = store.create_feature_group(
        name="types", primary_keys=["key"], event_time="ts", schema=schema, online_keys=["key"]
    )
    group.insert(frame(schema, rows))
    table = store.online.table(group)
    stored = group.read()
    for key in (2**63 - 1, 0, 7):
        training = stored.filter(pl.col("key") == key).drop("key").rows()[0]
        online_row = table.get((key,), table.columns)
        assert online_row is not None
        assert [type(v) for v in online_row] == [type(v) for v in training]
        assert [repr(v) for v in online_row] == [repr(v) for v in training]
    order = [7, 2**63 - 1, 0]
    many = table.get_many(pl.DataFrame({"key": order}, schema={"key": pl.Int64}), table.columns)
    assert_frame_equal(
        many.drop("__found"),
        pl.concat([stored.filter(pl.col("key") == k).drop("key") for k in order]),
    )


def test_string_and_date_keys(store: FeatureStore) -> None:
    schema = {"city": "string", "day": "date", "ts": "datetime64[us, UTC]", "temp": "float32"}
    group = store.create_feature_group(
        name="weather",
        primary_keys=["city", "day"],
        event_time="ts",
        schema=schema,
        online_keys=["city", "day"],
    )
    cities = [f"city-{i}-{'x' * (i % 40)}" for i in range(300)]
    rows = [
        {"city": c, "day": date(2024, 1, 1 + d), "ts": T0, "temp": float(i + d)}
        for i, c in enumerate(cities)
        for d in range(2)
    ]
    group.insert(frame(schema, rows))
    table = store.online.table(group)
    assert len(table) == 600
    assert table.get(("city-7-xxxxxxx", date(2024, 1, 2)), ["temp"]) == (8.0,)
    assert table.get(("city-7-xxxxxxx", date(2024, 1, 3)), ["temp"]) is None
    assert table.get(("city-7", date(2024, 1, 2)), ["temp"]) is None
    with pytest.raises(SchemaError, match="'day'.*date"):
        table.get(("city-7", T0), ["temp"])
    request = pl.DataFrame(
        {
            "city": pl.Series(["city-299-" + "x" * 19, "nowhere"], dtype=pl.Categorical),
            "day": [date(2024, 1, 1), date(2024, 1, 1)],
        }
    )
    assert table.get_many(request, ["temp"])["temp"].to_list() == [299.0, None]


KEY_VALUES: dict[str, list[Any]] = {
    "int8": [-128, 0, 127],
    "int64": [0, -(2**63), 2**63 - 1],
    "float32": [0.5, -0.0, -1e30],
    "float64": [0.1, -0.0, 1e300],
    "bool": [True, False],
    "date": [date(1969, 12, 31), date(2024, 2, 29)],
    "datetime64[us, UTC]": [
        T0,
        T0 + timedelta(microseconds=1),
        datetime(1900, 1, 1, tzinfo=timezone.utc),
    ],
    "string": ["", "ünï", "x" * 50],
}


@pytest.mark.parametrize("key_type", list(KEY_VALUES))
@pytest.mark.parametrize("composite", [False, True], ids=["one", "with_int"])
def test_get_many_agrees_with_get_for_every_key_type(
    store: FeatureStore, key_type: str, composite: bool
) -> None:
    keys = ["k", "n"] if composite else ["k"]
    schema = {"k": key_type, "n": "int64", "v": "int64"}
    group = store.create_feature_group(
        name="typed", primary_keys=keys, schema=schema, online_keys=keys
    )
    values = KEY_VALUES[key_type]
    stored = values[1:]  # the first value is never stored
    group.insert(frame(schema, [{"k": k, "n": 3, "v": i} for i, k in enumerate(stored)]))
    table = store.online.table(group)
    requested = [*reversed(values), None]
    request = frame(schema, [{"k": k, "n": 3, "v": 0} for k in requested])
    if composite:
        request = pl.concat([request, request.with_columns(pl.lit(4, pl.Int64).alias("n"))])
    keys_of = request.select(keys).rows()
    singles = [table.get(key, ["v"]) for key in keys_of]
    assert [row is not None for row in singles] == [
        k is not None and k != values[0] and n == 3 for k, n in request.select("k", "n").rows()
    ]
    got = table.get_many(request, ["v"])
    assert got["v"].to_list() == [None if row is None else row[0] for row in singles]
    assert got["__found"].to_list() == [row is not None for row in singles]


def test_keys_with_equal_hashes_are_told_apart(store: FeatureStore) -> None:
    # The two words share a CRC-32, so their one-column string keys hash alike.
    assert zlib.crc32(b"plumless") == zlib.crc32(b"buckeroo")
    schema = {"word": "string", "n": "int64", "v": "int64"}
    words = store.create_feature_group(
        name="words", primary_keys=["word"], schema=schema, online_keys=["word"]
    )
    words.insert(frame(schema, [{"word": "plumless", "n": 1, "v": 1}]))
    table = store.online.table(words)
    request = pl.DataFrame({"word": ["buckeroo", "plumless", "buckeroo"]})
    assert table.get(("buckeroo",), ["v"]) is None
    assert table.get_many(request, ["v"])["v"].to_list() == [None, 1, None]
    words.insert(frame(schema, [{"word": "buckeroo", "n": 1, "v": 2}]))  # applied as an append
    assert [table.get((w,), ["v"]) for w in ("buckeroo", "plumless")] == [(2,), (1,)]
    assert table.get_many(request, ["v"])["v"].to_list() == [2, 1, 2]
    # both in one snapshot, under a composite key, built in one go
    pairs = store.create_feature_group(
        name="pairs", primary_keys=["word", "n"], schema=schema, online_keys=["word", "n"]
    )
    pairs.insert(
        frame(schema, [{"word": w, "n": 1, "v": i} for i, w in enumerate(["buckeroo", "plumless"])])
    )
    table = store.online.table(pairs)
    assert len(table) == 2
    request = pl.DataFrame({"word": ["plumless", "buckeroo", "buckeroo"], "n": [1, 1, 2]})
    assert table.get_many(request, ["v"])["v"].to_list() == [1, 0, None]
    assert [table.get(key, ["v"]) for key in request.rows()] == [(1,), (0,), None]


def test_string_columns_move_from_a_dictionary_to_bytes(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(online_columns, "_DICT_LIMIT", 4)
    schema = {"user_id": "int64", "ts": "datetime64[us, UTC]", "name": "string"}
    group = store.create_feature_group(
        name="names",
        primary_keys=["user_id"],
        event_time="ts",
        schema=schema,
        online_keys=["user_id"],
    )
    expected: dict[int, str | None] = {}

    def insert(hour: int, names: dict[int, str | None]) -> None:
        rows = [
            {"user_id": u, "ts": T0 + timedelta(hours=hour), "name": v} for u, v in names.items()
        ]
        group.insert(frame(schema, rows))
        expected.update(names)

    insert(0, {1: "a", 2: "b", 3: None})
    table = store.online.table(group)
    steps = [
        {4: "c", 1: "d"},  # four distinct values: still a dictionary
        {5: "ééé", 2: "a"},  # a fifth: the column turns into bytes
        {6: "", 7: None, 3: "x" * 300},
        *({u: f"name-{u}-{hour}" for u in range(hour, hour + 3)} for hour in range(8, 14)),
    ]
    for hour, names in enumerate(steps, start=1):
        insert(hour, names)
        users = sorted(expected)
        assert [table.get((u,), ["name"]) for u in users] == [(expected[u],) for u in users]
        got = table.get_many(pl.DataFrame({"user_id": [99, *users]}), ["name"])
        assert got["name"].to_list() == [None, *(expected[u] for u in users)]


@pytest.mark.parametrize("shape", ["int", "string_int"])
def test_many_random_keys_probe_past_collisions(store: FeatureStore, shape: str) -> None:
    rng = np.random.default_rng(7)
    n = 3_000
    keys = ["k"] if shape == "int" else ["s", "k"]
    schema = {"s": "string", "k": "int64", "ts": "datetime64[us, UTC]", "v": "int64"}
    group = store.create_feature_group(
        name="rand", primary_keys=keys, event_time="ts", schema=schema, online_keys=keys
    )
    expected: dict[tuple[Any, ...], int] = {}

    def insert(pairs: list[tuple[str, int]], hour: int) -> None:
        batch = pl.DataFrame(
            {
                "s": [p[0] for p in pairs],
                "k": [p[1] for p in pairs],
                "ts": [T0 + timedelta(hours=hour)] * len(pairs),
                "v": np.arange(len(pairs)) + hour * n,
            },
            schema={c: polars_dtype(canonical_type(t)) for c, t in schema.items()},
        )
        group.insert(batch)
        for row in batch.iter_rows(named=True):
            expected[tuple(row[c] for c in keys)] = row["v"]

    def fresh(count: int, prefix: str) -> list[tuple[str, int]]:
        ks = rng.integers(-(2**63), 2**63 - 1, count).tolist()
        return list(
            dict.fromkeys(
                (f"{prefix}{i % 7}" if shape != "int" else "x", k) for i, k in enumerate(ks)
            )
        )

    def known_pairs(keys_: list[tuple[Any, ...]]) -> list[tuple[str, int]]:
        return [("x", key[0]) if shape == "int" else (key[0], key[1]) for key in keys_]

    def check() -> None:
        known = list(expected)
        assert len(table) == len(known)
        assert int((table._state.slots >= 0).sum()) == len(known)  # one slot per live key
        assert [table.get(key, ("v",)) for key in known] == [(expected[key],) for key in known]
        unknown = [
            key
            for key in (tuple(p[1:]) if shape == "int" else p for p in fresh(200, "s"))
            if key not in expected
        ]
        assert all(table.row_index(key) is None for key in unknown)
        request = pl.DataFrame(known + unknown, schema=keys, orient="row")
        got = table.get_many(request, ["v"])
        assert got["v"].to_list() == [expected[key] for key in known] + [None] * len(unknown)

    insert(fresh(n, "s"), 0)
    insert(known_pairs(list(expected)[: n // 3]), 1)  # the snapshot holds two rows of some keys
    table = store.online.table(group)
    check()
    # new keys beyond the index's load, and newer rows for another third of the known ones
    insert(fresh(n, "t") + known_pairs(list(expected)[n // 3 : 2 * n // 3]), 2)
    check()


def test_group_without_online_keys_is_not_served(store: FeatureStore) -> None:
    group = store.create_feature_group(
        name="offline", primary_keys=["k"], schema={"k": "int64", "x": "float64"}
    )
    with pytest.raises(DefinitionError, match="'offline' has no online_keys"):
        store.online.table(group)


def test_empty_group_serves_nothing(store: FeatureStore) -> None:
    group = store.create_feature_group(
        name="empty", primary_keys=["k"], schema={"k": "int64", "x": "float64"}, online_keys=["k"]
    )
    table = store.online.table(group)
    assert len(table) == 0
    assert table.get((1,), ["x"]) is None
    group.insert(frame({"k": "int64", "x": "float64"}, [{"k": 1, "x": 2.0}]))
    assert table.get((1,), ["x"]) == (2.0,)


# -- memory --------------------------------------------------------------------------------


def test_memory_is_compact_and_bounded_under_updates(store: FeatureStore) -> None:
    n = 20_000
    schema = {"user_id": "int64", "ts": "datetime64[us, UTC]", "a": "float64", "b": "int64"}
    group = store.create_feature_group(
        name="wide",
        primary_keys=["user_id"],
        event_time="ts",
        schema=schema,
        online_keys=["user_id"],
    )

    def generation(hours: int) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "user_id": np.arange(n),
                "ts": [T0 + timedelta(hours=hours)] * n,
                "a": np.full(n, float(hours)),
                "b": np.arange(n),
            },
            schema={c: polars_dtype(canonical_type(t)) for c, t in schema.items()},
        )

    group.insert(generation(0))
    table = store.online.table(group)
    raw = n * 4 * 8
    assert raw <= table.memory_bytes() <= raw + 8 * n  # the index: a few bytes per key
    for hours in range(1, 5):
        group.insert(generation(hours))
        assert table.get((n - 1,), ["a"]) == (float(hours),)
        assert len(table) == n
        assert table.memory_bytes() <= 3 * raw + 8 * n  # stale rows are compacted away


@pytest.mark.parametrize("keys", [["bucket"], ["user_id", "bucket"]])
def test_nan_float_keys_are_found_like_polars_joins_find_them(
    store: FeatureStore, keys: list[str]
) -> None:
    schema = {"user_id": "int64", "bucket": "float64", "ts": "datetime64[ns, utc]", "x": "int64"}
    group = store.create_feature_group(
        name="buckets", primary_keys=keys, event_time="ts", schema=schema, online_keys=keys
    )
    nan = float("nan")
    group.insert(
        frame(
            schema,
            [
                {"user_id": 1, "bucket": nan, "ts": T0, "x": 10},
                {"user_id": 1, "bucket": 1.5, "ts": T0, "x": 20},
                {"user_id": 2, "bucket": -0.0, "ts": T0, "x": 30},
            ],
        )
    )
    table = store.online.table(group)
    key_of = {"bucket": lambda u, b: (b,), "user_id": lambda u, b: (u, b)}[keys[0]]
    assert table.get(key_of(1, nan), ("x",)) == (10,)
    assert table.get(key_of(1, 1.5), ("x",)) == (20,)
    assert table.get(key_of(2, 0.0), ("x",)) == (30,)  # -0.0 and 0.0 are one key
    assert table.get(key_of(3, 2.5), ("x",)) is None
    requests = pl.DataFrame(
        {"user_id": [1, 1, 2, 3], "bucket": [nan, 1.5, 0.0, 2.5]},
        schema={"user_id": pl.Int64, "bucket": pl.Float64},
    ).select(keys)
    assert table.get_many(requests, ["x"])["x"].to_list() == [10, 20, 30, None]
    # The offline join matches NaN to NaN as well.
    offline = requests.join(
        group.read().select([*keys, "x"]), on=keys, how="left", maintain_order="left"
    )
    assert offline["x"].to_list() == [10, 20, 30, None]


# -- one key's lookup against a linear scan --------------------------------------------------

_FINDER_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "int64": st.one_of(st.integers(-3, 3), st.sampled_from([-(2**63), 2**63 - 1])),
    "int8": st.integers(-128, 127),
    "string": st.sampled_from(["", "a", "é", "plumless", "buckeroo"]),  # the last two: one CRC
    "float64": st.sampled_from([0.0, -0.0, 1.5, -2.25, float("nan"), float("inf")]),
    "date": st.dates(date(1969, 12, 30), date(1970, 1, 3)),
    "datetime": st.sampled_from([T0, T0 + timedelta(microseconds=1), datetime(1900, 1, 1)]).map(
        lambda t: t.replace(tzinfo=timezone.utc)
    ),
    "bool": st.booleans(),
}
# values of another type or form than the column's: accepted equivalents and refusals
_ODD_VALUES = st.sampled_from(
    [None, 1.0, 2.5, "1", True, np.int64(2), np.float64(1.5), 2**63, 200, date(1970, 1, 1)]
)


def _scanned(keys: Any, stored: list[tuple[Any, ...]], key: Any) -> int | None:
    """The position of ``key``'s row by a linear scan (NaN equals NaN, as in the index)."""
    coerced = []
    for coerce, value in zip(keys.coercers, keys.as_tuple(key), strict=True):
        value = coerce(value)
        if value is None:
            return None
        coerced.append(value)
    for position, row in enumerate(stored):
        if all(a == b or (a != a and b != b) for a, b in zip(row, coerced, strict=True)):
            return position
    return None


def _outcome(find: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "found", find(*args)
    except Exception as exc:  # the same error, or both find the same row
        return type(exc).__name__, str(exc)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_single_key_lookup_equals_a_linear_scan(data: st.DataObject) -> None:
    canonicals = data.draw(st.lists(st.sampled_from(list(_FINDER_VALUES)), min_size=1, max_size=3))
    names = [f"k{j}" for j in range(len(canonicals))]
    keys = Keys("g", names, canonicals)
    row = st.tuples(*(_FINDER_VALUES[c] for c in canonicals))
    rows = data.draw(st.lists(row, max_size=40))
    stored: dict[tuple[Any, ...], tuple[Any, ...]] = {}  # one row per key, as the index keeps
    for values in rows:
        coerced = tuple(coerce(v) for coerce, v in zip(keys.coercers, values, strict=True))
        stored.setdefault(tuple("nan" if v != v else v for v in coerced), values)
    assume(stored)
    schema = {n: polars_type(c) for n, c in zip(names, canonicals, strict=True)}
    frame_ = pl.DataFrame(list(stored.values()), schema=schema, orient="row")
    canonical = dict(zip(names, canonicals, strict=True))
    snapshot = Snapshot.build(keys, canonical, frame_, ())
    scanned = [
        tuple(coerce(v) for coerce, v in zip(keys.coercers, values, strict=True))
        for values in stored.values()
    ]
    value = st.one_of(*(_FINDER_VALUES[c] for c in canonicals), _ODD_VALUES)
    probes = data.draw(
        st.lists(
            st.one_of(
                st.sampled_from(list(stored.values())),
                st.tuples(*[value] * len(names)),
                st.lists(value, max_size=4),  # a list, or a key of another length
                st.lists(value, max_size=4).map(tuple),
                value,  # a bare value
            ),
            max_size=20,
        )
    )
    for probe in [*stored.values(), *probes]:
        assert _outcome(snapshot.find, probe) == _outcome(_scanned, keys, scanned, probe), probe
