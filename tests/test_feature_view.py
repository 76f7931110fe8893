"""Feature views on real Delta tables: point-in-time frames, parameters, training datasets."""

from __future__ import annotations

import io
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from unittest import mock

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import microfs as mfs
from microfs import FeatureStore
from microfs._frame_plan import FramePlanner
from tests.helpers import seed_view, served_group

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
TIME = pl.Datetime("us", "UTC")

ACTIVITY = {
    "user_id": "int64",
    "item_id": "int64",
    "timestamp": "datetime64[ns, utc]",
    "duration_sec": "float64",
    "conversion": "int64",
}
PROFILE = {
    "user_id": "int64",
    "timestamp": "datetime64[ns, utc]",
    "user_level": "string",
    "age": "int64",
}
ITEM_STATIC = {"item_id": "int64", "category": "string"}
ITEM_DAILY = {"item_id": "int64", "timestamp": "datetime64[ns, utc]", "price": "float64"}
PAIR = {
    "user_id": "int64",
    "item_id": "int64",
    "timestamp": "datetime64[ns, utc]",
    "views": "int64",
}


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def make_groups(fs: FeatureStore) -> None:
    served_group(fs, "user_activity", ["user_id", "item_id"], ACTIVITY)
    served_group(fs, "user_profile", ["user_id"], PROFILE)
    served_group(fs, "item_static", ["item_id"], ITEM_STATIC, event_time=None)
    served_group(fs, "item_daily", ["item_id"], ITEM_DAILY)
    served_group(fs, "pair_stats", ["user_id", "item_id"], PAIR)


# -- the brute-force reference ---------------------------------------------------------------


@dataclass(frozen=True)
class World:
    activity: list[tuple[int, int, int, float | None, int]]  # user, item, minute, duration, conv
    profile: list[tuple[int, int, str | None, int | None]]  # user, minute, level, age
    item_static: list[tuple[int, str | None]]  # item, category
    item_daily: list[tuple[int, int, float | None]]  # item, minute, price
    pair: list[tuple[int, int, int, int | None]]  # user, item, minute, views
    max_age_minutes: int
    window_minutes: int


def latest(
    rows: Sequence[tuple[Any, ...]], t: int, lo: int | None = None
) -> tuple[Any, ...] | None:
    """The row with the greatest minute <= t (and >= lo), by plain scanning."""
    best: tuple[Any, ...] | None = None
    for row in rows:
        minute = row[0]
        if minute <= t and (lo is None or minute >= lo) and (best is None or minute > best[0]):
            best = row
    return best


def reference(world: World) -> list[dict[str, Any]]:
    out = []
    for user, item, minute, duration, conversion in sorted(
        world.activity, key=lambda r: (r[2], r[0], r[1])
    ):
        prof = latest([(m, lvl, age) for u, m, lvl, age in world.profile if u == user], minute)
        daily = latest(
            [(m, p) for i, m, p in world.item_daily if i == item],
            minute,
            lo=minute - world.max_age_minutes,
        )
        pair = latest([(m, v) for u, i, m, v in world.pair if u == user and i == item], minute)
        static = [c for i, c in world.item_static if i == item]
        out.append(
            {
                "user_id": user,
                "item_id": item,
                "timestamp": at(minute),
                "duration_sec": duration,
                "user_level": prof[1] if prof else None,
                "age": prof[2] if prof else None,
                "category": static[0] if static else None,
                "price": daily[1] if daily else None,
                "pair_views": pair[1] if pair else None,
                "conversion": conversion,
            }
        )
    return out


def unique_by(rows: list[tuple[Any, ...]], key: Any) -> list[tuple[Any, ...]]:
    seen: dict[Any, tuple[Any, ...]] = {}
    for row in rows:
        seen[key(row)] = row
    return list(seen.values())


@st.composite
def worlds(draw: st.DrawFn) -> World:
    users = st.integers(1, 4)
    items = st.integers(10, 13)
    minutes = st.integers(0, 12)
    maybe_float = st.one_of(st.none(), st.floats(-5, 5, allow_nan=False))
    activity = unique_by(
        draw(
            st.lists(
                st.tuples(users, items, minutes, maybe_float, st.integers(0, 1)),
                min_size=0,
                max_size=25,
            )
        ),
        key=lambda r: (r[0], r[1], r[2]),
    )
    profile = unique_by(
        draw(
            st.lists(
                st.tuples(
                    users,
                    minutes,
                    st.one_of(st.none(), st.sampled_from("abc")),
                    st.one_of(st.none(), st.integers(18, 80)),
                ),
                max_size=15,
            )
        ),
        key=lambda r: (r[0], r[1]),
    )
    item_static = unique_by(
        draw(
            st.lists(
                st.tuples(items, st.one_of(st.none(), st.sampled_from(["x", "y"]))), max_size=4
            )
        ),
        key=lambda r: r[0],
    )
    item_daily = unique_by(
        draw(st.lists(st.tuples(items, minutes, maybe_float), max_size=15)),
        key=lambda r: (r[0], r[1]),
    )
    pair = unique_by(
        draw(
            st.lists(
                st.tuples(users, items, minutes, st.one_of(st.none(), st.integers(0, 9))),
                max_size=15,
            )
        ),
        key=lambda r: (r[0], r[1], r[2]),
    )
    return World(
        activity,
        profile,
        item_static,
        item_daily,
        pair,
        draw(st.integers(0, 6)),
        draw(st.integers(1, 7)),
    )


def frame(rows: list[tuple[Any, ...]], columns: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=columns, orient="row")


def load(fs: FeatureStore, world: World) -> None:
    """Insert the world, in two batches per group so that upserts and appends both happen."""

    def insert(name: str, rows: list[tuple[Any, ...]], columns: dict[str, Any]) -> None:
        fg = fs.get_feature_group(name)
        data = frame(rows, columns)
        half = data.height // 2
        fg.insert(data.head(half))
        fg.insert(data)  # the first half again: an idempotent upsert

    insert(
        "user_activity",
        [(u, i, at(m), d, c) for u, i, m, d, c in world.activity],
        {
            "user_id": pl.Int64,
            "item_id": pl.Int64,
            "timestamp": TIME,
            "duration_sec": pl.Float64,
            "conversion": pl.Int64,
        },
    )
    insert(
        "user_profile",
        [(u, at(m), lvl, age) for u, m, lvl, age in world.profile],
        {"user_id": pl.Int64, "timestamp": TIME, "user_level": pl.String, "age": pl.Int64},
    )
    insert("item_static", world.item_static, {"item_id": pl.Int64, "category": pl.String})
    insert(
        "item_daily",
        [(i, at(m), p) for i, m, p in world.item_daily],
        {"item_id": pl.Int64, "timestamp": TIME, "price": pl.Float64},
    )
    insert(
        "pair_stats",
        [(u, i, at(m), v) for u, i, m, v in world.pair],
        {"user_id": pl.Int64, "item_id": pl.Int64, "timestamp": TIME, "views": pl.Int64},
    )


def full_view(fs: FeatureStore, max_age_minutes: int) -> mfs.FeatureView:
    return fs.create_feature_view(
        name="everything",
        label_fg="user_activity",
        label_col="conversion",
        joins=[
            {"fg_name": "user_profile", "on": ["user_id"]},
            {"fg_name": "item_static", "on": ["item_id"]},
            {
                "fg_name": "item_daily",
                "on": ["item_id"],
                "max_age": timedelta(minutes=max_age_minutes),
            },
            {"fg_name": "pair_stats", "on": ["user_id", "item_id"], "prefix": "pair_"},
        ],
    )


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(world=worlds())
def test_training_frame_equals_brute_force_reference(world: World) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fs = FeatureStore(tmp)
        make_groups(fs)
        load(fs, world)
        fv = full_view(fs, world.max_age_minutes)
        got = fv.training_frame().collect()
        assert got.height == len(world.activity)
        assert got.to_dicts() == reference(world)
        streamed = fv.training_frame().collect(engine="streaming")
        assert streamed.equals(got)
        window = timedelta(minutes=world.window_minutes)
        windowed = fv.training_frame(window=window)
        assert windowed.collect(engine="streaming").equals(got)
        written = fs.root / "written.parquet"
        assert fv.write_training_frame(written, window=window) == got.height
        assert pl.read_parquet(written).equals(got)


# -- the seed's feature view, definition checks ------------------------------------------------


@pytest.fixture
def seeded(store: FeatureStore) -> FeatureStore:
    """The seed's three groups with a little data."""
    make_groups(store)
    store.create_feature_group(
        name="item_feature",
        primary_keys=["item_id"],
        event_time="timestamp",
        schema={
            "item_id": "int64",
            "timestamp": "datetime64[ns, utc]",
            "price": "float64",
            "category": "string",
        },
        online_keys=["item_id"],
    )
    rows = [
        (u, i, at(10 * n + u), float(n + u), (n + u) % 2)
        for n in range(10)
        for u in (1, 2, 3)
        for i in (101, 102)
    ]
    store.get_feature_group("user_activity").insert(
        frame(
            rows,
            {
                "user_id": pl.Int64,
                "item_id": pl.Int64,
                "timestamp": TIME,
                "duration_sec": pl.Float64,
                "conversion": pl.Int64,
            },
        )
    )
    store.get_feature_group("user_profile").insert(
        frame(
            [(1, at(0), "gold", 30), (2, at(0), "silver", 40), (1, at(50), "platinum", 31)],
            {"user_id": pl.Int64, "timestamp": TIME, "user_level": pl.String, "age": pl.Int64},
        )
    )
    store.get_feature_group("item_feature").insert(
        frame(
            [(101, at(0), 9.5, "books"), (102, at(0), 20.0, "toys")],
            {"item_id": pl.Int64, "timestamp": TIME, "price": pl.Float64, "category": pl.String},
        )
    )
    return store


def test_seed_readme_view_trains(seeded: FeatureStore) -> None:
    fv = seed_view(seeded)
    X_train, y_train = fv.get_training_data(compute_params=True)
    assert X_train.columns == [
        "duration_sec",
        "user_level_gold",
        "user_level_platinum",
        "user_level_silver",
        "age",
        "price",
        "category",
    ]
    assert X_train.height == y_train.len() == 60
    assert y_train.name == "conversion"
    durations = fv.training_frame().collect()["duration_sec"].to_list()
    mean, std = statistics.fmean(durations), statistics.pstdev(durations)
    assert X_train["duration_sec"].to_list() == pytest.approx([(d - mean) / std for d in durations])
    # Rows come in training_frame order: by label time, then user_id, item_id.
    again = seeded.get_feature_view("recommendation_model_v1")
    X_again, y_again = again.get_training_data()
    assert X_again.equals(X_train)
    assert y_again.equals(y_train)


def test_training_frame_is_lazy_ordered_and_windowed(seeded: FeatureStore) -> None:
    fv = seed_view(seeded)
    lf = fv.training_frame(start=at(20), end=at(40))
    assert isinstance(lf, pl.LazyFrame)
    assert "SORT" in lf.explain() or "sort" in lf.explain().lower()
    got = lf.collect()
    assert got.columns[:3] == ["user_id", "item_id", "timestamp"]
    assert got.columns[-1] == "conversion"
    times = got["timestamp"].to_list()
    assert min(times) >= at(20)
    assert max(times) < at(40)
    assert got.select("timestamp", "user_id", "item_id").equals(
        got.select("timestamp", "user_id", "item_id").sort("timestamp", "user_id", "item_id")
    )


def test_get_training_data_without_params_says_fit_first(seeded: FeatureStore) -> None:
    fv = seed_view(seeded)
    with pytest.raises(mfs.NotFittedError, match="compute_params=True"):
        fv.get_training_data()


def test_parameters_are_fitted_on_the_train_split_only(seeded: FeatureStore) -> None:
    fv = seed_view(seeded)
    X_train, X_test, y_train, y_test = fv.train_test_split(test_size=0.25)
    frame_ = fv.training_frame().collect()
    train_rows = frame_.head(X_train.height)
    stored = fv.params().to_dict()["params"][0]
    assert stored["mean"] == pytest.approx(train_rows["duration_sec"].mean())
    assert stored["std"] == pytest.approx(train_rows["duration_sec"].std(ddof=0))
    assert X_train.height + X_test.height == frame_.height
    assert y_train.len() == X_train.height
    assert y_test.len() == X_test.height
    # Every test row is later than every train row (time split).
    assert frame_["timestamp"][X_train.height - 1] < frame_["timestamp"][X_train.height]
    # Changing test-part values does not move the parameters.
    activity = seeded.get_feature_group("user_activity")
    test_part = (
        frame_.tail(X_test.height)
        .select(list(ACTIVITY))
        .with_columns(pl.col("duration_sec") * 1000)
    )
    activity.insert(test_part)
    fv.train_test_split(test_size=0.25)
    assert fv.params().to_dict()["params"][0] == stored


def test_random_split_is_seeded(seeded: FeatureStore) -> None:
    fv = seed_view(seeded)
    a = fv.train_test_split(test_size=0.3, split="random", seed=3)
    b = fv.train_test_split(test_size=0.3, split="random", seed=3)
    c = fv.train_test_split(test_size=0.3, split="random", seed=4)
    assert a[0].equals(b[0])
    assert a[1].equals(b[1])
    assert not a[1].equals(c[1])
    assert a[1].height == 18


def ipc(frame_: pl.DataFrame | pl.Series | None) -> bytes:
    assert frame_ is not None
    buffer = io.BytesIO()
    (frame_ if isinstance(frame_, pl.DataFrame) else frame_.to_frame()).write_ipc(buffer)
    return buffer.getvalue()


def test_training_dataset_is_identical_after_inserts_and_upserts(seeded: FeatureStore) -> None:
    fv = seed_view(seeded)
    version = fv.create_training_dataset(test_size=0.2, split="time")
    first = fv.get_training_dataset(version)
    # Change everything the dataset read: upserts of old rows, new rows, new profiles.
    activity = seeded.get_feature_group("user_activity")
    old = activity.read().with_columns(pl.col("duration_sec") + 1.0)
    activity.insert(old)
    activity.insert(
        frame(
            [(1, 101, at(500), 3.0, 1)],
            {
                "user_id": pl.Int64,
                "item_id": pl.Int64,
                "timestamp": TIME,
                "duration_sec": pl.Float64,
                "conversion": pl.Int64,
            },
        )
    )
    seeded.get_feature_group("user_profile").insert(
        frame(
            [(2, at(1), "gold", 41)],
            {"user_id": pl.Int64, "timestamp": TIME, "user_level": pl.String, "age": pl.Int64},
        )
    )
    fv.get_training_data(compute_params=True)  # new parameters do not touch the dataset
    again = seeded.get_feature_view("recommendation_model_v1").get_training_dataset(version)
    for name in ("X_train", "y_train", "X_test", "y_test"):
        assert ipc(getattr(again, name)) == ipc(getattr(first, name)), name
    assert again.table_versions == first.table_versions
    assert fv.list_training_datasets() == [version]


def test_vacuum_keeps_what_training_datasets_need_unless_forced(seeded: FeatureStore) -> None:
    fv = seed_view(seeded)
    version = fv.create_training_dataset()
    activity = seeded.get_feature_group("user_activity")
    activity.insert(activity.read().with_columns(pl.col("duration_sec") * 2))
    result = activity.vacuum(retention=timedelta(0))
    assert result.broken == ()
    seeded.get_feature_view("recommendation_model_v1").get_training_dataset(version)
    forced = activity.vacuum(retention=timedelta(0), force=True)
    assert forced.broken == (f"recommendation_model_v1 v1 training dataset {version}",)
    with pytest.raises(mfs.NotFoundError, match="vacuumed"):
        seeded.get_feature_view("recommendation_model_v1").get_training_dataset(version)


def test_batch_data_is_lazy_and_transformed(seeded: FeatureStore) -> None:
    fv = seed_view(seeded)
    X, _ = fv.get_training_data(compute_params=True, start=at(0), end=at(50))
    batch = fv.get_batch_data(start=at(0), end=at(50))
    assert isinstance(batch, pl.LazyFrame)
    got = batch.collect()
    assert got.columns == ["user_id", "item_id", "timestamp", *X.columns]
    assert got.select(X.columns).equals(X)
    spine = got.select("user_id", "item_id", "timestamp", "duration_sec").head(0)
    assert fv.get_batch_data(spine=spine).collect().height == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"label_fg": "nope"}, "not found"),
        ({"label_col": "nope"}, "label column 'nope'"),
        ({"joins": [{"fg_name": "nope", "on": ["user_id"]}]}, "not found"),
        ({"joins": [{"fg_name": "pair_stats", "on": ["user_id"]}]}, "does not cover"),
        (
            {"joins": [{"fg_name": "user_profile", "on": ["user_id"], "features": ["nope"]}]},
            "'nope' is not a feature",
        ),
        (
            {
                "joins": [
                    {"fg_name": "user_profile", "on": ["user_id"]},
                    {"fg_name": "user_profile", "on": ["user_id"]},
                ]
            },
            "prefix",
        ),
        (
            {"joins": [{"fg_name": "item_static", "on": ["item_id"], "max_age": timedelta(1)}]},
            "no event time",
        ),
        ({"joins": [{"fg_name": "user_profile", "on": ["user_id"], "bogus": 1}]}, "bogus"),
        ({"transforms": [{"type": "nope", "column": "duration_sec"}]}, "nope"),
        ({"transforms": [{"type": "scale", "column": "missing"}]}, "missing"),
        ({"transforms": [{"type": "scale", "column": "conversion"}]}, "label"),
    ],
)
def test_bad_definitions_are_refused_and_nothing_is_written(
    seeded: FeatureStore, changes: dict[str, Any], message: str
) -> None:
    kwargs: dict[str, Any] = {
        "name": "bad",
        "label_fg": "user_activity",
        "label_col": "conversion",
        "joins": [],
        "transforms": [],
    }
    kwargs.update(changes)
    with pytest.raises(mfs.MicroFSError, match=message):
        seeded.create_feature_view(**kwargs)
    assert seeded.list_feature_views() == []


def test_prefix_resolves_a_clash_and_names_columns(seeded: FeatureStore) -> None:
    fv = seeded.create_feature_view(
        name="twice",
        label_fg="user_activity",
        label_col="conversion",
        joins=[
            {"fg_name": "item_feature", "on": ["item_id"], "features": ["price"]},
            {"fg_name": "item_feature", "on": ["item_id"], "features": ["price"], "prefix": "now_"},
        ],
    )
    assert fv.feature_columns == ["duration_sec", "price", "now_price"]


def test_view_definition_is_json_and_reopens(seeded: FeatureStore) -> None:
    seed_view(seeded)
    path = seeded.root / "feature_views" / "recommendation_model_v1" / "v1.json"
    assert path.read_text().startswith("{")
    fv = FeatureStore(seeded.root).get_feature_view("recommendation_model_v1")
    assert fv.definition.joins[0].fg_name == "user_profile"
    with pytest.raises(mfs.AlreadyExistsError):
        seeded.create_feature_view(
            name="recommendation_model_v1", label_fg="user_activity", label_col="conversion"
        )


def test_write_training_frame_writes_windows_into_one_file_atomically(
    seeded: FeatureStore, tmp_path: Any
) -> None:
    fv = seed_view(seeded)
    whole = fv.training_frame().collect()
    target = tmp_path / "out" / "train.parquet"
    assert fv.write_training_frame(target, window=timedelta(minutes=3)) == whole.height
    assert pl.read_parquet(target).equals(whole)
    # A window of its own: only labels in [start, end), still one file, same as the plan.
    part = fv.training_frame(start=at(2), end=at(9)).collect()
    assert 0 < part.height < whole.height
    assert (
        fv.write_training_frame(target, start=at(2), end=at(9), window=timedelta(hours=1))
        == part.height
    )
    assert pl.read_parquet(target).equals(part)
    # No labels at all: an empty file with the frame's columns.
    assert fv.write_training_frame(target, start=at(10_000), window=timedelta(minutes=5)) == 0
    assert pl.read_parquet(target).schema == whole.schema
    # Versions are fixed at the start: a later insert is not in a pinned write.
    versions = fv.table_versions()
    seeded.get_feature_group("user_activity").insert(
        pl.DataFrame(
            [(1, 10, at(30), 1.0, 1)],
            schema={
                "user_id": pl.Int64,
                "item_id": pl.Int64,
                "timestamp": TIME,
                "duration_sec": pl.Float64,
                "conversion": pl.Int64,
            },
            orient="row",
        )
    )
    pinned = fv.write_training_frame(target, table_versions=versions, window=timedelta(days=1))
    assert pinned == whole.height
    assert fv.write_training_frame(target, window=timedelta(days=1)) == whole.height + 1
    # A bad window is refused before anything is read or written; no partial files are left.
    with (
        mock.patch.object(FramePlanner, "hold", side_effect=AssertionError("held")),
        pytest.raises(mfs.DefinitionError, match="window"),
    ):
        fv.write_training_frame(tmp_path / "never.parquet", window=timedelta(0))
    assert not (tmp_path / "never.parquet").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["train.parquet"]


def test_frame_writer_delta_encodes_caps_dictionaries_skips_text_stats_takes_string_views(
    tmp_path: Any,
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from microfs._frame_plan import DICTIONARY_PAGE_BYTES, frame_writer

    many = DICTIONARY_PAGE_BYTES  # distinct eight-byte values: eight times the dictionary's room
    frame = pl.DataFrame(
        {
            "id": pl.int_range(many, eager=True),
            "small": pl.Series([3, -1] * (many // 2), dtype=pl.Int16),
            "at": pl.datetime_range(
                datetime(2024, 1, 1),
                datetime(2024, 1, 1) + timedelta(seconds=many - 1),
                interval="1s",
                time_zone="UTC",
                eager=True,
            ),
            "day": pl.date_range(
                date(2000, 1, 1), date(2000, 1, 1) + timedelta(many - 1), eager=True
            ),
            "country": pl.Series(["se", "de", "us"] * (many // 3) + ["se"] * (many % 3)),
            "score": pl.int_range(many, eager=True).cast(pl.Float64) / 7,
            "level": pl.Series([0.5, 1.5] * (many // 2)),
            "flag": pl.Series([True, False] * (many // 2)),
        }
    ).with_columns(
        pl.when(pl.col("id") % 5 == 0).then(None).otherwise(pl.col("small")).alias("small")
    )
    target = tmp_path / "frame.parquet"
    views = frame.to_arrow(compat_level=pl.CompatLevel.newest())  # text as string views
    assert pa.types.is_string_view(views.schema.field("country").type)
    with frame_writer(target, views.schema) as out:
        out.write_table(views)
    assert pl.read_parquet(target).equals(frame)
    # plain Parquet types, no Arrow schema of the file's own: pyarrow reads its `string`
    assert pq.read_table(target).equals(frame.to_arrow().cast(pq.read_schema(target)))
    assert pq.read_schema(target).field("country").type == pa.string()
    assert pq.read_schema(target).field("at").type == pa.timestamp("us", tz="UTC")
    assert b"ARROW:schema" not in (pq.read_metadata(target).metadata or {})

    group = pq.ParquetFile(target).metadata.row_group(0)
    columns = {c.path_in_schema: c for c in (group.column(i) for i in range(group.num_columns))}
    for name in ("id", "small", "at", "day"):
        assert "DELTA_BINARY_PACKED" in columns[name].encodings, name
        assert not columns[name].has_dictionary_page, name
    # statistics for everything but text (a category's range prunes no row group)
    assert not columns["country"].is_stats_set
    for name in ("id", "small", "at", "day", "score", "level", "flag"):
        assert columns[name].is_stats_set, name
    assert columns["small"].statistics.null_count == frame["small"].null_count() > 0
    assert columns["at"].statistics.min == frame["at"][0]

    def dictionaries(path: Any) -> dict[str, int]:
        """Bytes of each column's dictionary page (a page header included)."""
        group = pq.ParquetFile(path).metadata.row_group(0)
        columns = [group.column(i) for i in range(group.num_columns)]
        return {
            c.path_in_schema: c.data_page_offset - c.dictionary_page_offset
            for c in columns
            if c.has_dictionary_page
        }

    written = dictionaries(target)
    pq.write_table(frame.to_arrow(), tmp_path / "default.parquet")
    default = dictionaries(tmp_path / "default.parquet")
    # the few values keep their dictionaries; the many measurements' is cut short at the limit
    for name in ("country", "level", "flag"):
        assert written.get(name) == default.get(name), name
    assert written["country"] < 100
    assert written["level"] < 100
    assert written["score"] <= DICTIONARY_PAGE_BYTES + 100 < default["score"]


def test_write_training_frame_hands_text_over_as_views_or_large_strings_to_the_same_file(
    seeded: FeatureStore, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pyarrow writes Polars' string views to Parquet from version 21; before it, the
    # frame's text is converted to large_string first. Either way, the same file.
    import pyarrow as pa
    import pyarrow.parquet as pq

    import microfs.feature_view as feature_view

    newer = int(pa.__version__.split(".")[0]) >= 21
    assert (pl.CompatLevel.newest() == feature_view.FRAME_ARROW) == newer
    fv = seed_view(seeded)
    files = {}
    for name, level in (("views", pl.CompatLevel.newest()), ("large", pl.CompatLevel.oldest())):
        if name == "views" and not newer:
            continue
        monkeypatch.setattr(feature_view, "FRAME_ARROW", level)
        files[name] = tmp_path / f"{name}.parquet"
        fv.write_training_frame(files[name], window=timedelta(minutes=3))
    frame = fv.training_frame().collect()
    for path in files.values():
        assert_frame_equal(pl.read_parquet(path), frame)
        assert pq.read_schema(path).field("user_level").type == pa.string()


def test_write_training_frame_that_fails_midway_leaves_the_old_file(
    seeded: FeatureStore, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import microfs.feature_view as feature_view

    fv = seed_view(seeded)
    target = tmp_path / "train.parquet"
    pl.DataFrame({"old": [1]}).write_parquet(target)
    collect = feature_view._collect
    calls: list[int] = []

    def failing(frame: pl.LazyFrame) -> pl.DataFrame:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return collect(frame)

    monkeypatch.setattr(feature_view, "_collect", failing)
    with pytest.raises(OSError, match="disk full"):
        fv.write_training_frame(target, window=timedelta(minutes=3))
    assert len(calls) == 2
    assert pl.read_parquet(target).equals(pl.DataFrame({"old": [1]}))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_windowed_plan_sinks_to_parquet_with_the_same_rows(
    seeded: FeatureStore, tmp_path: Any
) -> None:
    fv = seed_view(seeded)
    whole = fv.training_frame().collect()
    target = tmp_path / "train.parquet"
    fv.training_frame(window=timedelta(minutes=7)).sink_parquet(target)
    assert pl.read_parquet(target).equals(whole)
    with pytest.raises(mfs.DefinitionError, match="window"):
        fv.training_frame(window=timedelta(0))


def test_time_ordered_tables_skip_the_sort_and_keep_key_order_within_ties(
    store: FeatureStore,
) -> None:
    make_groups(store)
    activity = store.get_feature_group("user_activity")
    schema = {
        "user_id": pl.Int64,
        "item_id": pl.Int64,
        "timestamp": TIME,
        "duration_sec": pl.Float64,
        "conversion": pl.Int64,
    }
    # Two appends in time order; several users share event times, keys out of order.
    activity.insert(
        frame([(3, 10, at(1), 1.0, 0), (1, 11, at(1), 2.0, 1), (2, 10, at(2), 3.0, 0)], schema)
    )
    activity.insert(frame([(2, 12, at(3), 4.0, 1), (1, 12, at(3), 5.0, 0)], schema))
    # Each batch is written in (event time, keys) order, so the spine needs no sort at all.
    assert activity.scan_and_record_order()[1] == "keys"
    fv = store.create_feature_view(name="ties", label_fg="user_activity", label_col="conversion")
    plan = fv.training_frame()
    got = plan.collect()
    assert got.select("user_id", "item_id").rows() == [(1, 11), (3, 10), (2, 10), (1, 12), (2, 12)]
    assert "SORT BY" not in plan.explain().upper()
    # Two appends at one event time (disjoint items): in time order, maybe not in key order;
    # then only the tied rows are sorted by key and merged back.
    activity.insert(frame([(3, 20, at(9), 1.0, 0)], schema))
    activity.insert(frame([(1, 21, at(9), 1.0, 0)], schema))
    assert activity.scan_and_record_order()[1] in ("keys", "time")
    tail = store.get_feature_view("ties").training_frame().collect().tail(2)
    assert tail.select("user_id", "item_id").rows() == [(1, 21), (3, 20)]
    activity = store.get_feature_group("user_activity")
    # An upsert that rewrites a file must not break the order.
    activity.insert(frame([(3, 10, at(1), 9.0, 1)], schema))
    again = store.get_feature_view("ties").training_frame().collect()
    assert again.select("user_id", "item_id").rows() == [
        *got.select("user_id", "item_id").rows(),
        (1, 21),
        (3, 20),
    ]
    assert again["duration_sec"].to_list() == [2.0, 9.0, 3.0, 5.0, 4.0, 1.0, 1.0]
