"""Feature views on Daft: the same point-in-time frames, on one machine or a Ray cluster.

Everything in MicroFS that imports ``daft`` is here, and this module is imported only when
a caller asks for ``engine="daft"`` (``pip install "microfs[scale]"``). The plan is built
from the :class:`~microfs._frame_spec.FrameSpec` the Polars planner gives, so both engines
run one definition: the same table versions, spine, window, joins, output columns and row
order. Daft runs the plan on its current runner: its native runner by default, a Ray
cluster after ``daft.set_runner_ray(address)``; MicroFS sets no runner.

How the groups are joined: the label rows are what grows, and a joined group is usually
small enough to hold in memory. So a group whose pinned table version holds at most
:data:`BROADCAST_MAX_ROWS` rows (by its Delta log) is *broadcast*: Daft splits the label
rows into batches of about a few million rows, and a Python batch function joins each batch
to the groups with :func:`microfs.pit.point_in_time_join`, the Polars engine's own join,
so there is one copy of its rules. Each process reads a group's rows (the columns the join
uses, rows before the window's end, the pinned version's files) once, on its first batch,
and keeps them for the batches after (:func:`_held_rows`). The batch's rows are put back in
the batch's order, and the frame's order is restored at the end as below. A larger group
is joined by Daft itself, by these rules:

* A timed join is Daft's ``join_asof`` (backward, ``by`` the join keys), which counts a
  feature row at exactly the label's time and matches no null key. Daft has no tolerance,
  so ``max_age`` nulls the joined features where the matched row is older than
  ``t - max_age``: the latest row is the only candidate, so this equals dropping the match.
* A static group is a left join on its keys (null keys match nothing).
* The rows are sorted at the end by label time, then the label keys (nulls first); rows
  of a caller's spine that tie on all of those keep their given order. A label table
  whose stored order is proven to be that order already (as the Polars engine proves
  it) is read in that order, numbered, and put back in it by the number alone; on
  the native runner, when every join is broadcast, it stays in that order and needs
  neither (see :func:`_keeps_order`).
* Columns are cast to the dtypes the Polars engine gives, so the frames are equal.
* Fitted transformations run per batch as the same Polars expressions the Polars engine
  uses (:func:`microfs.transformations.apply_transforms`): they are row-wise once fitted.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from microfs._frame_plan import FramePlanner, frame_writer
from microfs._frame_spec import FrameSpec, JoinSpec
from microfs.errors import MissingDependencyError
from microfs.feature_group import FeatureGroup
from microfs.pit import JoinPlan, PreparedRows, prepare_rows
from microfs.pit import point_in_time_join as polars_point_in_time_join
from microfs.schema import to_polars
from microfs.transformations import FittedParams, apply_transforms, output_schema

try:
    import daft
    from daft import col, lit
    from daft.functions import monotonically_increasing_id, when
    from daft.io.pushdowns import Pushdowns
    from daft.io.source import DataSource, DataSourceTask
    from daft.recordbatch import RecordBatch
    from daft.runners import get_or_infer_runner_type
except ImportError as exc:  # pragma: no cover - the core install has no daft
    raise MissingDependencyError(
        'engine="daft" needs Daft and Ray: pip install "microfs[scale]"'
    ) from exc

__all__ = [
    "BROADCAST_MAX_ROWS",
    "Broadcast",
    "batch_data",
    "cast_to",
    "collect",
    "expected_schema",
    "frame",
    "frame_from_spine",
    "point_in_time_join",
    "read_table",
    "spine_rows",
    "write_frame",
]

BROADCAST_MAX_ROWS = 10_000_000
"""A joined group whose pinned table version holds at most this many rows (by its Delta
log) is broadcast: every worker reads its rows once and joins them to the label batches
with the Polars engine's join. Larger groups are joined by Daft's ``join_asof``."""

_ROW = "__microfs_row"
_TIME_PREFIX = "__microfs_pit_time_"
_BATCH_ROW = "__microfs_batch_row"
_BATCH_ROWS = 4_000_000
"""Label rows per batch of the broadcast join (Daft emits batches of 0.8 to 1 times this,
or fewer rows at the end of a partition). A batch out of time order is sorted and joined
by Polars' ``join_asof``, which groups the held rows by key again, so fewer, larger
batches cost less there: 10M labels over two 1M-row groups took 12.7 CPU seconds in
batches of at most 1M rows, 9.6 in batches of at most 4M (one run each, load average
2.6, before batches in order took the kernel)."""


def read_table(group: FeatureGroup, version: int | None) -> daft.DataFrame:
    """A lazy Daft scan of a group's Delta table at ``version`` (the latest when None).

    The version's data files come from the Delta log, read in the group's dtypes wherever
    the runner puts the work (every node must see the lake's path).

    Raises:
        NotFoundError: The version does not exist or its files were vacuumed.
    """
    resolved = group.resolve_version(version=version)
    return _read_files(group, f"v{resolved}", group.data_files(resolved))


def _read_files(group: FeatureGroup, version: str, files: Sequence[Path]) -> daft.DataFrame:
    """``files`` of ``group``, in their order, as a Daft scan in the group's dtypes.

    Daft's Parquet reader (it splits files, runs on every core and takes the projection)
    reads files whose footers hold every column in a type it knows; files with the
    string-view columns some Polars versions write, or lacking a column, go through
    :class:`_DeltaFiles` (pyarrow, one task per file).
    """
    arrow = _arrow_schema(group.schema)
    paths = [str(path) for path in files]
    if not paths or not all(_daft_reads(path, arrow) for path in paths):
        return _DeltaFiles(f"{group.name} {version}", paths, arrow).read()
    return daft.read_parquet(paths).select(
        *[col(f.name).cast(daft.DataType.from_arrow_type(f.type)) for f in arrow]
    )


def _daft_reads(path: str, schema: pa.Schema) -> bool:
    """Whether Daft's Parquet reader reads ``schema``'s columns of the file at ``path``."""
    stored = pq.read_schema(path)
    views = (pa.string_view(), pa.binary_view())
    return all(
        name in stored.names and stored.field(name).type not in views for name in schema.names
    )


class _FileTask(DataSourceTask):  # type: ignore[misc,unused-ignore]
    """One data file, read in record batches and cast to the group's dtypes."""

    def __init__(self, path: str, schema: pa.Schema) -> None:
        self._path = path
        self._schema = schema

    @property
    def schema(self) -> daft.Schema:
        return daft.Schema.from_pyarrow_schema(self._schema)

    async def read(self) -> AsyncIterator[RecordBatch]:
        """The file's rows, one Parquet row group's worth at a time."""
        for batch in pq.ParquetFile(self._path).iter_batches(columns=self._schema.names):
            yield RecordBatch.from_arrow_record_batches([batch.cast(self._schema)], self._schema)


class _DeltaFiles(DataSource):  # type: ignore[misc,unused-ignore]
    """A table version's data files as a Daft source (one task per file)."""

    def __init__(self, name: str, files: Sequence[str], schema: pa.Schema) -> None:
        self._name = name
        self._files = list(files)
        self._arrow = schema

    @property
    def name(self) -> str:
        return f"microfs:{self._name}"

    @property
    def schema(self) -> daft.Schema:
        return daft.Schema.from_pyarrow_schema(self._arrow)

    async def get_tasks(self, pushdowns: Pushdowns) -> AsyncIterator[DataSourceTask]:
        """One task per file, reading the projected columns and those the filters need."""
        wanted = self._arrow
        if pushdowns.columns is not None:
            needed = set(pushdowns.columns) | pushdowns.filter_required_column_names()
            wanted = pa.schema([f for f in self._arrow if f.name in needed])
        for path in self._files:
            yield _FileTask(path, wanted)


def frame(spec: FrameSpec) -> daft.DataFrame:
    """The training frame of ``spec`` as a lazy Daft DataFrame, equal to the Polars one.

    The label table's files are read in the order the Polars engine reads them; when their
    rows are proven to be in the output's order already (event time, then keys), the
    rows are numbered as read and put back in that order after the joins, which is one
    integer sort instead of a sort on time and keys.
    """
    resolved = spec.label.resolve_version(version=spec.label_version)
    files, order = spec.label.data_files_in_order(resolved)
    labels = _read_files(spec.label, f"v{resolved}", files).select(*spec.spine_columns)
    labels = _window(labels, spec.time, spec.start, spec.end)
    # (keys, event time) is unique in a label table: no two rows tie on the order.
    return _joined(spec, labels, keep_ties=False, labels_sorted=order == "keys")


def frame_from_spine(spec: FrameSpec, spine: daft.DataFrame) -> daft.DataFrame:
    """``spec``'s frame over a caller's spine, already shaped like the label rows.

    ``spine`` must hold ``spec.spine_columns`` (see
    :meth:`microfs._frame_plan.FramePlanner.spine_from`); rows that tie on the order keep
    the spine's order.
    """
    labels = _window(spine.select(*spec.spine_columns), spec.time, spec.start, spec.end)
    return _joined(spec, labels, keep_ties=True, labels_sorted=False)


def _joined(
    spec: FrameSpec, labels: daft.DataFrame, *, keep_ties: bool, labels_sorted: bool
) -> daft.DataFrame:
    rights: list[tuple[JoinSpec, daft.DataFrame | Broadcast]] = []
    for join, group, version in zip(spec.joins, spec.groups, spec.group_versions, strict=True):
        resolved = group.resolve_version(version=version)
        if group.extent(group.schema.names()[0], version=resolved).rows <= BROADCAST_MAX_ROWS:
            rights.append((join, Broadcast.of(join, group, resolved, spec.end)))
            continue
        right = read_table(group, resolved)
        if join.event_time is not None and spec.end is not None:
            right = right.where(col(join.event_time) < lit(spec.end))  # cannot match
        rights.append((join, right))
    joined = point_in_time_join(
        labels,
        label_time=spec.time,
        label_keys=spec.order[1:],
        joins=rights,
        keep_ties=keep_ties,
        labels_sorted=labels_sorted,
    )
    return cast_to(joined.select(*spec.columns), expected_schema(spec))


def point_in_time_join(
    labels: daft.DataFrame,
    *,
    label_time: str,
    label_keys: Sequence[str],
    joins: Sequence[tuple[JoinSpec, daft.DataFrame | Broadcast]],
    keep_ties: bool = True,
    labels_sorted: bool = False,
) -> daft.DataFrame:
    """Join feature rows onto the label rows as of each label's event time, on Daft.

    The rules of :func:`microfs.pit.point_in_time_join`: one row per label row, the label
    columns then each join's features under their output names, ordered by ``label_time``
    then ``label_keys`` ascending, nulls first.

    Args:
        labels: The label rows (the spine).
        label_time: Their event-time column.
        label_keys: Their key columns: the output's order after time.
        joins: Each join's rule and its rows: a Daft frame (with the join's key, event-time
            and feature columns under their own names), joined by Daft, or a
            :class:`Broadcast` of them, joined to each batch of labels by the Polars
            engine's join (all broadcast joins in one pass).
        keep_ties: Keep rows that tie on time and keys in ``labels``' order (numbers the
            rows first); without it their order is Daft's.
        labels_sorted: ``labels`` come in the output's order already (time, then keys, as
            proven for a stored label table): the rows are numbered as they come and put
            back in that order after the joins, instead of sorted on time and keys (or
            kept in it, where :func:`_keeps_order` says the runner does).

    Returns:
        The lazy joined frame.

    Example:
        >>> from datetime import datetime, timezone
        >>> at = lambda day: datetime(2024, 1, day, tzinfo=timezone.utc)
        >>> labels = daft.from_pydict({"user_id": [1, 1, 2], "t": [at(3), at(1), at(3)]})
        >>> spend = daft.from_pydict({"user_id": [1, 1], "ts": [at(1), at(2)], "x": [5.0, 7.0]})
        >>> rule = JoinSpec(("user_id",), "ts", ("x",), ("x",), None)
        >>> out = point_in_time_join(
        ...     labels, label_time="t", label_keys=["user_id"], joins=[(rule, spend)]
        ... )
        >>> out.to_pydict()["x"]
        [5.0, 7.0, None]
    """
    columns = [*labels.column_names, *(n for join, _ in joins for n in join.output_names)]
    taken = set(columns)
    row = _unused(_ROW, taken)
    broadcast = [rows for join, rows in joins if join.features and isinstance(rows, Broadcast)]
    if labels_sorted and _keeps_order(joins):  # the rows come out in the labels' order
        out = _broadcast_join(labels, label_time, broadcast) if broadcast else labels
        return out.select(*columns)
    numbered = keep_ties or labels_sorted
    out = labels.with_column(row, monotonically_increasing_id()) if numbered else labels
    if broadcast:
        out = _broadcast_join(out, label_time, broadcast)
    for number, (join, rows) in enumerate(joins):
        if not join.features or isinstance(rows, Broadcast):
            continue
        features = [col(f).alias(n) for f, n in zip(join.features, join.output_names, strict=True)]
        if join.event_time is None:
            right = rows.select(*[col(k) for k in join.on], *features)
            out = out.join(right, on=list(join.on), how="left")
            continue
        time = _unused(f"{_TIME_PREFIX}{number}", taken)
        right = rows.select(*[col(k) for k in join.on], col(join.event_time).alias(time), *features)
        out = out.join_asof(
            right, left_on=label_time, right_on=time, by=list(join.on), strategy="backward"
        )
        if join.max_age is not None:
            fresh = (col(time) >= col(label_time) - lit(join.max_age)).fill_null(False)
            out = out.with_columns({n: when(fresh, col(n)) for n in join.output_names})
        out = out.exclude(time)
    if labels_sorted:
        return out.sort(row).select(*columns)
    order = [label_time, *label_keys, *([row] if keep_ties else [])]
    return _nulls_first(out, order).select(*columns)


def _keeps_order(joins: Sequence[tuple[JoinSpec, daft.DataFrame | Broadcast]]) -> bool:
    """Whether the joined rows come out in the labels' order without a sort.

    So on Daft's native runner with ``maintain_order`` (its default), when every join
    that brings features is broadcast: the plan is then a scan and batch functions, which
    that runner runs in order. Daft's own joins, or a Ray cluster's partitions, do not
    keep it, so the rows are numbered and sorted back instead. Decided when the plan is
    built, for the runner current then.
    """
    if get_or_infer_runner_type() != "native":
        return False
    if not daft.context.get_context().daft_execution_config.maintain_order:
        return False
    return all(isinstance(rows, Broadcast) for join, rows in joins if join.features)


@dataclass(frozen=True)
class Broadcast:
    """A joined group's rows for the workers to read and hold, and the join's rule.

    Plain data (file paths, names, dtypes), sent with the plan to every worker; each
    process reads the rows once (see :func:`_held_rows`) and joins every label batch
    to them with :func:`microfs.pit.point_in_time_join`, the Polars engine's own join.

    Attributes:
        files: The pinned table version's data files (every node must see them).
        schema: The dtypes of the columns the join reads, in the group's dtypes.
        appended: The group gained columns after some files were written (those files
            lack them: read as nulls).
        on: The join's keys.
        event_time: The group's event time, or None for a static group.
        features: The group's columns brought in.
        prefix: Put in front of each feature's name in the output.
        max_age: See :class:`~microfs._frame_spec.JoinSpec`.
        end: Rows at or after it cannot match a label in the window (None: no end).
    """

    files: tuple[str, ...]
    schema: tuple[tuple[str, pl.DataType], ...]
    appended: bool
    on: tuple[str, ...]
    event_time: str | None
    features: tuple[str, ...]
    prefix: str
    max_age: timedelta | None
    end: datetime | None

    @classmethod
    def of(
        cls, join: JoinSpec, group: FeatureGroup, version: int, end: datetime | None
    ) -> Broadcast:
        """The rows ``join`` reads from ``group``'s table version ``version``."""
        own = (*join.on, *([join.event_time] if join.event_time else []), *join.features)
        return cls(
            files=tuple(str(path) for path in group.data_files(version)),
            schema=tuple((name, group.schema[name]) for name in dict.fromkeys(own)),
            appended=bool(group.definition.appended),
            on=join.on,
            event_time=join.event_time,
            features=join.features,
            prefix=join.prefix,
            max_age=join.max_age,
            end=end if join.event_time is not None else None,
        )

    def plan(self, rows: pl.DataFrame) -> JoinPlan:
        """The Polars join of these rows, read into memory (:func:`_held_rows`)."""
        return JoinPlan(
            frame=rows.lazy(),
            on=self.on,
            event_time=self.event_time,
            features=self.features,
            prefix=self.prefix,
            max_age=self.max_age,
            sorted_by_time=self.event_time is not None,
        )


_HELD: OrderedDict[tuple[Any, ...], pl.DataFrame] = OrderedDict()
_HELD_MAX = 8
"""The held groups a process keeps (the most recently used): a few frames' worth."""
_PREPARED: OrderedDict[tuple[Any, ...], PreparedRows | None] = OrderedDict()
_LOCK = threading.Lock()


def _held_rows(rows: Broadcast) -> pl.DataFrame:
    """``rows``' rows in memory, read once per process and kept for the next batches.

    Timed rows are kept sorted by event time then keys (so no batch's join sorts them
    again) and without those at or after ``end``. A table version's files never change,
    so the last few reads are kept, keyed by files, columns and end. Called under
    ``_LOCK``.
    """
    key = (rows.files, rows.schema, rows.appended, rows.event_time, rows.on, rows.end)
    held = _HELD.get(key)
    if held is not None:
        _HELD.move_to_end(key)
        return held
    schema = pl.Schema(dict(rows.schema))
    if not rows.files:
        frame = pl.LazyFrame(schema=schema)
    elif rows.appended:
        frame = pl.scan_parquet(
            list(rows.files), schema=schema, missing_columns="insert", extra_columns="ignore"
        )
    else:
        frame = pl.scan_parquet(list(rows.files)).select(schema.names()).cast(schema)
    if rows.event_time is not None:
        if rows.end is not None:
            frame = frame.filter(pl.col(rows.event_time) < rows.end)
        frame = frame.sort([rows.event_time, *rows.on], maintain_order=True)
    held = frame.collect(engine="in-memory")
    _HELD[key] = held
    while len(_HELD) > _HELD_MAX:
        _HELD.popitem(last=False)
    return held


def _prepared_rows(rows: Broadcast, labels: pl.Schema, label_time: str) -> PreparedRows | None:
    """``rows``' held rows grouped by key for the compiled as-of kernel, once per process.

    None where the kernel does not apply (see :func:`microfs.pit.prepare_rows`): a static
    group, several or non-integer keys. Each batch matches through a restarted copy of
    the cursors (:meth:`~microfs._asof_kernel.Cursors.restarted`), so batches may run in
    any order, on any thread. Called under ``_LOCK``.
    """
    dtypes = tuple((name, labels[name]) for name in (*rows.on, label_time))  # batch inputs
    key = (rows.files, rows.schema, rows.appended, rows.event_time, rows.on, rows.end, dtypes)
    if key in _PREPARED:
        _PREPARED.move_to_end(key)
        return _PREPARED[key]
    held = _held_rows(rows)
    ready = None if rows.event_time is None else prepare_rows(rows.plan(held), labels, label_time)
    _PREPARED[key] = ready
    while len(_PREPARED) > _HELD_MAX:
        _PREPARED.popitem(last=False)
    return ready


def _broadcast_join(
    labels: daft.DataFrame, label_time: str, joins: Sequence[Broadcast]
) -> daft.DataFrame:
    """``labels`` with the features of the broadcast ``joins``, each batch joined alone.

    A batch function (plain data and this module's functions, sent to every worker) joins
    each batch by :func:`_join_batch`; its output is a struct column unnested after it
    (unnested by the function itself, ``unnest=True``, its batches were cut to Daft's
    default morsel size whatever ``batch_size`` said).
    """
    schema = labels.schema()
    label_dtypes = dict(pl.DataFrame(schema.to_pyarrow_schema().empty_table()).schema)
    inputs = list(dict.fromkeys([label_time, *(k for join in joins for k in join.on)]))
    outputs: dict[str, pl.DataType] = {}
    for join in joins:
        dtypes = dict(join.schema)
        for feature in join.features:
            outputs[join.prefix + feature] = dtypes[feature]
    struct = _arrow_schema(outputs)
    dtypes = {name: label_dtypes[name] for name in inputs}
    joined = tuple(joins)

    @daft.func.batch(  # type: ignore[untyped-decorator,unused-ignore]
        return_dtype=daft.DataType.from_arrow_type(pa.struct(list(struct))),
        batch_size=_BATCH_ROWS,
    )
    def features(*columns: daft.Series) -> daft.Series:
        arrays = [column.to_arrow() for column in columns]
        return daft.Series.from_arrow(_join_batch(label_time, dtypes, joined, arrays, struct))

    names = labels.column_names
    packed = _unused("__microfs_features", {*names, *struct.names})
    batches = labels.into_batches(_BATCH_ROWS)
    out = batches.select(*names, features(*[col(c) for c in inputs]).alias(packed))
    return out.select(*names, col(packed).unnest())


def _join_batch(
    label_time: str,
    dtypes: Mapping[str, pl.DataType],
    joins: Sequence[Broadcast],
    columns: Sequence[pa.Array],
    struct: pa.Schema,
) -> pa.StructArray:
    """One batch of labels (``dtypes``' columns) joined to the held rows, in its order.

    A batch already in label-time order (as a label table proven in order gives them, on
    any runner) is joined as it is and keeps its order (no sort, none to undo), and each
    timed join on one integer key runs the compiled as-of kernel over the held rows
    grouped once per process (:func:`_prepared_rows`). Otherwise the batch is sorted by
    time for Polars' ``join_asof`` and put back in its order after.
    """
    labels = pl.DataFrame(
        [
            pl.Series(name, column).cast(dtype)
            for (name, dtype), column in zip(dtypes.items(), columns, strict=True)
        ]
    )
    row = _unused(_BATCH_ROW, {*dtypes, *struct.names})
    times = labels.get_column(label_time)
    in_order = not times.null_count() and times.is_sorted()
    plans: list[JoinPlan] = []
    with _LOCK:
        for join in joins:
            plan = join.plan(_held_rows(join))
            ready = _prepared_rows(join, labels.schema, label_time) if in_order else None
            if ready is not None:
                restarted = PreparedRows(ready.cursors.restarted(), ready.features)
                plan = dataclasses.replace(plan, prepared=restarted)
            plans.append(plan)
    joined = polars_point_in_time_join(
        labels.lazy().with_row_index(row),
        label_time=label_time,
        label_keys=[row],
        joins=plans,
        labels_order="keys" if in_order else "none",
    )
    if not in_order:
        joined = joined.sort(row)
    out = joined.select(struct.names).collect(engine="in-memory")
    arrays = [out.get_column(name).to_arrow() for name in struct.names]
    return pa.StructArray.from_arrays(
        [array.cast(field.type) for array, field in zip(arrays, struct, strict=True)],
        fields=list(struct),
    )


def _nulls_first(frame: daft.DataFrame, columns: Sequence[str]) -> daft.DataFrame:
    """``frame`` sorted by ``columns`` ascending, nulls first, on sort keys free of nulls.

    Each column is sorted as (is not null, value with nulls filled), put in private
    columns (Daft on Ray needs sort keys with distinct names) that the caller's final
    ``select`` drops: Daft's sort on a Ray cluster placed null keys after others when the
    rows spanned several partitions, although ``nulls_first`` was asked for.
    """
    schema = frame.schema()
    taken = set(frame.column_names)
    keys: dict[str, daft.Expression] = {}
    for number, name in enumerate(columns):
        filler = lit(0).cast(schema[name].dtype)
        keys[_unused(f"__microfs_set_{number}", taken)] = col(name).not_null()
        keys[_unused(f"__microfs_key_{number}", taken)] = col(name).fill_null(filler)
    return frame.with_columns(keys).sort(list(keys))


def batch_data(
    frame: daft.DataFrame,
    *,
    keys: Sequence[str],
    feature_schema: Mapping[str, pl.DataType],
    fitted: FittedParams,
) -> daft.DataFrame:
    """``keys`` and ``X``'s columns: the features transformed with the fitted parameters.

    The transformations are the Polars expressions of
    :func:`~microfs.transformations.apply_transforms`, applied to each batch of rows.
    """
    outputs = output_schema(feature_schema, fitted)
    if not fitted.transforms:
        return frame.select(*keys, *outputs)
    features = list(feature_schema)
    dtypes = dict(feature_schema)
    struct = _arrow_schema(outputs)
    params = fitted.to_dict()  # plain data: sent to Ray workers with the function

    @daft.func.batch(  # type: ignore[untyped-decorator,unused-ignore]
        return_dtype=daft.DataType.from_arrow_type(pa.struct(list(struct))), unnest=True
    )
    def transformed(*columns: daft.Series) -> daft.Series:
        rows = pl.DataFrame(
            [
                pl.Series(name, column.to_arrow()).cast(dtypes[name])
                for name, column in zip(features, columns, strict=True)
            ]
        )
        out = (
            apply_transforms(rows.lazy(), features, FittedParams.from_dict(params))
            .select(list(outputs))
            .collect(engine="in-memory")
        )
        arrays = [out.get_column(name).to_arrow() for name in outputs]
        return daft.Series.from_arrow(
            pa.StructArray.from_arrays(
                [a.cast(f.type) for a, f in zip(arrays, struct, strict=True)], fields=list(struct)
            )
        )

    return frame.select(*keys, transformed(*[col(c) for c in features]))


def write_frame(frame: daft.DataFrame, schema: pl.Schema, path: str | Path) -> int:
    """Write ``frame`` to one Parquet file in its row order; the file appears when complete.

    Batches stream from the runner to this process in order and are appended one by one,
    so memory here holds a few batches. Returns the number of rows written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    arrow = _arrow_schema(schema)
    rows = 0
    try:
        with frame_writer(partial, arrow) as out:
            for batch in frame.to_arrow_iter():
                if batch.num_rows:
                    out.write_table(pa.Table.from_batches([batch]).cast(arrow))
                    rows += batch.num_rows
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return rows


def expected_schema(spec: FrameSpec) -> pl.Schema:
    """The dtypes of ``spec``'s frame, as the Polars engine gives them."""
    dtypes: dict[str, pl.DataType] = {c: spec.label.schema[c] for c in spec.spine_columns}
    for join, group in zip(spec.joins, spec.groups, strict=True):
        for feature, name in zip(join.features, join.output_names, strict=True):
            dtypes[name] = group.schema[feature]
    return pl.Schema({c: dtypes[c] for c in spec.columns})


def cast_to(frame: daft.DataFrame, schema: Mapping[str, pl.DataType]) -> daft.DataFrame:
    """``frame``'s columns (named as in ``schema``, in its order) cast to its dtypes."""
    arrow = _arrow_schema(schema)
    return frame.select(*[col(f.name).cast(daft.DataType.from_arrow_type(f.type)) for f in arrow])


def collect(frame: daft.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """Run ``frame`` on Daft's runner and give its rows as a Polars frame of ``schema``."""
    out = pl.DataFrame(frame.to_arrow())
    return out.cast(pl.Schema(schema)) if out.width else pl.DataFrame(schema=schema)


def from_polars(frame: pl.LazyFrame, schema: pl.Schema) -> daft.DataFrame:
    """A frame the Polars planner joined, run here and handed to Daft with ``schema``.

    For the known-at timeline: its joins read each group's commit log into segments of
    served rows, which the Polars planner builds (see
    :meth:`~microfs._frame_plan.FramePlanner.plan`); Daft then runs what follows.
    """
    rows = frame.collect(engine="in-memory")
    return cast_to(daft.from_arrow(rows.to_arrow(compat_level=pl.CompatLevel.oldest())), schema)


def polars_spine(spine: object) -> pl.LazyFrame:
    """A caller's spine as Polars rows (a Daft spine is run and collected here)."""
    if isinstance(spine, daft.DataFrame):
        return pl.DataFrame(spine.to_arrow()).lazy()
    if isinstance(spine, pl.LazyFrame):
        return spine
    return to_polars(spine).lazy()


def spine_rows(
    planner: FramePlanner, spine: pl.LazyFrame | pl.DataFrame | daft.DataFrame
) -> daft.DataFrame:
    """A caller's spine shaped like the label rows, by the Polars planner's rules.

    :meth:`~microfs._frame_plan.FramePlanner.spine_from` decides which columns the spine
    needs, their dtypes and which are null; a Polars spine goes through it whole, a Daft
    spine gets the columns and dtypes it gives for the spine's schema.
    """
    if not isinstance(spine, daft.DataFrame):
        return daft.from_arrow(planner.spine_from(spine, None, None).frame.collect().to_arrow())
    empty = pl.DataFrame(spine.schema().to_pyarrow_schema().empty_table())
    shape = planner.spine_from(empty, None, None).frame.collect_schema()
    present = set(spine.column_names)
    return spine.select(
        *[
            (col(f.name) if f.name in present else lit(None))
            .cast(daft.DataType.from_arrow_type(f.type))
            .alias(f.name)
            for f in _arrow_schema(shape)
        ]
    )


def _window(
    frame: daft.DataFrame, column: str, start: datetime | None, end: datetime | None
) -> daft.DataFrame:
    """Rows with ``start <= column < end`` (either bound may be None)."""
    if start is not None:
        frame = frame.where(col(column) >= lit(start))
    if end is not None:
        frame = frame.where(col(column) < lit(end))
    return frame


def _arrow_schema(schema: Mapping[str, Any]) -> pa.Schema:
    """The Arrow schema of ``schema``'s Polars dtypes (large strings, which Daft reads)."""
    return pl.DataFrame(schema=dict(schema)).to_arrow(compat_level=pl.CompatLevel.oldest()).schema


def _unused(name: str, taken: set[str]) -> str:
    """``name``, with underscores put in front until no column in ``taken`` has it."""
    while name in taken:
        name = "_" + name
    return name
