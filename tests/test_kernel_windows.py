"""The compiled as-of kernel across a frame's windows, and a package without it.

``write_training_frame`` joins one window at a time; the kernel is chosen for the frame as
a whole (its joined rows are grouped once for all windows). A joined group held in memory
is grouped for the kernel once, and its cursors carry on from one window to the next. The
frame written is the same either way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from unittest import mock

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from microfs import FeatureStore, FeatureView, _asof_kernel, _frame_plan, feature_view, synthetic
from microfs._frame_plan import LabelWindow, _held_bytes, _kernel_joins, window_filter
from microfs.pit import point_in_time_join, prepare_rows
from tests.helpers import SEED_JOINS, pit_plans, seed_view
from tests.strategies import PitWorld, pit_times, pit_worlds


def _view(store: FeatureStore) -> None:
    world = synthetic.generate_world("tiny", seed=2)
    for name, rows in world.frames().items():
        store.create_feature_group(name, schema=synthetic.SCHEMAS[name], **synthetic.GROUPS[name])
        store.get_feature_group(name).insert(rows)
    joins = [SEED_JOINS[0], {**SEED_JOINS[1], "max_age": timedelta(days=3)}]
    seed_view(store, name="windows", joins=joins, transforms=())


def test_windows_of_a_frame_chosen_for_the_kernel_run_it_and_write_the_same_rows(
    store: FeatureStore, tmp_path: Path
) -> None:
    _view(store)
    view = store.get_feature_view("windows")
    labels = store.get_feature_group("user_activity").count()
    plain = tmp_path / "plain.parquet"
    assert view.write_training_frame(plain, window=timedelta(days=30)) == labels
    loader = mock.MagicMock(wraps=_asof_kernel._compiled)
    grouped = mock.MagicMock(wraps=_asof_kernel.Cursors.of)
    advance = _asof_kernel.Cursors.advance_task
    compiled = tmp_path / "compiled.parquet"
    with (
        # the whole frame qualifies, a 30-day window alone would not
        mock.patch.object(_asof_kernel, "KERNEL_MIN_ROWS", labels // 2),
        mock.patch.object(_asof_kernel, "KERNEL_MIN_CALL_ROWS", 0),
        mock.patch.object(_asof_kernel, "KERNEL_MIN_KEYS", 0),
        mock.patch.object(_asof_kernel, "_compiled", loader),
        mock.patch.object(_asof_kernel.Cursors, "of", grouped),
        mock.patch.object(
            _asof_kernel.Cursors, "advance_task", autospec=True, side_effect=advance
        ) as step,
    ):
        assert view.write_training_frame(compiled, window=timedelta(days=30)) == labels
    assert loader.called
    windows = len(view._planner.windows(None, None, timedelta(days=30), None))
    assert windows > 2
    assert grouped.call_count == 2  # each join's rows are grouped once for the frame ...
    assert step.call_count == 2 * windows  # ... and both joins of every window advance
    assert pl.read_parquet(compiled).equals(pl.read_parquet(plain))


def test_each_join_takes_the_kernel_from_its_own_label_floor(store: FeatureStore) -> None:
    _view(store)
    users = store.get_feature_group("user_profile")
    items = store.get_feature_group("item_feature")
    both = [(users, ["user_id"], None), (items, ["item_id"], None)]
    with (
        mock.patch.object(_asof_kernel, "KERNEL_MIN_ROWS", 1_000),
        mock.patch.object(_asof_kernel, "KERNEL_MIN_KEYS", 0),
    ):
        assert _kernel_joins(1_000, both) == [True, True]
        assert _kernel_joins(1_000, both[:1]) == [True]
        assert _kernel_joins(999, both) == [False, False]
        assert _kernel_joins(None, both) == [False, False]  # no estimate, no kernel


def test_the_compiled_module_is_built_with_the_package() -> None:
    # `pip install` builds microfs/_asof_cursor.pyx; without it every join is Polars'.
    from microfs import _asof_cursor

    assert _asof_kernel._compiled() is _asof_cursor.cursor_asof
    assert _asof_kernel.kernel_applies(pl.Int64(), pl.Datetime("us", "UTC"))


def test_without_the_compiled_module_polars_joins_the_same_rows(store: FeatureStore) -> None:
    _view(store)
    view = store.get_feature_view("windows")
    with kernel_floors():
        loader = mock.MagicMock(wraps=_asof_kernel._compiled)
        with mock.patch.object(_asof_kernel, "_compiled", loader):
            expected = view.training_frame().collect()
        assert loader.called
        loader.reset_mock()
        with (
            mock.patch.object(_asof_kernel, "_COMPILED", {}),
            mock.patch.object(_asof_kernel, "_compiled", loader),
        ):
            assert not _asof_kernel.kernel_applies(pl.Int64(), pl.Datetime("us", "UTC"))
            assert_frame_equal(view.training_frame().collect(), expected)
        assert not loader.called


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=pit_worlds(), cuts=st.lists(pit_times, max_size=4))
def test_prepared_rows_joined_window_by_window_give_the_whole_frame(
    world: PitWorld, cuts: list[datetime]
) -> None:
    # Each integer-keyed timed join is grouped for the kernel once; the label windows are
    # joined in time order, each once, and their frames put one after the other equal
    # the frame joined at once (other joins see all their rows in every window).
    labels, plans = pit_plans(world)
    options = {"label_time": "t", "label_keys": world.label_keys}
    expected = point_in_time_join(labels, joins=plans, **options).collect(engine="in-memory")
    schema = labels.collect_schema()
    with kernel_floors():
        ready = [prepare_rows(plan, schema, "t") for plan in plans]
        windowed = [
            dataclasses.replace(plan, prepared=prepared)
            for plan, prepared in zip(plans, ready, strict=True)
        ]
        edges = [None, *sorted(set(cuts)), None]
        parts = [
            point_in_time_join(window_filter(labels, "t", lo, hi), joins=windowed, **options)
            for lo, hi in itertools.pairwise(edges)
        ]
        frames = [part.collect(engine="in-memory") for part in parts]
    assert_frame_equal(pl.concat(frames), expected)
    timed_user = [g for g in world.groups if g.on == ("user_id",) and g.event_time is not None]
    assert any(r is not None for r in ready) == bool(timed_user)


@contextmanager
def kernel_floors() -> Iterator[None]:
    """The kernel for any size of frame or key range."""
    with (
        mock.patch.object(_asof_kernel, "KERNEL_MIN_ROWS", 0),
        mock.patch.object(_asof_kernel, "KERNEL_MIN_KEYS", 0),
    ):
        yield


def test_windows_cut_by_label_count_refine_the_windows_and_hold_at_most_that_many(
    store: FeatureStore,
) -> None:
    _view(store)
    planner = store.get_feature_view("windows")._planner
    times = store.get_feature_group("user_activity").read()["timestamp"]

    @settings(max_examples=40, deadline=None)
    @given(days=st.integers(1, 90), max_rows=st.integers(1, 2_500))
    def check(days: int, max_rows: int) -> None:
        window = timedelta(days=days)
        plain = planner.windows(None, None, window, None)
        cut = planner.windows(None, None, window, None, max_rows=max_rows)
        assert cut[0].lo == times.min()
        assert cut[-1].hi == plain[-1].hi
        assert all(a.hi == b.lo and a.lo < a.hi for a, b in itertools.pairwise(cut))
        assert {w.lo for w in plain} <= {w.lo for w in cut}  # a refinement
        cells = times.dt.epoch("us") // ((window / 16) // timedelta(microseconds=1))
        for lo, hi, _ in cut:  # at most max_rows, unless all in one cell of the count grid
            inside = (times >= lo) & (times < hi)
            assert inside.sum() <= max_rows or cells.filter(inside).n_unique() == 1

    check()


def _coarse_labels(store: FeatureStore, *, in_order: bool) -> FeatureView:
    """The tiny world with label times cut to the hour (many ties), in three inserts.

    In time order the label group's rows are proven ordered; otherwise the inserts' time
    ranges overlap and they are not.
    """
    world = synthetic.generate_world("tiny", seed=5)
    for name, rows in world.frames().items():
        store.create_feature_group(name, schema=synthetic.SCHEMAS[name], **synthetic.GROUPS[name])
        if name != "user_activity":
            store.get_feature_group(name).insert(rows)
    labels = world.frames()["user_activity"]
    labels = labels.with_columns(pl.col("timestamp").dt.truncate("1h")).unique(
        ["user_id", "item_id", "timestamp"]
    )
    labels = labels.sort("timestamp") if in_order else labels.sample(fraction=1.0, seed=1)
    group = store.get_feature_group("user_activity")
    third = -(-labels.height // 3)
    for part in labels.iter_slices(third):
        group.insert(part)
    return seed_view(store, name="coarse", joins=SEED_JOINS, transforms=())


@pytest.mark.parametrize("in_order", [True, False])
def test_each_window_reads_a_row_range_of_the_labels_that_holds_all_its_labels(
    tmp_path: Path, in_order: bool
) -> None:
    store = FeatureStore(tmp_path / "lake")
    view = _coarse_labels(store, in_order=in_order)
    planner = view._planner
    scan, order = planner.label.scan_and_record_order()
    assert (order != "none") == in_order
    numbered = scan.select("timestamp").with_row_index("row").collect()
    times = numbered["timestamp"]
    first, last = times.min(), times.max()
    assert isinstance(first, datetime)
    assert isinstance(last, datetime)
    span = last - first

    @settings(max_examples=40, deadline=None)
    @given(
        days=st.integers(1, 120),
        max_rows=st.integers(20, 600),
        start=st.none() | st.floats(-0.1, 1.0),
        end=st.none() | st.floats(0.0, 1.1),
        probe=st.randoms(use_true_random=False),
    )
    def check(days: int, max_rows: int, start: float | None, end: float | None, probe: Any) -> None:
        lo = None if start is None else first + span * start
        hi = None if end is None else first + span * end
        window = timedelta(days=days)
        cuts = planner.windows(lo, hi, window, None, max_rows=max_rows)
        read = 0
        for cut in cuts:
            assert (cut.rows is not None) == in_order
            if cut.rows is None:
                continue
            inside = numbered.filter(pl.col("timestamp").is_between(cut.lo, cut.hi, "left"))
            assert inside["row"].is_between(cut.rows[0], cut.rows[1], "left").all()
            read += cut.rows[1] - cut.rows[0]
        # a range is the window's labels and at most the count grid's cells at its edges
        cells = times.dt.epoch("us") // ((window / 16) // timedelta(microseconds=1))
        assert read <= times.len() + 2 * len(cuts) * max(cells.value_counts()["count"].to_list())
        for cut in probe.sample(cuts, min(len(cuts), 2)):  # the spine reads just that
            bounded = planner.spine(cut.lo, cut.hi, None, rows=cut.rows).frame.collect()
            assert_frame_equal(bounded, planner.spine(cut.lo, cut.hi, None).frame.collect())

    check()
    frame = tmp_path / "frame.parquet"
    with mock.patch("microfs.feature_view._WINDOW_BYTES", 30 * 100):  # about 30 labels
        view.write_training_frame(frame, window=timedelta(days=400))
    assert_frame_equal(pl.read_parquet(frame), view.training_frame().collect())


def test_a_frame_written_in_windows_cut_by_label_count_is_the_same_frame(
    store: FeatureStore, tmp_path: Path
) -> None:
    _view(store)
    view = store.get_feature_view("windows")
    whole = tmp_path / "whole.parquet"
    view.write_training_frame(whole, window=timedelta(days=400))
    cut = tmp_path / "cut.parquet"
    planner = view._planner
    made: list[list[LabelWindow]] = []
    windows = planner.windows

    def recorded(*args: Any, **kwargs: Any) -> list[LabelWindow]:
        made.append(windows(*args, **kwargs))
        return made[-1]

    with (
        mock.patch("microfs.feature_view._WINDOW_BYTES", 50 * 100),  # about 50 labels
        mock.patch.object(planner, "windows", recorded),
    ):
        view.write_training_frame(cut, window=timedelta(days=400))
    assert len(made) == 1
    assert len(made[0]) > 20  # 2,000 labels in windows of about 50
    assert pl.read_parquet(cut).equals(pl.read_parquet(whole))
    assert_frame_equal(pl.read_parquet(whole), view.training_frame().collect())


@pytest.mark.parametrize("budget", ["none", "smaller", "both"])
@pytest.mark.parametrize("kernel", ["off", "on", "declined"])
def test_each_group_is_held_as_read_or_grouped_for_the_kernel_and_the_frame_is_the_same(
    store: FeatureStore, tmp_path: Path, budget: str, kernel: str
) -> None:
    # hold() reads one group at a time: a group the kernel takes is read straight into
    # its grouping (its held entry is then empty), one it declines at run time is held as
    # read, one over the budget is read per window. The frame written is the same.
    _view(store)
    view = store.get_feature_view("windows")
    planner = view._planner
    expected = view.training_frame().collect()
    labels = store.get_feature_group("user_activity").count()
    max_bytes = {"none": 0, "smaller": min(_held_sizes(planner)), "both": 2**30}[budget]
    with (
        kernel_floors() if kernel != "off" else contextlib.nullcontext(),
        mock.patch.object(_frame_plan, "prepare_rows", return_value=None)
        if kernel == "declined"
        else contextlib.nullcontext(),
        mock.patch.object(feature_view, "_HELD_BYTES", max_bytes),
    ):
        held, prepared = planner.hold(None, None, max_bytes=max_bytes, kernel_labels=labels)
        path = tmp_path / "frame.parquet"
        assert view.write_training_frame(path, window=timedelta(days=20)) == labels
    assert_frame_equal(pl.read_parquet(path), expected)
    assert sum(h is not None for h in held) == {"none": 0, "smaller": 1, "both": 2}[budget]
    for kept, ready in zip(held, prepared, strict=True):
        assert (ready is not None) == (kept is not None and kernel == "on")
        if kept is not None:  # grouped for the kernel, never also held as read
            assert (kept.frame.height == 0) == (ready is not None)


def _held_sizes(planner: Any) -> list[int]:
    """The bytes hold() estimates for each timed join."""
    return [
        _held_bytes(group, [*join.on, group.event_time, *join.features], {})
        for join, group in zip(planner.joins, planner.groups, strict=True)
    ]


def test_a_join_on_keys_far_sparser_than_its_rows_is_not_chosen_for_the_kernel(
    store: FeatureStore,
) -> None:
    # Judged from the Delta log, as the kernel itself would judge the rows: a key range
    # far wider than the rows (hashed ids) is not indexed directly, so hold() does not
    # read such a group for the kernel only to read it again as held rows.
    for name, step in (("dense", 1), ("sparse", 10**12)):
        schema = {"user_id": "int64", "t": "datetime", "x": "float64"}
        group = store.create_feature_group(
            name, primary_keys=["user_id"], event_time="t", schema=schema
        )
        group.insert(
            pl.DataFrame(
                {
                    "user_id": [step * k for k in range(1, 4)],
                    "t": [datetime(2024, 1, 1, tzinfo=timezone.utc)] * 3,
                    "x": [1.0, 2.0, 3.0],
                }
            )
        )
    groups = [(store.get_feature_group(n), ["user_id"], None) for n in ("dense", "sparse")]
    with kernel_floors():
        assert _kernel_joins(10, groups) == [True, False]
    with kernel_floors():
        sparse = pl.DataFrame({"t": [1, 2, 3], "k": [10**12, 2 * 10**12, 3 * 10**12]})
        assert _asof_kernel.Cursors.of(sparse, time="t", key="k") is None  # the same verdict
