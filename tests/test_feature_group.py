from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from microfs import (
    AlreadyExistsError,
    DefinitionError,
    DuplicateKeyError,
    FeatureGroup,
    FeatureStore,
    InvalidNameError,
    MicroFSError,
    NotFoundError,
    SchemaError,
    TimestampError,
    feature_group,
)
from microfs.known import COMMIT_TIME
from tests.helpers import (
    ACTIVITY_KEYS,
    ACTIVITY_SCHEMA,
    T0,
    activity_group,
    activity_rows,
    lake_files,
    sorted_rows,
    training_dataset_record,
)
from tests.strategies import UPSERT_SCHEMA, UpsertCase, UpsertRow, upsert_cases

UTC_US = pl.Datetime("us", "UTC")
ACTIVITY_POLARS = pl.Schema(
    {
        "user_id": pl.Int64(),
        "item_id": pl.Int64(),
        "timestamp": UTC_US,
        "duration_sec": pl.Float64(),
        "conversion": pl.Int64(),
    }
)


def assert_same_rows(got: pl.DataFrame, expected: pl.DataFrame) -> None:
    assert_frame_equal(sorted_rows(got), sorted_rows(expected.select(got.columns)))


# --- the seed README ------------------------------------------------------------------------


def test_seed_readme_feature_group_code_runs_verbatim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MICROFS_LAKE", raising=False)
    # The seed README, "Feature Groups", verbatim:
    fs = FeatureStore()
    fg = fs.create_feature_group(
        name="user_activity",
        primary_keys=["user_id", "item_id"],
        event_time="timestamp",
        schema={
            "user_id": "int64",
            "item_id": "int64",
            "timestamp": "datetime64[ns, utc]",
            "duration_sec": "float64",
            "conversion": "int64",
        },
        online_keys=["user_id", "item_id"],
    )
    assert fs.root == Path("lake")
    assert (tmp_path / "lake" / "feature_groups" / "user_activity" / "v1.json").is_file()
    assert fg.name == "user_activity"
    assert fg.version == 1
    assert fg.primary_keys == ["user_id", "item_id"]
    assert fg.event_time == "timestamp"
    assert fg.online_keys == ["user_id", "item_id"]
    assert fg.features == ["duration_sec", "conversion"]
    assert fg.schema == ACTIVITY_POLARS
    assert fg.table_version() == 0
    assert fg.read().schema == ACTIVITY_POLARS
    assert fs.list_feature_groups() == ["user_activity"]


# --- inserts and upserts --------------------------------------------------------------------


def _to_pandas(frame: pl.DataFrame) -> object:
    return frame.to_pandas()


def _to_arrow(frame: pl.DataFrame) -> object:
    return frame.to_arrow()


@pytest.mark.parametrize("convert", [pl.DataFrame.clone, _to_pandas, _to_arrow])
def test_insert_takes_polars_pandas_and_arrow(
    activity: FeatureGroup, convert: Callable[[pl.DataFrame], object]
) -> None:
    rows = activity_rows([3, 1, 2], [2, 0, 1])
    given_frame = convert(rows)
    result = activity.insert(given_frame)
    assert (result.version, result.rows_inserted, result.rows_updated, result.mode) == (
        1,
        3,
        0,
        "append",
    )
    stored = activity.read()
    assert stored.schema == ACTIVITY_POLARS
    assert_same_rows(stored, rows)


def test_insert_from_native_pandas_with_category_and_nanosecond_times(
    store: FeatureStore,
) -> None:
    fg = store.create_feature_group(
        name="user_profile",
        primary_keys=["user_id"],
        event_time="timestamp",
        schema={"user_id": "int64", "timestamp": "datetime64[ns, utc]", "level": "category"},
    )
    frame = pd.DataFrame(
        {
            "user_id": [1, 2],
            "timestamp": pd.to_datetime(
                ["2024-01-01T10:00:00", "2024-01-02T11:00:00.000001"], format="ISO8601"
            ),
            "level": pd.Categorical(["gold", "silver"]),
        }
    )
    frame["timestamp"] = frame["timestamp"].dt.tz_localize("UTC").astype("datetime64[ns, UTC]")
    before = frame.copy()
    fg.insert(frame)
    pd.testing.assert_frame_equal(frame, before)  # the caller's frame is not changed
    stored = fg.read().sort("user_id")
    assert stored.schema["level"] == pl.String
    assert stored["level"].to_list() == ["gold", "silver"]
    assert stored["timestamp"].to_list() == [
        datetime(2024, 1, 1, 10, tzinfo=timezone.utc),
        datetime(2024, 1, 2, 11, 0, 0, 1, tzinfo=timezone.utc),
    ]


def test_upsert_replaces_stored_rows_and_appends_new_ones(activity: FeatureGroup) -> None:
    first = activity.insert(activity_rows([1, 2, 3], [0, 1, 2]))
    assert (first.rows_inserted, first.rows_updated, first.mode) == (3, 0, "append")

    # user 2 at hour 1 exists: replaced; user 4 at hour 0 and user 1 at hour 1 are new
    correction = activity_rows([2, 4, 1], [1, 0, 1], conversion=1)
    second = activity.insert(correction)
    assert (second.version, second.rows_inserted, second.rows_updated, second.mode) == (
        2,
        2,
        1,
        "merge",
    )
    expected = pl.concat(
        [activity_rows([1, 3], [0, 2]), activity_rows([2, 4, 1], [1, 0, 1], conversion=1)]
    )
    assert_same_rows(activity.read(), expected)

    # later than everything stored: the append fast path, even for known keys
    later = activity_rows([1, 2], [5, 6])
    third = activity.insert(later)
    assert (third.version, third.rows_inserted, third.rows_updated, third.mode) == (
        3,
        2,
        0,
        "append",
    )
    # starting exactly at the stored maximum overlaps it: a merge
    fourth = activity.insert(activity_rows([2, 3], [6, 7], conversion=1))
    assert (fourth.rows_inserted, fourth.rows_updated, fourth.mode) == (1, 1, "merge")
    expected = pl.concat(
        [expected, activity_rows([1], [5]), activity_rows([2, 3], [6, 7], conversion=1)]
    )
    assert_same_rows(activity.read(), expected)
    assert activity.count() == expected.height


def test_upsert_within_a_millisecond_of_the_stored_maximum(activity: FeatureGroup) -> None:
    # Delta statistics round timestamps down to milliseconds: 0.123456 s is recorded as
    # 0.123 s, so a batch at 0.123456 s is not provably later than what is stored.
    stored = datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=timezone.utc)
    rows = activity_rows([1], [0]).with_columns(timestamp=pl.lit(stored, dtype=UTC_US))
    activity.insert(rows)
    again = activity.insert(rows.with_columns(conversion=pl.lit(1, dtype=pl.Int64)))
    assert (again.rows_inserted, again.rows_updated) == (0, 1)
    # ... but half a millisecond later is, from the exact statistics of the Parquet footers
    later = rows.with_columns(timestamp=pl.lit(stored + timedelta(microseconds=500), dtype=UTC_US))
    assert activity.insert(later).mode == "append"
    assert activity.read().sort("timestamp")["conversion"].to_list() == [1, 0]


def test_empty_batch_is_a_noop(activity: FeatureGroup) -> None:
    activity.insert(activity_rows([1], [0]))
    result = activity.insert(activity_rows([], []))
    assert (result.version, result.rows_inserted, result.rows_updated, result.mode) == (
        1,
        0,
        0,
        "noop",
    )
    assert activity.table_version() == 1


def test_static_group_upserts_on_primary_key_alone(store: FeatureStore) -> None:
    fg = store.create_feature_group(
        name="item_feature",
        primary_keys=["item_id"],
        event_time=None,
        schema={"item_id": "int64", "category": "string", "price": "float64"},
    )
    assert fg.event_time is None
    first = fg.insert(
        pl.DataFrame({"item_id": [1, 2], "category": ["a", "b"], "price": [1.0, 2.0]})
    )
    assert (first.rows_inserted, first.mode) == (2, "append")
    second = fg.insert(
        pd.DataFrame({"item_id": [2, 3], "category": ["z", "c"], "price": [9.0, 3.0]})
    )
    assert (second.rows_inserted, second.rows_updated, second.mode) == (1, 1, "merge")
    third = fg.insert(pl.DataFrame({"item_id": [7], "category": ["d"], "price": [4.0]}))
    assert (third.rows_inserted, third.mode) == (1, "append")  # key range beyond stored keys
    assert fg.read().sort("item_id").rows() == [
        (1, "a", 1.0),
        (2, "z", 9.0),
        (3, "c", 3.0),
        (7, "d", 4.0),
    ]
    with pytest.raises(DuplicateKeyError, match="item_id"):
        fg.insert(pl.DataFrame({"item_id": [5, 5], "category": ["x", "y"], "price": [1.0, 2.0]}))
    assert fg.table_version() == 3


def test_non_utc_time_zone_is_converted_to_utc(activity: FeatureGroup) -> None:
    paris = activity_rows([1], [0]).with_columns(
        pl.col("timestamp").dt.convert_time_zone("Europe/Paris")
    )
    assert paris["timestamp"].dt.hour().item() == 1  # 01:00 in Paris is 00:00 UTC
    activity.insert(paris)
    new_york = pd.DataFrame(
        {
            "user_id": [2],
            "item_id": [100],
            "timestamp": [pd.Timestamp("2024-01-01 07:00", tz="America/New_York")],
            "duration_sec": [1.0],
            "conversion": [0],
        }
    )
    activity.insert(new_york)
    stored = activity.read().sort("user_id")
    assert stored.schema["timestamp"] == UTC_US
    assert stored["timestamp"].to_list() == [T0, T0 + timedelta(hours=12)]
    # the same instant spelled in another zone is the same row
    result = activity.insert(paris.with_columns(conversion=pl.lit(1, dtype=pl.Int64)))
    assert (result.rows_inserted, result.rows_updated) == (0, 1)


# --- bad input writes nothing ---------------------------------------------------------------


def _with(**columns: Any) -> Callable[[pl.DataFrame], object]:
    return lambda frame: frame.with_columns(**columns)


def _ns_times(frame: pl.DataFrame) -> object:
    as_ns = frame["timestamp"].cast(pl.Datetime("ns", "UTC"))
    return frame.with_columns(
        timestamp=pl.Series(as_ns.dt.epoch("ns") + 1).cast(pl.Datetime("ns", "UTC"))
    )


def _pandas_naive(frame: pl.DataFrame) -> object:
    data = frame.to_pandas()
    data["timestamp"] = data["timestamp"].dt.tz_localize(None)
    return data


BAD_BATCHES: dict[str, tuple[Callable[[pl.DataFrame], object], type[MicroFSError], str]] = {
    "missing column": (lambda f: f.drop("conversion"), SchemaError, "missing.*'conversion'"),
    "extra column": (_with(country=pl.lit("US")), SchemaError, "unexpected.*'country'"),
    "lossy float into int": (
        _with(conversion=pl.Series([1.0, 1.5])),
        SchemaError,
        "'conversion' holds 1.5",
    ),
    "nan into int": (_with(conversion=pl.Series([1.0, float("nan")])), SchemaError, "conversion"),
    "text into int": (_with(conversion=pl.lit("abc")), SchemaError, "'conversion'.*abc"),
    "text into float": (_with(duration_sec=pl.lit("fast")), SchemaError, "'duration_sec'"),
    "list into int": (_with(conversion=pl.lit([1, 2])), SchemaError, "'conversion'"),
    "overflow into int64": (
        _with(user_id=pl.Series([1, 2**64 - 1], dtype=pl.UInt64)),
        SchemaError,
        "'user_id'",
    ),
    "null primary key": (
        _with(user_id=pl.Series([1, None], dtype=pl.Int64)),
        SchemaError,
        "null in primary key column 'user_id'",
    ),
    "null event time": (
        _with(timestamp=pl.Series([T0, None], dtype=UTC_US)),
        TimestampError,
        "null in event time column 'timestamp'",
    ),
    "duplicate key and time": (
        lambda f: pl.concat([f, f.head(1).with_columns(conversion=pl.lit(7, dtype=pl.Int64))]),
        DuplicateKeyError,
        "several rows for key",
    ),
    "naive timestamp": (
        lambda f: f.with_columns(pl.col("timestamp").dt.replace_time_zone(None)),
        TimestampError,
        "naive.*replace_time_zone",
    ),
    "naive pandas timestamp": (_pandas_naive, TimestampError, "tz_localize"),
    "sub-microsecond timestamp": (_ns_times, TimestampError, "sub-microsecond"),
    "text timestamp": (
        lambda f: f.with_columns(pl.col("timestamp").dt.to_string()),
        TimestampError,
        "'timestamp'",
    ),
    "not a table": (lambda f: f.rows(), SchemaError, "cannot insert a list"),
}


@pytest.mark.parametrize("case", list(BAD_BATCHES))
def test_bad_batch_raises_a_typed_error_and_writes_nothing(
    activity: FeatureGroup, case: str
) -> None:
    activity.insert(activity_rows([1, 2], [0, 1]))
    before_rows = activity.read()
    before_files = lake_files(activity.path)
    spoil, error, message = BAD_BATCHES[case]
    bad = spoil(activity_rows([3, 4], [2, 3]))
    with pytest.raises(error, match=message) as raised:
        activity.insert(bad)
    assert type(raised.value).__module__ == "microfs.errors"
    assert activity.table_version() == 1
    assert lake_files(activity.path) == before_files
    assert_frame_equal(activity.read(), before_rows)


def test_exact_nanosecond_timestamps_are_accepted(activity: FeatureGroup) -> None:
    rows = activity_rows([1], [0])
    activity.insert(rows.with_columns(pl.col("timestamp").cast(pl.Datetime("ns", "UTC"))))
    assert_same_rows(activity.read(), rows)


# --- names, definitions and lookups ---------------------------------------------------------

BAD_NAMES = ["../x", "a/b", "Bad Name", "", "x" * 65, "1abc", "name\n", "user-profile", None]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_names_are_refused_before_touching_disk(store: FeatureStore, name: Any) -> None:
    before = lake_files(store.root)
    with pytest.raises(InvalidNameError, match="lower-case letters"):
        store.create_feature_group(
            name=name, primary_keys=["k"], schema={"k": "int64", "v": "float64"}
        )
    with pytest.raises(InvalidNameError):
        store.get_feature_group(name)
    assert lake_files(store.root) == before
    assert not (store.root.parent / "x").exists()


def test_the_longest_valid_name_works(store: FeatureStore) -> None:
    name = "a" * 64
    store.create_feature_group(name=name, primary_keys=["k"], schema={"k": "int64"})
    assert store.list_feature_groups() == [name]


def test_creating_the_same_group_twice(activity: FeatureGroup, store: FeatureStore) -> None:
    activity.insert(activity_rows([1], [0]))
    again = store.create_feature_group(
        name="user_activity",
        primary_keys=ACTIVITY_KEYS,
        event_time="timestamp",
        schema=ACTIVITY_SCHEMA,
        online_keys=ACTIVITY_KEYS,
    )
    assert again.definition == activity.definition
    assert again.read().height == 1  # the stored data is kept
    with pytest.raises(AlreadyExistsError, match="'user_activity' version 1 exists already"):
        store.create_feature_group(
            name="user_activity",
            primary_keys=["user_id"],
            event_time="timestamp",
            schema=ACTIVITY_SCHEMA,
        )
    assert store.get_feature_group("user_activity").definition == activity.definition


def test_get_feature_group_latest_or_by_version(
    activity: FeatureGroup, store: FeatureStore
) -> None:
    v2 = store.create_feature_group(
        name="user_activity",
        version=2,
        primary_keys=ACTIVITY_KEYS,
        event_time="timestamp",
        schema={**ACTIVITY_SCHEMA, "country": "string"},
    )
    v2.insert(activity_rows([1], [0]).with_columns(country=pl.lit("SE")))
    assert store.get_feature_group("user_activity").version == 2
    assert store.get_feature_group("user_activity").read().height == 1
    one = store.get_feature_group("user_activity", version=1)
    assert one.version == 1
    assert one.read().height == 0
    assert "country" not in one.schema
    assert store.feature_group_versions("user_activity") == [1, 2]
    assert store.list_feature_groups() == ["user_activity"]
    with pytest.raises(NotFoundError, match="no version 3; existing versions: 1, 2"):
        store.get_feature_group("user_activity", version=3)


def test_not_found_lists_existing_groups(activity: FeatureGroup, store: FeatureStore) -> None:
    store.create_feature_group(
        name="item_feature", primary_keys=["item_id"], schema={"item_id": "int64"}
    )
    with pytest.raises(
        NotFoundError,
        match="'user_activty' not found; existing feature groups: item_feature, user_activity",
    ):
        store.get_feature_group("user_activty")


def test_not_found_in_an_empty_lake(store: FeatureStore) -> None:
    with pytest.raises(NotFoundError, match=r"\(none\)"):
        store.get_feature_group("anything")


BAD_DEFINITIONS: dict[str, tuple[dict[str, Any], type[MicroFSError]]] = {
    "empty schema": ({"schema": {}}, SchemaError),
    "unknown type": ({"schema": {"k": "int64", "v": "decimal"}}, SchemaError),
    "no primary key": ({"primary_keys": []}, DefinitionError),
    "key not in schema": ({"primary_keys": ["user"]}, DefinitionError),
    "event time not in schema": ({"event_time": "ts"}, DefinitionError),
    "event time not a datetime": ({"event_time": "v"}, DefinitionError),
    "event time also a key": ({"primary_keys": ["k", "t"], "event_time": "t"}, DefinitionError),
    "online key not in schema": ({"online_keys": ["user"]}, DefinitionError),
    "version zero": ({"version": 0}, DefinitionError),
    "backtick column": ({"schema": {"k": "int64", "t": "datetime", "`v`": "int64"}}, SchemaError),
}


@pytest.mark.parametrize("case", list(BAD_DEFINITIONS))
def test_bad_definitions_are_refused_and_write_nothing(store: FeatureStore, case: str) -> None:
    before = lake_files(store.root)
    change, error = BAD_DEFINITIONS[case]
    arguments: dict[str, Any] = {
        "name": "g",
        "primary_keys": ["k"],
        "event_time": "t",
        "schema": {"k": "int64", "t": "datetime64[ns, utc]", "v": "float64"},
        **change,
    }
    with pytest.raises(error) as raised:
        store.create_feature_group(**arguments)
    assert type(raised.value).__module__ == "microfs.errors"
    assert lake_files(store.root) == before


# --- time travel and history ----------------------------------------------------------------


def _insert_three_versions(fg: FeatureGroup) -> dict[int, pl.DataFrame]:
    """Versions 1 (append), 2 (merge), 3 (append), with pauses so commit times differ."""
    snapshots = {0: fg.read()}
    for batch in (
        activity_rows([1, 2], [0, 1]),
        activity_rows([2, 3], [1, 1], conversion=1),
        activity_rows([1], [9]),
    ):
        time.sleep(0.02)
        result = fg.insert(batch)
        snapshots[result.version] = fg.read()
    return snapshots


def test_time_travel_by_version_and_commit_time(activity: FeatureGroup) -> None:
    snapshots = _insert_three_versions(activity)
    assert sorted(snapshots) == [0, 1, 2, 3]
    assert [s.height for s in snapshots.values()] == [0, 2, 3, 4]
    for version, snapshot in snapshots.items():
        assert_frame_equal(activity.read(version=version), snapshot)
        assert_frame_equal(activity.scan(version=version).collect(), snapshot)
        assert activity.count(version=version) == snapshot.height
    history = activity.history()
    for commit in history:
        assert commit.time == commit.timestamp  # the design's (version, time, operation, rows)
        assert_frame_equal(activity.read(as_of=commit.time), snapshots[commit.version])
        between = commit.timestamp + timedelta(milliseconds=5)
        assert activity.resolve_version(as_of=between) == commit.version
        tokyo = commit.timestamp.astimezone(ZoneInfo("Asia/Tokyo"))
        assert activity.resolve_version(as_of=tokyo) == commit.version
    assert activity.resolve_version(as_of=datetime(2999, 1, 1, tzinfo=timezone.utc)) == 3
    assert activity.resolve_version() == 3


def test_time_travel_errors(activity: FeatureGroup) -> None:
    activity.insert(activity_rows([1], [0]))
    with pytest.raises(NotFoundError, match=r"no table version 5; versions 0\.\.1 exist"):
        activity.read(version=5)
    with pytest.raises(NotFoundError, match="no table version -1"):
        activity.read(version=-1)
    created = activity.history()[0].timestamp
    with pytest.raises(NotFoundError, match="did not exist at"):
        activity.read(as_of=created - timedelta(seconds=1))
    with pytest.raises(SchemaError, match="timezone-aware"):
        activity.read(as_of=datetime(2024, 1, 1))  # noqa: DTZ001 - a naive time on purpose
    with pytest.raises(DefinitionError, match="either version= or as_of="):
        activity.read(version=1, as_of=created)


def test_history_lists_every_commit(activity: FeatureGroup) -> None:
    _insert_three_versions(activity)
    history = activity.history()
    assert [c.version for c in history] == [0, 1, 2, 3]
    assert [c.operation for c in history] == ["CREATE TABLE", "WRITE", "MERGE", "WRITE"]
    assert [c.rows for c in history] == [None, 2, 2, 1]
    times = [c.timestamp for c in history]
    assert times == sorted(times)
    assert all(t.tzinfo is not None for t in times)
    assert abs(times[-1] - datetime.now(timezone.utc)) < timedelta(minutes=1)


def test_added_since_returns_appended_rows_until_a_merge(activity: FeatureGroup) -> None:
    activity.insert(activity_rows([1], [0]))
    activity.insert(activity_rows([2, 3], [1, 2]))
    found = activity.added_since(1)
    assert found is not None
    latest, added = found
    assert latest == 2
    assert_same_rows(added.collect(), activity_rows([2, 3], [1, 2]))
    nothing = activity.added_since(2)
    assert nothing is not None
    assert nothing[0] == 2
    assert nothing[1].collect().height == 0
    activity.insert(activity_rows([2], [1], conversion=1))  # a merge rewrites files
    assert activity.added_since(2) is None


def _files(group: FeatureGroup) -> set[str]:
    return set(DeltaTable(str(group.path)).file_uris())


def _on_disk(group: FeatureGroup) -> set[Path]:
    """The data files in the group's table folder, and scratch tables beside it."""
    inside = {p for p in group.path.rglob("*") if p.is_file() and "_delta_log" not in p.parts}
    scratch = set(group.path.parent.glob(f".{group.path.name}.rewrite-*"))
    return inside | scratch


def test_an_upsert_rewrites_only_the_files_holding_matched_rows_in_order(
    activity: FeatureGroup,
) -> None:
    for hours in ([0, 1], [2, 3], [4, 5]):  # three files, in time order
        activity.insert(activity_rows([1, 2], hours))
    first, middle, last = (
        set(DeltaTable(str(activity.path), version=v).file_uris()) for v in (1, 2, 3)
    )
    middle -= first
    last -= first | middle
    before = activity.read()
    correction = activity_rows([1, 7], [2, 2.5], conversion=1)  # one stored row, one new
    result = activity.insert(correction)
    assert (result.version, result.rows_updated, result.rows_inserted, result.mode) == (
        4,
        1,
        1,
        "merge",
    )
    now = _files(activity)
    assert first | last <= now
    assert not middle & now
    assert len(now) == 3
    replaced = (pl.col("user_id") == 1) & (pl.col("timestamp") == T0 + timedelta(hours=2))
    expected = pl.concat([before.filter(~replaced), correction.select(before.columns)])
    assert_same_rows(activity.read(), expected)
    assert_same_rows(activity.read(version=3), before)  # time travel reads the old file
    assert activity.scan_and_record_order()[1] == "keys"  # still in event-time order
    entry = activity.history()[-1]
    assert (entry.operation, entry.rows) == ("MERGE", 2)
    assert activity.added_since(3) is None  # a file was removed: no incremental read


def test_an_upsert_matching_no_stored_row_only_adds_a_file(activity: FeatureGroup) -> None:
    activity.insert(activity_rows([1, 2], [0, 10]))
    activity.insert(activity_rows([3], [5]))  # inside the stored range, a new key
    found = activity.added_since(1)
    assert found is not None
    assert_same_rows(found[1].collect(), activity_rows([3], [5]))
    assert activity.history()[-1].operation == "WRITE"


def test_an_upsert_reads_files_written_before_columns_were_added(activity: FeatureGroup) -> None:
    activity.insert(activity_rows([1, 2], [0, 1]))
    activity.append_features({"score": "float64"})
    correction = activity_rows([1], [0], conversion=1).with_columns(score=pl.lit(0.5))
    assert activity.insert(correction).rows_updated == 1
    got = activity.read().sort("user_id")
    assert got["score"].to_list() == [0.5, None]
    assert got["conversion"].to_list() == [1, 0]


def test_a_rewrite_that_fails_to_commit_leaves_nothing_behind(
    activity: FeatureGroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    activity.insert(activity_rows([1, 2], [0, 1]))
    files, before, version = _on_disk(activity), activity.read(), activity.table_version()

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(DeltaTable, "create_write_transaction", refuse)
    with pytest.raises(MicroFSError, match="disk full"):
        activity.insert(activity_rows([1], [0], conversion=1))
    assert activity.table_version() == version
    assert_same_rows(activity.read(), before)
    assert _on_disk(activity) == files  # no moved file, no scratch table beside it


# --- maintenance ----------------------------------------------------------------------------


def test_compact_keeps_rows_and_old_versions(activity: FeatureGroup) -> None:
    for hour in range(5):
        activity.insert(activity_rows([1, 2], [hour, hour]))
    before = activity.read()
    files_before = len(DeltaTable(str(activity.path)).file_uris())
    result = activity.compact()
    assert result.version == 6
    assert result.files_removed == files_before > 1
    assert result.files_added == 1
    assert len(DeltaTable(str(activity.path)).file_uris()) == 1
    assert_same_rows(activity.read(), before)
    assert activity.read(version=3).height == 6
    assert activity.history()[-1].operation == "OPTIMIZE"


@settings(max_examples=25, deadline=None)
@given(
    batches=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    cut=st.floats(0.0, 1.0),
)
def test_compact_keeps_the_rows_in_their_order_and_the_order_proven(
    batches: list[int], cut: float
) -> None:
    # Appends in event-time order, each its own file; the target size falls anywhere
    # from the smallest file to all of them, so runs are cut by size and by large files.
    with tempfile.TemporaryDirectory() as folder:
        group = activity_group(Path(folder) / "lake")
        for hour, rows in enumerate(batches):
            group.insert(activity_rows(list(range(rows)), [hour + u / 100 for u in range(rows)]))
        sizes = [entry.stat().st_size for entry in Path(group.path).glob("*.parquet")]
        target = int(min(sizes) + cut * (sum(sizes) - min(sizes))) + 1
        scan, order = group.scan_and_record_order()
        before = scan.collect()
        assert order == "keys"
        with mock.patch.object(feature_group, "COMPACT_TARGET_BYTES", target):
            result = group.compact()
        scan, order = group.scan_and_record_order()
        assert order == "keys"
        assert_frame_equal(scan.collect(), before)
        files = len(DeltaTable(str(group.path)).file_uris())
        assert files == len(batches) - result.files_removed + result.files_added
        assert result.files_added <= result.files_removed // 2
        assert (result.table_version > len(batches)) == (result.files_removed > 0)
        if result.files_removed:
            assert group.history()[-1].operation == "OPTIMIZE"


def _upserted(fg: FeatureGroup) -> None:
    fg.insert(activity_rows([1, 2], [0, 1]))
    fg.insert(activity_rows([2], [1], conversion=1))  # rewrites the first file


def test_vacuum_default_retention_deletes_nothing_recent(activity: FeatureGroup) -> None:
    _upserted(activity)
    assert activity.vacuum().files == ()
    assert activity.vacuum(timedelta(minutes=30)).files == ()  # rounded up, not down, to hours
    assert activity.read(version=1).height == 2
    assert activity.read()["conversion"].sum() == 1


def test_vacuum_with_zero_retention_removes_old_files(activity: FeatureGroup) -> None:
    _upserted(activity)
    latest = activity.read()
    dry = activity.vacuum(timedelta(0), dry_run=True)
    assert dry.dry_run
    assert len(dry.files) == 1
    assert activity.read(version=1).height == 2  # a dry run deletes nothing
    done = activity.vacuum(retention=timedelta(0))
    assert done.files == dry.files
    assert_frame_equal(activity.read(), latest)
    with pytest.raises(NotFoundError, match="version 1 .* was vacuumed") as raised:
        activity.read(version=1)
    assert not isinstance(raised.value, FileNotFoundError)
    with pytest.raises(NotFoundError):
        activity.scan(version=1)
    assert activity.insert(activity_rows([5], [5])).mode == "append"


def test_vacuum_removes_the_scratch_table_of_a_killed_rewrite(activity: FeatureGroup) -> None:
    activity.insert(activity_rows([1], [0]))
    leftover = activity.path.parent / f".{activity.path.name}.rewrite-0123abcd"
    leftover.mkdir()
    (leftover / "part-0.parquet").write_bytes(b"half written")
    activity.vacuum(dry_run=True)
    assert leftover.exists()  # a dry run deletes nothing
    activity.vacuum()  # the default retention: the writers' lock says no rewrite is running
    assert not leftover.exists()
    assert activity.read().height == 1


def test_vacuum_keeps_versions_pinned_by_training_datasets(
    activity: FeatureGroup, store: FeatureStore
) -> None:
    _upserted(activity)
    store.registry.create("feature_views", "model", 1, {"name": "model"})
    store.registry.add_training_dataset(
        "model", 1, training_dataset_record(("user_activity", 1, 1))
    )
    kept = activity.vacuum(timedelta(0))
    assert kept.files == ()
    assert kept.kept_versions == (1,)
    assert activity.read(version=1).height == 2
    forced = activity.vacuum(timedelta(0), force=True)
    assert len(forced.files) == 1
    assert forced.broken == ("model v1 training dataset 1",)
    with pytest.raises(NotFoundError):
        activity.read(version=1)


def test_vacuum_refuses_a_negative_retention(activity: FeatureGroup) -> None:
    with pytest.raises(DefinitionError, match="non-negative"):
        activity.vacuum(timedelta(hours=-1))


# --- the lake is plain files ----------------------------------------------------------------


def test_a_copied_lake_opens_and_reads_identically(
    activity: FeatureGroup, store: FeatureStore, tmp_path: Path
) -> None:
    snapshots = _insert_three_versions(activity)
    copy = tmp_path / "elsewhere" / "lake"
    shutil.copytree(store.root, copy)
    moved = FeatureStore(copy).get_feature_group("user_activity")
    assert moved.definition == activity.definition
    assert moved.history() == activity.history()
    for version, snapshot in snapshots.items():
        assert_frame_equal(moved.read(version=version), snapshot)
    moved.insert(activity_rows([8], [8]))
    assert activity.table_version() == 3  # the original is untouched
    assert moved.table_version() == 4


def test_the_table_is_a_plain_delta_table(activity: FeatureGroup) -> None:
    _insert_three_versions(activity)
    expected = activity.read()
    table = DeltaTable(str(activity.path)).to_pyarrow_table()
    # the group's columns, then the one MicroFS adds: when each row was committed
    assert table.column_names == [*ACTIVITY_SCHEMA, COMMIT_TIME]
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field(COMMIT_TIME).type == pa.timestamp("us", tz="UTC")
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    assert_same_rows(frame.drop(COMMIT_TIME), expected)
    old = pl.read_delta(str(activity.path), version=1)
    assert_same_rows(old.drop(COMMIT_TIME), activity.read(version=1))


def test_duckdb_reads_the_data_files(activity: FeatureGroup) -> None:
    # DuckDB's `delta` extension cannot be downloaded here; its built-in Parquet reader
    # over the files of the current version reads the same plain columns.
    _insert_three_versions(activity)
    files = DeltaTable(str(activity.path)).file_uris()
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    relation = connection.read_parquet(files)
    assert relation.columns == [*ACTIVITY_SCHEMA, COMMIT_TIME]
    got = relation.pl().with_columns(pl.col("timestamp").dt.convert_time_zone("UTC"))
    got = got.drop(COMMIT_TIME)
    assert_same_rows(got, activity.read())
    assert_same_rows(pl.read_parquet(files).drop(COMMIT_TIME), activity.read())


# --- property: upserts agree with a dictionary ----------------------------------------------


def _reference_frame(rows: list[UpsertRow], schema: pl.Schema) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema, orient="row")


@pytest.mark.parametrize("rewrite_rows", [4_000_000, 0], ids=["rewrite", "merge"])
@settings(max_examples=30, deadline=None)
@given(case=upsert_cases())
def test_upserts_agree_with_a_dictionary_model(case: UpsertCase, rewrite_rows: int) -> None:
    width = case.key_width
    with (
        tempfile.TemporaryDirectory() as folder,
        mock.patch.object(feature_group, "_REWRITE_MAX_ROWS", rewrite_rows),
    ):
        fs = FeatureStore(Path(folder) / "lake")
        fg = fs.create_feature_group(
            name="g",
            primary_keys=["k", "s"],
            event_time=None if case.static else "t",
            schema=UPSERT_SCHEMA,
        )
        model: dict[tuple[Any, ...], UpsertRow] = {}
        steps = {0: dict(model)}
        for batch in case.batches:
            version = fg.table_version()
            known = sum(1 for row in batch if row[:width] in model)
            latest = max((row[2] for row in model.values()), default=None)
            result = fg.insert(_reference_frame(batch, fg.schema))
            if not batch:
                assert (result.mode, result.version) == ("noop", version)
                continue
            assert result.version == version + 1
            assert (result.rows_inserted, result.rows_updated) == (len(batch) - known, known)
            if not case.static and (latest is None or min(r[2] for r in batch) > latest):
                assert result.mode == "append"
            model.update({row[:width]: row for row in batch})
            steps[result.version] = dict(model)
        for version, rows in steps.items():
            expected = _reference_frame(list(rows.values()), fg.schema)
            assert_same_rows(fg.read(version=version), expected)


def test_proven_row_order_is_remembered_beside_the_table(
    store: FeatureStore, activity: FeatureGroup
) -> None:
    activity.insert(activity_rows([2, 1, 3], [1.0, 1.0, 2.0]))
    _, order = activity.scan_and_record_order()
    assert order == "keys"
    remembered = activity.path.parent / f".{activity.path.name}.order.json"
    stored = json.loads(remembered.read_text())
    assert list(stored.values()) == ["keys"]
    # A later process reads the remembered proof instead of proving again: a planted
    # answer shows it was read, and a new table version is proven afresh.
    remembered.write_text(json.dumps(dict.fromkeys(stored, "none")))
    reopened = FeatureStore(store.root).get_feature_group("user_activity")
    assert reopened.scan_and_record_order()[1] == "none"
    activity.insert(activity_rows([1], [3.0]))
    assert reopened.scan_and_record_order()[1] == "keys"
    assert len(json.loads(remembered.read_text())) == 2
    # A damaged file is ignored and rewritten.
    remembered.write_text("{not json")
    assert (
        FeatureStore(store.root).get_feature_group("user_activity").scan_and_record_order()[1]
        == "keys"
    )
    assert list(json.loads(remembered.read_text()).values()) == ["keys"]
