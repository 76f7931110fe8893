from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microfs.errors import DefinitionError, NotFoundError, SchemaError, TimestampError
from microfs.synthetic import (
    CATEGORIES,
    COUNTRIES,
    DEFAULT_END,
    DEFAULT_START,
    GROUPS,
    POLARS_SCHEMAS,
    SCHEMAS,
    SIZES,
    USER_LEVELS,
    World,
    activity_windows,
    append_batch,
    corrections,
    generate_world,
    item_features,
    user_activity,
    user_profiles,
)

UTC_US = pl.Datetime("us", "UTC")
# The seed's spellings, mapped independently of the module under test.
SPELLED = {"int64": pl.Int64(), "float64": pl.Float64(), "string": pl.String()}
SPELLED["datetime64[ns, utc]"] = UTC_US
NAMES = ("user_profile", "item_feature", "user_activity")


@pytest.fixture(scope="module")
def tiny() -> World:
    return generate_world("tiny", seed=0)


@pytest.fixture(scope="module")
def mid() -> World:
    """Enough labels and entities for rates to be stable, still well under a second."""
    return generate_world(n_labels=300_000, n_users=5_000, n_items=1_000, seed=11)


def _keys(name: str) -> list[str]:
    return [*GROUPS[name]["primary_keys"], GROUPS[name]["event_time"]]


def _as_of(world: World) -> pl.DataFrame:
    """Label rows with their point-in-time profile and item features."""
    labels = world.user_activity.sort("timestamp")
    return labels.join_asof(
        world.user_profile.sort("timestamp"), on="timestamp", by="user_id", check_sortedness=False
    ).join_asof(
        world.item_feature.sort("timestamp"), on="timestamp", by="item_id", check_sortedness=False
    )


# --- contract: names, schemas, sizes -----------------------------------------------------


def test_schemas_groups_and_sizes_cover_the_three_groups() -> None:
    assert set(SCHEMAS) == set(GROUPS) == set(POLARS_SCHEMAS) == set(NAMES)
    for name in NAMES:
        assert {k: SPELLED[v] for k, v in SCHEMAS[name].items()} == dict(POLARS_SCHEMAS[name])
        assert set(_keys(name)) <= set(SCHEMAS[name])
        assert set(GROUPS[name]["online_keys"]) <= set(SCHEMAS[name])
        assert GROUPS[name]["description"]
    assert GROUPS["user_activity"]["primary_keys"] == ["user_id", "item_id"]
    for size in ("tiny", "small", "medium", "large"):
        assert set(SIZES[size]) == {
            "n_labels",
            "n_users",
            "n_items",
            "n_profile_rows",
            "n_item_rows",
        }
    assert SIZES["small"]["n_labels"] == 1_000_000
    assert SIZES["medium"]["n_labels"] == 10_000_000
    assert SIZES["medium"]["n_profile_rows"] == SIZES["medium"]["n_item_rows"] == 1_000_000


def test_frames_have_the_spelled_dtypes(tiny: World) -> None:
    for name, frame in tiny.frames().items():
        assert frame.schema == pl.Schema({k: SPELLED[v] for k, v in SCHEMAS[name].items()})
        assert frame.null_count().sum_horizontal().item() == 0


def test_named_size_is_honoured(tiny: World) -> None:
    size = SIZES["tiny"]
    assert tiny.user_activity.height == size["n_labels"]
    assert tiny.user_profile.height == size["n_profile_rows"]
    assert tiny.item_feature.height == size["n_item_rows"]
    assert tiny.user_profile["user_id"].n_unique() == size["n_users"]
    assert tiny.item_feature["item_id"].n_unique() == size["n_items"]


def test_explicit_counts_override_the_size() -> None:
    w = generate_world(
        "tiny", n_labels=123, n_users=7, n_items=4, n_profile_rows=20, n_item_rows=9, seed=2
    )
    assert (w.user_activity.height, w.user_profile.height, w.item_feature.height) == (123, 20, 9)
    assert sorted(w.user_profile["user_id"].unique()) == list(range(1, 8))
    assert sorted(w.item_feature["item_id"].unique()) == [100, 101, 102, 103]


def test_rows_per_entity_of_the_size_are_kept_when_only_entities_change() -> None:
    w = generate_world("tiny", n_users=40, n_items=10, n_labels=10)
    ratio = SIZES["tiny"]["n_profile_rows"] / SIZES["tiny"]["n_users"]
    assert w.user_profile.height == round(40 * ratio)
    assert w.item_feature.height == round(10 * SIZES["tiny"]["n_item_rows"] / 50)


# --- determinism ---------------------------------------------------------------------------


def test_same_seed_gives_identical_frames(tiny: World) -> None:
    again = generate_world("tiny", seed=0)
    for name in NAMES:
        assert again.frames()[name].equals(tiny.frames()[name]), name


def test_different_seed_gives_different_frames(tiny: World) -> None:
    other = generate_world("tiny", seed=1)
    for name in NAMES:
        assert not other.frames()[name].equals(tiny.frames()[name]), name


# --- invariants ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_keys_and_event_time_are_unique(tiny: World, mid: World, name: str) -> None:
    for world in (tiny, mid):
        frame = world.frames()[name]
        assert frame.select(_keys(name)).is_unique().all()


def test_keys_unique_even_with_one_user_and_three_items() -> None:
    w = generate_world(n_labels=20_000, n_users=1, n_items=3, n_profile_rows=50, n_item_rows=60)
    for name, frame in w.frames().items():
        assert frame.select(_keys(name)).is_unique().all(), name


def test_times_are_utc_microseconds_inside_the_window_and_sorted(tiny: World) -> None:
    for frame in tiny.frames().values():
        ts = frame["timestamp"]
        assert ts.dtype == UTC_US
        assert ts.min() >= DEFAULT_START  # type: ignore[operator]
        assert ts.max() < DEFAULT_END  # type: ignore[operator]
        assert ts.is_sorted()


def test_custom_window_in_another_zone_is_converted_to_utc() -> None:
    zone = timezone(timedelta(hours=5))
    start, end = datetime(2023, 3, 1, tzinfo=zone), datetime(2023, 3, 8, tzinfo=zone)
    w = generate_world("tiny", seed=4, start=start, end=end)
    for frame in w.frames().values():
        assert frame["timestamp"].dtype == UTC_US
        assert frame["timestamp"].min() >= start  # type: ignore[operator]
        assert frame["timestamp"].max() < end  # type: ignore[operator]


def test_keys_unique_in_a_window_of_a_few_microseconds() -> None:
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    w = generate_world(
        n_labels=30,
        n_users=1,
        n_items=3,
        n_profile_rows=40,
        n_item_rows=45,
        start=start,
        end=start + timedelta(microseconds=60),
    )
    for name, frame in w.frames().items():
        assert frame.select(_keys(name)).is_unique().all(), name
        assert frame["timestamp"].max() < start + timedelta(microseconds=60)  # type: ignore[operator]


def test_window_too_short_for_the_versions_is_refused() -> None:
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    with pytest.raises(DefinitionError, match="cannot hold"):
        user_profiles(1, versions_per_user=100, start=start, end=start + timedelta(microseconds=50))


def test_demo_user_and_item_exist_at_the_smallest_sizes(tiny: World) -> None:
    smallest = generate_world(n_labels=1, n_users=1, n_items=3, n_profile_rows=1, n_item_rows=3)
    for world in (tiny, smallest):
        assert 1 in world.user_profile["user_id"]
        assert 102 in world.item_feature["item_id"]
        last = world.user_activity.row(-1, named=True)
        assert (last["user_id"], last["item_id"]) == (1, 102)
        # the demo session sees both entities' features
        row = _as_of(world).row(-1, named=True)
        assert row["user_level"] is not None
        assert row["price"] is not None


def test_labels_use_only_known_entities(mid: World) -> None:
    assert mid.user_activity["user_id"].is_in(mid.user_profile["user_id"].implode()).all()
    assert mid.user_activity["item_id"].is_in(mid.item_feature["item_id"].implode()).all()


def test_few_labels_precede_their_first_feature_version(mid: World) -> None:
    joined = _as_of(mid)
    missing_user = joined["user_level"].null_count() / joined.height
    missing_item = joined["price"].null_count() / joined.height
    assert 0.0 < missing_user < 0.06
    assert 0.0 < missing_item < 0.06


# --- realism -------------------------------------------------------------------------------


def test_profiles_move_up_and_age_while_country_stays(mid: World) -> None:
    level = pl.col("user_level").replace_strict(USER_LEVELS, range(len(USER_LEVELS)))
    per_user = (
        mid.user_profile.sort("user_id", "timestamp")
        .group_by("user_id")
        .agg(
            level.diff().min().alias("level_step"),
            pl.col("age").diff().min().alias("age_step"),
            pl.col("country").n_unique().alias("countries"),
            pl.len().alias("versions"),
            (level.last() - level.first()).alias("level_gain"),
        )
    )
    assert per_user["level_step"].drop_nulls().min() >= 0  # type: ignore[operator]
    assert per_user["age_step"].drop_nulls().min() >= 0  # type: ignore[operator]
    assert per_user["countries"].max() == 1
    assert per_user["versions"].max() > 1  # type: ignore[operator]
    assert per_user["level_gain"].max() > 0  # type: ignore[operator]
    assert set(mid.user_profile["user_level"].unique()) == set(USER_LEVELS)
    assert set(mid.user_profile["country"].unique()) <= set(COUNTRIES)
    assert mid.user_profile["age"].is_between(18, 90).all()


def test_prices_change_are_positive_and_in_cents(mid: World) -> None:
    items = mid.item_feature
    assert (items["price"] > 0).all()
    assert ((items["price"] * 100).round(6) == (items["price"] * 100).round(0)).all()
    assert set(items["category"].unique()) <= set(CATEGORIES)
    per_item = items.group_by("item_id").agg(
        pl.col("price").n_unique().alias("prices"), pl.col("category").n_unique().alias("cats")
    )
    assert per_item["prices"].max() > 1  # type: ignore[operator]
    assert per_item["cats"].max() == 1


def test_conversion_rate_is_sensible(mid: World) -> None:
    rate = mid.user_activity["conversion"].mean()
    assert isinstance(rate, float)
    assert 0.05 < rate < 0.3
    assert set(mid.user_activity["conversion"].unique()) == {0, 1}
    assert (mid.user_activity["duration_sec"] > 0).all()


def test_conversion_depends_on_point_in_time_features(mid: World) -> None:
    joined = _as_of(mid).drop_nulls(["user_level", "price"])
    by_level = dict(joined.group_by("user_level").agg(pl.col("conversion").mean()).iter_rows())
    rates = [by_level[level] for level in USER_LEVELS]
    assert rates == sorted(rates)
    assert rates[-1] > 2 * rates[0]

    def split_rate(column: str) -> tuple[float, float]:
        median = joined[column].median()
        low = joined.filter(pl.col(column) < median)["conversion"].mean()
        high = joined.filter(pl.col(column) >= median)["conversion"].mean()
        assert isinstance(low, float)
        assert isinstance(high, float)
        return low, high

    cheap, dear = split_rate("price")
    assert cheap > 1.3 * dear
    short, long_ = split_rate("duration_sec")
    assert long_ > 1.5 * short


# --- arguments -----------------------------------------------------------------------------


def test_unknown_size_is_not_found() -> None:
    with pytest.raises(NotFoundError, match="'huge'.*tiny, small"):
        generate_world("huge")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_users": 0}, "n_users=0"),
        ({"n_users": -1}, "n_users=-1"),
        ({"seed": -1}, "seed=-1"),
        ({"n_items": 2}, "n_items=2"),
        ({"n_labels": -1}, "n_labels=-1"),
        ({"n_users": 10, "n_profile_rows": 5}, "n_profile_rows=5"),
        ({"end": DEFAULT_START}, "not after start"),
    ],
)
def test_bad_arguments_are_definition_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(DefinitionError, match=match):
        generate_world("tiny", **kwargs)  # type: ignore[arg-type]


def test_naive_window_is_a_timestamp_error() -> None:
    with pytest.raises(TimestampError, match="start=.* is naive"):
        generate_world("tiny", start=datetime(2024, 1, 1))


def test_activity_needs_feature_columns(tiny: World) -> None:
    with pytest.raises(SchemaError, match="user_level"):
        user_activity(10, tiny.user_profile.drop("user_level"), tiny.item_feature)


def test_activity_needs_feature_types(tiny: World) -> None:
    profiles = tiny.user_profile.with_columns(pl.col("age").cast(pl.String) + " years")
    with pytest.raises(SchemaError, match="wrong type"):
        user_activity(10, profiles, tiny.item_feature)


def test_generators_can_be_used_one_by_one_without_touching_inputs() -> None:
    profiles = user_profiles(30, seed=5, versions_per_user=3)
    items = item_features(8, seed=5, versions_per_item=2)
    before = (profiles.clone(), items.clone())
    labels = user_activity(500, profiles, items, seed=5)
    assert profiles.equals(before[0])
    assert items.equals(before[1])
    assert (profiles.height, items.height, labels.height) == (90, 16, 500)
    assert labels.schema == POLARS_SCHEMAS["user_activity"]


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_labels=st.integers(0, 400),
    n_users=st.integers(1, 30),
    n_items=st.integers(3, 30),
    extra=st.integers(0, 40),
)
def test_any_small_world_keeps_the_invariants(
    seed: int, n_labels: int, n_users: int, n_items: int, extra: int
) -> None:
    w = generate_world(
        n_labels=n_labels,
        n_users=n_users,
        n_items=n_items,
        n_profile_rows=n_users + extra,
        n_item_rows=n_items + extra,
        seed=seed,
    )
    assert w.user_activity.height == n_labels
    assert w.user_profile.height == n_users + extra
    assert w.item_feature.height == n_items + extra
    for name, frame in w.frames().items():
        assert frame.schema == POLARS_SCHEMAS[name]
        assert frame.select(_keys(name)).is_unique().all()
        assert frame["timestamp"].is_sorted()
    if n_labels:
        assert w.user_activity.row(-1)[:2] == (1, 102)


# --- update batches ------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_corrections_keep_keys_and_times_and_change_every_feature(mid: World, name: str) -> None:
    frame = mid.frames()[name]
    before = frame.clone()
    batch = corrections(frame, fraction=0.01, seed=3)
    assert frame.equals(before)
    assert batch.height == round(0.01 * frame.height)
    assert batch.schema == frame.schema
    keys = _keys(name)
    assert batch.select(keys).is_unique().all()
    old = batch.select(keys).join(frame, on=keys, how="left", maintain_order="left")
    assert old.height == batch.height
    assert old.null_count().sum_horizontal().item() == 0  # every corrected row existed
    for column in frame.columns:
        if column not in keys:
            assert (batch[column] != old[column]).all(), column
    if name == "item_feature":
        cents = batch["price"] * 100
        assert (cents.round(6) == cents.round(0)).all()


def test_corrections_are_deterministic_and_seeded(mid: World) -> None:
    frame = mid.user_profile
    assert corrections(frame, fraction=0.05, seed=1).equals(
        corrections(frame, fraction=0.05, seed=1)
    )
    assert not corrections(frame, fraction=0.05, seed=1).equals(
        corrections(frame, fraction=0.05, seed=2)
    )


def test_corrections_restricted_to_recent_rows(mid: World) -> None:
    frame = mid.user_activity
    batch = corrections(frame, fraction=0.01, recent_fraction=0.1, seed=4)
    assert batch.height == round(0.01 * frame.height)
    cutoff = frame["timestamp"].sort(descending=True)[round(0.1 * frame.height) - 1]
    assert batch["timestamp"].min() >= cutoff
    assert (
        batch["conversion"]
        != batch.select(_keys("user_activity")).join(
            frame, on=_keys("user_activity"), how="left", maintain_order="left"
        )["conversion"]
    ).all()


def test_corrections_of_any_frame_with_explicit_keys() -> None:
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    frame = pl.DataFrame(
        {
            "k": ["a", "b", "c", "d"],
            "t": pl.datetime_range(start, start + timedelta(days=3), "1d", eager=True),
            "flag": [True, False, True, None],
            "n": pl.Series([1, 2, 3, 4], dtype=pl.Int32),
            "tag": ["x", "y", "x", "y"],
            "cents": [0.01, 0.02, 0.05, 0.1],
        }
    )
    batch = corrections(frame, fraction=1.0, time_col="t", keys=["k"], seed=0)
    assert batch.select("k", "t").equals(frame.select("k", "t"))
    assert batch["flag"].to_list() == [False, True, False, None]
    assert (batch["n"] > frame["n"]).all()
    assert (batch["tag"] != frame["tag"]).all()
    assert (batch["cents"] != frame["cents"]).all()
    assert (batch["cents"] == batch["cents"].round(2)).all()
    assert batch.schema == frame.schema


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"fraction": 1.5}, DefinitionError, "fraction=1.5"),
        ({"fraction": 0.5, "recent_fraction": 0.1}, DefinitionError, "recent_fraction=0.1"),
        ({"fraction": 0.1, "time_col": "when"}, SchemaError, "'when'"),
        ({"fraction": 0.1, "keys": ["nope"]}, SchemaError, "nope"),
    ],
)
def test_corrections_bad_arguments(
    tiny: World, kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        corrections(tiny.user_activity, **kwargs)  # type: ignore[arg-type]


def test_corrections_of_an_unknown_frame_need_keys(tiny: World) -> None:
    with pytest.raises(SchemaError, match="keys="):
        corrections(tiny.user_activity.drop("conversion"), fraction=0.1)


@pytest.mark.parametrize("name", NAMES)
def test_append_batch_is_strictly_later_and_unique(tiny: World, name: str) -> None:
    frame = tiny.frames()[name]
    before = frame.clone()
    batch = append_batch(frame, n_rows=500, seed=8)
    assert frame.equals(before)
    assert batch.height == 500
    assert batch.schema == frame.schema
    latest = frame["timestamp"].max()
    assert batch["timestamp"].min() > latest  # type: ignore[operator]
    assert batch["timestamp"].max() <= latest + timedelta(hours=1)  # type: ignore[operator]
    assert batch["timestamp"].is_sorted()
    assert batch.select(_keys(name)).is_unique().all()
    keys = GROUPS[name]["primary_keys"]
    assert batch.select(keys).join(frame.select(keys), on=keys, how="anti").height == 0
    assert pl.concat([frame, batch]).select(_keys(name)).is_unique().all()


def test_append_batch_after_a_given_time_and_deterministic(tiny: World) -> None:
    after = datetime(2030, 6, 1, 12, tzinfo=timezone(timedelta(hours=-4)))
    batch = append_batch(tiny.item_feature, n_rows=50, seed=1, after=after, span=timedelta(1))
    assert batch["timestamp"].min() > after  # type: ignore[operator]
    assert batch["timestamp"].max() <= after + timedelta(1)  # type: ignore[operator]
    assert batch.equals(
        append_batch(tiny.item_feature, n_rows=50, seed=1, after=after, span=timedelta(1))
    )
    assert append_batch(tiny.item_feature, n_rows=0).schema == tiny.item_feature.schema


def test_append_batch_filling_its_span_stays_strictly_after(tiny: World) -> None:
    after = datetime(2030, 1, 1, tzinfo=timezone.utc)
    span = timedelta(microseconds=10)
    batch = append_batch(tiny.user_activity, n_rows=9, after=after, span=span, seed=2)
    assert batch["timestamp"].min() > after  # type: ignore[operator]
    assert batch["timestamp"].max() <= after + span  # type: ignore[operator]
    assert batch["timestamp"].n_unique() == 9


def test_append_batch_bad_arguments(tiny: World) -> None:
    with pytest.raises(TimestampError, match="is naive"):
        append_batch(tiny.user_profile, n_rows=3, after=datetime(2030, 1, 1))
    with pytest.raises(DefinitionError, match="n_rows=-1"):
        append_batch(tiny.user_profile, n_rows=-1)
    with pytest.raises(DefinitionError, match="span"):
        append_batch(tiny.user_profile, n_rows=10, span=timedelta(microseconds=5))
    with pytest.raises(DefinitionError, match="no rows"):
        append_batch(tiny.user_profile.clear(), n_rows=1)


# --- larger sizes ---------------------------------------------------------------------------


@pytest.mark.slow
def test_small_size_generates_its_counts() -> None:
    w = generate_world("small", seed=0)
    size = SIZES["small"]
    assert w.user_activity.height == size["n_labels"]
    assert w.user_profile.height == size["n_profile_rows"]
    assert w.item_feature.height == size["n_item_rows"]
    assert w.user_activity.select(_keys("user_activity")).is_unique().all()


# --- labels made one sub-window at a time ----------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(n_labels=st.integers(0, 10**9), parts=st.integers(1, 60))
def test_activity_windows_split_the_window_and_the_labels(n_labels: int, parts: int) -> None:
    windows = activity_windows(n_labels, parts)
    assert len(windows) == parts
    assert sum(n for n, _, _ in windows) == n_labels
    assert all(n >= 0 for n, _, _ in windows)
    assert windows[0][1] == DEFAULT_START
    assert windows[-1][2] == DEFAULT_END
    for (_, _, hi), (_, lo, _) in zip(windows, windows[1:], strict=False):
        assert hi == lo  # consecutive, no gap, no overlap
    lengths = {hi - lo for _, lo, hi in windows}
    assert max(lengths) - min(lengths) <= timedelta(microseconds=1)


def test_activity_windows_follow_the_density_of_a_whole_window(mid: World) -> None:
    whole = mid.user_activity  # 300k labels over the default window, made at once
    for n, lo, hi in activity_windows(whole.height, 6):
        inside = whole.filter(pl.col("timestamp").is_between(lo, hi, closed="left")).height
        assert abs(inside - n) < 0.03 * n, (lo, inside, n)


def test_labels_made_window_by_window_are_in_time_order(tiny: World) -> None:
    windows = activity_windows(900, 3)
    frames = [
        user_activity(n, tiny.user_profile, tiny.item_feature, seed=k, start=lo, end=hi)
        for k, (n, lo, hi) in enumerate(windows)
    ]
    labels = pl.concat(frames)
    assert labels.height == 900
    assert labels.get_column("timestamp").is_sorted()
    assert labels.get_column("timestamp").n_unique() == 900
    for frame, (n, lo, hi) in zip(frames, windows, strict=True):
        assert frame.height == n
        assert frame.get_column("timestamp").is_between(lo, hi, closed="left").all()


@pytest.mark.parametrize(
    ("n_labels", "parts", "match"), [(-1, 2, "n_labels=-1"), (10, 0, "parts=0")]
)
def test_activity_windows_bad_arguments(n_labels: int, parts: int, match: str) -> None:
    with pytest.raises(DefinitionError, match=match):
        activity_windows(n_labels, parts)
