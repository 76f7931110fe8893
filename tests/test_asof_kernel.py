"""The compiled as-of kernel against Polars' join_asof and against its own plain-Python run.

tests/test_pit.py holds the brute-force property test of the whole point-in-time join with
the kernel on and off; here the kernel's own edges: key types and ranges, nulls, time
units, max_age, and when it must step aside for Polars.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from unittest import mock

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from microfs import FeatureStore, FeatureView, _asof_kernel, synthetic
from microfs._asof_kernel import (
    Cursors,
    _cursors,
    asof_rows,
    cursor_asof,
    cursors_of,
    group_by_slot,
    row_series,
)
from microfs.pit import JoinPlan, point_in_time_join
from tests.helpers import SEED_JOINS, seed_view

KEY_DTYPES = [pl.Int8(), pl.Int32(), pl.Int64(), pl.UInt8(), pl.UInt32(), pl.UInt64()]
TIME_UNITS = ["ms", "us", "ns"]


@contextmanager
def kernel(*, forced: bool) -> Iterator[mock.MagicMock]:
    """Force the compiled path (size floors 0) or Polars' (floor out of reach); yield a spy
    on the compiled function's loader."""
    floor = 0 if forced else 10**18
    loader = mock.MagicMock(wraps=_asof_kernel._compiled)
    with (
        mock.patch.object(_asof_kernel, "KERNEL_MIN_ROWS", floor),
        mock.patch.object(_asof_kernel, "KERNEL_MIN_KEYS", 0),
        mock.patch.object(_asof_kernel, "_compiled", loader),
    ):
        yield loader


def frame(
    keys: list[int | None], times: list[int], key_dtype: pl.DataType, unit: str
) -> pl.DataFrame:
    return pl.DataFrame(
        {"t": pl.Series(times, dtype=pl.Int64).cast(pl.Datetime(unit, "UTC")), "k": keys},  # type: ignore[arg-type]
        schema_overrides={"k": key_dtype},
    ).sort("t", maintain_order=True)


def both_ways(
    left: pl.DataFrame, right: pl.DataFrame, max_age: timedelta | None
) -> tuple[list[int], list[int], bool]:
    args = {"time": "t", "key": "k", "max_age": max_age}
    with kernel(forced=True) as loader:
        compiled = asof_rows(left, right, **args).to_list()  # type: ignore[arg-type]
    with kernel(forced=False):
        polars = asof_rows(left, right, **args).to_list()  # type: ignore[arg-type]
    return compiled, polars, loader.called


@st.composite
def sides(draw: st.DrawFn) -> tuple[pl.DataFrame, pl.DataFrame, timedelta | None]:
    key_dtype = draw(st.sampled_from(KEY_DTYPES))
    unit = draw(st.sampled_from(TIME_UNITS))
    info = np.iinfo(str(key_dtype).lower())
    # Keys near the low end of the type, and sometimes near its top: ranges stay dense.
    base = draw(st.sampled_from([int(info.min), 0, int(info.max) - 8]))
    keys = st.one_of(st.integers(base, base + 8), st.none())
    # Times on a coarse grid (many ties) in the column's unit.
    times = st.integers(0, 12).map(lambda v: v * {"ms": 1, "us": 1_000, "ns": 1_000_000}[unit])
    left = draw(st.lists(st.tuples(keys, times), max_size=40))
    right = draw(st.lists(st.tuples(keys, times), max_size=25, unique=True))
    max_age = draw(st.one_of(st.none(), st.sampled_from([timedelta(0), timedelta(milliseconds=3)])))
    return (
        frame([k for k, _ in left], [t for _, t in left], key_dtype, unit),
        frame([k for k, _ in right], [t for _, t in right], key_dtype, unit),
        max_age,
    )


@settings(max_examples=200, deadline=None)
@given(case=sides())
def test_the_kernel_matches_exactly_the_rows_polars_join_asof_matches(
    case: tuple[pl.DataFrame, pl.DataFrame, timedelta | None],
) -> None:
    left, right, max_age = case
    compiled, polars, used = both_ways(left, right, max_age)
    assert compiled == polars
    # It serves every such join but one: joined keys beyond int64, which no int64 slot holds.
    joined_keys = right.get_column("k").drop_nulls()
    applies = joined_keys.len() > 0 and joined_keys.max() <= np.iinfo(np.int64).max  # type: ignore[operator]
    assert used == applies


def test_plain_python_and_compiled_runs_of_the_kernel_agree() -> None:
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 50, 5_000)
    times = np.sort(rng.integers(0, 1_000, 5_000))
    counts = np.bincount(rng.integers(0, 50, 400), minlength=50)
    right_times = np.concatenate([np.sort(rng.integers(0, 1_000, c)) for c in counts])
    rights = np.stack([right_times, rng.permutation(right_times.size)], axis=1)
    args = (keys, (keys % 7 != 0).view(np.uint8), times, 0)
    matches = []
    kernel, missing = _asof_kernel._compiled(), right_times.size
    for tolerance in (-1, 25, 0):
        out = np.empty(keys.size, dtype=_asof_kernel._INDEX)
        expected = cursor_asof(*args, _cursors(counts), rights, tolerance, missing, out.copy())
        compiled = kernel(*args, _cursors(counts), rights, tolerance, missing, out)
        assert np.array_equal(compiled, expected)
        matches.append(int((expected < right_times.size).sum()))
    assert matches[0] > matches[1] > matches[2] > 0  # a tighter tolerance drops matches


@settings(max_examples=100, deadline=None)
@given(
    keys=st.lists(st.one_of(st.none(), st.integers(-3, 40)), max_size=300),
    span_extra=st.integers(0, 5),
)
def test_compiled_grouping_by_slot_equals_the_stable_sort(
    keys: list[int | None], span_extra: int
) -> None:
    has_key = np.array([k is not None for k in keys], dtype=bool)
    present = np.array([k for k in keys if k is not None], dtype=np.int64)
    low = int(present.min()) if present.size else 0
    span = (int(present.max()) - low + 1 if present.size else 0) + span_extra
    times = np.arange(len(keys), dtype=np.int64) * 3 - 7  # in row order, as the rows come
    cursors = cursors_of(present, low, span)
    compiled_cursors = _asof_kernel._compiled("cursors_of")(present, low, span)
    assert np.array_equal(compiled_cursors, cursors)
    expected = group_by_slot(
        present, low, has_key, times, cursors, np.empty((present.size, 2), np.int64)
    )
    rights = np.full((present.size, 2), -1, dtype=np.int64)
    grouping = _asof_kernel._compiled("group_by_slot")
    compiled = grouping(present, low, has_key.view(np.uint8), times, compiled_cursors, rights)
    assert np.array_equal(compiled, expected)
    assert np.array_equal(compiled_cursors, cursors)  # the cursors stand at their starts again


def test_compiled_grouping_by_slot_refuses_inconsistent_arrays() -> None:
    cursors_of_ = _asof_kernel._compiled("cursors_of")
    with pytest.raises(ValueError, match="outside"):
        cursors_of_(np.array([5, 9], np.int64), 5, 3)
    grouping = _asof_kernel._compiled("group_by_slot")
    keys = np.array([5, 6], np.int64)
    times = np.arange(3, dtype=np.int64)
    rights = np.empty((2, 2), np.int64)
    marks = np.array([1, 1, 1], dtype=np.uint8)  # three keyed rows, two keys given
    with pytest.raises(ValueError, match="different number of rows"):
        grouping(keys, 5, marks, times, cursors_of_(keys, 5, 2), rights)
    with pytest.raises(ValueError, match="beyond the cursors"):  # a slot with no room
        grouping(
            np.array([5, 5], np.int64),
            5,
            marks[:2].copy(),
            times[:2].copy(),
            cursors_of_(keys, 5, 2),
            rights,
        )


def test_every_label_valid_needs_no_validity_array() -> None:
    keys, times = np.array([5, 5, 6], np.int64), np.array([1, 4, 4], np.int64)
    rights = np.stack([np.array([0, 3, 2]), np.array([10, 11, 12])], axis=1)

    def run(kernel_pass: Callable[..., Any]) -> Any:  # fresh cursors: a pass moves them
        cursors = _cursors(np.array([2, 1]))
        return kernel_pass(keys, None, times, 5, cursors, rights, -1, 99, np.empty(3, np.uint32))

    expected = run(cursor_asof)
    assert expected.tolist() == [10, 11, 12]
    assert np.array_equal(run(_asof_kernel._compiled()), expected)


def test_sparse_keys_step_aside_for_polars() -> None:
    left = frame([5, 10**12, None], [1, 2, 3], pl.Int64(), "us")
    right = frame([5, 10**12], [0, 1], pl.Int64(), "us")
    compiled, polars, used = both_ways(left, right, None)
    assert compiled == polars == [0, 1, 2]
    assert not used


def test_unsigned_keys_beyond_the_int64_range_match_nothing_or_step_aside() -> None:
    big = 2**64 - 1
    left = frame([big, 3, None], [1, 2, 3], pl.UInt64(), "us")
    right = frame([3, 4], [0, 0], pl.UInt64(), "us")
    compiled, polars, used = both_ways(left, right, None)
    assert compiled == polars == [2, 0, 2]
    assert used
    right_big = frame([big, big - 1], [0, 0], pl.UInt64(), "us")
    compiled, polars, used = both_ways(left, right_big, None)
    assert compiled == polars == [0, 2, 2]
    assert not used


def test_keys_at_the_far_end_of_int64_do_not_wrap_into_range() -> None:
    low, high = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    left = frame([low, high, high - 1], [1, 1, 1], pl.Int64(), "us")
    right = frame([high - 1, high], [0, 0], pl.Int64(), "us")
    compiled, polars, used = both_ways(left, right, None)
    assert compiled == polars == [2, 1, 0]
    assert used


def test_null_label_times_step_aside_for_polars() -> None:
    left = pl.DataFrame(
        {"t": [None, 5], "k": [1, 1]}, schema={"t": pl.Datetime("us", "UTC"), "k": pl.Int64()}
    )
    right = frame([1], [0], pl.Int64(), "us")
    compiled, polars, used = both_ways(left, right, None)
    assert compiled == polars
    assert not used


@pytest.mark.parametrize("unit", TIME_UNITS)
def test_max_age_keeps_a_match_exactly_that_old_in_every_time_unit(unit: str) -> None:
    step = {"ms": 1, "us": 1_000, "ns": 1_000_000}[unit]  # one millisecond in the unit
    left = frame([1, 1], [3 * step, 3 * step + 1], pl.Int64(), unit)
    right = frame([1], [0], pl.Int64(), unit)
    compiled, polars, used = both_ways(left, right, timedelta(milliseconds=3))
    assert compiled == polars == [0, 1]  # one unit older than max_age is too old
    assert used


@pytest.mark.parametrize(("min_keys", "kernel_used"), [(None, True), (4, False)])
def test_a_key_range_below_the_floor_stays_with_polars(
    min_keys: int | None, kernel_used: bool
) -> None:
    # By default every range takes the kernel (it wins even at one key); a floor raised
    # above a join's range leaves that join to Polars, with the same rows.
    left = frame([1, 2, 3], [1, 2, 3], pl.Int64(), "us")
    right = frame([1, 2], [0, 0], pl.Int64(), "us")
    loader = mock.MagicMock(wraps=_asof_kernel._compiled)
    floor = _asof_kernel.KERNEL_MIN_KEYS if min_keys is None else min_keys
    with (
        mock.patch.object(_asof_kernel, "KERNEL_MIN_ROWS", 0),
        mock.patch.object(_asof_kernel, "KERNEL_MIN_CALL_ROWS", 0),
        mock.patch.object(_asof_kernel, "KERNEL_MIN_KEYS", floor),
        mock.patch.object(_asof_kernel, "_compiled", loader),
    ):
        rows = asof_rows(left, right, time="t", key="k", max_age=None)
    assert rows.to_list() == [0, 1, 2]
    assert loader.called is kernel_used


def tiny_view(store: FeatureStore) -> FeatureView:
    world = synthetic.generate_world("tiny", seed=1)
    for name, rows in world.frames().items():
        store.create_feature_group(name, schema=synthetic.SCHEMAS[name], **synthetic.GROUPS[name])
        store.get_feature_group(name).insert(rows)
    joins = [SEED_JOINS[0], {**SEED_JOINS[1], "max_age": timedelta(days=3)}]
    return seed_view(store, name="kernel_check", joins=joins, transforms=())


def test_a_feature_view_chooses_the_kernel_from_the_delta_logs_and_gets_the_same_frame(
    store: FeatureStore,
) -> None:
    view = tiny_view(store)
    default = view.training_frame()
    assert "OPAQUE_PYTHON" not in default.explain()  # a tiny lake stays with Polars
    with kernel(forced=True) as loader:
        forced = view.training_frame()
        plan = forced.explain()
        assert plan.count("OPAQUE_PYTHON") == 1  # both joins in one node, from the logs
        assert "user_profile" in plan  # the joined groups' scans stay in the plan
        assert "item_feature" in plan
        frame = forced.collect(engine="in-memory")
        streamed = forced.collect(engine="streaming")
    assert loader.called
    assert streamed.equals(frame)
    expected = default.collect(engine="in-memory")
    assert frame.equals(expected)
    assert expected.get_column("price").null_count() < expected.height  # matches happen


def test_the_planner_counts_a_window_s_labels_from_the_delta_log(store: FeatureStore) -> None:
    view = tiny_view(store)
    labels = store.get_feature_group("user_activity").read()
    times = labels.get_column("timestamp").sort()
    first, last = times[0], times[-1]
    tenth = (last - first) / 10
    with (
        mock.patch.object(_asof_kernel, "KERNEL_MIN_ROWS", labels.height // 2),
        mock.patch.object(_asof_kernel, "KERNEL_MIN_KEYS", 0),
    ):
        assert view.training_frame().explain().count("OPAQUE_PYTHON") == 1
        narrow = view.training_frame(start=first, end=first + tenth)
        assert "OPAQUE_PYTHON" not in narrow.explain()
        wide = view.training_frame(start=first + tenth, end=last)
        assert wide.explain().count("OPAQUE_PYTHON") == 1


def test_the_kernel_branch_does_not_rely_on_the_engine_reading_the_group_once() -> None:
    # The branch reads the joined rows twice and matches by row number. Without common
    # subplan elimination each read runs on its own: here a group-by whose row order
    # changes from one run to the next. Rows sharing a time must still come out of both
    # reads in one order (the branch sorts them by key too).
    rng = np.random.default_rng(5)
    n = 200_000
    raw = pl.DataFrame(
        {
            "k": rng.integers(0, 20_000, n),
            "ts": pl.Series(rng.integers(0, 50, n) * 1_000_000).cast(pl.Datetime("us", "UTC")),
            "x": rng.random(n),
        }
    )
    group = raw.lazy().group_by("k", "ts").agg(pl.col("x").max())
    labels = pl.DataFrame(
        {
            "k": rng.integers(0, 20_000, 50_000),
            "t": pl.Series(rng.integers(0, 50, 50_000) * 1_000_000).cast(pl.Datetime("us", "UTC")),
        }
    )

    def joined(*, compiled: bool) -> pl.DataFrame:
        plan = JoinPlan(group, ("k",), "ts", ("x",), compiled=compiled)
        lf = point_in_time_join(labels.lazy(), label_time="t", label_keys=["k"], joins=[plan])
        return lf.collect(optimizations=pl.QueryOptFlags(comm_subplan_elim=False))

    expected = joined(compiled=False)
    with kernel(forced=True) as loader:
        assert_frame_equal(joined(compiled=True), expected)
    assert loader.called
    assert expected.get_column("x").null_count() < expected.height // 2


def test_features_named_like_the_kernel_branch_s_columns_survive() -> None:
    names = ["__microfs_row", "__microfs_joined"]
    group = frame([1, 2, 1], [0, 0, 5], pl.Int64(), "us").with_columns(
        pl.Series(names[0], [1.0, 2.0, 3.0]), pl.Series(names[1], ["a", "b", "c"])
    )
    labels = frame([1, 2, 3, 1], [1, 1, 1, 9], pl.Int64(), "us")

    def joined(*, compiled: bool) -> pl.DataFrame:
        plan = JoinPlan(group.lazy(), ("k",), "t", tuple(names), compiled=compiled)
        lf = point_in_time_join(labels.lazy(), label_time="t", label_keys=["k"], joins=[plan])
        return lf.collect()

    expected = joined(compiled=False)
    assert expected.get_column(names[0]).to_list() == [1.0, 2.0, None, 3.0]
    with kernel(forced=True) as loader:
        assert_frame_equal(joined(compiled=True), expected)
    assert loader.called


_ONE_THREAD_SCRIPT = """
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
import numpy as np
import polars as pl
from microfs import _asof_kernel
from microfs.pit import JoinPlan, point_in_time_join

assert pl.thread_pool_size() == 1
_asof_kernel.KERNEL_MIN_ROWS = 0
_asof_kernel.KERNEL_MIN_KEYS = 0
rng = np.random.default_rng(0)
start = datetime(2024, 1, 1, tzinfo=timezone.utc)

def times(n):
    return pl.Series(np.sort(rng.integers(0, 10**9, n))).cast(pl.Datetime("us", "UTC"))

labels = pl.DataFrame({"t": times(20_000), "a": rng.integers(0, 5_000, 20_000),
                       "b": rng.integers(0, 5_000, 20_000)}).lazy()
plans = [
    JoinPlan(pl.DataFrame({"a": rng.integers(0, 5_000, 8_000), "ts": times(8_000),
                           "x": rng.random(8_000)}).lazy(), ("a",), "ts", ("x",), compiled=True),
    JoinPlan(pl.DataFrame({"b": rng.integers(0, 5_000, 8_000), "ts": times(8_000),
                           "y": rng.random(8_000)}).lazy(), ("b",), "ts", ("y",), compiled=True),
]
frame = point_in_time_join(labels, label_time="t", label_keys=["a", "b"], joins=plans)
assert "OPAQUE_PYTHON" in frame.explain()
with ThreadPoolExecutor(3) as pool:  # frames collected at once, as a server's threads do
    frames = list(pool.map(lambda e: frame.collect(engine=e), ["in-memory", "streaming", "auto"]))
assert all(f.equals(frames[0]) for f in frames)
assert frames[0]["x"].null_count() < frames[0].height
print("ok")
"""


def test_kernel_joins_finish_on_a_polars_pool_of_one_thread_with_frames_collected_at_once() -> None:
    # The kernel's matches run on threads of their own while the node waits on a thread of
    # Polars' pool: if they called Polars, a pool of one thread (or one whose every thread
    # waits) would never run them, and the collect would hang.
    env = {**os.environ, "POLARS_MAX_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _ONE_THREAD_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@pytest.mark.parametrize("mapped_from", [1 << 22, 1], ids=["pool", "mapping"])
def test_kernel_row_numbers_go_to_polars_without_a_copy(
    mapped_from: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_asof_kernel, "_MAPPED_FROM", mapped_from)
    right = pl.DataFrame({"t": [1, 3], "k": [7, 7]})
    cursors = Cursors.of(right, time="t", key="k", min_keys=0)
    assert cursors is not None
    rows = cursors.advance_task(
        pl.DataFrame({"t": [2, 4], "k": [7, 7]}), time="t", key="k", max_age=None
    )()
    series = row_series(rows)
    assert series.dtype == pl.get_index_type()
    assert series.to_list() == [0, 1]
    rows[0] = 1  # the series reads the very memory the kernel wrote
    assert series.to_list() == [1, 1]
    # other arrays (and series) are converted as they are
    assert row_series(np.array([2, 0], dtype=np.int64)).to_list() == [2, 0]
    assert row_series(np.array([2, 0], dtype=np.int64)).dtype == pl.get_index_type()
    # the series alone keeps the memory alive, a mapping included
    del rows, cursors
    gc.collect()
    assert series.to_list() == [1, 1]
    assert pl.select(series.alias("r")).sum().item() == 2


def test_kernel_row_numbers_do_not_load_numpy_ma() -> None:
    script = (
        "import sys, polars as pl\n"
        "from microfs._asof_kernel import Cursors, row_series\n"
        "right = pl.DataFrame({'t': [1, 3], 'k': [7, 7]})\n"
        "labels = pl.DataFrame({'t': [2], 'k': [7]})\n"
        "cursors = Cursors.of(right, time='t', key='k', min_keys=0)\n"
        "rows = cursors.advance_task(labels, time='t', key='k', max_age=None)()\n"
        "assert row_series(rows).to_list() == [0]\n"
        "print('numpy.ma' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "False"
