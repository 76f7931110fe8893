"""The point-in-time plan builder: lazy as-of joins of feature groups onto a label spine.

Pure logic over ``pl.LazyFrame``: nothing here reads or writes disk, and nothing is
collected. :func:`point_in_time_join` takes the label rows (the spine) and a list of
:class:`JoinPlan` objects, one per joined feature group, and returns one lazy plan.

For a label row with event time ``t``, a joined group with an event time contributes its
row with the same key and the greatest event time ``<= t``; a group without event time
joins on its key alone. The spine keeps exactly its rows, ordered by label time then the
label keys.

Polars' ``join_asof`` does not check that its inputs are sorted when ``by`` groups are
given, and silently returns wrong matches on unsorted input: every joined frame is sorted
by its event time here unless the caller says it already is (``sorted_by_time``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import numpy as np
import polars as pl

from microfs._asof_kernel import (
    Cursors,
    Match,
    asof_rows,
    asof_task,
    kernel_applies,
    polars_duration,
    row_series,
)
from microfs.errors import DefinitionError
from microfs.view_definition import output_names

__all__ = [
    "JoinPlan",
    "PreparedRows",
    "RowOrder",
    "order_spine",
    "point_in_time_join",
    "prepare_rows",
]

RowOrder = Literal["keys", "time", "none"]
"""How far rows are known to be in a point-in-time frame's order already: ``"keys"``
sorted by event time then keys, ``"time"`` by event time alone, ``"none"`` unknown."""

_TIME_PREFIX = "__microfs_pit_time_"


@dataclass(frozen=True)
class JoinPlan:
    """One feature group to join onto the label spine.

    Attributes:
        frame: The joined group's rows. Only ``on``, ``event_time`` and ``features`` are
            read from it.
        on: Key columns, named the same in the label frame and in ``frame``. Rows match
            on equal typed values; a null key matches nothing.
        event_time: The group's event-time column, or None for a static group, which
            joins on its keys alone (its keys must then be unique).
        features: Columns of ``frame`` to bring in.
        prefix: Put in front of each feature's name in the output.
        max_age: Drop a match whose event time is older than ``t - max_age``; a match
            exactly ``max_age`` old still counts. None keeps every match.
        sorted_by_time: The caller asserts that ``frame`` is already sorted by
            ``event_time`` ascending, so it is flagged sorted instead of sorted again.
            A false claim gives wrong matches.
        compiled: Run the join with the compiled as-of kernel of
            :mod:`microfs._asof_kernel` instead of Polars' ``join_asof``: worth it for
            hundreds of thousands of labels and more on one integer key, slower than
            Polars for few labels. The rows are the same either way, and the kernel
            still leaves the join to Polars when the rows at run time do not suit it.
            The kernel's plan reads ``frame`` once, with the labels' time and key.

    Example:
        >>> import polars as pl
        >>> plan = JoinPlan(
        ...     frame=pl.LazyFrame({"user_id": [1], "level": ["gold"]}),
        ...     on=("user_id",),
        ...     event_time=None,
        ...     features=("level",),
        ...     prefix="user_",
        ... )
        >>> plan.on, plan.sorted_by_time, plan.compiled
        (('user_id',), False, False)
    """

    frame: pl.LazyFrame
    on: tuple[str, ...]
    event_time: str | None
    features: tuple[str, ...]
    prefix: str = ""
    max_age: timedelta | None = None
    sorted_by_time: bool = False
    compiled: bool = False
    prepared: PreparedRows | None = None


@dataclass(frozen=True)
class PreparedRows:
    """A timed join's rows in memory, grouped once for the compiled as-of kernel.

    For a caller that joins the label windows of one frame in turn (each window once, in
    label time order): the kernel's cursors carry on from one window to the next, so no
    window reads, groups or carries forward the joined rows again. Made by
    :func:`prepare_rows`; a :class:`JoinPlan` with it set joins through it, and its
    ``frame`` is then only checked, not read.

    Attributes:
        cursors: The rows' times and keys, grouped by key (see :class:`Cursors`).
        features: The join's output columns in the same row numbering, with one row of
            nulls after them (the row a label without a match takes), in one chunk.
    """

    cursors: Cursors
    features: pl.DataFrame


def prepare_rows(plan: JoinPlan, label_schema: pl.Schema, label_time: str) -> PreparedRows | None:
    """Read ``plan``'s rows and group them for the kernel; None when it does not apply.

    The plan must join on one integer key by event time (and be checked against the label
    frame as :func:`point_in_time_join` checks it); the rows are read with the in-memory
    engine, in the order the kernel's own plan gives them.
    """
    if plan.event_time is None or len(plan.on) != 1:
        return None
    key = plan.on[0]
    if key not in label_schema or not kernel_applies(label_schema[key], label_schema[label_time]):
        return None
    time_column = _time_column(0, {*label_schema.names(), *_output_names(plan)})
    right = _prepare(
        dataclasses.replace(plan, compiled=True), 0, label_schema, label_time, time_column
    ).collect(engine="in-memory")
    cursors = Cursors.of(right, time=time_column, key=key)
    if cursors is None:
        return None
    return PreparedRows(cursors, _with_null_row(right.select(_output_names(plan))))


def _with_null_row(rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` and one row of nulls after them, in one chunk: what matches gather from.

    A match's row number is ``rows.height`` where a label has none (see
    :func:`~microfs._asof_kernel.asof_rows`), which is then this null row: the gather
    takes the numbers as they are, with no nulls to make first. One chunk, because a
    gather from the chunks a concatenation leaves cost three times as much (2M rows from
    ten chunks, 0.29 s against 0.09 s).

    >>> _with_null_row(pl.DataFrame({"x": [1]}))["x"].to_list()
    [1, None]
    """
    return pl.concat([rows, rows.clear(1)]).rechunk()


def _output_names(plan: JoinPlan) -> tuple[str, ...]:
    """The names a join's features take in the output, in order."""
    return output_names(plan.prefix, plan.features)


def point_in_time_join(
    labels: pl.LazyFrame,
    *,
    label_time: str,
    label_keys: Sequence[str],
    joins: Sequence[JoinPlan],
    labels_order: RowOrder = "none",
) -> pl.LazyFrame:
    """Join feature groups onto the label rows as of each label's event time.

    The label frame is the spine: the result has exactly one row per label row, with all
    label columns followed by each join's features (prefixed) in join order, ordered by
    ``label_time`` then ``label_keys`` ascending (nulls first). The joined groups' key and
    event-time columns are not carried into the result. Nothing is collected.

    Args:
        labels: The label rows. Not modified.
        label_time: The label frame's event-time column; its dtype must equal each timed
            join's ``event_time`` dtype.
        label_keys: The label frame's key columns: the order of the output after time.
        joins: The feature groups to join, in output order.
        labels_order: What the caller asserts of the order of ``labels``: ``"keys"``,
            sorted by ``(label_time, *label_keys)`` (then not sorted again); ``"time"``,
            by ``label_time`` alone (then only rows that share an event time are sorted
            by their keys, see :func:`order_spine`); ``"none"``, nothing.

    Returns:
        The lazy joined frame.

    Raises:
        DefinitionError: A missing column, mismatched key or time dtypes, a feature that
            is a key or event-time column, or two output columns with the same name.

    Example:
        >>> from datetime import datetime, timezone
        >>> import polars as pl
        >>> def at(day):
        ...     return datetime(2024, 1, day, tzinfo=timezone.utc)
        >>> labels = pl.LazyFrame({"user_id": [1, 1, 2], "t": [at(3), at(1), at(3)]})
        >>> spend = pl.LazyFrame(
        ...     {"user_id": [1, 1], "ts": [at(1), at(2)], "spend": [5.0, 7.0]}
        ... )
        >>> plan = JoinPlan(frame=spend, on=("user_id",), event_time="ts", features=("spend",))
        >>> out = point_in_time_join(labels, label_time="t", label_keys=["user_id"], joins=[plan])
        >>> out.collect()["spend"].to_list()
        [5.0, 7.0, None]
    """
    label_keys = tuple(label_keys)
    label_schema = _schema(labels, "the label frame")
    _require_columns(label_schema, (label_time, *label_keys), "the label frame")
    outputs = {*label_schema.names(), *(name for plan in joins for name in _output_names(plan))}
    time_columns = [_time_column(number, outputs) for number in range(len(joins))]
    rights = [
        _prepare(plan, number, label_schema, label_time, time_column)
        for number, (plan, time_column) in enumerate(zip(joins, time_columns, strict=True))
    ]
    _check_output_names(tuple(label_schema.names()), joins)

    if labels_order == "keys":
        spine = labels.set_sorted(label_time)
    else:
        spine = order_spine(labels, label_time, label_keys, time_sorted=labels_order == "time")

    kernel = [
        (plan, right, time_column)
        for plan, right, time_column in zip(joins, rights, time_columns, strict=True)
        if plan.features and _uses_kernel(plan, label_schema, label_time)
    ]
    branches = [
        _branch(spine, plan, right, label_time, time_column)
        for plan, right, time_column in zip(joins, rights, time_columns, strict=True)
        if plan.features and not _uses_kernel(plan, label_schema, label_time)
    ]
    if kernel:
        branches.append(_kernel_branch(spine, kernel, label_time))
    if not branches:
        return spine
    joined = pl.concat([spine, *branches], how="horizontal")
    if not kernel or len(kernel) == len(branches):
        return joined
    return joined.select(*label_schema.names(), *(n for p in joins for n in _output_names(p)))


def _branch(
    spine: pl.LazyFrame, plan: JoinPlan, right: pl.LazyFrame, label_time: str, time_column: str
) -> pl.LazyFrame:
    """One join's feature columns, one row per spine row in the spine's order.

    Each join reads only the spine's time and its own keys, and the joins are put side by
    side with the spine (a horizontal concatenation): the engine runs them at the same time
    instead of one after another, and reads the shared spine once. Both kinds of join keep
    the left side's rows and order: an as-of join always, a left join on keys that are
    unique in the joined frame (a static group's primary keys) too.
    """
    columns = list(dict.fromkeys([label_time, *plan.on] if plan.event_time else plan.on))
    left = spine.select(columns)
    if plan.event_time is None:
        joined = left.join(
            right, on=list(plan.on), how="left", nulls_equal=False, maintain_order="left"
        )
    else:
        joined = left.join_asof(
            right,
            left_on=label_time,
            right_on=time_column,
            by=list(plan.on) or None,
            strategy="backward",
            tolerance=_tolerance(plan.max_age),
            allow_exact_matches=True,
            check_sortedness=False,
        )
    return joined.select(_output_names(plan))


def _uses_kernel(plan: JoinPlan, label_schema: pl.Schema, label_time: str) -> bool:
    """Whether a join runs as :func:`_kernel_branch`: flagged, timed, one integer key."""
    return (
        (plan.compiled or plan.prepared is not None)
        and plan.event_time is not None
        and len(plan.on) == 1
        and kernel_applies(label_schema[plan.on[0]], label_schema[label_time])
    )


def _kernel_branch(
    spine: pl.LazyFrame, joins: Sequence[tuple[JoinPlan, pl.LazyFrame, str]], label_time: str
) -> pl.LazyFrame:
    """The features of the as-of joins :func:`asof_rows` serves, one row per spine row.

    It gives exactly the rows of the ``join_asof`` in :func:`_branch`, in about half the
    CPU time on large label sets (see :mod:`microfs._asof_kernel`). The spine's time and
    keys are stacked over each join's rows (time, key and features, told apart by a side
    column) and handed to one function whole (a join with :class:`PreparedRows` stacks
    nothing: its rows and cursors are in memory). It reads each join's keys and times,
    finds every label's row for all joins at once on threads of its own (numpy and the
    compiled kernel, which release the interpreter lock and never call Polars: see
    :func:`_run_side_by_side`), then gathers each join's features from its rows, with
    nulls for labels without a match. One opaque node, so both of
    Polars' engines run the joins alike and side by side (as separate nodes, the
    streaming engine ran them one after the other), and each group's rows are read
    once. The joined rows stay in the plan, so ``explain()`` still shows their scans.
    """
    names = [list(_output_names(plan)) for plan, _, _ in joins]
    keys = list(dict.fromkeys(plan.on[0] for plan, _, _ in joins))
    side = _unused("__microfs_joined", [label_time, *keys, *(n for group in names for n in group)])
    schemas = [
        right.select(own).collect_schema() for (_, right, _), own in zip(joins, names, strict=True)
    ]
    parts = [spine.select(label_time, *keys).with_columns(pl.lit(0, dtype=pl.UInt8).alias(side))]
    stacked_joins = [number for number, (plan, _, _) in enumerate(joins) if plan.prepared is None]
    for part, number in enumerate(stacked_joins, start=1):
        plan, right, time_column = joins[number]
        parts.append(
            right.select(
                pl.col(time_column).alias(label_time),
                plan.on[0],
                *names[number],
                pl.lit(part, dtype=pl.UInt8).alias(side),
            )
        )
    stacked = pl.concat(parts, how="diagonal")

    def match(stacked: pl.DataFrame) -> pl.DataFrame:
        # The parts come in order: the labels, then each stacked join's rows.
        # searched with values of the side column's own type: other values would have
        # numpy cast the whole column first (96 MB at 10M labels)
        sides = stacked.get_column(side).to_numpy()
        ends = np.searchsorted(sides, np.arange(1, len(parts) + 1, dtype=sides.dtype))
        sizes = np.diff(ends, prepend=0)
        labels = stacked.slice(0, int(sizes[0]))
        sources: list[pl.DataFrame] = []
        found: list[Match | pl.Series] = []
        for number, (plan, _, _) in enumerate(joins):
            key = plan.on[0]
            if plan.prepared is not None:
                if labels.get_column(label_time).null_count():
                    msg = "labels joined through prepared rows need an event time on every row"
                    raise DefinitionError(msg)
                sources.append(plan.prepared.features)
                found.append(
                    plan.prepared.cursors.advance_task(
                        labels, time=label_time, key=key, max_age=plan.max_age
                    )
                )
                continue
            part = stacked_joins.index(number) + 1
            joined = stacked.slice(int(ends[part - 1]), int(sizes[part]))
            sources.append(_with_null_row(_columns(joined, names[number])))
            left, right = _columns(labels, [label_time, key]), _columns(joined, [label_time, key])
            task = asof_task(left, right, time=label_time, key=key, max_age=plan.max_age)
            if task is None:  # Polars joins these, here
                found.append(asof_rows(left, right, time=label_time, key=key, max_age=plan.max_age))
            else:
                found.append(task)
        rows = _run_side_by_side(found)
        frames = [source.gather(row_series(r)) for source, r in zip(sources, rows, strict=True)]
        return frames[0] if len(frames) == 1 else pl.concat(frames, how="horizontal")

    schema = {name: dtype for s in schemas for name, dtype in s.items()}
    return stacked.map_batches(match, schema=schema, streamable=False)


def _columns(frame: pl.DataFrame, names: Sequence[str]) -> pl.DataFrame:
    """``frame.select(names)`` with each column's chunks as they are.

    The streaming engine hands the kernel's node a frame whose columns are chunked
    differently (the labels' columns in one way, the side column in another), and
    ``DataFrame.select`` then copies every selected column into one chunk: at 10M labels
    that was 320 MB copied for the labels' times and keys alone. The kernel reads
    chunk by chunk (see :class:`microfs._asof_kernel._Labels`).
    """
    return pl.DataFrame([frame.get_column(name) for name in names])


def _run_side_by_side(found: Sequence[Match | pl.Series]) -> list[pl.Series | np.ndarray]:
    """Run the kernel's matches among ``found`` on threads of their own, side by side.

    They run numpy and the compiled kernel only (see :func:`asof_task`), never Polars: the
    caller may be a thread of Polars' pool, which must not wait on work that needs the
    pool (with every thread of it waiting, nothing would run it).
    """
    tasks = [item for item in found if not isinstance(item, pl.Series)]
    if len(tasks) > 1:
        with ThreadPoolExecutor(len(tasks), thread_name_prefix="microfs-asof") as pool:
            done = iter(list(pool.map(lambda task: task(), tasks)))
    else:
        done = iter([task() for task in tasks])
    return [item if isinstance(item, pl.Series) else next(done) for item in found]


def order_spine(
    labels: pl.LazyFrame, label_time: str, label_keys: Sequence[str], *, time_sorted: bool
) -> pl.LazyFrame:
    """Order label rows by ``(label_time, *label_keys)``, stably.

    A full multi-column sort costs several times a sort by time alone. Labels already in
    event-time order (``time_sorted``) need only their rows that share an event time
    sorted by key: those are sorted apart and merged back into the rest, which is in
    order already and shares no event time with them.

    >>> lf = pl.LazyFrame({"t": [1, 2, 2, 3], "k": [9, 5, 4, 0]})
    >>> order_spine(lf, "t", ["k"], time_sorted=True).collect()["k"].to_list()
    [9, 4, 5, 0]
    """
    columns = [label_time, *label_keys]
    if not time_sorted:
        return labels.sort(columns, maintain_order=True)
    ordered = labels.set_sorted(label_time)
    time = pl.col(label_time)
    shared = ((time == time.shift(1)) | (time == time.shift(-1))).fill_null(False)
    ties = ordered.filter(shared).sort(columns, maintain_order=True)
    return ordered.filter(~shared).merge_sorted(ties, key=label_time)


def _schema(frame: pl.LazyFrame, what: str) -> pl.Schema:
    """Resolve a lazy frame's schema, turning a Polars failure into ours."""
    try:
        return frame.collect_schema()
    except pl.exceptions.PolarsError as exc:
        msg = f"cannot resolve the columns of {what}: {exc}"
        raise DefinitionError(msg) from exc


def _require_columns(schema: pl.Schema, columns: Sequence[str], what: str) -> None:
    """Raise if any of ``columns`` is missing from ``schema``."""
    missing = [column for column in columns if column not in schema]
    if missing:
        msg = (
            f"column(s) {', '.join(repr(c) for c in missing)} not found in {what}; "
            f"its columns are: {', '.join(schema.names())}"
        )
        raise DefinitionError(msg)


def _check_output_names(label_columns: tuple[str, ...], joins: Sequence[JoinPlan]) -> None:
    """Raise when a joined feature would take a name already in the output."""
    taken: dict[str, str] = {column: "a label column" for column in label_columns}
    for number, plan in enumerate(joins):
        for feature, name in zip(plan.features, _output_names(plan), strict=True):
            if name in taken:
                msg = (
                    f"feature {feature!r} of join {number} would be output as {name!r}, "
                    f"which is already {taken[name]}; give the join a distinct `prefix` "
                    f"(e.g. prefix='j{number}_') or leave the feature out"
                )
                raise DefinitionError(msg)
            taken[name] = f"the output of feature {feature!r} of join {number}"


def _time_column(number: int, taken: Collection[str]) -> str:
    """A private name for join ``number``'s event time that no output column has."""
    return _unused(f"{_TIME_PREFIX}{number}", taken)


def _unused(name: str, taken: Collection[str]) -> str:
    """``name``, with underscores put in front until no column in ``taken`` has it."""
    while name in taken:
        name = "_" + name
    return name


def _tolerance(max_age: timedelta | None) -> str | None:
    """``max_age`` as an exact Polars duration (microseconds, never calendar days)."""
    return None if max_age is None else polars_duration(max_age)


def _prepare(
    plan: JoinPlan, number: int, label_schema: pl.Schema, label_time: str, time_column: str
) -> pl.LazyFrame:
    """Check one join against the label frame and project (and sort) its frame."""
    what = f"the frame of join {number}"
    schema = _schema(plan.frame, what)
    timed = plan.event_time is not None
    own = (*plan.on, plan.event_time) if plan.event_time is not None else plan.on
    _require_columns(schema, (*own, *plan.features), what)
    _require_columns(label_schema, plan.on, f"the label frame (keys of join {number})")
    if not plan.on and not timed:
        msg = f"join {number} has neither key columns (`on`) nor an event time; give it `on`"
        raise DefinitionError(msg)
    if plan.max_age is not None and plan.max_age < timedelta(0):
        msg = f"max_age must not be negative, got {plan.max_age!r}"
        raise DefinitionError(msg)
    not_features = [feature for feature in plan.features if feature in own]
    if not_features:
        msg = (
            f"join {number} lists key or event-time column(s) {not_features} as features; "
            "they are matched on, not carried: list only value columns"
        )
        raise DefinitionError(msg)
    for key in plan.on:
        if schema[key] != label_schema[key]:
            msg = (
                f"join key {key!r} is {schema[key]} in {what} but {label_schema[key]} "
                "in the label frame; cast one side so both have the same type"
            )
            raise DefinitionError(msg)

    columns: list[pl.Expr] = [pl.col(key) for key in plan.on]
    columns += [
        pl.col(feature).alias(name)
        for feature, name in zip(plan.features, _output_names(plan), strict=True)
    ]
    if plan.event_time is None:
        return plan.frame.select(columns)

    if schema[plan.event_time] != label_schema[label_time]:
        msg = (
            f"event time {plan.event_time!r} is {schema[plan.event_time]} in {what} but "
            f"label time {label_time!r} is {label_schema[label_time]}; both must have "
            "the same type"
        )
        raise DefinitionError(msg)
    right = plan.frame.select(pl.col(plan.event_time).alias(time_column), *columns)
    if plan.sorted_by_time:
        return right.set_sorted(time_column)
    if _uses_kernel(plan, label_schema, label_time):
        # The kernel matches by row number: ties in time are ordered by key as well
        # (unique per time in a group), so it sees one order whatever order the source
        # gives them in (a group-by's rows change order from run to run).
        return right.sort([time_column, *plan.on], maintain_order=True)
    return right.sort(time_column)
