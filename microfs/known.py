"""Known-at joins: the feature row a live lookup at a label's time could have served.

Pure logic over ``pl.LazyFrame``, beside :mod:`microfs.pit`: nothing here reads or writes
disk. A feature group's table carries, per row, the time MicroFS committed it
(:data:`COMMIT_TIME`), and keeps the rows an upsert replaced with the time they were
replaced (:data:`SUPERSEDED_AT`). Those are the *versions* of the group's rows.

For a label at time ``t`` and a view's ``lag``, a version is visible when its event time
``e <= t``, it was committed at or before ``t - lag``, and it was not yet replaced then:

    ``max(commit + lag, e) <= t < superseded + lag``

so each version is visible on one interval of label time, ``[known_from, until)``. The
known-at join takes, among the visible versions of a key, the one with the greatest event
time. The versions of one row (one key and event time) follow each other without a gap,
so a row, once visible, stays visible; the row a lookup serves changes only when a row
with a greater event time becomes visible, or when the served row is corrected.
:func:`known_segments` lists those changes per key (``known_from``, the row's event time,
its values), which turns the known-at join into one as-of join on ``known_from``: rows
that never became the served row (a late row older than one already served) drop out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Literal

import polars as pl

from microfs.errors import DefinitionError

__all__ = [
    "COMMIT_TIME",
    "SUPERSEDED_AT",
    "TIMELINES",
    "Timeline",
    "check_lag",
    "check_timeline",
    "known_segments",
]

Timeline = Literal["event", "known"]
"""Which rows a feature view joins: ``"event"``, the greatest event time ``<= t``;
``"known"``, the same among rows committed by ``t - lag`` (what a lookup at ``t`` saw)."""

TIMELINES: tuple[Timeline, ...] = ("event", "known")

COMMIT_TIME = "_microfs_commit_time"
"""The column of a group's Delta table holding when MicroFS committed the row."""

SUPERSEDED_AT = "_microfs_superseded_at"
"""When a stored row version was replaced by an upsert (null: it is current)."""

_STATIC_TIME = datetime(1970, 1, 1, tzinfo=timezone.utc)


def check_timeline(timeline: object) -> Timeline:
    """``timeline`` if it is ``"event"`` or ``"known"``, else a :class:`DefinitionError`.

    >>> check_timeline("known")
    'known'
    """
    if timeline == "event":
        return "event"
    if timeline == "known":
        return "known"
    raise DefinitionError(
        f"timeline={timeline!r} is not a timeline; give 'event' (join on event time) or "
        "'known' (only rows committed by the label's time minus lag)"
    )


def check_lag(lag: object) -> timedelta:
    """``lag`` if it is a non-negative ``datetime.timedelta``, else a :class:`DefinitionError`.

    >>> check_lag(timedelta(minutes=5))
    datetime.timedelta(seconds=300)
    """
    if not isinstance(lag, timedelta) or lag < timedelta(0):
        raise DefinitionError(
            f"lag={lag!r} must be a non-negative datetime.timedelta, e.g. timedelta(minutes=5) "
            "for a service that sees a commit five minutes after it lands"
        )
    return lag


def known_segments(
    versions: pl.LazyFrame,
    *,
    on: Sequence[str],
    event_time: str | None,
    features: Sequence[str],
    lag: timedelta,
    known_from: str,
    event_out: str,
) -> pl.LazyFrame:
    """Per key, each time the row a lookup serves changes, and the row it serves from then.

    Args:
        versions: The group's row versions: ``on``, ``event_time``, ``features``,
            :data:`COMMIT_TIME` (not null) and :data:`SUPERSEDED_AT` (null for current rows).
        on: The key columns (covering the group's primary keys).
        event_time: The event-time column, or None for a static group (then one row per
            key, whose versions follow each other by commit).
        features: The value columns to carry.
        lag: How long after a commit a lookup sees it.
        known_from: The name to give the time from which a row is served.
        event_out: The name to give the served row's event time (for ``max_age``).

    Returns:
        Columns ``on``, ``known_from``, ``event_out``, ``features``: an as-of join on
        ``known_from`` (by ``on``, backward, exact matches included) gives each label the
        row a lookup at its time served. ``known_from`` is unique per key. Not sorted.

    Example:
        >>> def at(hour):
        ...     return datetime(2024, 1, 1, hour, tzinfo=timezone.utc)
        >>> versions = pl.LazyFrame(
        ...     {
        ...         "k": [1, 1],
        ...         "ts": [at(10), at(9)],  # the 09:00 row arrived late, at 11:00
        ...         "x": [1.0, 2.0],
        ...         COMMIT_TIME: [at(10), at(11)],
        ...         SUPERSEDED_AT: [None, None],
        ...     },
        ...     schema_overrides={SUPERSEDED_AT: pl.Datetime("us", "UTC")},
        ... )
        >>> out = known_segments(
        ...     versions, on=["k"], event_time="ts", features=["x"], lag=timedelta(0),
        ...     known_from="from", event_out="e",
        ... )
        >>> out.collect()["x"].to_list()  # the late row is never served: 10:00 is newer
        [1.0]
    """
    on = list(on)
    time = pl.col(event_time) if event_time is not None else pl.lit(_STATIC_TIME)
    dtype = versions.collect_schema()[COMMIT_TIME]
    lag_expr = pl.lit(lag, dtype=pl.Duration("us"))
    until = f"{known_from}\x00until"
    rows = (
        versions.select(
            *on,
            time.cast(dtype).alias(event_out),
            *features,
            pl.max_horizontal(pl.col(COMMIT_TIME) + lag_expr, time.cast(dtype)).alias(known_from),
            (pl.col(SUPERSEDED_AT) + lag_expr).alias(until),
        )
        .filter(pl.col(until).is_null() | (pl.col(known_from) < pl.col(until)))
        .drop(until)
    )
    # Walking a key's versions by the time they become visible: a version is served from
    # then if no version visible earlier has a greater event time (a row once visible stays
    # visible, and a correction of the served row has its event time); of versions that
    # become visible at once, the one with the greatest event time. Per key in one pass:
    # dense ranks make (key, visible-from) one int64 to sort by and (key, event time) one
    # int64 whose running maximum stays within each key (ranks are below the row count, so
    # the products stay far inside int64 for any table that fits on one machine).
    key = pl.struct(on).rank("dense") if len(on) > 1 else pl.col(on[0]).rank("dense")
    group, order, newest = (f"{known_from}\x00{n}" for n in ("group", "order", "newest"))
    ranked = rows.with_columns(key.cast(pl.Int64).alias(group)).with_columns(
        (pl.col(group) * (pl.len() + 1) + pl.col(known_from).rank("dense").cast(pl.Int64)).alias(
            order
        ),
        (pl.col(group) * (pl.len() + 1) + pl.col(event_out).rank("dense").cast(pl.Int64)).alias(
            newest
        ),
    )
    served = ranked.sort(order).filter(
        pl.col(newest) >= pl.col(newest).cum_max().shift(1).fill_null(pl.col(newest))
    )
    # a served version followed by another served one of its key from the same time
    # was outranked by it (a greater event time became visible at once)
    outranked = (pl.col(order) == pl.col(order).shift(-1)).fill_null(False)
    return served.filter(~outranked).select(*on, known_from, event_out, *features)
