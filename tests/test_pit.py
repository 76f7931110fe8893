from __future__ import annotations

import bisect
import random
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from unittest import mock

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from polars.testing import assert_frame_equal

from microfs import _asof_kernel
from microfs.errors import DefinitionError
from microfs.pit import JoinPlan, point_in_time_join
from tests.helpers import pit_plans
from tests.strategies import (
    PIT_BASE_TIME,
    PIT_LABEL_KEYS,
    PIT_LABEL_SCHEMA,
    PIT_TIME,
    PitGroup,
    PitWorld,
    pit_sort_key,
    pit_worlds,
)

Engine = Literal["auto", "in-memory", "streaming"]

# --- the brute-force reference: plain Python over lists of tuples, no dataframe joins ---


def reference_join(world: PitWorld) -> pl.DataFrame:
    """What point_in_time_join must return, computed row by row."""
    label_at = {name: i for i, name in enumerate(world.label_schema)}
    order = sorted(
        world.label_rows,
        key=lambda r: pit_sort_key(
            r, [label_at[world.label_time]] + [label_at[k] for k in world.label_keys]
        ),
    )
    out_rows = [list(row) for row in order]
    out_schema = dict(world.label_schema)
    t_at = label_at[world.label_time]
    for group in world.groups:
        at = {name: i for i, name in enumerate(group.schema)}
        feature_at = [at[f] for f in group.features]
        for feature in group.features:
            out_schema[group.prefix + feature] = group.schema[feature]
        nulls = [None] * len(feature_at)
        if group.event_time is None:
            table = {tuple(r[at[k]] for k in group.on): r for r in group.rows}
            for row_in, row_out in zip(order, out_rows, strict=True):
                key = tuple(row_in[label_at[k]] for k in group.on)
                match = None if None in key else table.get(key)
                row_out.extend(nulls if match is None else [match[i] for i in feature_at])
            continue
        time_at = at[group.event_time]
        series: dict[tuple[Any, ...], list[tuple[Any, ...]]] = defaultdict(list)
        for r in group.rows:
            series[tuple(r[at[k]] for k in group.on)].append(r)
        times: dict[tuple[Any, ...], list[datetime]] = {}
        for key, rows in series.items():
            rows.sort(key=lambda r: r[time_at])
            times[key] = [r[time_at] for r in rows]
        for row_in, row_out in zip(order, out_rows, strict=True):
            key = tuple(row_in[label_at[k]] for k in group.on)
            t = row_in[t_at]
            match = None
            if None not in key and key in series:
                i = bisect.bisect_right(times[key], t) - 1
                fresh = i >= 0 and (group.max_age is None or times[key][i] >= t - group.max_age)
                if fresh:
                    match = series[key][i]
            row_out.extend(nulls if match is None else [match[i] for i in feature_at])
    return pl.DataFrame(out_rows, schema=out_schema, orient="row")


def run(world: PitWorld, engine: Engine = "auto", *, compiled: bool = False) -> pl.DataFrame:
    labels, plans = pit_plans(world, compiled=compiled)
    lf = point_in_time_join(
        labels,
        label_time=world.label_time,
        label_keys=world.label_keys,
        joins=plans,
        labels_order="keys" if world.labels_sorted else "none",
    )
    assert isinstance(lf, pl.LazyFrame)
    return lf.collect(engine=engine)


def world_of(labels: Sequence[tuple[Any, ...]], *groups: PitGroup) -> PitWorld:
    return PitWorld(PIT_LABEL_SCHEMA, list(labels), PIT_LABEL_KEYS, "t", False, list(groups))


def at(seconds: float = 0, microseconds: int = 0) -> datetime:
    return PIT_BASE_TIME + timedelta(seconds=seconds, microseconds=microseconds)


USER_SCHEMA: dict[str, pl.DataType] = {"user_id": pl.Int64(), "ts": PIT_TIME, "score": pl.Float64()}


# --- the property: the plan equals the reference on random worlds ---


@pytest.mark.parametrize("mode", ["polars", "kernel-branch-polars-inside", "compiled-kernel"])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=pit_worlds())
def test_point_in_time_join_equals_brute_force_reference(world: PitWorld, mode: str) -> None:
    # Joins flagged `compiled` run through the compiled as-of kernel's plan branch, which
    # hands the rows to the kernel or, below its size floors, to Polars' join_asof; with
    # the floors at zero the kernel serves every integer-keyed join here ("user").
    expected = reference_join(world)
    floor = 0 if mode == "compiled-kernel" else 10**18
    with (
        mock.patch.object(_asof_kernel, "KERNEL_MIN_ROWS", floor),
        mock.patch.object(_asof_kernel, "KERNEL_MIN_KEYS", 0),
    ):
        out = run(world, compiled=mode != "polars")
    assert out.height == len(world.label_rows)
    assert_frame_equal(out, expected)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=pit_worlds())
def test_streaming_engine_gives_the_same_frame(world: PitWorld) -> None:
    assert_frame_equal(run(world, engine="streaming"), run(world, engine="in-memory"))


# --- unsorted input: Polars' join_asof would silently mis-match it ---


def test_unsorted_input_is_sorted_before_the_asof_join() -> None:
    rnd = random.Random(7)
    group_rows = list(
        {(rnd.randrange(50), at(rnd.randrange(5_000))): rnd.random() for _ in range(20_000)}.items()
    )
    group = PitGroup(
        USER_SCHEMA, [(k, ts, v) for (k, ts), v in group_rows], ("user_id",), "ts", ("score",)
    )
    labels = [(rnd.randrange(55), "a", at(rnd.randrange(5_000)), 0) for _ in range(20_000)]
    world = world_of(labels, group)
    labels_frame, plans = pit_plans(world)
    # The inputs really are out of order.
    assert not plans[0].frame.collect()["ts"].is_sorted()
    assert not labels_frame.collect()["t"].is_sorted()
    expected = reference_join(world)
    assert expected["score"].null_count() < expected.height // 2  # matches are frequent
    for engine in ("in-memory", "streaming"):
        assert_frame_equal(run(world, engine=engine), expected)


def test_sorted_flags_skip_the_sorts() -> None:
    group = PitGroup(USER_SCHEMA, [(1, at(0), 1.0)], ("user_id",), "ts", ("score",))
    labels, plans = pit_plans(world_of([(1, "a", at(1), 0)], group))
    unflagged = point_in_time_join(labels, label_time="t", label_keys=["user_id"], joins=plans)
    assert unflagged.explain().count("SORT") == 2
    flagged = point_in_time_join(
        labels,
        label_time="t",
        label_keys=["user_id"],
        joins=[JoinPlan(plans[0].frame, ("user_id",), "ts", ("score",), sorted_by_time=True)],
        labels_order="keys",
    )
    assert "SORT" not in flagged.explain()
    assert flagged.collect()["score"].to_list() == [1.0]


# --- max_age boundary ---


@pytest.mark.parametrize("engine", ["in-memory", "streaming"])
def test_max_age_keeps_a_match_exactly_max_age_old_and_drops_one_microsecond_older(
    engine: Engine,
) -> None:
    group = PitGroup(
        USER_SCHEMA,
        [(1, at(0), 1.0), (2, at(0, 999_999), 2.0), (3, at(0, 1), 3.0)],
        ("user_id",),
        "ts",
        ("score",),
        max_age=timedelta(seconds=10),
    )
    labels = [
        (1, "a", at(10), 0),  # exactly 10 s old: kept
        (1, "b", at(10, 1), 0),  # 10 s + 1 µs old: dropped
        (2, "a", at(10, 999_999), 0),  # exactly
        (3, "a", at(10, 2), 0),  # 1 µs too old
    ]
    out = run(world_of(labels, group), engine=engine)
    assert out.sort("user_id", "item_id")["score"].to_list() == [1.0, None, 2.0, None]


def test_max_age_is_an_exact_duration_across_a_daylight_saving_change() -> None:
    # 2024-03-31 is 23 hours long in Berlin: a calendar day is not 24 hours there.
    berlin = pl.Datetime("us", "Europe/Berlin")
    label_t = datetime(2024, 3, 31, 10, tzinfo=timezone.utc)
    labels = pl.LazyFrame(
        {"user_id": [1, 2], "t": [label_t, label_t]}, schema={"user_id": pl.Int64, "t": berlin}
    )
    group = pl.LazyFrame(
        {
            "user_id": [1, 2],
            "ts": [label_t - timedelta(hours=24), label_t - timedelta(hours=24, microseconds=1)],
            "score": [1.0, 2.0],
        },
        schema={"user_id": pl.Int64, "ts": berlin, "score": pl.Float64},
    )
    plan = JoinPlan(group, ("user_id",), "ts", ("score",), max_age=timedelta(days=1))
    out = point_in_time_join(labels, label_time="t", label_keys=["user_id"], joins=[plan])
    assert out.collect()["score"].to_list() == [1.0, None]


# --- keys ---


def test_null_keys_match_nothing_not_even_null_keys() -> None:
    user = PitGroup(
        USER_SCHEMA, [(None, at(0), 9.0), (1, at(0), 1.0)], ("user_id",), "ts", ("score",)
    )
    pair = PitGroup(
        {"user_id": pl.Int64(), "item_id": pl.String(), "ts": PIT_TIME, "clicks": pl.Int32()},
        [(None, "a", at(0), 5), (1, None, at(0), 6), (None, None, at(0), 7), (1, "a", at(0), 8)],
        ("user_id", "item_id"),
        "ts",
        ("clicks",),
    )
    static = PitGroup(
        {"user_id": pl.Int64(), "country": pl.String()},
        [(None, "xx"), (1, "fr")],
        ("user_id",),
        None,
        ("country",),
    )
    labels = [
        (None, "a", at(1), 0),
        (1, None, at(1), 0),
        (None, None, at(1), 0),
        (1, "a", at(1), 1),
    ]
    out = run(world_of(labels, user, pair, static))
    assert out.rows() == [
        (None, None, at(1), 0, None, None, None),
        (None, "a", at(1), 0, None, None, None),
        (1, None, at(1), 0, 1.0, None, "fr"),
        (1, "a", at(1), 1, 1.0, 8, "fr"),
    ]


def test_multi_column_keys_are_compared_as_typed_values_not_concatenated() -> None:
    pair = PitGroup(
        {"user_id": pl.Int64(), "item_id": pl.String(), "ts": PIT_TIME, "clicks": pl.Int32()},
        [(1, "12", at(0), 1), (11, "2", at(0), 2)],
        ("user_id", "item_id"),
        "ts",
        ("clicks",),
    )
    labels = [(1, "12", at(1), 0), (11, "2", at(1), 0), (1, "12x", at(1), 0), (112, "", at(1), 0)]
    out = run(world_of(labels, pair))
    assert out.select("user_id", "item_id", "clicks").rows() == [
        (1, "12", 1),
        (1, "12x", None),
        (11, "2", 2),
        (112, "", None),
    ]


def test_a_join_without_keys_matches_on_time_alone() -> None:
    market = pl.LazyFrame(
        {"ts": [at(5), at(0)], "index": [2.0, 1.0]}, schema={"ts": PIT_TIME, "index": pl.Float64}
    )
    labels = pl.LazyFrame(
        {"user_id": [1, 2, 3], "t": [at(4), at(5), at(-1)]},
        schema={"user_id": pl.Int64, "t": PIT_TIME},
    )
    plan = JoinPlan(market, (), "ts", ("index",))
    out = point_in_time_join(labels, label_time="t", label_keys=["user_id"], joins=[plan])
    assert out.collect()["index"].to_list() == [None, 1.0, 2.0]


# --- shape of the output ---


def test_output_columns_are_labels_then_prefixed_features_without_group_keys_or_times() -> None:
    item = PitGroup(
        {"item_id": pl.String(), "t": PIT_TIME, "price": pl.Float32(), "extra": pl.Int8()},
        [("a", at(0), 1.5, 1)],
        ("item_id",),
        "t",
        ("price",),
        prefix="now_",
    )
    user = PitGroup(USER_SCHEMA, [(1, at(0), 2.0)], ("user_id",), "ts", ("score",))
    labels = [(1, "a", at(0), 0), (1, "a", at(0), 0)]  # a duplicate label row: both kept
    out = run(world_of(labels, item, user))
    assert out.schema == pl.Schema(
        {**PIT_LABEL_SCHEMA, "now_price": pl.Float32(), "score": pl.Float64()}
    )
    assert out.rows() == [(1, "a", at(0), 0, 1.5, 2.0)] * 2


def test_empty_labels_give_an_empty_frame_with_the_output_schema() -> None:
    user = PitGroup(USER_SCHEMA, [(1, at(0), 2.0)], ("user_id",), "ts", ("score",))
    out = run(world_of([], user))
    assert out.height == 0
    assert out.columns == [*PIT_LABEL_SCHEMA, "score"]


def test_the_plan_is_lazy_and_collects_nothing() -> None:
    def explode(_: pl.DataFrame) -> pl.DataFrame:
        raise RuntimeError("collected")

    labels = pl.LazyFrame(schema=PIT_LABEL_SCHEMA).map_batches(explode, schema=PIT_LABEL_SCHEMA)
    user = pl.LazyFrame(schema=USER_SCHEMA).map_batches(explode, schema=USER_SCHEMA)
    plan = JoinPlan(user, ("user_id",), "ts", ("score",))
    lf = point_in_time_join(labels, label_time="t", label_keys=["user_id"], joins=[plan])
    assert lf.collect_schema().names() == [*PIT_LABEL_SCHEMA, "score"]
    with pytest.raises(RuntimeError, match="collected"):
        lf.collect()


# --- definitions that cannot work ---


def _plan(**changes: Any) -> JoinPlan:
    fields: dict[str, Any] = {
        "frame": pl.LazyFrame(schema=USER_SCHEMA),
        "on": ("user_id",),
        "event_time": "ts",
        "features": ("score",),
    }
    return JoinPlan(**{**fields, **changes})


def _join(*plans: JoinPlan) -> pl.LazyFrame:
    return point_in_time_join(
        pl.LazyFrame(schema=PIT_LABEL_SCHEMA), label_time="t", label_keys=["user_id"], joins=plans
    )


def test_a_feature_named_like_a_label_column_is_refused_with_a_prefix_hint() -> None:
    frame = pl.LazyFrame(schema={**USER_SCHEMA, "y": pl.Int8()})
    with pytest.raises(DefinitionError, match=r"'y'.*label column.*prefix"):
        _join(_plan(frame=frame, features=("y",)))
    assert "u_y" in _join(_plan(frame=frame, features=("y",), prefix="u_")).collect().columns


def test_two_joins_giving_the_same_output_name_are_refused_with_a_prefix_hint() -> None:
    with pytest.raises(DefinitionError, match=r"'score'.*join 0.*prefix"):
        _join(_plan(), _plan())
    with pytest.raises(DefinitionError, match=r"'x_score'"):
        _join(_plan(prefix="x_"), _plan(prefix="x_"))
    assert _join(_plan(), _plan(prefix="b_")).collect().columns[-2:] == ["score", "b_score"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"features": ("nope",)}, r"'nope' not found in the frame of join 0"),
        ({"on": ("nope",)}, r"'nope' not found in the frame of join 0"),
        ({"event_time": "nope"}, r"'nope' not found in the frame of join 0"),
        ({"features": ("user_id",)}, r"key or event-time.*user_id"),
        ({"features": ("ts",)}, r"key or event-time.*ts"),
        ({"max_age": timedelta(seconds=-1)}, r"max_age must not be negative"),
        ({"event_time": None, "on": ()}, r"neither key columns"),
        (
            {"frame": pl.LazyFrame(schema={**USER_SCHEMA, "user_id": pl.Int32()})},
            r"'user_id' is Int32 in the frame of join 0 but Int64 in the label frame",
        ),
        (
            {"frame": pl.LazyFrame(schema={**USER_SCHEMA, "ts": pl.Datetime("ns", "UTC")})},
            r"event time 'ts' is Datetime\(time_unit='ns'.*same type",
        ),
    ],
)
def test_a_join_that_cannot_work_is_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        _join(_plan(**changes))


def test_missing_label_columns_are_refused() -> None:
    labels = pl.LazyFrame(schema=PIT_LABEL_SCHEMA)
    with pytest.raises(DefinitionError, match=r"'when' not found in the label frame"):
        point_in_time_join(labels, label_time="when", label_keys=[], joins=[])
    with pytest.raises(DefinitionError, match=r"'shop_id' not found in the label frame"):
        _join(
            _plan(
                frame=pl.LazyFrame(schema={**USER_SCHEMA, "shop_id": pl.Int64()}), on=("shop_id",)
            )
        )


def test_columns_named_like_the_private_time_columns_survive() -> None:
    labels = pl.LazyFrame(
        {"user_id": [1], "t": [at(1)], "__microfs_pit_time_0": ["kept"]},
        schema={"user_id": pl.Int64, "t": PIT_TIME, "__microfs_pit_time_0": pl.String},
    )
    frame = pl.LazyFrame(
        {"user_id": [1], "ts": [at(0)], "1": [3.0]},
        schema={"user_id": pl.Int64, "ts": PIT_TIME, "1": pl.Float64},
    )
    plans = [
        JoinPlan(frame, ("user_id",), "ts", ("1",), prefix="a"),
        JoinPlan(frame, ("user_id",), "ts", ("1",), prefix="__microfs_pit_time_"),
    ]
    out = point_in_time_join(labels, label_time="t", label_keys=["user_id"], joins=plans)
    assert out.collect().rows(named=True) == [
        {
            "user_id": 1,
            "t": at(1),
            "__microfs_pit_time_0": "kept",
            "a1": 3.0,
            "__microfs_pit_time_1": 3.0,
        }
    ]
