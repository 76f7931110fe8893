"""The lazy plan behind a feature view's training frame, whole or in event-time windows.

:class:`FramePlanner` turns a view's label group and joins into one
:func:`microfs.pit.point_in_time_join` plan over the groups' Delta scans: the spine is the
label rows with ``start <= t < end``, and each joined group contributes its rows earlier
than ``end``. Tables proven to be stored in event-time order
(``FeatureGroup.scan_and_record_order``) are flagged sorted instead of sorted again.

A windowed plan covers ``[start, end)`` with consecutive windows. Each window joins its
labels to the joined groups' rows inside it plus the latest row per key from before it
(within ``max_age``), which is all a label in the window can match, so one window's plan
needs memory for one window. :meth:`FramePlanner.window_plans` gives them one by one.

A view with ``timeline="known"`` joins each group's served-row segments
(:func:`microfs.known.known_segments`) as of the label's time instead of its rows as of
their event time; its windows join all segments before the window's end.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from microfs import _asof_kernel
from microfs._commit_log import micros
from microfs._frame_spec import FrameSpec, frame_columns, frame_spec
from microfs.errors import DefinitionError
from microfs.feature_group import Extent, FeatureGroup
from microfs.known import known_segments
from microfs.pit import JoinPlan, PreparedRows, RowOrder, point_in_time_join, prepare_rows
from microfs.schema import aware_utc
from microfs.view_definition import FeatureViewDefinition

__all__ = [
    "FRAME_ARROW",
    "FramePlanner",
    "Held",
    "LabelWindow",
    "Spine",
    "frame_writer",
    "window_filter",
]

_KNOWN_FROM = "__microfs_known_from"
_KNOWN_EVENT = "__microfs_known_event_"
_ROW = "__microfs_row"


@dataclass(frozen=True)
class Spine:
    """Label rows to join onto, and how far they are in the output's order already.

    ``rows`` estimates how many rows there are, from the Delta log (None: unknown); it
    only decides how joins run, never what they give.
    """

    frame: pl.LazyFrame
    order: RowOrder
    rows: int | None = None


class LabelWindow(NamedTuple):
    """A window ``[lo, hi)`` of label time, and where its labels lie in the label scan.

    ``rows`` is a range ``(first, stop)`` of row numbers of the label group's scan in
    event-time order (``FeatureGroup.scan_and_record_order``) holding every label of the
    window, and perhaps a few on either side; None when unknown. :meth:`FramePlanner.spine`
    reads that range before filtering by time: Parquet readers skip what lies outside a
    row range page by page, but skip whole row groups only for a time filter, so windows
    shorter than a row group would each decode the row groups they touch again.
    """

    lo: datetime
    hi: datetime
    rows: tuple[int, int] | None = None


@dataclass(frozen=True)
class Held:
    """A joined group's rows read into memory once (see :meth:`FramePlanner.hold`)."""

    frame: pl.DataFrame
    order: RowOrder


class HeldRows(NamedTuple):
    """What :meth:`FramePlanner.hold` read: per join, in join order.

    Attributes:
        held: The rows as read (an empty frame for a prepared join, only checked), or
            None for a join read per window.
        prepared: The rows grouped for the compiled kernel, or None.
    """

    held: list[Held | None]
    prepared: list[PreparedRows | None]


DICTIONARY_PAGE_BYTES = 16 * 1024
"""The largest dictionary a training frame's Parquet column chunk gets before plain values.

Room for 2,048 eight-byte values: categories and flags stay dictionary-encoded;
measurements fall back to plain encoding as soon as their dictionary passes it. At
pyarrow's default (1 MiB) every high-cardinality column builds a large dictionary first,
then abandons it: the PIT benchmark's 10M-row frame took 8.5 CPU seconds to encode at the
default, 3.8-4.2 at 4-16 KiB, and came out smaller (275 MB against 294 MB).
"""


_DELTA_ENCODED = (
    pa.types.is_integer,
    pa.types.is_timestamp,
    pa.types.is_date,
    pa.types.is_time,
    pa.types.is_duration,
)
"""Integer and time columns: Parquet's delta encoding, instead of a dictionary."""
_TEXT = (
    pa.types.is_string,
    pa.types.is_large_string,
    pa.types.is_string_view,
    pa.types.is_binary,
    pa.types.is_large_binary,
    pa.types.is_binary_view,
)
"""String and binary columns, of any offset width or layout."""


FRAME_ARROW = (
    pl.CompatLevel.newest() if int(pa.__version__.split(".")[0]) >= 21 else pl.CompatLevel.oldest()
)
"""How a frame written in parts goes from Polars to :func:`frame_writer`
(``to_arrow(compat_level=FRAME_ARROW)``): text as Polars' own string views where
pyarrow writes those to Parquet (version 21 on), else converted to ``large_string``."""


def _names(schema: pa.Schema, kinds: Sequence[Callable[[pa.DataType], bool]]) -> list[str]:
    """The columns of ``schema`` whose type is one of ``kinds``."""
    return [f.name for f in schema if any(kind(f.type) for kind in kinds)]


def frame_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """A Parquet writer for a training frame written in parts (windows or batches).

    Integer and time columns are delta-encoded (``DELTA_BINARY_PACKED``): identifiers,
    event times and counts are written in fewer bytes and less time than as plain values
    or dictionaries (the PIT benchmark's 10M-row frame: 199 MB against 274 MB, 2.7 CPU
    seconds to encode against 3.2, read back by Polars in the same time). The other columns
    get dictionaries up to :data:`DICTIONARY_PAGE_BYTES`.

    Text columns get no column statistics. A frame's rows are in label-time order, so a
    category's values are spread over every row group and its least and greatest values
    prune none of them, while comparing every string for them took a fifth of the
    encoding (``perf record`` of the 10M-row frame written in windows: 0.6 of the 2.8 CPU
    seconds in Parquet's encoder). The time, key and number columns keep theirs.

    The file keeps no Arrow schema of its own, only Parquet's types: every reader maps
    them to its own types (pyarrow's ``string``, Polars' ``String``, a UTC timestamp to a
    UTC timestamp), whatever string layout was written. So a caller may hand Polars'
    string views over as they are (:data:`FRAME_ARROW`): converting each window's text
    to ``large_string`` first took a sixth of the encoding's time (the 10M-row frame:
    2.1 against 2.4-2.75 CPU seconds in all).
    """
    delta, text = _names(schema, _DELTA_ENCODED), _names(schema, _TEXT)
    return pq.ParquetWriter(
        path,
        schema,
        store_schema=False,
        use_dictionary=[name for name in schema.names if name not in delta],
        column_encoding=dict.fromkeys(delta, "DELTA_BINARY_PACKED"),
        dictionary_pagesize_limit=DICTIONARY_PAGE_BYTES,
        write_statistics=[name for name in schema.names if name not in text],
    )


def _rows(
    group: FeatureGroup,
    number: int,
    table_versions: Mapping[str, int] | None,
    held: Sequence[Held | None] | None,
) -> tuple[pl.LazyFrame, RowOrder]:
    """Join ``number``'s rows: held in memory when given, else the group's ordered scan."""
    kept = held[number] if held is not None else None
    if kept is not None:
        return kept.frame.lazy(), kept.order
    return group.scan_and_record_order(version=(table_versions or {}).get(group.name))


def _held_bytes(group: FeatureGroup, columns: Sequence[str], versions: Mapping[str, int]) -> int:
    """The bytes holding ``columns`` of ``group`` takes, estimated from the Delta log.

    8 bytes a value, 16 a text value.
    """
    rows = group.extent(columns[0], version=versions.get(group.name)).rows
    return rows * sum(16 if group.schema[c] == pl.String else 8 for c in columns)


def check_window(window: object) -> None:
    """Raise :class:`DefinitionError` unless ``window`` is a positive ``timedelta``."""
    if not isinstance(window, timedelta) or window <= timedelta(0):
        raise DefinitionError(f"window must be a positive datetime.timedelta, got {window!r}")


class FramePlanner:
    """Builds the point-in-time plans of one feature view.

    Args:
        definition: The view's definition.
        label: The label group (it has an event time).
        groups: The joined groups, one per join, in join order.
    """

    def __init__(
        self,
        definition: FeatureViewDefinition,
        label: FeatureGroup,
        groups: Sequence[FeatureGroup],
    ) -> None:
        if label.event_time is None:  # refused at creation; a hand-edited file
            raise DefinitionError(f"label group {label.name!r} has no event time")
        self.definition = definition
        self.label = label
        self.time: str = label.event_time
        self.label_col = definition.label_col
        self.joins = definition.joins
        self.groups = tuple(groups)
        self.label_features = definition.label_features(label.definition)
        self.spine_keys = definition.spine_keys(label.definition)
        self.feature_schema = definition.feature_schema(
            label.definition, [g.definition for g in self.groups]
        )
        self.feature_columns = tuple(self.feature_schema)
        self.timeline = definition.timeline
        self.lag = definition.lag

    def plan(
        self,
        start: datetime | None,
        end: datetime | None,
        table_versions: Mapping[str, int] | None,
    ) -> pl.LazyFrame:
        """The whole frame for label times in ``[start, end)`` as one plan."""
        return self.join(self.spine(start, end, table_versions), table_versions, end)

    def spec(
        self,
        start: datetime | None,
        end: datetime | None,
        table_versions: Mapping[str, int] | None,
    ) -> FrameSpec:
        """The engine-neutral spec of :meth:`plan`'s frame (for other engines than Polars)."""
        return frame_spec(
            self.definition,
            self.label,
            self.groups,
            self.feature_columns,
            start=aware_utc(start, what="start"),
            end=aware_utc(end, what="end"),
            table_versions=table_versions,
        )

    def windows(
        self,
        start: datetime | None,
        end: datetime | None,
        window: timedelta,
        table_versions: Mapping[str, int] | None,
        *,
        max_rows: int | None = None,
    ) -> list[LabelWindow]:
        """Consecutive ``[lo, hi)`` windows covering the label times in ``[start, end)``.

        Each is ``window`` long, but with ``max_rows``, a window holding more labels than
        that is cut at label-time boundaries into windows of about ``max_rows`` labels
        each (counted on a grid of a sixteenth of ``window``; a grid cell with more
        labels than ``max_rows`` is cut in equal lengths), so memory follows the labels
        a window holds rather than its length. That count also gives each window the
        range of row numbers, in the scan :meth:`spine` reads, where its labels lie; the
        spine then reads that range alone (see :class:`LabelWindow`). Without
        ``max_rows``, or when the label group's rows are not proven to be in event-time
        order, the windows' rows are None.
        """
        check_window(window)
        lo, hi = aware_utc(start, what="start"), aware_utc(end, what="end")
        counts = None if max_rows is None else self._label_counts(lo, hi, window, table_versions)
        if lo is None or hi is None:
            if counts is None:
                first, last = (
                    self.label.scan(version=(table_versions or {}).get(self.label.name))
                    .select(pl.col(self.time).min(), pl.col(self.time).max().alias("last"))
                    .collect()
                    .row(0)
                )
            else:
                first, last = counts["first"].min(), counts["last"].max()
            if first is None:
                return []
            lo = lo if lo is not None else first
            hi = hi if hi is not None else last + timedelta(microseconds=1)
        edges = []
        while lo < hi:
            edges.append((lo, min(lo + window, hi)))
            lo = edges[-1][1]
        if counts is None or max_rows is None:
            return [LabelWindow(a, b) for a, b in edges]
        pieces = [piece for edge in edges for piece in _split(edge, counts, max_rows)]
        if "first_row" not in counts.columns:
            return [LabelWindow(a, b) for a, b in pieces]
        ranges = _row_ranges(counts, pieces)
        return [LabelWindow(a, b, rows) for (a, b), rows in zip(pieces, ranges, strict=True)]

    def _label_counts(
        self,
        start: datetime | None,
        end: datetime | None,
        window: timedelta,
        table_versions: Mapping[str, int] | None,
    ) -> pl.DataFrame:
        """Labels per cell of a grid a sixteenth of ``window`` wide, in time order.

        Columns: ``cell`` (its number), ``rows``, and the cell's ``first`` and ``last``
        label time. When the label group's rows are proven to be in event-time order,
        also ``first_row`` and ``last_row``: the least and greatest row number of the
        cell's labels in that scan (the one :meth:`spine` reads).
        """
        width = max(window // 16, timedelta(microseconds=1))
        scan, order = self.label.scan_and_record_order(
            version=(table_versions or {}).get(self.label.name)
        )
        time = pl.col(self.time)
        cell = time.dt.epoch("us") // (width // timedelta(microseconds=1))
        columns = [pl.len().alias("rows"), time.min().alias("first"), time.max().alias("last")]
        rows = scan.select(self.time)
        if order != "none":  # numbered before the filters: row numbers of the whole scan
            rows = rows.with_row_index(_ROW)
            columns += [pl.col(_ROW).min().alias("first_row"), pl.col(_ROW).max().alias("last_row")]
        return (
            window_filter(rows, self.time, start, end)
            .group_by(cell.alias("cell"))
            .agg(columns)
            .filter(pl.col("first").is_not_null())
            .sort("cell")
            .collect(engine="streaming")
        )

    def window_plans(
        self,
        start: datetime | None,
        end: datetime | None,
        window: timedelta,
        table_versions: Mapping[str, int] | None,
    ) -> list[pl.LazyFrame]:
        """One plan per window, in event-time order; together they give :meth:`plan`'s rows."""
        return [
            self.join(self.spine(lo, hi, table_versions), table_versions, hi, since=lo)
            for lo, hi, _ in self.windows(start, end, window, table_versions)
        ]

    def latest_rows(
        self,
        latest_before: Sequence[pl.DataFrame | None] | None,
        lo: datetime,
        hi: datetime,
        table_versions: Mapping[str, int] | None,
        *,
        held: Sequence[Held | None] | None = None,
        prepared: Sequence[PreparedRows | None] | None = None,
    ) -> list[pl.DataFrame | None]:
        """The latest row per key of each timed join's rows before ``hi``, in time order.

        From ``latest_before`` (the same for rows before ``lo``) and the rows in
        ``[lo, hi)``, so walking windows in order reads each feature row once; without
        it, from all rows before ``hi``. None for a static group. Memory: one row per key.
        ``held`` gives joins' rows already in memory (see :meth:`hold`); a ``prepared``
        join carries its cursors instead, and gets None.
        """
        out: list[pl.DataFrame | None] = []
        for number, (join, group) in enumerate(zip(self.joins, self.groups, strict=True)):
            time = group.event_time
            ready = prepared[number] if prepared is not None else None
            if time is None or self.timeline == "known" or ready is not None:
                out.append(None)
                continue
            scan, order = _rows(group, number, table_versions, held)
            columns = [*join.on, time, *join.features]
            previous = latest_before[number] if latest_before is not None else None
            if previous is None:
                rows = scan.filter(pl.col(time) < hi).select(columns)
            else:  # the carried rows are older than every row inside the window
                inside = scan.filter((pl.col(time) >= lo) & (pl.col(time) < hi))
                rows = pl.concat([previous.lazy(), inside.select(columns)])
            latest = _latest_per_key(rows, join.on, time, in_time_order=order != "none")
            out.append(latest.sort(time).collect(engine="in-memory"))
        return out

    def hold(
        self,
        end: datetime | None,
        table_versions: Mapping[str, int] | None,
        *,
        max_bytes: int,
        kernel_labels: int | None,
    ) -> HeldRows:
        """Each timed join's rows before ``end`` (the columns it uses), read into memory.

        For a caller that joins many windows in turn: a window's rows are then a filter
        of memory instead of a read of the group's files, which cannot skip what lies
        outside the window when a file is one row group (each window would decode the
        whole group again). Groups are held smallest first while together they take at
        most ``max_bytes`` (estimated from the Delta log: 8 bytes per value, 16 per text
        value); the others are not held (None) and are read per window as before.

        A held join that the compiled kernel takes (for ``kernel_labels`` labels, see
        :func:`_kernel_joins`; not on the known-at timeline) is read straight into the
        kernel's grouping (:class:`PreparedRows`): its cursors carry on from one window
        to the next, each window once, in time order, so a window costs what its own
        labels cost. Its ``held`` entry is then an empty frame, only checked. One group
        is read at a time, and a prepared group's rows are never also held as read (the
        100M-label benchmark's two 10M-row groups: a peak of 2.06 GB when both were read
        first and grouped after, 1.77 GB this way).
        """
        versions = table_versions or {}
        chosen = _kernel_joins(
            kernel_labels,
            [(g, j.on, versions.get(g.name)) for j, g in zip(self.joins, self.groups, strict=True)],
        )
        kernel = self.timeline != "known" and any(chosen)
        labels = self.spine(None, None, table_versions).frame.collect_schema() if kernel else None
        wanted: list[tuple[int, int, str, list[str]]] = []  # size, join number, time, columns
        for number, (join, group) in enumerate(zip(self.joins, self.groups, strict=True)):
            time = group.event_time
            if time is None:
                continue
            columns = [*join.on, time, *join.features]
            wanted.append((_held_bytes(group, columns, versions), number, time, columns))
        held: list[Held | None] = [None] * len(self.joins)
        prepared: list[PreparedRows | None] = [None] * len(self.joins)
        budget = max_bytes
        for size, number, time, columns in sorted(wanted):
            if size > budget:
                break
            budget -= size
            group = self.groups[number]
            scan, order = group.scan_and_record_order(version=versions.get(group.name))
            rows = scan.select(columns)
            if end is not None:
                rows = rows.filter(pl.col(time) < aware_utc(end, what="end"))
            if labels is not None and chosen[number]:
                plan = self._join_plan(number, rows, order, compiled=True)
                prepared[number] = prepare_rows(plan, labels, self.time)
                if prepared[number] is not None:
                    held[number] = Held(pl.DataFrame(schema=rows.collect_schema()), order)
                    continue
            held[number] = Held(rows.collect(engine="in-memory"), order)
        return HeldRows(held, prepared)

    def spine(
        self,
        start: datetime | None,
        end: datetime | None,
        table_versions: Mapping[str, int] | None,
        *,
        rows: tuple[int, int] | None = None,
    ) -> Spine:
        """The label group's rows with ``start <= t < end``, in stored order when proven.

        ``rows`` bounds them by row number in that order (a :class:`LabelWindow`'s
        ``rows``): only that range is read, then filtered by time. It is ignored when
        the rows are not proven to be in event-time order.
        """
        label = self.label
        columns = list(self.definition.spine_columns(label.definition))
        version = (table_versions or {}).get(label.name)
        scan, order = label.scan_and_record_order(version=version)
        lo, hi = aware_utc(start, what="start"), aware_utc(end, what="end")
        self._check_history(lo)
        selected = scan.select(columns)
        if rows is not None and order != "none":
            selected = selected.slice(rows[0], max(rows[1] - rows[0], 0))
        frame = window_filter(selected, self.time, lo, hi)
        return Spine(frame, order, _rows_between(label.extent(self.time, version=version), lo, hi))

    def frame_rows(
        self,
        start: datetime | None,
        end: datetime | None,
        table_versions: Mapping[str, int] | None,
    ) -> int:
        """About how many label rows ``[start, end)`` holds, from the Delta log alone."""
        version = (table_versions or {}).get(self.label.name)
        lo, hi = aware_utc(start, what="start"), aware_utc(end, what="end")
        return _rows_between(self.label.extent(self.time, version=version), lo, hi)

    def spine_from(
        self, spine: pl.LazyFrame | pl.DataFrame, start: datetime | None, end: datetime | None
    ) -> Spine:
        """A caller's rows of label keys and event time as the spine (label columns null)."""
        label = self.label
        keys = [*label.primary_keys, self.time]
        frame = spine.lazy()
        names = frame.collect_schema().names()
        missing = [k for k in keys if k not in names]
        if missing:
            raise DefinitionError(
                f"the spine lacks column(s) {missing}; it needs the label group's keys and "
                f"event time: {keys}"
            )
        extra = [*self.spine_keys, *self.label_features, self.label_col]
        frame = frame.select([*keys, *(c for c in extra if c in names)]).with_columns(
            [pl.col(c).cast(label.schema[c]) for c in keys if c in names]
        )
        frame = frame.with_columns(
            [pl.lit(None, dtype=label.schema[c]).alias(c) for c in extra if c not in names]
        ).select([*keys, *extra])
        lo, hi = aware_utc(start, what="start"), aware_utc(end, what="end")
        self._check_history(lo)
        return Spine(window_filter(frame, self.time, lo, hi), order="none")

    def _check_history(self, start: datetime | None) -> None:
        """Refuse known-at labels earlier than a joined group's pruned history reaches."""
        if self.timeline != "known":
            return
        for group in self.groups:
            pruned = group.history_from()
            if pruned is not None and (start is None or start < pruned + self.lag):
                raise DefinitionError(
                    f"feature group {group.name!r} pruned the row versions it replaced before "
                    f"{pruned.isoformat()} (vacuum), so a known-at join is exact only for "
                    f"labels from {(pruned + self.lag).isoformat()}: give start= at or after it"
                )

    def join(
        self,
        spine: Spine,
        table_versions: Mapping[str, int] | None,
        end: datetime | None,
        *,
        since: datetime | None = None,
        latest_before: Sequence[pl.DataFrame | None] | None = None,
        kernel_labels: int | None = None,
        held: Sequence[Held | None] | None = None,
        prepared: Sequence[PreparedRows | None] | None = None,
    ) -> pl.LazyFrame:
        """Join the groups onto ``spine``; feature rows at or after ``end`` cannot match.

        With ``since``, feature rows before it are reduced to the latest one per key (all a
        label at or after ``since`` can match), so a window reads only its own rows. Those
        latest rows are computed from the group's earlier rows, or taken from
        ``latest_before`` (one frame per join, from :meth:`latest_rows`) where given.
        ``kernel_labels`` is the label count the choice of the compiled as-of kernel goes
        by (the spine's estimate when None): a caller joining the windows of one frame in
        turn gives the whole frame's, since the joined rows are grouped once for all of them.
        ``held`` gives joins' rows already in memory (see :meth:`hold`); ``prepared``
        gives joins' rows grouped for the compiled kernel (see :meth:`hold`), which
        join without ``since`` or ``latest_before``: their cursors carry on from the
        window before.
        """
        label = self.label
        versions = table_versions or {}
        plans = []
        compiled = _kernel_joins(
            spine.rows if kernel_labels is None else kernel_labels,
            [(g, j.on, versions.get(g.name)) for j, g in zip(self.joins, self.groups, strict=True)],
        )
        for number, (join, group) in enumerate(zip(self.joins, self.groups, strict=True)):
            if self.timeline == "known":
                plans.append(self._known_plan(number, spine, versions.get(group.name), end))
                continue
            time = group.event_time
            scan, order = _rows(group, number, versions, held)
            time_sorted = order != "none"
            ready = prepared[number] if prepared is not None else None
            if ready is not None:  # held rows, all before `end`: only checked, not read
                plans.append(self._join_plan(number, scan, order, prepared=ready))
                continue
            if time is not None and end is not None:
                scan = scan.filter(pl.col(time) < aware_utc(end, what="end"))
            if time is not None and since is not None:
                columns = [*join.on, time, *join.features]
                carried = latest_before[number] if latest_before is not None else None
                if carried is None:
                    latest = _latest_per_key(
                        scan.filter(pl.col(time) < since).select(columns),
                        join.on,
                        time,
                        in_time_order=time_sorted,
                    ).sort(time)
                else:
                    latest = carried.lazy()  # sorted by time (latest_rows)
                if join.max_age is not None:  # older rows cannot match (fewer to join)
                    latest = latest.filter(pl.col(time) >= since - join.max_age)
                # The latest rows, in time order and all before `since`, then the window's
                # rows: in time order when the group's rows are (no sort per window).
                scan = pl.concat([latest, scan.filter(pl.col(time) >= since).select(columns)])
            plans.append(self._join_plan(number, scan, order, compiled=compiled[number]))
        joined = point_in_time_join(
            spine.frame,
            label_time=self.time,
            label_keys=label.primary_keys,
            joins=plans,
            labels_order=spine.order,
        )
        if self.timeline == "known":
            joined = self._known_max_age(joined)
        return joined.select(frame_columns(label, self.label_col, self.feature_columns))

    def _join_plan(
        self,
        number: int,
        rows: pl.LazyFrame,
        order: RowOrder,
        *,
        compiled: bool = False,
        prepared: PreparedRows | None = None,
    ) -> JoinPlan:
        """Join ``number`` as an event-time (or static) join over ``rows``."""
        join, group = self.joins[number], self.groups[number]
        return JoinPlan(
            frame=rows,
            on=join.on,
            event_time=group.event_time,
            features=join.features,
            prefix=join.prefix,
            max_age=join.max_age,
            sorted_by_time=order != "none",
            compiled=compiled,
            prepared=prepared,
        )

    def _known_plan(
        self, number: int, spine: Spine, version: int | None, end: datetime | None
    ) -> JoinPlan:
        """Join ``number`` as of the time each row became the one a lookup served.

        The served row's event time rides along as a private feature, for ``max_age``.
        """
        join, group = self.joins[number], self.groups[number]
        segments = known_segments(
            group.scan_versions(version),
            on=join.on,
            event_time=group.event_time,
            features=join.features,
            lag=self.lag,
            known_from=_KNOWN_FROM,
            event_out=f"{_KNOWN_EVENT}{number}",
        )
        if end is not None:  # served from the window's end on: no label in it sees them
            segments = segments.filter(pl.col(_KNOWN_FROM) < aware_utc(end, what="end"))
        return JoinPlan(
            frame=segments,
            on=join.on,
            event_time=_KNOWN_FROM,
            features=(*join.features, f"{_KNOWN_EVENT}{number}"),
            prefix=join.prefix,
            compiled=_suits_kernel(spine.rows, group, join.on, version),
        )

    def _known_max_age(self, joined: pl.LazyFrame) -> pl.LazyFrame:
        """Null each known-at join's features where the served row is older than ``max_age``."""
        masks = []
        for number, join in enumerate(self.joins):
            if join.max_age is None:
                continue
            served = pl.col(f"{join.prefix}{_KNOWN_EVENT}{number}")
            fresh = served >= pl.col(self.time) - pl.lit(join.max_age, dtype=pl.Duration("us"))
            masks += [pl.when(fresh).then(pl.col(name)).alias(name) for name in join.output_names()]
        return joined.with_columns(masks) if masks else joined


def _kernel_joins(
    labels: int | None, joins: Sequence[tuple[FeatureGroup, Sequence[str], int | None]]
) -> list[bool]:
    """Which joins run through the compiled as-of kernel (:func:`_suits_kernel`)."""
    return [_suits_kernel(labels, group, on, version) for group, on, version in joins]


def _suits_kernel(
    labels: int | None, group: FeatureGroup, on: Sequence[str], version: int | None
) -> bool:
    """Whether a join pays for the compiled as-of kernel, judged from the Delta logs.

    Enough labels (estimated) and a range of one integer key in the joined group wide
    enough to pay and narrow enough to index; the kernel checks the rows themselves again
    when it runs.
    """
    if len(on) != 1 or labels is None or labels < _asof_kernel.KERNEL_MIN_ROWS:
        return False
    keys = group.extent(on[0], version=version)
    if not isinstance(keys.low, int) or not isinstance(keys.high, int):
        return False
    span = keys.high - keys.low + 1
    # far wider than the rows (sparse or hashed ids): the kernel would decline them
    return span >= _asof_kernel.KERNEL_MIN_KEYS and _asof_kernel.span_fits(span, keys.rows)


def _split(
    edge: tuple[datetime, datetime], counts: pl.DataFrame, max_rows: int
) -> list[tuple[datetime, datetime]]:
    """``edge`` cut into consecutive windows of about ``max_rows`` labels at most.

    ``counts`` is :meth:`FramePlanner._label_counts`: labels per grid cell, with each
    cell's first and last label time. Cuts fall between cells, and inside a cell holding
    more than ``max_rows`` labels, in equal lengths of its labels' time range.

    >>> from datetime import timezone
    >>> day = lambda d: datetime(2024, 1, d, tzinfo=timezone.utc)
    >>> counts = pl.DataFrame({"rows": [3, 3, 1], "first": [day(1), day(3), day(5)],
    ...     "last": [day(2), day(4), day(6)]})
    >>> [(lo.day, hi.day) for lo, hi in _split((day(1), day(9)), counts, 4)]
    [(1, 3), (3, 9)]
    """
    lo, hi = edge
    inside = counts.filter((pl.col("last") >= lo) & (pl.col("first") < hi))
    if inside["rows"].sum() <= max_rows:
        return [edge]
    out: list[tuple[datetime, datetime]] = []
    held = 0  # labels since ``lo``
    for rows, first, last in inside.select("rows", "first", "last").iter_rows():
        if held and held + rows > max_rows:  # cut before this cell's first label
            out.append((lo, first))
            lo, held = first, 0
        if rows > max_rows:  # cut the cell itself into equal lengths of its time range
            pieces = -(-rows // max_rows)
            step = (last - first) / pieces
            for number in range(1, pieces):
                cut = first + step * number
                if lo < cut < hi:
                    out.append((lo, cut))
                    lo = cut
            held = max_rows  # its last piece ends where the next cell's labels begin
        else:
            held += rows
    out.append((lo, hi))
    return out


def _row_ranges(
    counts: pl.DataFrame, windows: Sequence[tuple[datetime, datetime]]
) -> list[tuple[int, int]]:
    """For each window ``[lo, hi)``, the row numbers ``(first, stop)`` holding its labels.

    From :meth:`FramePlanner._label_counts` with its ``first_row`` and ``last_row``: the
    rows of every grid cell that reaches into the window (a cell's labels all lie
    between its least and greatest row number, in any order of the rows).

    >>> from datetime import timezone
    >>> day = lambda d: datetime(2024, 1, d, tzinfo=timezone.utc)
    >>> counts = pl.DataFrame({"first": [day(1), day(3), day(5)], "last": [day(2), day(4),
    ...     day(6)], "first_row": [0, 3, 6], "last_row": [2, 5, 6]})
    >>> _row_ranges(counts, [(day(3), day(5)), (day(2), day(9)), (day(7), day(9))])
    [(3, 6), (0, 7), (0, 0)]
    """
    # cells are disjoint stretches of time in time order: both ends increase
    firsts = counts["first"].dt.epoch("us").to_numpy()
    lasts = counts["last"].dt.epoch("us").to_numpy()
    low_rows = counts["first_row"].to_numpy()
    high_rows = counts["last_row"].to_numpy()
    out = []
    for lo, hi in windows:
        begin = int(np.searchsorted(lasts, micros(lo), side="left"))  # first with last >= lo
        stop = int(np.searchsorted(firsts, micros(hi), side="left"))  # cells with first < hi
        if begin >= stop:
            out.append((0, 0))
        else:
            out.append((int(low_rows[begin:stop].min()), int(high_rows[begin:stop].max()) + 1))
    return out


def _rows_between(extent: Extent, start: datetime | None, end: datetime | None) -> int:
    """Of a table's rows spread over its time range, about how many fall in ``[start, end)``.

    Assumes an even spread; with no time range known, all of them.

    >>> from datetime import timezone
    >>> day = lambda d: datetime(2024, 1, d, tzinfo=timezone.utc)
    >>> _rows_between(Extent(1_000, day(1), day(11)), day(6), None)
    500
    """
    rows, low, high = extent.rows, extent.low, extent.high
    if low is None or high is None or high <= low:
        return rows
    first = low if start is None else min(max(start, low), high)
    last = high if end is None else min(max(end, low), high)
    share: float = max((last - first).total_seconds(), 0.0) / (high - low).total_seconds()
    return round(rows * share)


def _latest_per_key(
    rows: pl.LazyFrame, on: Sequence[str], time: str, *, in_time_order: bool
) -> pl.LazyFrame:
    """The row with the greatest event time per key (keys cover the primary keys: unique).

    Rows known to come in event-time order need no sort: a key's last row is its latest
    (a hash aggregation; sorting each key's rows by time cost about three times as much).
    """
    columns = rows.collect_schema().names()
    if in_time_order:
        return rows.group_by(list(on)).last().select(columns)
    return rows.group_by(list(on)).agg(pl.all().sort_by(time).last()).select(columns)


def window_filter(
    frame: pl.LazyFrame, column: str, start: datetime | None, end: datetime | None
) -> pl.LazyFrame:
    """Rows with ``start <= column < end`` (either bound may be None)."""
    if start is not None:
        frame = frame.filter(pl.col(column) >= start)
    if end is not None:
        frame = frame.filter(pl.col(column) < end)
    return frame
