"""Known-at joins: a training row holds what a live lookup at the label's time served.

The strongest tests here say "two implementations must agree": the known-at frame against
the vectors an online service logged while a stream with late and corrected rows was
replayed in commit order; against a brute-force oracle (loops over every row version);
and against Feast's ``filter_by_created_timestamp`` retrieval, written out step by step.
"""

from __future__ import annotations

import contextlib
import random
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pytest
from deltalake import DeltaTable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from microfs import DefinitionError, FeatureGroup, FeatureStore, FeatureView
from microfs._commit_log import SUPERSEDED_VERSION, SupersededLog
from microfs.known import COMMIT_TIME, SUPERSEDED_AT, known_segments
from microfs.pit import JoinPlan, point_in_time_join

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
UTC_US = pl.Datetime("us", "UTC")
FEATURE_SCHEMA = {"k": "int64", "ts": "datetime64[ns, utc]", "x": "float64"}
LABEL_SCHEMA = {"k": "int64", "ts": "datetime64[ns, utc]", "y": "int64"}


class FakeClock:
    """A wall clock a test moves by hand (commit times are read from it)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def hours(h: float) -> datetime:
    return T0 + timedelta(hours=h)


def feature_rows(rows: list[tuple[int, datetime, float]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"k": pl.Int64, "ts": UTC_US, "x": pl.Float64}, orient="row")


def label_rows(rows: list[tuple[int, datetime]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(k, t, i) for i, (k, t) in enumerate(rows)],
        schema={"k": pl.Int64, "ts": UTC_US, "y": pl.Int64},
        orient="row",
    )


def make_groups(fs: FeatureStore, *names: str) -> list[FeatureGroup]:
    return [
        fs.create_feature_group(
            name=name, primary_keys=["k"], event_time="ts", schema=FEATURE_SCHEMA, online_keys=["k"]
        )
        for name in names
    ]


def make_labels(fs: FeatureStore) -> FeatureGroup:
    return fs.create_feature_group(
        name="labels", primary_keys=["k"], event_time="ts", schema=LABEL_SCHEMA
    )


def view(
    fs: FeatureStore,
    name: str,
    groups: list[str],
    *,
    timeline: str = "event",
    lag: timedelta = timedelta(0),
    max_age: timedelta | None = None,
) -> FeatureView:
    joins = [
        {"fg_name": g, "on": ["k"], "prefix": f"{g}_", **({"max_age": max_age} if max_age else {})}
        for g in groups
    ]
    if timeline == "event" and lag == timedelta(0):
        return fs.create_feature_view(name=name, label_fg="labels", label_col="y", joins=joins)
    return fs.create_feature_view(
        name=name,
        label_fg="labels",
        label_col="y",
        joins=joins,
        timeline=timeline,  # type: ignore[arg-type]
        lag=lag,
    )


def frame(fv: FeatureView, **kwargs: Any) -> pl.DataFrame:
    return fv.training_frame(**kwargs).collect(engine="in-memory")


# --- the brute-force oracle ------------------------------------------------------------------


@dataclass(frozen=True)
class Version:
    """One version of a stored row: written at ``committed``, replaced at ``superseded``."""

    key: int
    event: datetime
    value: float
    committed: datetime
    superseded: datetime | None


def versions_of(writes: list[tuple[int, datetime, float, datetime]]) -> list[Version]:
    """Row versions from writes ``(key, event time, value, commit time)`` in commit order."""
    out: list[Version] = []
    for number, (key, event, value, committed) in enumerate(writes):
        later = [c for k, e, _, c in writes[number + 1 :] if (k, e) == (key, event)]
        out.append(Version(key, event, value, committed, later[0] if later else None))
    return out


def oracle(
    versions: list[Version],
    labels: list[tuple[int, datetime]],
    lag: timedelta,
    max_age: timedelta | None,
) -> list[float | None]:
    """Per label: the value of the visible version with the greatest event time."""
    out: list[float | None] = []
    for key, t in labels:
        best: Version | None = None
        for v in versions:
            visible = (
                v.key == key
                and v.event <= t
                and v.committed <= t - lag
                and (v.superseded is None or v.superseded > t - lag)
            )
            if visible and (best is None or v.event > best.event):
                best = v
        if best is not None and max_age is not None and best.event < t - max_age:
            best = None
        out.append(None if best is None else best.value)
    return out


# --- Feast's retrieval with filter_by_created_timestamp=True, step by step -------------------


def feast_created_cutoff(
    writes: list[tuple[int, datetime, float, datetime]],
    labels: list[tuple[int, datetime]],
    ttl: timedelta | None,
) -> dict[tuple[int, datetime], float | None]:
    """What Feast's file (Dask) offline store returns, in pandas, per label it keeps.

    Feast keeps every write as a row with its ``created_timestamp``; its historical
    retrieval with ``filter_by_created_timestamp=True`` (Feast 0.66, ``dask.py``):
    merges the labels with the feature rows on the join key (left); keeps rows whose event
    time is null or ``<= t`` (and ``>= t - ttl`` for a non-zero ttl); blanks the feature
    side of rows created after ``t`` (so the label survives); sorts by created time, then
    event time (nulls first) and keeps the last row per label. A label whose only
    candidates all have event times after ``t`` is dropped by the ttl step, so it is
    missing from the result.
    """
    entity = pd.DataFrame(labels, columns=["k", "entity_ts"])
    rows = pd.DataFrame(
        [(k, e, c, x) for k, e, x, c in writes], columns=["k", "ts", "created", "x"]
    ).astype({"x": "float64"})
    df = entity.merge(rows, on="k", how="left")
    in_window = df["ts"] <= df["entity_ts"]
    if ttl is not None:
        in_window &= df["ts"] >= df["entity_ts"] - ttl
    df = df[df["ts"].isna() | in_window]
    too_new = ~df["ts"].isna() & ~(df["created"] <= df["entity_ts"])
    df = df.assign(**{c: df[c].mask(too_new) for c in ("ts", "created", "x")})
    df = df.sort_values("created", na_position="first", kind="stable")
    df = df.sort_values("ts", na_position="first", kind="stable")
    df = df.drop_duplicates(["k", "entity_ts"], keep="last")
    return {
        (int(k), t.to_pydatetime()): None if pd.isna(x) else float(x)
        for k, t, x in df[["k", "entity_ts", "x"]].itertuples(index=False)
    }


def assert_agrees_with_feast(
    got: pl.DataFrame,
    writes: list[tuple[int, datetime, float, datetime]],
    ttl: timedelta | None,
    column: str,
) -> None:
    """Known-at rows (lag 0) equal Feast's wherever Feast returns the label at all."""
    labels = got.select("k", "t" if "t" in got.columns else "ts").rows()
    feast = feast_created_cutoff(writes, labels, ttl)
    ours = dict(zip(labels, got[column].to_list(), strict=True))
    for label, value in ours.items():
        if label in feast:
            assert value == feast[label], (label, value, feast[label])
        else:  # dropped by Feast's ttl step: no row had an event time in the window
            assert value is None


# --- the pure plan against the oracle --------------------------------------------------------

writes_strategy = st.lists(
    st.tuples(
        st.integers(0, 2),  # key
        st.integers(0, 12),  # event hour
        st.integers(0, 99),  # value
        st.integers(0, 4),  # commit delay, in half hours, after the previous commit
    ),
    max_size=14,
)
labels_strategy = st.lists(st.tuples(st.integers(-1, 3), st.integers(-2, 40)), max_size=10)


def timed_writes(
    raw: list[tuple[int, int, int, int]],
) -> list[tuple[int, datetime, float, datetime]]:
    """Writes in commit order with strictly increasing commit times (some before events)."""
    out = []
    committed = hours(-1)
    for key, event, value, delay in raw:
        committed += timedelta(minutes=30 * delay, microseconds=1)
        out.append((key, hours(event), float(value), committed))
    return out


def versions_frame(versions: list[Version]) -> pl.LazyFrame:
    return pl.LazyFrame(
        [(v.key, v.event, v.value, v.committed, v.superseded) for v in versions],
        schema={
            "k": pl.Int64,
            "ts": UTC_US,
            "x": pl.Float64,
            COMMIT_TIME: UTC_US,
            SUPERSEDED_AT: UTC_US,
        },
        orient="row",
    )


@settings(max_examples=300, deadline=None)
@given(
    raw=writes_strategy,
    labels=labels_strategy,
    lag_minutes=st.sampled_from([0, 30, 90]),
    compiled=st.booleans(),
)
def test_known_segments_agree_with_a_brute_force_oracle(
    raw: list[tuple[int, int, int, int]],
    labels: list[tuple[int, int]],
    lag_minutes: int,
    compiled: bool,
) -> None:
    writes = timed_writes(raw)
    # one write per (key, event time) per commit: a batch holds a row once
    versions = versions_of(writes)
    lag = timedelta(minutes=lag_minutes)
    spine = [(k, hours(h / 2)) for k, h in dict.fromkeys(labels)]
    segments = known_segments(
        versions_frame(versions),
        on=["k"],
        event_time="ts",
        features=["x"],
        lag=lag,
        known_from="from",
        event_out="served_ts",
    )
    plan = JoinPlan(
        frame=segments, on=("k",), event_time="from", features=("x",), compiled=compiled
    )
    got = point_in_time_join(
        pl.LazyFrame(spine, schema={"k": pl.Int64, "t": UTC_US}, orient="row"),
        label_time="t",
        label_keys=["k"],
        joins=[plan],
    ).collect()
    expected = dict(zip(spine, oracle(versions, spine, lag, None), strict=True))
    assert got["x"].to_list() == [expected[(k, t)] for k, t in got.select("k", "t").rows()]
    if lag == timedelta(0):
        assert_agrees_with_feast(got, writes, None, "x")


# --- the whole store against the oracle ------------------------------------------------------


@contextlib.contextmanager
def fresh_store() -> Iterator[FeatureStore]:
    """A store on its own temporary lake (hypothesis runs many examples per test)."""
    with tempfile.TemporaryDirectory() as folder:
        yield FeatureStore(Path(folder) / "lake")


def replay(group: FeatureGroup, writes: list[tuple[int, datetime, float, datetime]]) -> None:
    """Insert writes in commit order, one insert per commit time, at those times."""
    clock = FakeClock(T0)
    group.commit_clock = clock
    batches: dict[datetime, list[tuple[int, datetime, float]]] = {}
    for key, event, value, committed in writes:
        batches.setdefault(committed, []).append((key, event, value))
    for committed, rows in batches.items():
        clock.now = committed
        group.insert(feature_rows(rows))


def recorded_writes(group: FeatureGroup) -> list[tuple[int, datetime, float, datetime]]:
    """Every version the group stored, in commit order, with its recorded commit time."""
    rows = group.scan_versions().collect().sort(COMMIT_TIME, "k", "ts")
    return [(r["k"], r["ts"], r["x"], r[COMMIT_TIME]) for r in rows.iter_rows(named=True)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 12), st.integers(0, 99), st.integers(1, 4)),
        min_size=1,
        max_size=10,
    ),
    labels=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40)), min_size=1, max_size=8),
    lag_minutes=st.sampled_from([0, 45]),
    max_age_hours=st.sampled_from([None, 3]),
    compact=st.booleans(),
)
def test_known_at_frames_agree_with_the_oracle(
    raw: list[tuple[int, int, int, int]],
    labels: list[tuple[int, int]],
    lag_minutes: int,
    max_age_hours: int | None,
    compact: bool,
) -> None:
    # writes in one commit hold a (key, event time) once; later commits may correct it
    writes, seen = [], set()
    for key, event, value, committed in timed_writes(raw):
        batch = committed.replace(minute=0, second=0, microsecond=0)
        if (key, event, batch) not in seen:
            seen.add((key, event, batch))
            writes.append((key, event, value, batch + timedelta(hours=1)))
    lag = timedelta(minutes=lag_minutes)
    max_age = None if max_age_hours is None else timedelta(hours=max_age_hours)
    with fresh_store() as fs:
        (group,) = make_groups(fs, "feat")
        replay(group, writes)
        if compact:
            group.compact()
        # commit times as the clock gave them, kept by compaction
        assert recorded_writes(group) == sorted(writes, key=lambda w: (w[3], w[0], w[1]))
        spine = [(k, hours(h / 2)) for k, h in dict.fromkeys(labels)]
        make_labels(fs).insert(label_rows(spine))
        fv = view(fs, "known", ["feat"], timeline="known", lag=lag, max_age=max_age)
        got = frame(fv)
        expected = dict(zip(spine, oracle(versions_of(writes), spine, lag, max_age), strict=True))
        assert got["feat_x"].to_list() == [
            expected[(k, t)] for k, t in got.select("k", "ts").rows()
        ]
        if lag == timedelta(0):
            assert_agrees_with_feast(got, writes, max_age, "feat_x")


# --- replay: the known-at frame equals what the service logged --------------------------------


def simulated_stream(
    seed: int, day_hours: int
) -> tuple[list[tuple[datetime, str, pl.DataFrame]], list[tuple[int, datetime]]]:
    """Feature writes in commit order, and label lookups, over two groups and 40 keys.

    ``clicks`` gets rows on time and about one in five late (committed hours after its
    event time); ``profile`` gets rows, and corrections of rows already stored. Commits
    come every 20 minutes; lookups fall between them.
    """
    rng = random.Random(seed)
    pending: list[tuple[datetime, str, tuple[int, datetime, float]]] = []
    for minute in range(0, day_hours * 60, 7):
        event = T0 + timedelta(minutes=minute)
        key = rng.randrange(40)
        delay = timedelta(minutes=rng.randrange(1, 10))
        if rng.random() < 0.2:
            delay += timedelta(hours=rng.randrange(1, 6))  # late
        pending.append((event + delay, "clicks", (key, event, float(rng.randrange(1000)))))
        key = rng.randrange(40)
        value = float(rng.randrange(1000))
        pending.append((event + delay, "profile", (key, event, value)))
        if rng.random() < 0.3:  # corrected later
            fixed = event + delay + timedelta(minutes=rng.randrange(10, 300))
            pending.append((fixed, "profile", (key, event, value + 0.5)))
    commits: dict[tuple[datetime, str], dict[tuple[int, datetime], float]] = {}
    for arrival, group, (key, event, value) in sorted(pending, key=lambda p: p[0]):
        slot = T0 + timedelta(minutes=20 * ((arrival - T0) // timedelta(minutes=20) + 1))
        commits.setdefault((slot, group), {})[(key, event)] = value
    writes = [
        (slot, group, feature_rows([(k, e, v) for (k, e), v in rows.items()]))
        for (slot, group), rows in sorted(commits.items())
    ]
    lookups = sorted(
        {
            (rng.randrange(40), T0 + timedelta(minutes=rng.randrange(60, (day_hours + 4) * 60)))
            for _ in range(400)
        },
        key=lambda kt: (kt[1], kt[0]),
    )
    return writes, lookups


@pytest.mark.parametrize(
    ("seed", "day_hours"), [(7, 12), pytest.param(11, 48, marks=pytest.mark.slow)]
)
def test_replay_known_at_frame_equals_the_logged_online_vectors(seed: int, day_hours: int) -> None:
    writes, lookups = simulated_stream(seed, day_hours)
    with fresh_store() as fs:
        groups = {g.name: g for g in make_groups(fs, "clicks", "profile")}
        clock = FakeClock(T0)
        for g in groups.values():
            g.commit_clock = clock
        make_labels(fs)
        max_age = timedelta(hours=2)
        known = view(fs, "known", ["clicks", "profile"], timeline="known", max_age=max_age)
        event = view(fs, "event", ["clicks", "profile"], max_age=max_age)
        logged: list[list[Any]] = []
        pending = iter(lookups)
        lookup = next(pending, None)
        for committed, name, rows in [*writes, (None, None, None)]:
            # every lookup before this commit sees the commits so far, as a service would
            while lookup is not None and (committed is None or lookup[1] < committed):
                key, at = lookup
                logged.append(known.get_inference_vector({"k": key, "ts": at}))
                lookup = next(pending, None)
            if committed is not None:
                clock.now = committed
                groups[name].insert(rows)
        fs.get_feature_group("labels").insert(label_rows(lookups))
        columns = known.columns
        served = pl.DataFrame(logged, schema=columns, orient="row")
        got = frame(known).select(columns)
        by_event = frame(event).select(columns)
    assert got.height == len(lookups) > 350
    assert_frame_equal(got, served)  # row for row: 0 mismatches
    mismatched = sum(a != b for a, b in zip(by_event.rows(), served.rows(), strict=True))
    # the event-time frame sees late rows and corrections the service could not have
    assert mismatched > 0.05 * len(lookups), mismatched
    print(f"event-time frame differs from the logged vectors on {mismatched} of {got.height} rows")


# --- one late row and one correction, by hand -------------------------------------------------


@pytest.fixture
def late(store: FeatureStore) -> tuple[FeatureStore, FakeClock]:
    """A ``price`` group whose 09:00 row arrives at 11:00 and is corrected at 13:00.

    10:00 and 12:00 labels; event-time and known-at views over it.
    """
    (price,) = make_groups(store, "price")
    clock = FakeClock(hours(8))
    price.commit_clock = clock
    clock.now = hours(8)
    price.insert(feature_rows([(1, hours(8), 80.0)]))
    clock.now = hours(11)
    price.insert(feature_rows([(1, hours(9), 90.0)]))  # late: event 09:00, committed 11:00
    clock.now = hours(13)
    price.insert(feature_rows([(1, hours(9), 95.0)]))  # correction of the 09:00 row
    make_labels(store).insert(label_rows([(1, hours(10)), (1, hours(12)), (1, hours(14))]))
    view(store, "by_event", ["price"])
    view(store, "by_known", ["price"], timeline="known")
    return store, clock


def test_a_late_row_is_not_seen_before_its_commit_nor_a_correction_before_its_own(
    late: tuple[FeatureStore, FakeClock],
) -> None:
    fs, _ = late
    by_event = frame(fs.get_feature_view("by_event"))["price_x"].to_list()
    by_known = frame(fs.get_feature_view("by_known"))["price_x"].to_list()
    assert by_event == [95.0, 95.0, 95.0]
    assert by_known == [80.0, 90.0, 95.0]
    lagged = view(fs, "lagged", ["price"], timeline="known", lag=timedelta(hours=1, minutes=30))
    assert frame(lagged)["price_x"].to_list() == [80.0, 80.0, 90.0]


def test_deleted_rows_leave_the_known_at_history_too(
    late: tuple[FeatureStore, FakeClock],
) -> None:
    fs, clock = late
    clock.now = hours(15)
    fs.get_feature_group("price").delete_rows([{"k": 1, "ts": hours(9)}])
    fs.get_feature_group("labels").insert(label_rows([(1, hours(16))]))
    # labels at 10:00, 12:00, 14:00 and 16:00: the 09:00 row and its first version are
    # erased (a deletion keeps no copy), so both timelines serve the 08:00 row
    assert frame(fs.get_feature_view("by_event"))["price_x"].to_list() == [80.0] * 4
    assert frame(fs.get_feature_view("by_known"))["price_x"].to_list() == [80.0] * 4
    kept = fs.get_feature_group("price").scan_versions().collect()
    assert kept["ts"].to_list() == [hours(8)]


def test_commit_times_increase_strictly_even_when_the_clock_goes_back(
    late: tuple[FeatureStore, FakeClock],
) -> None:
    fs, clock = late
    price = fs.get_feature_group("price")
    price.commit_clock = clock
    clock.now = hours(1)  # earlier than every commit so far
    price.insert(feature_rows([(2, hours(1), 1.0)]))
    price.insert(feature_rows([(3, hours(1), 1.0)]))
    times = price.scan_versions().collect().sort(COMMIT_TIME)[COMMIT_TIME].to_list()
    assert times[-2:] == [
        hours(13) + timedelta(microseconds=1),
        hours(13) + timedelta(microseconds=2),
    ]
    recorded = [e.get("microfs.commit_time") for e in DeltaTable(str(price.path)).history()]
    numbers = [int(t) for t in recorded if t is not None]
    assert numbers == sorted(numbers, reverse=True)
    assert len(set(numbers)) == len(numbers) == 5


def test_the_commit_time_column_stays_out_of_reads_features_and_vectors(
    late: tuple[FeatureStore, FakeClock],
) -> None:
    fs, _ = late
    price = fs.get_feature_group("price")
    assert price.read().columns == list(FEATURE_SCHEMA)
    assert price.read(version=1).columns == list(FEATURE_SCHEMA)
    assert price.scan().collect_schema().names() == list(FEATURE_SCHEMA)
    assert [c.version for c in price.history()] == [0, 1, 2, 3]
    fv = fs.get_feature_view("by_known")
    assert fv.feature_columns == ["price_x"]
    assert frame(fv).columns == ["k", "ts", "price_x", "y"]
    assert fv.get_inference_vector({"k": 1}, return_type="dict") == {"price_x": 95.0}


def test_compaction_keeps_commit_times_and_the_known_at_frame(
    late: tuple[FeatureStore, FakeClock],
) -> None:
    fs, _ = late
    price = fs.get_feature_group("price")
    fv = fs.get_feature_view("by_known")
    before, versions = frame(fv), price.scan_versions().collect().sort(COMMIT_TIME)
    assert price.compact().files_removed > 1
    assert_frame_equal(price.scan_versions().collect().sort(COMMIT_TIME), versions)
    assert_frame_equal(frame(fs.get_feature_view("by_known")), before)


def test_rows_logged_for_a_merge_that_never_committed_are_ignored(
    late: tuple[FeatureStore, FakeClock],
) -> None:
    fs, _ = late
    price = fs.get_feature_group("price")
    before = frame(fs.get_feature_view("by_known"))
    log = SupersededLog(price.path.parent / f".{price.path.name}.superseded")
    orphan = (
        price.scan_versions()
        .filter(pl.col(SUPERSEDED_AT).is_null())
        .with_columns(
            pl.lit(hours(12), dtype=UTC_US).alias(SUPERSEDED_AT),  # no commit has this time
            pl.lit(price.table_version() + 1, dtype=pl.Int64).alias(SUPERSEDED_VERSION),
        )
        .collect()
    )
    log.append(orphan)
    assert_frame_equal(frame(fs.get_feature_view("by_known")), before)
    price.insert(feature_rows([(1, hours(15), 1.0)]))  # that table version now exists
    assert frame(fs.get_feature_view("by_known"))["price_x"].to_list() == [80.0, 90.0, 95.0]


def test_training_datasets_and_batch_data_follow_the_timeline(
    late: tuple[FeatureStore, FakeClock],
) -> None:
    fs, clock = late
    fv = fs.get_feature_view("by_known")
    number = fv.create_training_dataset()
    first = fv.get_training_dataset(number)
    assert first.X_train["price_x"].to_list() == [80.0, 90.0, 95.0]
    price = fs.get_feature_group("price")
    price.commit_clock = clock
    clock.now = hours(
        13,
    ) + timedelta(minutes=30)
    price.insert(feature_rows([(1, hours(8), 81.0)]))  # another correction, after all labels
    again = fv.get_training_dataset(number)
    assert_frame_equal(again.X_train, first.X_train)
    batch = fv.get_batch_data().collect()
    assert batch["price_x"].to_list() == [80.0, 90.0, 95.0]
    spine = pl.DataFrame({"k": [1], "ts": [hours(14)]}, schema={"k": pl.Int64, "ts": UTC_US})
    assert fv.get_batch_data(spine=spine).collect()["price_x"].to_list() == [95.0]
    windows = fv.training_frame(window=timedelta(hours=1)).collect()
    assert_frame_equal(windows, frame(fv))


def test_a_static_group_is_joined_as_it_was_known(store: FeatureStore) -> None:
    clock = FakeClock(hours(9))
    users = store.create_feature_group(
        name="users", primary_keys=["k"], schema={"k": "int64", "x": "float64"}
    )
    users.commit_clock = clock
    users.insert(pl.DataFrame({"k": [1], "x": [1.0]}))
    clock.now = hours(11)
    users.insert(pl.DataFrame({"k": [1], "x": [2.0]}))
    make_labels(store).insert(label_rows([(1, hours(8)), (1, hours(10)), (1, hours(12))]))
    fv = view(store, "static_known", ["users"], timeline="known")
    assert frame(fv)["users_x"].to_list() == [None, 1.0, 2.0]
    assert frame(view(store, "static_event", ["users"]))["users_x"].to_list() == [2.0] * 3


def test_vacuum_keeps_replaced_versions_a_known_at_view_needs_unless_forced(
    late: tuple[FeatureStore, FakeClock],
) -> None:
    fs, clock = late
    price = fs.get_feature_group("price")
    price.commit_clock = clock
    clock.now = hours(40)
    kept = price.vacuum(timedelta(0))
    assert kept.superseded_pruned == 0
    assert kept.broken == ()
    assert frame(fs.get_feature_view("by_known"))["price_x"].to_list() == [80.0, 90.0, 95.0]
    dry = price.vacuum(timedelta(0), force=True, dry_run=True)
    assert dry.superseded_pruned == 1
    assert dry.broken == ("by_known v1 (timeline='known')",)
    forced = price.vacuum(timedelta(0), force=True)
    assert forced.superseded_pruned == 1
    assert forced.broken == dry.broken
    assert price.history_from() == hours(40)
    with pytest.raises(DefinitionError, match="pruned the row versions .* give start="):
        fs.get_feature_view("by_known").training_frame()
    later = fs.get_feature_view("by_known").training_frame(start=hours(40)).collect()
    assert later.height == 0


def test_vacuum_prunes_replaced_versions_when_no_known_at_view_reads_the_group(
    store: FeatureStore,
) -> None:
    (price,) = make_groups(store, "price")
    clock = FakeClock(hours(1))
    price.commit_clock = clock
    price.insert(feature_rows([(1, hours(1), 1.0)]))
    clock.now = hours(2)
    price.insert(feature_rows([(1, hours(1), 2.0)]))
    clock.now = hours(30)
    assert price.vacuum(timedelta(hours=1)).superseded_pruned == 1
    assert price.scan_versions().collect()["x"].to_list() == [2.0]


def test_timeline_and_lag_are_checked_and_stored_only_for_known_at_views(
    late: tuple[FeatureStore, FakeClock],
) -> None:
    fs, _ = late
    root = fs.root / "feature_views"
    event_json = (root / "by_event" / "v1.json").read_text()
    assert "timeline" not in event_json
    assert "lag" not in event_json
    known = fs.get_feature_view("by_known").definition
    assert (known.timeline, known.lag) == ("known", timedelta(0))
    with pytest.raises(DefinitionError, match="timeline='sometime' is not a timeline"):
        view(fs, "bad", ["price"], timeline="sometime")
    with pytest.raises(DefinitionError, match="lag=.* non-negative"):
        view(fs, "bad", ["price"], timeline="known", lag=timedelta(hours=-1))
    with pytest.raises(DefinitionError, match="applies to timeline='known' only"):
        view(fs, "bad", ["price"], lag=timedelta(hours=1))
    assert not (root / "bad").exists() or not list((root / "bad").glob("v*.json"))
