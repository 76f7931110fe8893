"""Feature groups: versioned Delta tables with upserts, time travel and a strict write path.

This is the one module that talks to ``deltalake``. A feature group version is one Delta
table under ``<lake>/feature_groups/<name>/v<version>/``; any Delta reader can read it as
a plain table.

An insert is one Delta commit, all or nothing, with upsert semantics on (primary keys,
event time). When the batch provably cannot overlap stored rows (some key column's value
range in the batch is disjoint from the stored range, e.g. every event time is later
than the stored maximum), it is a plain append. Otherwise the data files the batch's key
ranges reach are read, and those holding a matched row are written again with the batch
applied, in one commit that removes them (:meth:`FeatureGroup._rewrite`); when those files
hold too many rows to read at once, it is a deltalake merge whose predicate carries the
batch's key ranges, so Delta prunes the files that cannot hold a match.

Writers of one group on one machine take turns through a lock file (``filelock``, which
works alike on Linux, macOS and Windows); a commit that still conflicts (another Delta
writer) is retried with jittered backoff. Vacuum reads which table versions training
datasets pin while holding that lock, so a pin written under :func:`writers_held` is
either seen by a vacuum or written after it finished.

Rows leave a table through :meth:`FeatureGroup.delete_rows` (one commit), and columns join
it through :meth:`FeatureGroup.append_features` (Delta schema evolution: earlier rows read
null).

Errors from below (deltalake, pyarrow, Polars, and the panics of their Rust code, which
are BaseExceptions) do not reach the caller of a public method raw: they become a
:class:`LakeError` naming the group and, where one is found, the damaged file.

Data quality lives beside the table, in ``<lake>/feature_groups/<name>/v<version>.quality/``:
``statistics/<table version>.json`` (written once per table version: by the commit that
made it when that is cheap, else by the first request or the vacuum that removes the
version's data; see :meth:`FeatureGroup.statistics`) and ``rejects/``, the Delta table of
rows the ``quarantine`` policy refused. Each validated commit records its validation
summary in its Delta commit metadata (``microfs.validation``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import inspect
import json
import math
import os
import random
import shutil
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal, ParamSpec, Protocol, TypeVar
from urllib.parse import unquote

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.schema import Field
from deltalake.transaction import AddAction, RemoveAction
from filelock import FileLock

from microfs import _commit_log
from microfs import statistics as stats
from microfs.errors import (
    CommitConflictError,
    DefinitionError,
    LakeError,
    MicroFSError,
    NotFoundError,
    SchemaError,
    ValidationError,
)
from microfs.expectations import (
    REASON,
    Expectation,
    ValidationReport,
    ValidationWarning,
    evaluate,
    split,
)
from microfs.group_definition import FeatureGroupDefinition
from microfs.known import COMMIT_TIME, SUPERSEDED_AT
from microfs.pit import RowOrder, order_spine
from microfs.progress import Progress, track
from microfs.schema import (
    DATETIME,
    TimeLike,
    aware_utc,
    normalize_schema,
    polars_dtype,
    prepare_batch,
    to_polars,
)

__all__ = [
    "Commit",
    "CompactResult",
    "Committed",
    "DeleteResult",
    "Extent",
    "FeatureGroup",
    "FeatureGroupDefinition",
    "InsertResult",
    "SchemaChange",
    "VacuumResult",
    "writers_held",
]

_LARGE_INSERT = 1_000_000  # rows from which progress=True draws a bar
_MAX_ATTEMPTS = 8
_BACKOFF_SECONDS = 0.05
_DEFAULT_RETENTION = timedelta(days=7)
_STATS_SLACK = timedelta(milliseconds=1)
_MAX_FOOTERS = 8  # files whose Parquet footers an insert may read to prove an append
_REWRITE_MAX_ROWS = 4_000_000
"""An upsert whose files in reach hold more rows than this is left to deltalake's merge,
which streams them; up to it they are read into memory and rewritten here (see
:meth:`FeatureGroup._rewrite`)."""
_FILE = "__microfs_file"
_REWRITE_KEY = "microfs.rewrite"
"""Names the commit of a rewrite in :meth:`FeatureGroup.history`: an upsert's ``"MERGE"``,
a compaction's ``"OPTIMIZE"`` (the names deltalake gives its own)."""
COMPACT_TARGET_BYTES = 100 * 2**20
"""Files smaller than this are joined by :meth:`FeatureGroup.compact`, up to this size in
all (deltalake's default target file size)."""
_SCRATCH = ".rewrite-"  # a rewrite's scratch table: ``.<table folder>.rewrite-<hex>``
_KEPT_ORDERS = 64  # proven row orders remembered on disk per table
_TABLES_KEPT = 4  # table versions kept open per group (see FeatureGroup._table)
_VALIDATION_KEY = "microfs.validation"
_PASS_FACTOR = 2
"""A commit reads its new version back for statistics when the version holds at most this
many times the rows the commit wrote, so that pass costs about what the write did."""
_HISTORY_SCHEMA = pl.Schema(
    {
        "committed_at": DATETIME,
        "table_version": pl.Int64(),
        "policy": pl.String(),
        "passed": pl.Boolean(),
        "rows": pl.Int64(),
        "rows_rejected": pl.Int64(),
        "failed": pl.String(),
    }
)
_RANGE_TYPES = (
    "int8",
    "int16",
    "int32",
    "int64",
    "date",
    "datetime",
)


@dataclass(frozen=True)
class InsertResult:
    """What one insert did.

    Attributes:
        table_version: the Delta table version after the insert (``version`` is an alias
            kept for the seed's code: it is never the group's definition version).
        rows_inserted: rows appended (new key and event time).
        rows_updated: stored rows replaced (same key and event time).
        mode: ``"append"`` (fast path), ``"merge"`` (upsert) or ``"noop"`` (empty batch).
        validation: the report of the group's expectations on the batch (None when the
            group has none).
        rows_rejected: rows the ``quarantine`` policy put in the rejects table.
    """

    table_version: int
    rows_inserted: int
    rows_updated: int
    mode: Literal["append", "merge", "noop"]
    validation: ValidationReport | None = None
    rows_rejected: int = 0

    @property
    def version(self) -> int:
        """The Delta table version after the insert (an alias of ``table_version``)."""
        return self.table_version


@dataclass(frozen=True)
class DeleteResult:
    """What :meth:`FeatureGroup.delete_rows` did.

    Attributes:
        table_version: the Delta table version after the delete.
        rows_deleted: stored rows removed.
        mode: ``"delete"`` (a commit was made) or ``"noop"`` (nothing matched, no commit).
    """

    table_version: int
    rows_deleted: int
    mode: Literal["delete", "noop"]


@dataclass(frozen=True)
class SchemaChange:
    """What :meth:`FeatureGroup.append_features` did.

    Attributes:
        table_version: the Delta table version after the change.
        added: the columns added and their canonical types.
        mode: always ``"schema"``: readers built on the old columns must rebuild.
        validation: the report of the added columns' expectations on the stored rows,
            which read null in them (None when none were given).
        rows_rejected: stored rows the ``quarantine`` policy moved to the rejects table.
    """

    table_version: int
    added: Mapping[str, str]
    mode: Literal["schema"] = "schema"
    validation: ValidationReport | None = None
    rows_rejected: int = 0


class Committed(Protocol):
    """What commit listeners are told: the new table version and what kind of commit."""

    @property
    def table_version(self) -> int:
        """The Delta table version after the commit."""

    @property
    def mode(self) -> str:
        """``"append"``, ``"merge"``, ``"delete"``, ``"schema"`` or ``"noop"``."""


@dataclass(frozen=True)
class Extent:
    """A table version's row count and one column's range, read from the Delta log alone.

    Attributes:
        rows: Rows in the table version.
        low: The column's least value, or None where the log keeps no statistics for it.
        high: Its greatest value, or None likewise.
    """

    rows: int
    low: Any
    high: Any


@dataclass(frozen=True)
class Commit:
    """One entry of a feature group's history: version, time, operation, rows.

    ``operation`` is Delta's name for the commit (``"WRITE"``, ``"MERGE"``, ...), except
    that an upsert is always ``"MERGE"``: one that rewrote its files here is a Delta
    ``"WRITE"`` that removes files, and is named for what it did.
    """

    version: int
    timestamp: datetime
    operation: str
    rows: int | None

    @property
    def time(self) -> datetime:
        """When the commit was made (the same as ``timestamp``)."""
        return self.timestamp


@dataclass(frozen=True)
class CompactResult:
    """What a compaction did (``table_version``: the Delta table version after it)."""

    table_version: int
    files_removed: int
    files_added: int

    @property
    def version(self) -> int:
        """The Delta table version after the compaction (an alias of ``table_version``)."""
        return self.table_version


@dataclass(frozen=True)
class VacuumResult:
    """What a vacuum deleted (or would delete, for a dry run)."""

    files: tuple[str, ...]
    dry_run: bool
    kept_versions: tuple[int, ...]
    broken: tuple[str, ...] = ()
    superseded_pruned: int = 0


_P = ParamSpec("_P")
_R = TypeVar("_R")
_PASS_THROUGH = (MicroFSError, CommitFailedError, KeyboardInterrupt, SystemExit, MemoryError)


def _binds(method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether ``method`` takes these arguments (a call that does not is the caller's error).

    >>> _binds(lambda a, *, b=1: a, (1,), {"c": 2})
    False
    """
    try:
        inspect.signature(method).bind(*args, **kwargs)
    except TypeError:
        return False
    return True


def _boundary(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Re-raise what a storage call raises from below as a :class:`LakeError`.

    Panics of deltalake's and Polars' Rust code arrive as ``PanicException``, a
    BaseException, so everything but our errors and the interpreter's own is caught.
    """

    @functools.wraps(method)
    def wrapped(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except _PASS_THROUGH:
            raise
        except BaseException as exc:
            if isinstance(exc, TypeError) and not _binds(method, args, kwargs):
                raise  # the call itself is wrong, not the lake
            group = args[0]
            assert isinstance(group, FeatureGroup)
            raise group.storage_error(exc) from exc

    return wrapped


CommitListener = Callable[["FeatureGroup", Committed], None]
PinsProvider = Callable[[], Mapping[int, Sequence[str]]]
SchemaRecorder = Callable[[Mapping[str, str], Sequence[Mapping[str, Any]]], FeatureGroupDefinition]
"""Records columns (and their expectations, as dicts) added to a group's definition and
returns the definition with them."""
FirstSchema = Callable[[Mapping[str, str]], "FeatureGroup"]
"""Defines a group whose schema was left to its first insert; returns the stored group."""
HistoryPinsProvider = Callable[[], Sequence[str]]


class FeatureGroup:
    """One version of a feature group: its definition and its Delta table.

    Get one from :meth:`microfs.FeatureStore.create_feature_group` or
    :meth:`microfs.FeatureStore.get_feature_group`.
    """

    def __init__(
        self,
        definition: FeatureGroupDefinition,
        path: Path,
        *,
        on_commit: CommitListener | None = None,
        pins: PinsProvider | None = None,
        record_schema: SchemaRecorder | None = None,
        first_schema: FirstSchema | None = None,
        lake: Path | None = None,
        history_pins: HistoryPinsProvider | None = None,
    ) -> None:
        self.definition = definition
        self.path = path
        self._on_commit = on_commit
        self._pins = pins
        self._record_schema = record_schema
        self._first_schema = first_schema  # set while the first insert must define the schema
        self._lake = lake
        self._history_pins = history_pins
        self.commit_clock: _commit_log.Clock = _commit_log.system_clock
        """Where commit times come from (the system clock; a replay test sets its own)."""
        self._issued: int | None = None
        self._row_order: dict[int, RowOrder] = {}
        self._file_actions: dict[int, pl.DataFrame] = {}
        self._tables: dict[int, DeltaTable] = {}  # the last few versions opened
        self._tables_lock = threading.Lock()

    # -- definition --------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The group's name."""
        return self.definition.name

    @property
    def version(self) -> int:
        """The definition version (not the Delta table version)."""
        return self.definition.version

    @property
    def primary_keys(self) -> list[str]:
        """Primary key columns."""
        return list(self.definition.primary_keys)

    @property
    def event_time(self) -> str | None:
        """The event-time column, or None for a static group."""
        return self.definition.event_time

    @property
    def online_keys(self) -> list[str] | None:
        """Columns the online store serves by, or None when the group is offline only."""
        keys = self.definition.online_keys
        return list(keys) if keys is not None else None

    @property
    def features(self) -> list[str]:
        """Columns that are neither primary keys nor the event time."""
        return list(self.definition.features)

    @property
    def schema(self) -> pl.Schema:
        """The stored Polars schema."""
        return self.definition.polars_schema()

    @property
    def description(self) -> str:
        """Free text describing the group."""
        return self.definition.description

    def __repr__(self) -> str:
        return f"FeatureGroup(name={self.name!r}, version={self.version})"

    # -- Delta table ---------------------------------------------------------------------

    @_boundary
    def create_table(self) -> None:
        """Create the empty Delta table (table version 0) unless it exists."""
        if DeltaTable.is_deltatable(str(self.path)):
            return
        self.path.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(DeltaError):
            DeltaTable.create(
                str(self.path),
                pl.Schema({**self.schema, COMMIT_TIME: DATETIME}).to_arrow(),
                mode="ignore",
                name=self.name,
                description=self.description or None,
                commit_properties=CommitProperties(custom_metadata={"microfs.operation": "create"}),
            )

    def _table(self, version: int | None = None) -> DeltaTable:
        """The table at ``version``, or the latest (opened afresh: writers move it on).

        A committed version never changes, so the last :data:`_TABLES_KEPT` versions
        opened are kept and given again (a plan asks for each group's version several
        times). A table given for the latest version is never kept: writers commit
        through it, which moves it to their new version.
        """
        if version is None:
            return self._open_table(None)
        kept = self._tables.get(version)
        return kept if kept is not None else self._keep(self._open_table(version))

    def _keep(self, table: DeltaTable) -> DeltaTable:
        """Keep ``table`` (read only from now on) as its version's, the oldest kept leaving."""
        with self._tables_lock:
            version = table.version()
            self._tables.pop(version, None)
            self._tables[version] = table
            while len(self._tables) > _TABLES_KEPT:
                del self._tables[next(iter(self._tables))]
        return table

    def _open_table(self, version: int | None) -> DeltaTable:
        if self._first_schema is not None:
            raise NotFoundError(
                f"feature group {self.name!r} has no schema and no table yet: its first insert "
                "defines them; insert a batch first"
            )
        try:
            return DeltaTable(str(self.path), version=version)
        except DeltaError as exc:
            if not (self.path / "_delta_log").is_dir():
                # the definition was written and the process died before the table was:
                # finish creating it (an empty table is all it could have held)
                self.create_table()
                if version in (None, 0):
                    return DeltaTable(str(self.path), version=version)
            elif version is None or not any((self.path / "_delta_log").glob("*.json")):
                raise self.storage_error(exc) from exc
            if version is not None:
                latest = self.table_version()
                raise NotFoundError(
                    f"feature group {self.name!r} has no table version {version}; versions "
                    f"0..{latest} exist"
                ) from exc
            raise NotFoundError(
                f"the Delta table of feature group {self.name!r} is missing at {self.path}"
                + (f" (lake {str(self._lake)!r})" if self._lake is not None else "")
            ) from exc

    def storage_error(self, exc: BaseException) -> LakeError:
        """A :class:`LakeError` for an error from below, naming the damaged files if any."""
        damaged = self._damaged_files()
        where = f"; damaged file(s): {', '.join(damaged)}" if damaged else ""
        text = str(exc).strip()
        detail = text.splitlines()[0] if text else type(exc).__name__
        return LakeError(
            f"feature group {self.name!r} (table {self.path}) could not be read or written: "
            f"{type(exc).__name__}: {detail[:300]}{where}; restore the damaged files from a "
            "copy of the lake"
        )

    def _damaged_files(self) -> list[str]:
        """Data and log files of the latest table version that are unreadable (best effort)."""
        found: list[str] = []
        log = self.path / "_delta_log"
        for entry in sorted(log.glob("*.json")) if log.is_dir() else []:
            try:
                for line in entry.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        json.loads(line)
            except (OSError, ValueError):
                found.append(str(entry))
        if found:
            return found
        try:
            actions = _add_actions(DeltaTable(str(self.path)))
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            return found
        return self._wrong_sizes(actions)

    def _wrong_sizes(self, actions: pl.DataFrame) -> list[str]:
        """Data files whose size on disk differs from what the Delta log recorded."""
        if actions.height == 0 or "size_bytes" not in actions.columns:
            return []
        wrong = []
        for path, size in actions.select("path", "size_bytes").iter_rows():
            file = self.path / unquote(path)
            with contextlib.suppress(FileNotFoundError):
                if file.stat().st_size != size:
                    wrong.append(str(file))
        return wrong

    def _check_files(self, resolved: int) -> None:
        """Raise if a data file of the table version is gone (vacuumed) or damaged."""
        actions = self._files(resolved)
        if actions.height == 0:
            return
        missing = [p for p in actions["path"] if not (self.path / unquote(p)).exists()]
        if missing:
            raise NotFoundError(
                f"table version {resolved} of feature group {self.name!r} was vacuumed "
                f"({len(missing)} data file(s) are gone); read a later version"
            )
        wrong = self._wrong_sizes(actions)
        if wrong:
            raise LakeError(
                f"feature group {self.name!r} table version {resolved}: data file(s) "
                f"{', '.join(wrong)} are not the size the Delta log recorded (truncated or "
                "overwritten); restore them from a copy of the lake"
            )

    @_boundary
    def table_version(self) -> int:
        """The latest Delta table version."""
        # kept for reads of this version: nothing commits through it
        version: int = self._keep(self._open_table(None)).version()
        return version

    # -- writing ---------------------------------------------------------------------------

    @_boundary
    def insert(self, df: object, *, progress: Progress = False) -> InsertResult:
        """Upsert a batch on (primary keys, event time) in one Delta commit.

        Rows whose key and event time are stored already replace the stored rows; the
        others are appended. Takes a Polars, pandas or Arrow table; bad input raises a
        :class:`microfs.SchemaError` (or subclass) and writes nothing. A group created
        without a schema takes the batch's schema on its first insert.

        The group's expectations are checked first, with its validation policy: a
        ``strict`` group raises :class:`microfs.ValidationError` and writes nothing,
        ``warn`` writes the batch with a :class:`microfs.ValidationWarning`,
        ``quarantine`` writes the passing rows and appends the failing ones, with a
        ``reason`` column, to the rejects table (:meth:`rejects`). The new table version's
        statistics are stored with it when that is cheap (see :meth:`statistics`).

        Args:
            df: The batch.
            progress: True draws a bar for batches of 1M rows or more (check, order,
                write); a callable gets a :class:`microfs.progress.ProgressEvent` per step.
        """
        if self._first_schema is not None:
            self._define_from(df)
        d = self.definition
        rows = _height(df)
        with track(
            progress,
            task=f"insert into {self.name}",
            total=3,
            large=rows is not None and rows >= _LARGE_INSERT,
        ) as step:
            if d.appended:
                df = _with_appended_nulls(df, d)
            batch = prepare_batch(
                df, d.schema, primary_keys=d.primary_keys, event_time=d.event_time
            )
            report, rejected = self._check(batch)
            if rejected is not None:
                batch, rejected = split(batch, d.expectations)
            step("checked")
            if batch.height == 0 and (rejected is None or rejected.height == 0):
                return InsertResult(self.table_version(), 0, 0, "noop", validation=report)
            if d.event_time is None:
                # prepare_batch sorts by event time; a static group clusters files by key
                batch = batch.sort(list(d.primary_keys))
            elif _shares_times(batch.get_column(d.event_time)):
                # Rows sharing an event time go in key order, so a table written by appends
                # is in a point-in-time spine's full order (see scan_and_record_order). A
                # batch in event-time order without ties is in that order already.
                ordered = order_spine(batch.lazy(), d.event_time, d.primary_keys, time_sorted=True)
                batch = ordered.collect(engine="in-memory")
            step("ordered")
            note = _validation_note(d.validation, report, rejected)
            with contextlib.ExitStack() as background:
                summary: Future[dict[str, Any]] | None = None
                summarise: Callable[[], None] | None = None
                if d.statistics and batch.height and int(self._table().count()) == 0:
                    # the batch is about to be the whole new version: summarise it on a
                    # second thread while deltalake encodes it, one statistic at a time:
                    # the encoder runs on one core, and the statistics on Polars' whole
                    # pool would slow it more than they gain. Started as the append
                    # starts, not before: Polars work on this thread meanwhile (the
                    # commit-time literal) would wait for the statistics' Polars threads.
                    pool = background.enter_context(ThreadPoolExecutor(max_workers=1))

                    def summarise() -> None:
                        nonlocal summary
                        if summary is None:  # once, across commit retries
                            summary = pool.submit(
                                stats.compute, batch, d.schema, rows=batch.height, sequential=True
                            )

                with self._writer_lock():
                    if batch.height:
                        result = self._with_retries(
                            functools.partial(self._write, batch, note, appending=summarise)
                        )
                    else:
                        result = InsertResult(self.table_version(), 0, 0, "noop")
                    if rejected is not None and rejected.height:
                        # the validation note goes with the rejects only when nothing else
                        # committed
                        self._write_rejects(rejected, note if result.mode == "noop" else {})
                summarised = summary.result() if summary is not None else None
            step("written")
        result = dataclasses.replace(
            result,
            validation=report,
            rows_rejected=rejected.height if rejected is not None else 0,
        )
        if result.mode != "noop":
            if d.statistics:
                # an append to an empty table made a version that is the batch: no read back
                whole = result.mode == "append" and result.rows_inserted == batch.height
                self._store_statistics(
                    result.table_version,
                    batch=batch if whole else None,
                    summarised=summarised,
                    changed=result.rows_inserted + result.rows_updated,
                )
            if self._on_commit is not None:
                self._on_commit(self, result)
        return result

    def _define_from(self, df: object) -> None:
        """Store the definition of a group whose schema is its first batch's schema."""
        define = self._first_schema
        assert define is not None
        d = self.definition
        schema = normalize_schema(to_polars(df).schema)
        # the batch must fit before anything is stored: nothing is written for bad input
        for column in (*d.primary_keys, *([d.event_time] if d.event_time else [])):
            if column not in schema:
                raise SchemaError(
                    f"the first batch of feature group {self.name!r} defines its schema but "
                    f"lacks the key or event-time column {column!r}; its columns: "
                    f"{', '.join(schema)}"
                )
        prepare_batch(df, schema, primary_keys=d.primary_keys, event_time=d.event_time)
        stored = define(schema)
        self.definition = stored.definition
        self._first_schema = None

    def delete_rows(self, keys: object) -> DeleteResult:
        """Delete stored rows by primary key in one commit (a new table version).

        No expectation is checked: they describe the batches a group is given, a delete
        writes no value (no row left can start failing one), and an erasure must never
        be refused by a data-quality policy.

        ``keys`` is a frame (Polars, pandas or Arrow) or a list of dicts holding the
        primary-key columns, and optionally the event time: with it only that row goes,
        without it every row of the key (all event times), as a GDPR erasure needs. Other
        columns are refused. The online store stops serving deleted rows at its next
        lookup (an entity whose every row is gone reads as never seen). Nothing matching
        makes no commit.

        >>> fg.delete_rows([{"user_id": 7}])  # doctest: +SKIP
        DeleteResult(table_version=5, rows_deleted=3, mode='delete')
        """
        d = self.definition
        frame = _key_frame(keys)
        if frame.width == 0 and frame.height == 0:
            return DeleteResult(self.table_version(), 0, "noop")
        allowed = [*d.primary_keys, *([d.event_time] if d.event_time else [])]
        missing = [k for k in d.primary_keys if k not in frame.columns]
        extra = [c for c in frame.columns if c not in allowed]
        if missing or extra:
            raise SchemaError(
                f"delete_rows needs the primary key column(s) {list(d.primary_keys)}"
                + (f" and may name the event time {d.event_time!r}" if d.event_time else "")
                + f"; got columns {frame.columns}"
            )
        columns = [c for c in allowed if c in frame.columns]
        subset = {c: d.schema[c] for c in columns}
        unique = frame.select(columns).unique(maintain_order=True)
        batch = prepare_batch(unique, subset, primary_keys=columns, event_time=None)
        if batch.height == 0:
            return DeleteResult(self.table_version(), 0, "noop")
        with self._writer_lock():
            result = self._with_retries(lambda: self._delete(batch, columns))
        if result.mode != "noop":
            if d.statistics:
                self._store_statistics(result.table_version, changed=result.rows_deleted)
            if self._on_commit is not None:
                self._on_commit(self, result)
        return result

    def _delete(self, batch: pl.DataFrame, columns: Sequence[str]) -> DeleteResult:
        table = self._table()
        ranged = [c for c in columns if self.definition.schema[c] in _RANGE_TYPES]
        ranges = _batch_ranges(batch, self.definition.schema, ranged)
        condition = " AND ".join(
            [f"t.{_quote(k)} = s.{_quote(k)}" for k in columns]
            + [r.condition(col) for col, r in _prunable(_add_actions(table), ranges).items()]
        )
        before = table.version()
        custom = {"microfs.operation": "delete"}
        if self._stamp(table, custom) is not None:
            # an erasure: the rows leave the known-at history too (it keeps no copy)
            self._superseded_log().erase(batch)
        metrics = (
            table.merge(
                batch.to_arrow(),
                predicate=condition,
                source_alias="s",
                target_alias="t",
                commit_properties=CommitProperties(custom_metadata=custom, max_commit_retries=0),
            )
            .when_matched_delete()
            .execute()
        )
        deleted = int(metrics.get("num_target_rows_deleted", 0))
        version = table.version()
        return DeleteResult(version, deleted, "delete" if version != before else "noop")

    def append_features(
        self,
        features: Mapping[str, object],
        *,
        expectations: Sequence[Mapping[str, Any]] | None = None,
    ) -> SchemaChange:
        """Add nullable feature columns in place (Delta schema evolution).

        Rows stored earlier read null in the new columns; batches inserted from now on
        may carry them, and a batch without them (a pipeline written before) has them
        null. The group keeps its definition version: the
        added columns are recorded beside its definition, and feature views made earlier
        keep the columns they had.

        ``expectations`` on the new columns join the group's expectations: every later
        insert is checked against them, and so are the stored rows now, which read null
        in the new columns (so only ``not_null`` and ``max_null_fraction`` can fail, and
        then for every stored row). A failing append follows the group's policy:
        ``strict`` raises :class:`microfs.ValidationError` and writes nothing (no commit,
        no file, no record), ``warn`` adds the columns with a
        :class:`microfs.ValidationWarning`, ``quarantine`` moves the stored rows to the
        rejects table (with a ``reason``) and adds the columns to the emptied table in one
        commit. The commit records the validation like an insert's.

        Args:
            features: New column names and their types, spelled as in ``schema=``.
            expectations: Expectation dicts naming the new columns (see
                :mod:`microfs.expectations`).

        >>> fg.append_features({"lifetime_value": "float64"},  # doctest: +SKIP
        ...                    expectations=[{"column": "lifetime_value", "kind": "between",
        ...                                   "min": 0}])
        """
        if self._record_schema is None:
            raise DefinitionError(
                f"feature group {self.name!r} was not opened from a feature store; open it "
                "with FeatureStore.get_feature_group to change its schema"
            )
        added = normalize_schema(features)
        clash = [c for c in added if c in self.definition.schema]
        if clash:
            raise SchemaError(
                f"feature group {self.name!r} has column(s) {clash} already; its columns: "
                f"{', '.join(self.definition.schema)}"
            )
        widened = self.definition.with_appended(added, expectations or ())
        new = widened.expectations[len(self.definition.expectations) :]
        for expectation in new:
            if expectation.column not in added:
                raise DefinitionError(
                    f"expectation {expectation.to_dict()!r} given to append_features of feature "
                    f"group {self.name!r} must name a column it adds ({', '.join(added)})"
                )
        with self._writer_lock():
            table = self._table()
            before = table.version()
            report, rejected = self._check_stored(table, added, new)
            note = _validation_note(self.definition.validation, report, rejected)
            custom = {"microfs.operation": "append_features", **note}
            if rejected is not None:
                self._write_rejects(rejected, {})
                self._replace_with_empty(table, widened, custom)
            else:
                present = set(table.schema().to_arrow().names)
                fields = [
                    Field.from_arrow(pa.field(c, _arrow_type(polars_dtype(t)), nullable=True))
                    for c, t in added.items()
                    if c not in present
                ]
                if fields:
                    table.alter.add_columns(
                        fields, commit_properties=CommitProperties(custom_metadata=custom)
                    )
            # recorded after the Delta commit: a failure between them is repaired by
            # calling again, which finds the columns in the table and records them
            self.definition = self._record_schema(added, [e.to_dict() for e in new])
            self._row_order.clear()
            self._file_actions.clear()
            self._tables.clear()
            result = SchemaChange(
                self._table().version(),
                dict(added),
                validation=report,
                rows_rejected=rejected.height if rejected is not None else 0,
            )
        if self.definition.statistics and result.table_version != before:
            self._store_statistics(
                result.table_version,
                same_rows_as=None if rejected is not None else before,
                changed=result.rows_rejected,
            )
        if self._on_commit is not None:
            self._on_commit(self, result)
        return result

    def _check_stored(
        self, table: DeltaTable, added: Mapping[str, str], expectations: Sequence[Expectation]
    ) -> tuple[ValidationReport | None, pl.DataFrame | None]:
        """Check the stored rows against the new columns' expectations (they read null there).

        Returns the report (None without expectations) and, when ``quarantine`` refuses
        them, the stored rows with the new columns and a ``reason``: every row, since a
        column of nulls fails an expectation in every row or in none.
        """
        if not expectations:
            return None, None
        rows = int(table.count())
        nulls = pl.DataFrame(
            [
                pl.repeat(None, rows, dtype=polars_dtype(t), eager=True).alias(c)
                for c, t in added.items()
            ]
        )
        what = (
            f"the append of column(s) {', '.join(added)} (its {rows:,} stored rows read null there)"
        )
        report, failing = self._check(nulls, expectations, what=what)
        if failing is None:
            return report, None
        stored = self.scan(version=table.version()).collect()
        _, rejected = split(stored.with_columns(nulls), expectations)
        assert rejected.height == stored.height
        return report, rejected

    def _replace_with_empty(
        self, table: DeltaTable, widened: FeatureGroupDefinition, custom: dict[str, str]
    ) -> None:
        """One commit that removes every stored row and adds the new columns."""
        stamped = {COMMIT_TIME: DATETIME} if _has_commit_times(table) else {}
        schema = pl.Schema({**widened.polars_schema(), **stamped})
        at = self._stamp(table, custom)
        if at is not None:
            # the rows leave now: what a known-at join read until this commit stays readable
            stored = pl.scan_delta(str(self.path), version=table.version())
            self._superseded_log().append(
                stored.select([*self.schema.names(), COMMIT_TIME])
                .with_columns(
                    pl.lit(_commit_log.from_micros(at), dtype=DATETIME).alias(SUPERSEDED_AT),
                    pl.lit(table.version() + 1, dtype=pl.Int64).alias(
                        _commit_log.SUPERSEDED_VERSION
                    ),
                )
                .collect()
            )
        write_deltalake(
            table,
            pl.DataFrame(schema=schema).to_arrow(),
            mode="overwrite",
            schema_mode="merge",
            commit_properties=CommitProperties(custom_metadata=custom, max_commit_retries=0),
        )

    def _write(
        self,
        batch: pl.DataFrame,
        note: Mapping[str, str] | None = None,
        *,
        appending: Callable[[], None] | None = None,
    ) -> InsertResult:
        """Commit ``batch``: an append when no stored row can match it, else an upsert.

        ``appending`` is called right before an append hands the batch to deltalake.
        """
        table = self._table()
        ranges = _batch_ranges(batch, self.definition.schema, self._range_columns())
        custom = {
            "microfs.operation": "insert",
            "microfs.rows": str(batch.height),
            **(note or {}),
        }
        at = self._stamp(table, custom)
        if at is not None:
            batch = batch.with_columns(
                pl.lit(_commit_log.from_micros(at), dtype=DATETIME).alias(COMMIT_TIME)
            )
        meta = CommitProperties(custom_metadata=custom, max_commit_retries=0)
        files = _add_actions(table)  # read once: the append check and the merge use them
        if _cannot_overlap(table, files, ranges):
            arrow = _in_order(batch)
            if appending is not None:
                appending()
            write_deltalake(table, arrow, mode="append", commit_properties=meta)
            return InsertResult(table.version(), batch.height, 0, "append")
        rewritten = self._rewrite(table, files, batch, ranges, at, meta)
        if rewritten is not None:
            return rewritten
        if at is not None:
            self._log_superseded(table, self._replaced(table, batch, ranges), at)
        keys = self.definition.upsert_keys
        condition = " AND ".join(
            [f"t.{_quote(k)} = s.{_quote(k)}" for k in keys]
            + [r.condition(col) for col, r in _prunable(files, ranges).items()]
        )
        metrics = (
            table.merge(
                batch.to_arrow(),
                predicate=condition,
                source_alias="s",
                target_alias="t",
                commit_properties=meta,
            )
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )
        return InsertResult(
            table.version(),
            int(metrics["num_target_rows_inserted"]),
            int(metrics["num_target_rows_updated"]),
            "merge",
        )

    def _stamp(self, table: DeltaTable, custom: dict[str, str]) -> int | None:
        """The next commit's MicroFS commit time, recorded in ``custom`` (its metadata).

        None for a table made before commit times were recorded (it has no such column).
        """
        if not _has_commit_times(table):
            return None
        at = _commit_log.next_commit_time(table, self.commit_clock, self._issued)
        self._issued = at
        custom[_commit_log.COMMIT_TIME_KEY] = str(at)
        return at

    def _rewrite(
        self,
        table: DeltaTable,
        files: pl.DataFrame,
        batch: pl.DataFrame,
        ranges: Mapping[str, _Range],
        at: int | None,
        meta: CommitProperties,
    ) -> InsertResult | None:
        """The upsert as one commit that replaces the data files holding the matched rows.

        The files the batch's key ranges reach (by their statistics) are read whole; the
        ones holding a row the batch matches are written again, once, with those rows
        replaced and the batch's new rows added, sorted by event time then keys (so the
        table keeps the order a point-in-time join can use), and one Delta commit removes
        the old files and adds the new. Files are chosen whole, so no row-level predicate
        has to agree between two engines; deltalake writes the file and its statistics.
        A batch matching no stored row is a plain append (still reported as ``"merge"``:
        the path that looked for matches).

        This is the work deltalake's merge does, in about its time (both write the
        touched files' rows again: a 1% upsert of the recent rows of a 10M-row group, five
        alternating runs, median 0.94 s against the pruned merge's 1.01 s), with two
        gains: the files stay in event-time order (after a merge the table's row order
        could no longer be proven, and every point-in-time join of the group sorted it),
        and the replaced rows the known-at history logs come from the same read.

        None (the caller merges) when the table's files are not plain Parquet to this
        reader (deletion vectors, column mapping, partitions), when its columns are not
        the batch's, or when the files in reach hold more than ``_REWRITE_MAX_ROWS`` rows.
        """
        protocol = table.protocol()
        if (
            protocol.min_reader_version > 1
            or protocol.reader_features
            or table.metadata().partition_columns
            or set(table.schema().to_arrow().names) != set(batch.columns)
            or "num_records" not in files.columns
        ):
            return None
        in_reach = files.filter(~_disjoint(files, _prunable(files, ranges), slack=_STATS_SLACK))
        counts = in_reach.get_column("num_records")
        if counts.null_count() or int(counts.sum()) > _REWRITE_MAX_ROWS:
            return None
        root = Path(table.table_uri.removeprefix("file://"))
        # never empty: the caller found a file in reach of every range, and these are some
        located = {str(root / unquote(p)): p for p in in_reach.get_column("path")}
        stored = pl.scan_parquet(
            list(located), schema=batch.schema, missing_columns="insert", include_file_paths=_FILE
        ).collect()
        keys = list(self.definition.upsert_keys)
        replaced = stored.join(batch.select(keys), on=keys, how="semi", nulls_equal=False)
        if at is not None:
            self._log_superseded(table, replaced.drop(_FILE), at)
        if replaced.height == 0:
            write_deltalake(table, _in_order(batch), mode="append", commit_properties=meta)
            return InsertResult(table.version(), batch.height, 0, "merge")
        touched = replaced.get_column(_FILE).unique()
        kept = stored.filter(pl.col(_FILE).is_in(touched.implode())).join(
            batch.select(keys), on=keys, how="anti", nulls_equal=False
        )
        rows = pl.concat([kept.drop(_FILE), batch], how="vertical")
        time_key = self.definition.event_time
        if time_key is not None:
            rows = rows.sort([time_key, *self.definition.primary_keys], maintain_order=True)
        sizes = dict(
            zip(in_reach.get_column("path"), in_reach.get_column("size_bytes"), strict=True)
        )
        removed = {located[path]: int(sizes[located[path]]) for path in touched}
        version = table.version() + 1  # no retry within the commit: it lands there or fails
        marked = CommitProperties(
            custom_metadata={**(meta.custom_metadata or {}), _REWRITE_KEY: "MERGE"},
            max_commit_retries=0,
        )
        _commit_rewrite(table, root, [rows], removed, marked)
        return InsertResult(version, batch.height - replaced.height, replaced.height, "merge")

    def _replaced(
        self, table: DeltaTable, batch: pl.DataFrame, ranges: Mapping[str, _Range]
    ) -> pl.DataFrame:
        """The stored rows (of ``table``'s version) that share a key with the batch."""
        keys = list(self.definition.upsert_keys)
        stored = pl.scan_delta(str(self.path), version=table.version())
        for column, bounds in ranges.items():  # prunes files by their statistics
            low, high = bounds.widened()
            stored = stored.filter(
                pl.col(column).is_between(_typed(bounds.kind, low), _typed(bounds.kind, high))
            )
        return stored.join(
            batch.lazy().select(keys), on=keys, how="semi", nulls_equal=False
        ).collect()

    def _log_superseded(self, table: DeltaTable, replaced: pl.DataFrame, at: int) -> None:
        """Log the stored rows the coming commit (commit time ``at``) replaces.

        Written before that commit: rows logged for a commit that never lands are ignored
        on reading (their version's commit does not record ``at``).
        """
        self._superseded_log().append(
            replaced.select([*self.schema.names(), COMMIT_TIME]).with_columns(
                pl.lit(_commit_log.from_micros(at), dtype=DATETIME).alias(SUPERSEDED_AT),
                pl.lit(table.version() + 1, dtype=pl.Int64).alias(_commit_log.SUPERSEDED_VERSION),
            )
        )

    def _superseded_log(self) -> _commit_log.SupersededLog:
        return _commit_log.SupersededLog(self.path.parent / f".{self.path.name}.superseded")

    def _range_columns(self) -> list[str]:
        d = self.definition
        return [c for c in d.upsert_keys if d.schema[c] in _RANGE_TYPES]

    def _with_retries(self, action: Callable[[], _R]) -> _R:
        for attempt in range(_MAX_ATTEMPTS):
            try:
                return action()
            except CommitFailedError as exc:
                if attempt == _MAX_ATTEMPTS - 1:
                    raise CommitConflictError(
                        f"insert into feature group {self.name!r} conflicted with other "
                        f"writers {_MAX_ATTEMPTS} times; nothing was written, retry later: {exc}"
                    ) from exc
                time.sleep(_BACKOFF_SECONDS * (2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _writer_lock(self) -> Iterator[None]:
        lock = FileLock(self.path.parent / f".{self.path.name}.lock")
        with lock:
            yield

    # -- reading ---------------------------------------------------------------------------

    @_boundary
    def resolve_version(self, *, version: int | None = None, as_of: TimeLike | None = None) -> int:
        """The Delta table version that ``version`` or ``as_of`` (a commit time) selects."""
        if version is not None and as_of is not None:
            raise DefinitionError("give either version= or as_of=, not both")
        # a version opened before exists (``type`` rather than isinstance: True is not 1)
        if type(version) is int and version in self._tables:
            return version
        latest = self.table_version()
        if version is not None:
            if (
                isinstance(version, bool)
                or not isinstance(version, int)
                or not (0 <= version <= latest)
            ):
                raise NotFoundError(
                    f"feature group {self.name!r} has no table version {version!r}; versions "
                    f"0..{latest} exist"
                )
            return version
        if as_of is None:
            return latest
        as_of = aware_utc(as_of, what="as_of")
        history = self.history()
        chosen = [c.version for c in history if c.timestamp <= as_of]
        if not chosen:
            first = min(c.timestamp for c in history)
            raise NotFoundError(
                f"feature group {self.name!r} did not exist at {as_of.isoformat()}; its first "
                f"commit is at {first.isoformat()}"
            )
        return max(chosen)

    @_boundary
    def scan(self, version: int | None = None, as_of: TimeLike | None = None) -> pl.LazyFrame:
        """A lazy scan of the table at a version (or commit time); the latest by default.

        >>> fg.scan().filter(pl.col("age") > 30).collect()  # doctest: +SKIP
        """
        resolved = self.resolve_version(version=version, as_of=as_of)
        self._check_files(resolved)
        frame = pl.scan_delta(str(self.path), version=resolved)
        if self.definition.appended:
            # a version from before append_features lacks the columns it added: null there
            have = set(frame.collect_schema().names())
            missing = [c for c in self.definition.appended if c not in have]
            frame = frame.with_columns(pl.lit(None, dtype=self.schema[c]).alias(c) for c in missing)
        return frame.select(self.schema.names())

    def scan_versions(self, version: int | None = None) -> pl.LazyFrame:
        """Every version of the rows that table version ``version`` holds or replaced.

        The group's columns, :data:`~microfs.known.COMMIT_TIME` (when MicroFS committed the
        version) and :data:`~microfs.known.SUPERSEDED_AT` (when an upsert replaced it;
        null for the rows the table version holds). What a known-at join reads.

        Raises:
            NotFoundError: The table was created before MicroFS recorded commit times.
        """
        resolved = self.resolve_version(version=version)
        table = self._table(resolved)
        if not _has_commit_times(table):
            raise NotFoundError(
                f"feature group {self.name!r} v{self.version} was created before MicroFS "
                "recorded commit times, so what was known when is lost; create a new version "
                "of the group and insert its rows again for known-at views"
            )
        self.scan(version=resolved)  # refuses a vacuumed version
        names = [*self.schema.names(), COMMIT_TIME]
        current = (
            pl.scan_delta(str(self.path), version=resolved)
            .select(names)
            .with_columns(pl.lit(None, dtype=DATETIME).alias(SUPERSEDED_AT))
        )
        # from the latest table: a DeltaTable opened at an older version numbers the
        # entries of its history() from that version while listing the newest commits
        committed = _commit_log.commit_times(self._table(), resolved)
        replaced = (
            self._superseded_log()
            .scan(self.schema)
            .join(committed.lazy(), on=[_commit_log.SUPERSEDED_VERSION, SUPERSEDED_AT], how="semi")
            .select([*names, SUPERSEDED_AT])
        )
        return pl.concat([current, replaced])

    def history_from(self) -> datetime | None:
        """Replaced row versions older than this were pruned by :meth:`vacuum` (or None).

        A known-at join is exact only for labels at or after this time plus its lag.
        """
        return self._superseded_log().history_from()

    def data_files(self, version: int | None = None) -> list[Path]:
        """The Parquet files that hold a table version's rows (the latest by default).

        For engines that read the files themselves (Daft). Raises :class:`NotFoundError`
        when the version's files were vacuumed.
        """
        resolved = self.resolve_version(version=version)
        self._check_files(resolved)
        return [Path(f.removeprefix("file://")) for f in self._table(resolved).file_uris()]

    @_boundary
    def scan_and_record_order(self, version: int | None = None) -> tuple[pl.LazyFrame, RowOrder]:
        """A scan whose rows follow event time where the stored files allow, and their order.

        A read that may write: the first proof of a table version's order is recorded on
        disk (see below), which is why the name says so.

        The table version's files are read in the order of their event-time statistics.
        Inserts write each batch sorted by event time, then primary keys, and appends come
        later than everything stored, so the rows usually come out in that order; one pass
        over those columns proves it, and a point-in-time join can then skip sorting. The
        proof is remembered in a small JSON file beside the table (``.v<n>.order.json``),
        keyed by the ordered names of the data files (which never change once written), so
        later processes reading the same table version skip the pass. The order is
        ``"keys"`` (event time then primary keys), ``"time"`` (event time only) or
        ``"none"``; a static group gives ``"none"``.
        """
        resolved = self.resolve_version(version=version)
        time = self.event_time
        ordered = self._files_by_time(resolved)
        if time is None or ordered is None:
            return self.scan(version=resolved), "none"
        names, paths = ordered
        if self.definition.appended:  # files written before an append lack those columns
            frame = pl.scan_parquet(
                paths, schema=self.schema, missing_columns="insert", extra_columns="ignore"
            )
        else:
            frame = pl.scan_parquet(paths).select(self.schema.names()).cast(self.schema)
        known = self._row_order.get(resolved)
        if known is None:
            fingerprint = _fingerprint(names)
            known = self._stored_orders().get(fingerprint)
            if known is None:
                in_time, in_keys = (
                    frame.select(
                        _non_decreasing([time]).alias("time"),
                        _non_decreasing([time, *self.primary_keys]).alias("keys"),
                    )
                    .collect()
                    .row(0)
                )
                known = "keys" if in_keys else "time" if in_time else "none"
                self._store_order(fingerprint, known)
            self._row_order[resolved] = known
        return frame, known

    @_boundary
    def data_files_in_order(self, version: int | None = None) -> tuple[list[Path], RowOrder]:
        """The data files in the order :meth:`scan_and_record_order` reads them, and that order.

        For engines that read the files themselves (Daft): reading the files in this order
        gives the rows in the returned order (proven, and recorded, as that method does).
        Files of a group without event time, or without statistics, come in the Delta
        log's order, with order ``"none"``.
        """
        resolved = self.resolve_version(version=version)
        ordered = self._files_by_time(resolved)
        if ordered is None:
            return self.data_files(resolved), "none"
        _, order = self.scan_and_record_order(version=resolved)
        return [Path(uri.removeprefix("file://")) for uri in ordered[1]], order

    def _files_by_time(self, resolved: int) -> tuple[list[str], list[str]] | None:
        """A table version's data files ordered by their event-time statistics.

        The files' log paths and their URIs, or None when the group has no event time, a
        file lacks statistics, or a file is missing locally. Raises :class:`NotFoundError`
        when a timed group's version was vacuumed.
        """
        time = self.event_time
        if time is None:
            return None
        table = self._table(resolved)
        actions = self._files(resolved, table)
        self._check_files(resolved)
        by_time = _by_event_time(actions, time)
        if by_time is None or by_time.height == 0:
            return None
        by_name = {uri.rsplit("/", 1)[-1]: uri for uri in table.file_uris()}
        ordered = by_time["path"].to_list()
        uris = [by_name.get(path.rsplit("/", 1)[-1]) for path in ordered]
        if None in uris or any(not Path(u.removeprefix("file://")).exists() for u in uris if u):
            return None
        return ordered, [u for u in uris if u is not None]

    @_boundary
    def extent(self, column: str, *, version: int | None = None) -> Extent:
        """A table version's row count and ``column``'s range, from the Delta log alone.

        No data file is read; a planner uses it to estimate sizes before reading.
        """
        actions = self._files(self.resolve_version(version=version))
        if actions.height == 0 or "num_records" not in actions.columns:
            return Extent(0, None, None)
        rows = int(actions.get_column("num_records").sum())
        low, high = f"min.{column}", f"max.{column}"
        if low not in actions.columns or high not in actions.columns:
            return Extent(rows, None, None)
        return Extent(rows, actions.get_column(low).min(), actions.get_column(high).max())

    def _files(self, resolved: int, table: DeltaTable | None = None) -> pl.DataFrame:
        """A table version's data files with their row counts and column statistics.

        Read from the Delta log once per version: a version never changes.
        """
        actions = self._file_actions.get(resolved)
        if actions is None:
            table = table if table is not None else self._table(resolved)
            actions = _add_actions(table)
            self._file_actions[resolved] = actions
        return actions

    def _orders_path(self) -> Path:
        """Where proven row orders are remembered, beside the table like its lock file."""
        return self.path.parent / f".{self.path.name}.order.json"

    def _stored_orders(self) -> dict[str, RowOrder]:
        """Row orders proven earlier (by any process), by file-list fingerprint."""
        try:
            data = json.loads(self._orders_path().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if v in ("keys", "time", "none")}

    def _store_order(self, fingerprint: str, order: RowOrder) -> None:
        """Remember a proven row order on disk; best effort (a lost entry is proven again).

        A data file never changes once written and its name is unique, so the ordered list
        of file names identifies the rows and their order; the newest entries are kept.
        """
        orders = self._stored_orders()
        orders.pop(fingerprint, None)
        orders[fingerprint] = order
        kept = dict(list(orders.items())[-_KEPT_ORDERS:])
        path = self._orders_path()
        temporary = path.with_name(f"{path.name}.{os.getpid()}.{random.getrandbits(32):08x}")
        try:
            temporary.write_text(json.dumps(kept, indent=1), encoding="utf-8")
            temporary.replace(path)
        except OSError:
            temporary.unlink(missing_ok=True)

    @_boundary
    def read(self, version: int | None = None, as_of: TimeLike | None = None) -> pl.DataFrame:
        """Like :meth:`scan`, collected.

        The latest version is read again from a fresh snapshot when a vacuum removed its
        files meanwhile (a merge made it old); a given version that lost its files raises
        :class:`NotFoundError`.
        """
        for attempt in range(_MAX_ATTEMPTS):
            resolved = self.resolve_version(version=version, as_of=as_of)
            try:
                return self.scan(version=resolved).collect()
            except (OSError, pl.exceptions.PolarsError):
                self._check_files(resolved)  # NotFoundError if vacuumed, LakeError if damaged
                if version is not None or as_of is not None or attempt == _MAX_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    @_boundary
    def count(self, version: int | None = None) -> int:
        """Rows at a table version, from the Delta log's statistics."""
        return int(self._table(self.resolve_version(version=version)).count())

    @_boundary
    def history(self) -> list[Commit]:
        """The table's commits, oldest first."""
        entries = self._table().history()
        commits = [
            Commit(
                version=int(e["version"]),
                timestamp=datetime.fromtimestamp(e["timestamp"] / 1000, tz=timezone.utc),
                operation=str(e.get(_REWRITE_KEY) or e.get("operation", "")),
                rows=_rows_of(e),
            )
            for e in entries
        ]
        return sorted(commits, key=lambda c: c.version)

    @_boundary
    def added_since(self, version: int) -> tuple[int, pl.LazyFrame] | None:
        """Rows added by append commits after ``version``, with the latest version.

        Returns None when a commit since then was anything but a plain append (a merge
        rewrote files), so a reader must rebuild from the full snapshot.
        """
        table = self._table()
        latest: int = table.version()
        if latest == version:
            return latest, self.schema_frame()
        for entry in table.history(latest - version):
            if int(entry["version"]) > version and not (
                entry.get("operation") == "WRITE"
                and entry.get("operationParameters", {}).get("mode") == "Append"
            ):
                return None
        before = set(self._table(version).file_uris())
        after = table.file_uris()
        if not before.issubset(after):  # an upsert's rewrite is a write too, but removes files
            return None
        new = [f for f in after if f not in before]
        if not new:
            return latest, self.schema_frame()
        return latest, pl.scan_parquet(new, schema=self.schema, extra_columns="ignore")

    def schema_frame(self) -> pl.LazyFrame:
        """An empty frame with the group's schema."""
        return pl.LazyFrame(schema=self.schema)

    # -- data quality ----------------------------------------------------------------------

    def validate(self, df: object) -> ValidationReport:
        """Check a batch against the group's expectations without writing anything.

        The batch passes the same schema checks as :meth:`insert` first.

        >>> report = fg.validate(df)  # doctest: +SKIP
        >>> report.passed, report.results  # doctest: +SKIP
        """
        d = self.definition
        batch = prepare_batch(df, d.schema, primary_keys=d.primary_keys, event_time=d.event_time)
        return evaluate(batch, d.expectations)

    def rejects(self) -> pl.LazyFrame:
        """Rows the ``quarantine`` policy refused: the group's columns and ``reason``."""
        if not DeltaTable.is_deltatable(str(self._rejects_path())):
            return pl.LazyFrame(schema=self._rejects_schema())
        return pl.scan_delta(str(self._rejects_path()))

    def statistics(self, version: int | None = None, as_of: datetime | None = None) -> pl.DataFrame:
        """Statistics of a table version (the latest by default), one row per column.

        Columns: ``column, dtype, count, null_count, min, max, mean, std,
        approx_distinct, p01, p05, p25, p50, p75, p95, p99`` (numeric-only fields null
        for other columns); see :mod:`microfs.statistics` for what each means. They are
        stored with the table version, once, and read from then on (never recomputed
        from a newer snapshot):

        - by the commit that made it, when that costs about what the write did: from
          the batch in memory when it is the whole version (a first insert), copied when
          the rows did not change (``append_features`` adds null columns, ``compact`` and
          ``vacuum`` move or keep rows), else one pass over the new version when it holds
          at most twice the rows the commit wrote or removed;
        - else (a small write into a large table) by the first call for the version, or
          at the latest by the :meth:`vacuum` that deletes its data files, each reading
          the version's own data.

        A group created with ``statistics=False`` stores them only on request; a version
        whose data went before any of these has none (NotFoundError).

        >>> fg.statistics(version=3).select("column", "mean", "p50")  # doctest: +SKIP
        """
        return stats.statistics_frame(self._statistics_document(version, as_of))

    def histogram(self, column: str, version: int | None = None, bins: int = 20) -> pl.DataFrame:
        """A numeric column's histogram at a table version: ``bin_start, bin_end, count``.

        Equal-width bins from the least to the greatest finite value, each holding the
        values in ``(bin_start, bin_end]`` (the first also its start). The 20-bin
        histogram is stored with the version; other bin counts are computed from its data.
        """
        dtype = self._numeric_type(column)
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
            raise DefinitionError(f"bins={bins!r} must be a positive integer, e.g. bins=20")
        if bins == stats.HISTOGRAM_BINS:
            document = self._statistics_document(version, None)
            return stats.histogram_frame(document["histograms"][column])
        return stats.histogram(self.scan(version=version), column, dtype, bins=bins)

    def compare_statistics(self, a: int, b: int) -> pl.DataFrame:
        """Drift from table version ``a`` to ``b``, one row per numeric column.

        Columns: ``column, psi`` (population stability index over ten bins cut at version
        ``a``'s deciles; under 0.1 is usually read as stable, over 0.25 as a shift),
        ``mean_change`` (b minus a) and ``null_fraction_change`` (b minus a). The means
        and null fractions come from the stored statistics; the PSI reads both versions.
        """
        first = self._statistics_document(a, None)
        second = self._statistics_document(b, None)
        numeric = {c: t for c, t in self.definition.schema.items() if t in stats.NUMERIC_TYPES}
        drift = stats.psi(
            self.scan(version=a), self.scan(version=b), numeric, rows=int(first["rows"])
        )
        return stats.compare(first, second, drift)

    def validation_history(self) -> pl.DataFrame:
        """Every validated write, oldest first.

        Columns: ``committed_at, table_version`` (null when the quarantine took every
        row), ``policy, passed, rows, rows_rejected, failed`` (JSON: failing rows per
        expectation). Refused batches (``strict``) write nothing, so they are not here.
        """
        entries: list[tuple[Mapping[str, Any], int | None]] = [
            (e, int(e["version"])) for e in self._table().history() if _VALIDATION_KEY in e
        ]
        if DeltaTable.is_deltatable(str(self._rejects_path())):
            entries += [
                (e, None)
                for e in DeltaTable(str(self._rejects_path())).history()
                if _VALIDATION_KEY in e
            ]
        rows = []
        for entry, version in entries:
            note = json.loads(entry[_VALIDATION_KEY])
            rows.append(
                [
                    datetime.fromtimestamp(entry["timestamp"] / 1000, tz=timezone.utc),
                    version,
                    note.get("policy"),
                    note.get("passed"),
                    note.get("rows"),
                    note.get("rows_rejected"),
                    json.dumps(note.get("failed", {})),
                ]
            )
        frame = pl.DataFrame(rows, schema=_HISTORY_SCHEMA, orient="row")
        return frame.sort("committed_at", "table_version", nulls_last=True)

    def _check(
        self,
        batch: pl.DataFrame,
        expectations: Sequence[Expectation] | None = None,
        *,
        what: str = "the batch",
    ) -> tuple[ValidationReport | None, pl.DataFrame | None]:
        """Validate a batch by the group's policy: raise, warn, or mark it for splitting.

        Returns the report (None without expectations) and, for a failing batch under
        ``quarantine``, the batch itself (to be split into passing and rejected rows).

        Args:
            batch: the rows to check.
            expectations: what to check (the group's expectations by default).
            what: the write, as the error and the warning name it.
        """
        d = self.definition
        expectations = d.expectations if expectations is None else expectations
        if not expectations:
            return None, None
        report = evaluate(batch, expectations)
        if report.passed:
            return report, None
        if d.validation == "strict":
            raise ValidationError(
                f"feature group {self.name!r} refused {what} (validation='strict'); "
                f"nothing was written: {report.summary()}",
                report,
            )
        if d.validation == "warn":
            warnings.warn(
                f"feature group {self.name!r} wrote {what}, which fails its expectations "
                f"(validation='warn'): {report.summary()}",
                ValidationWarning,
                stacklevel=4,
            )
            return report, None
        return report, batch

    def _quality_path(self) -> Path:
        """The folder beside the table holding its statistics and rejects table."""
        return self.path.parent / f"{self.path.name}.quality"

    def _rejects_path(self) -> Path:
        return self._quality_path() / "rejects"

    def _statistics_path(self, version: int) -> Path:
        return self._quality_path() / "statistics" / f"{version}.json"

    def _rejects_schema(self) -> pl.Schema:
        return pl.Schema({**self.schema, REASON: pl.String()})

    def _write_rejects(self, rejected: pl.DataFrame, note: Mapping[str, str]) -> None:
        meta = CommitProperties(
            custom_metadata={"microfs.operation": "reject", **note}, max_commit_retries=0
        )

        def append() -> InsertResult:
            write_deltalake(
                str(self._rejects_path()),
                rejected.to_arrow(),
                mode="append",
                schema_mode="merge",  # columns added by append_features join the rejects too
                commit_properties=meta,
            )
            return InsertResult(0, rejected.height, 0, "append")

        self._rejects_path().parent.mkdir(parents=True, exist_ok=True)
        self._with_retries(append)

    def _store_statistics(
        self,
        version: int,
        *,
        batch: pl.DataFrame | None = None,
        summarised: dict[str, Any] | None = None,
        same_rows_as: int | None = None,
        changed: int | None = None,
    ) -> None:
        """Store the statistics of a table version this group just committed, when cheap.

        From the cheapest exact source: ``batch`` when the commit wrote it into an empty
        table (it is the whole version, in memory; ``summarised`` is its statistics when
        they were computed during the write); the statistics of version
        ``same_rows_as`` when the commit kept its rows (an added column is null in all
        of them; a compaction or a vacuum moves or keeps them); else one pass over the
        new version, when it holds at most :data:`_PASS_FACTOR` times the ``changed``
        rows the commit wrote or removed. A version left without them here (a small
        write into a large table) gets them from the first request for it or, at the
        latest, from the vacuum that removes its data (see :meth:`_keep_statistics`).
        """
        path = self._statistics_path(version)
        if path.exists():
            return
        schema = self.definition.schema
        rows = int(self._table(version).count())
        document: dict[str, Any] | None = None
        if batch is not None and batch.height == rows:
            document = summarised or stats.compute(batch, schema, rows=rows)
        elif same_rows_as is not None:
            before = stats.read_document(self._statistics_path(same_rows_as))
            if before is not None and int(before["rows"]) == rows:
                known = {entry["column"] for entry in before["columns"]}
                document = stats.with_null_columns(
                    before, {c: t for c, t in schema.items() if c not in known}
                )
        if document is None:
            if changed is None or rows > _PASS_FACTOR * changed:
                return
            try:
                frame = self.scan(version=version)
            except NotFoundError:  # vacuumed meanwhile by another writer: nothing to summarise
                return
            document = stats.compute(frame, schema, rows=rows)
        document["table_version"] = version
        stats.write_document(path, document)

    def _keep_statistics(self, doomed: Sequence[str]) -> None:
        """Store the statistics of every version whose data files are ``doomed`` (if missing).

        A vacuum calls it, holding the writer lock, before it deletes those files: a
        version's statistics are then read after its data is gone.
        """
        gone = {Path(p).name for p in doomed}
        if not gone or not self.definition.statistics:
            return
        for version in range(1, self.table_version() + 1):
            if self._statistics_path(version).exists():
                continue
            files = {Path(u).name for u in self._table(version).file_uris()}
            if files & gone:
                with contextlib.suppress(NotFoundError):  # lost some files already
                    self._statistics_document(version, None)

    def _statistics_document(self, version: int | None, as_of: datetime | None) -> dict[str, Any]:
        """A table version's stored statistics, computed and stored first if missing."""
        if (
            as_of is None
            and isinstance(version, int)
            and not isinstance(version, bool)
            and version >= 0
        ):
            # a stored document exists only for a real version: skip opening the table
            found = stats.read_document(self._statistics_path(version))
            if found is not None:
                return found
        resolved = self.resolve_version(version=version, as_of=as_of)
        path = self._statistics_path(resolved)
        document = stats.read_document(path)
        if document is None:
            rows = self.count(resolved)
            document = stats.compute(self.scan(version=resolved), self.definition.schema, rows=rows)
            document["table_version"] = resolved
            stats.write_document(path, document)
        return document

    def _numeric_type(self, column: str) -> str:
        schema = self.definition.schema
        if column not in schema:
            raise NotFoundError(
                f"feature group {self.name!r} has no column {column!r}; columns: "
                f"{', '.join(schema)}"
            )
        if schema[column] not in stats.NUMERIC_TYPES:
            numeric = [c for c, t in schema.items() if t in stats.NUMERIC_TYPES]
            raise SchemaError(
                f"column {column!r} of feature group {self.name!r} is {schema[column]}, not "
                f"numeric; histograms are of numeric columns: {', '.join(numeric) or 'none'}"
            )
        return schema[column]

    # -- maintenance -----------------------------------------------------------------------

    @_boundary
    def compact(self) -> CompactResult:
        """Rewrite small files into larger ones (a new table version, same rows).

        Files under :data:`COMPACT_TARGET_BYTES` are taken in the order a scan reads them
        (by their event-time statistics; the log's order for a group without event time),
        and each run of consecutive small ones, up to that size together, becomes one
        file holding their rows in that order. Rows in event-time order stay so, and the
        new version's order is proven again like any other (see
        :meth:`scan_and_record_order`): deltalake's own compaction interleaves the files
        it joins, and the proof was lost in each of five tries. One commit, named
        ``"OPTIMIZE"`` in :meth:`history`; nothing is committed when no two small files
        are next to each other.
        """
        with self._writer_lock():
            table = self._table()
            before = table.version()
            runs = _compaction_runs(self._compaction_order(table), COMPACT_TARGET_BYTES)
            added = 0
            if runs:
                root = Path(table.table_uri.removeprefix("file://"))
                stored = table.schema().to_arrow().names
                columns = {**self.schema, COMMIT_TIME: DATETIME}
                schema = pl.Schema({name: columns[name] for name in stored})
                parts = (
                    pl.read_parquet(
                        [root / unquote(path) for path, _ in run],
                        schema=schema,
                        missing_columns="insert",
                    )
                    for run in runs
                )
                meta = CommitProperties(
                    custom_metadata={"microfs.operation": "compact", _REWRITE_KEY: "OPTIMIZE"},
                    max_commit_retries=0,
                )
                removed = {path: size for run in runs for path, size in run}
                added = _commit_rewrite(table, root, parts, removed, meta, data_change=False)
            result = CompactResult(
                table_version=self.table_version(),
                files_removed=sum(len(run) for run in runs),
                files_added=added,
            )
        if self.definition.statistics and result.table_version != before:
            self._store_statistics(result.table_version, same_rows_as=before)
        return result

    def _compaction_order(self, table: DeltaTable) -> list[tuple[str, int]]:
        """The latest version's data files (log path, bytes) in the order a scan reads them."""
        files = self._files(table.version(), table)
        by_time = _by_event_time(files, self.event_time) if self.event_time else None
        files = by_time if by_time is not None else files
        return list(zip(files.get_column("path"), files.get_column("size_bytes"), strict=True))

    @_boundary
    def vacuum(
        self,
        retention: timedelta = _DEFAULT_RETENTION,
        *,
        dry_run: bool = False,
        force: bool = False,
    ) -> VacuumResult:
        """Delete data files no longer needed by versions newer than ``retention``.

        ``retention`` is rounded up to whole hours (what Delta counts in). Data files
        that no commit references (left by a writer killed mid-insert) go too, once
        they are older than ``retention``, and so do the scratch tables beside the table
        that such a writer left while rewriting files for an upsert.

        Files that recorded training datasets need are kept, so their data stays
        reproducible; ``force=True`` deletes those too and names the training datasets
        it breaks. The default retention (7 days) is far longer than any write.

        Row versions that upserts replaced longer than ``retention`` ago are pruned from
        the group's superseded log likewise, unless a known-at feature view reads the
        group: then they are kept, and ``force=True`` prunes them and names those views
        in ``broken``.
        """
        if not isinstance(retention, timedelta) or retention < timedelta(0):
            raise DefinitionError(
                f"retention={retention!r} must be a non-negative datetime.timedelta"
            )
        # deltalake takes whole hours: round up, so no file younger than asked is deleted
        hours = math.ceil(retention.total_seconds() / 3600)
        with self._writer_lock():
            # read under the lock: a pin written under writers_held is seen, or comes after
            pins = dict(self._pins()) if self._pins is not None else {}
            keep = sorted(pins) if not force else []
            table = self._table()
            before = table.version()
            would = table.vacuum(
                retention_hours=hours,
                dry_run=True,
                enforce_retention_duration=False,
                keep_versions=keep or None,
                full=True,
            )
            broken: list[str] = []
            if force and pins:
                gone = set(would)
                for pinned, datasets in sorted(pins.items()):
                    needed = {Path(u).name for u in self._table(pinned).file_uris()}
                    if needed & {Path(g).name for g in gone}:
                        broken.extend(datasets)
            history_views = list(self._history_pins()) if self._history_pins is not None else []
            pruned = 0
            if force or not history_views:
                cutoff = self.commit_clock() - timedelta(hours=hours)
                pruned = self._superseded_log().prune(cutoff, dry_run=dry_run)
                if pruned:
                    broken.extend(history_views)
            if dry_run:
                files = would
            else:
                self._keep_statistics(would)
                files = table.vacuum(
                    retention_hours=hours,
                    dry_run=False,
                    enforce_retention_duration=False,
                    keep_versions=keep or None,
                    full=True,
                    commit_properties=CommitProperties(
                        custom_metadata={"microfs.operation": "vacuum"}
                    ),
                )
                if pruned:
                    self._superseded_log().vacuum(hours)
                # writers hold this lock while they rewrite: any scratch table is a leftover
                for scratch in self.path.parent.glob(f"{_scratch_prefix(self.path)}*"):
                    shutil.rmtree(scratch, ignore_errors=True)
        if not dry_run and self.definition.statistics:
            # the vacuum's own commits keep the rows: their statistics are the last version's
            for version in range(before + 1, self.table_version() + 1):
                self._store_statistics(version, same_rows_as=before)
        return VacuumResult(
            files=tuple(files),
            dry_run=dry_run,
            kept_versions=tuple(keep),
            broken=tuple(broken),
            superseded_pruned=pruned,
        )


@contextlib.contextmanager
def writers_held(groups: Sequence[FeatureGroup]) -> Iterator[None]:
    """Hold the writer lock of each group (each table once, in path order).

    While held, no insert, compaction or vacuum of these groups runs: what is read and
    written meanwhile (e.g. the table versions a training dataset pins, and its pin)
    is one consistent step for them.
    """
    with contextlib.ExitStack() as stack:
        seen: dict[Path, FeatureGroup] = {}
        for group in groups:
            seen.setdefault(group.path.resolve(), group)
        for _, group in sorted(seen.items()):
            stack.enter_context(group._writer_lock())
        yield


def _validation_note(
    policy: str, report: ValidationReport | None, rejected: pl.DataFrame | None
) -> dict[str, str]:
    """Commit metadata recording a batch's validation (empty for a group without checks)."""
    if report is None:
        return {}
    summary = {
        "policy": policy,
        "passed": report.passed,
        "rows": report.rows,
        "rows_rejected": rejected.height if rejected is not None else 0,
        "failed": {
            row["expectation"]: row["failing_rows"] for row in report.failures.iter_rows(named=True)
        },
    }
    return {_VALIDATION_KEY: json.dumps(summary, separators=(",", ":"))}


def _typed(kind: str, value: int) -> pl.Expr:
    """A range bound of :class:`_Range` (microseconds, days or an integer) as a typed literal."""
    if kind == "datetime":
        return pl.lit(value, dtype=pl.Int64).cast(DATETIME)
    if kind == "date":
        return pl.lit(value, dtype=pl.Int32).cast(pl.Date)
    return pl.lit(value)


def _has_commit_times(table: DeltaTable) -> bool:
    """Whether the table's rows carry their commit time (tables made since MicroFS records it)."""
    return COMMIT_TIME in {field.name for field in table.schema().fields}


def _fingerprint(paths: Sequence[str]) -> str:
    """A digest of data file names in read order (names only, so a copied lake matches)."""
    names = "\n".join(path.rsplit("/", 1)[-1] for path in paths)
    return hashlib.sha256(names.encode("utf-8")).hexdigest()


def _by_event_time(actions: pl.DataFrame, time: str) -> pl.DataFrame | None:
    """Data files (add actions) in the order a scan reads them: by their ``time`` range.

    None when the files carry no statistics of ``time``.
    """
    low, high = f"min.{time}", f"max.{time}"
    if low not in actions.columns or high not in actions.columns:
        return None
    return actions.sort([low, high, "path"], nulls_last=True)


def _in_order(frame: pl.DataFrame) -> pa.Table:
    """``frame`` as an Arrow table of one record batch: what deltalake writes in row order.

    deltalake's ``write_deltalake`` (1.6) hands a table's record batches to its threads and
    writes them into the file as they finish: a 20-batch table came back interleaved in
    each of 20 tries. A batch is stored in event-time then key order (what
    :meth:`FeatureGroup.scan_and_record_order` proves), whatever chunks it arrived in
    (a concatenation, or the streaming sort of :func:`~microfs.schema.prepare_batch`).
    """
    return frame.rechunk().to_arrow()


def _shares_times(times: pl.Series) -> bool:
    """Whether two consecutive values of a sorted column are equal (one pass, no copy)."""
    return times.len() > 1 and bool((times.slice(1) == times.slice(0, times.len() - 1)).any())


def _non_decreasing(columns: Sequence[str]) -> pl.Expr:
    """Whether consecutive rows never go down in ``columns``' lexicographic order."""
    last = columns[-1]
    ok = pl.col(last) >= pl.col(last).shift(1)
    for column in reversed(columns[:-1]):
        now, before = pl.col(column), pl.col(column).shift(1)
        ok = (now > before) | ((now == before) & ok)
    return ok.fill_null(True).all()


def _rows_of(entry: Mapping[str, Any]) -> int | None:
    metrics = entry.get("operationMetrics") or {}
    if "num_added_rows" in metrics:
        return int(metrics["num_added_rows"])
    if "num_target_rows_inserted" in metrics:
        return int(metrics["num_target_rows_inserted"]) + int(
            metrics.get("num_target_rows_updated", 0)
        )
    rows = entry.get("microfs.rows")  # an upsert that rewrote files records its batch
    return int(rows) if rows is not None else None


@dataclass(frozen=True)
class _Range:
    """A batch's range of one key column, as integers (microseconds, days or the value).

    Integers, not Python dates: every value Polars stores has one (year 0 or 10000 has
    no ``datetime``), and an integer cannot be mis-formatted in a merge predicate.
    """

    kind: str
    low: int
    high: int

    def widened(self) -> tuple[int, int]:
        """The range as Delta's file statistics can be compared with it.

        The Delta log keeps timestamp statistics truncated to the millisecond: a file
        whose last row is at ``…229001`` µs records ``…229000``. A pruning bound inside that
        millisecond would skip the file and an upsert would append a duplicate, so datetime
        bounds are widened to the whole milliseconds around them (matching stays exact: it
        is the keys' equality).
        """
        if self.kind != "datetime":
            return self.low, self.high
        low = max((self.low // 1000 - 1) * 1000, _INT64_MIN)
        high = min((self.high // 1000 + 2) * 1000, _INT64_MAX)
        return low, high

    def condition(self, column: str) -> str:
        """``column`` within the range, in a merge predicate Delta prunes files by."""
        low, high = self.widened()
        quoted = _quote(column)
        return (
            f"t.{quoted} >= {_literal(self.kind, low)} AND "
            f"t.{quoted} <= {_literal(self.kind, high)}"
        )


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _as_integer(expr: pl.Expr, kind: str) -> pl.Expr:
    """A range column as integers: datetimes in microseconds, dates in days."""
    if kind == "datetime":
        return expr.dt.epoch("us")
    if kind == "date":
        return expr.dt.epoch("d").cast(pl.Int64)
    return expr.cast(pl.Int64)


def _batch_ranges(
    batch: pl.DataFrame, schema: Mapping[str, str], columns: Sequence[str]
) -> dict[str, _Range]:
    if not columns:
        return {}
    row = batch.select(
        [_as_integer(pl.col(c), schema[c]).min().alias(f"{c}\x00min") for c in columns]
        + [_as_integer(pl.col(c), schema[c]).max().alias(f"{c}\x00max") for c in columns]
    ).row(0)
    n = len(columns)
    return {c: _Range(schema[c], int(row[i]), int(row[n + i])) for i, c in enumerate(columns)}


def _add_actions(table: DeltaTable) -> pl.DataFrame:
    """A table version's data files with their row counts and statistics (flattened)."""
    return pl.DataFrame(table.get_add_actions(flatten=True))


_NS_LOW_US = -(2**63) // 1000 + 1
_NS_HIGH_US = (2**63 - 1) // 1000
"""The instants a nanosecond timestamp holds (about 1677 to 2262), in microseconds."""


def _prunable(files: pl.DataFrame, ranges: Mapping[str, _Range]) -> dict[str, _Range]:
    """The ranges a merge predicate may carry for Delta to prune files by.

    Delta's file pruning compares timestamp statistics as nanoseconds: for an instant
    outside about 1677-2262 they overflow, and a file holding the row a merge must find
    could be skipped (the upsert would append a duplicate). A datetime range is left out
    of the predicate (no pruning by it, the same result) when the batch or any stored file
    reaches outside that window. ``files`` are the table's add actions (flattened).
    """
    kept: dict[str, _Range] = {}
    for column, bounds in ranges.items():
        if bounds.kind == "datetime":
            low, high = bounds.widened()
            if low < _NS_LOW_US or high > _NS_HIGH_US:
                continue
            stats = [f"min.{column}", f"max.{column}"]
            if files.height and all(c in files.columns for c in stats):
                stored = files.select(
                    pl.col(stats[0]).min().dt.epoch("us"), pl.col(stats[1]).max().dt.epoch("us")
                ).row(0)
                if any(v is not None and not _NS_LOW_US <= v <= _NS_HIGH_US for v in stored):
                    continue
        kept[column] = bounds
    return kept


def _cannot_overlap(table: DeltaTable, files: pl.DataFrame, ranges: Mapping[str, _Range]) -> bool:
    """True when no stored row can share a key with the batch, judged from file statistics.

    A row overlaps only if all its key columns are equal, so a file is out of reach when
    the batch's range of one key column lies outside the file's range of that column.
    Delta statistics keep timestamps to the millisecond only (truncated), so they are
    widened by a millisecond; files that only that widening keeps in reach (a batch
    starting within a millisecond of the stored maximum) are judged again from the exact
    statistics in their Parquet footers. ``files`` are the table's add actions (flattened).
    """
    in_reach = files.filter(~_disjoint(files, ranges, slack=_STATS_SLACK))
    if in_reach.height == 0:
        return True
    times = [c for c, r in ranges.items() if r.kind == "datetime"]
    if not times or in_reach.height > _MAX_FOOTERS:
        return False
    exact = in_reach.with_columns(_footer_ranges(table, in_reach["path"], times))
    return bool(exact.select(_disjoint(exact, ranges, slack=timedelta(0)).all()).item())


def _disjoint(files: pl.DataFrame, ranges: Mapping[str, _Range], *, slack: timedelta) -> pl.Expr:
    """Per file: whether some key column's batch range lies outside the file's range."""
    outside = []
    for column, r in ranges.items():
        low, high = f"min.{column}", f"max.{column}"
        if low not in files.columns or high not in files.columns:
            continue
        stored_lo = _as_integer(pl.col(low), r.kind)
        stored_hi = _as_integer(pl.col(high), r.kind)
        if r.kind == "datetime":
            widen = slack // timedelta(microseconds=1)
            stored_lo, stored_hi = stored_lo - widen, stored_hi + widen
        outside.append(
            ((pl.lit(r.high) < stored_lo) | (pl.lit(r.low) > stored_hi)).fill_null(False)
        )
    return pl.any_horizontal(outside) if outside else pl.repeat(False, pl.len())


def _scratch_prefix(table: Path) -> str:
    """The name every scratch table of an upsert's rewrite of ``table`` starts with."""
    return f".{table.name}{_SCRATCH}"


def _commit_rewrite(
    table: DeltaTable,
    root: Path,
    parts: Iterable[pl.DataFrame],
    removed: Mapping[str, int],
    meta: CommitProperties,
    *,
    data_change: bool = True,
) -> int:
    """Commit ``parts`` as new data files of ``table`` and ``removed`` (log path to size) gone.

    deltalake writes each part, in row order, and its statistics as a scratch table beside
    the group (one part is in memory at a time); their files move into the table's folder
    and one transaction adds them and removes the old ones. Files moved in for a commit
    that did not land are deleted again. ``data_change=False`` marks a rewrite of the
    same rows (a compaction). Returns the number of files added.
    """
    scratch = root.parent / f"{_scratch_prefix(root)}{uuid.uuid4().hex}"
    moved: list[Path] = []
    try:
        actions: list[AddAction | RemoveAction] = []
        for number, rows in enumerate(parts):
            folder = scratch / str(number)
            write_deltalake(str(folder), _in_order(rows))
            del rows
            log = (folder / "_delta_log" / f"{0:020d}.json").read_text(encoding="utf-8")
            for entry in map(json.loads, log.splitlines()):
                add = entry.get("add")
                if add is None:
                    continue
                name = unquote(add["path"])
                os.replace(folder / name, root / name)
                moved.append(root / name)
                actions.append(
                    AddAction(
                        path=add["path"],
                        size=int(add["size"]),
                        partition_values={},
                        modification_time=int(add["modificationTime"]),
                        data_change=data_change,
                        stats=add.get("stats") or "",
                    )
                )
        now = int(time.time() * 1000)
        actions += [RemoveAction(path, data_change, now, size) for path, size in removed.items()]
        table.create_write_transaction(
            actions, mode="append", schema=table.schema(), commit_properties=meta
        )
    except BaseException:
        if moved and not _landed(root, moved):
            for path in moved:
                path.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return len(moved)


def _compaction_runs(
    files: Sequence[tuple[str, int]], target_bytes: int
) -> list[list[tuple[str, int]]]:
    """Runs of two or more consecutive files under ``target_bytes``, each under it in all.

    >>> _compaction_runs([("a", 1), ("b", 1), ("c", 9), ("d", 1), ("e", 5), ("f", 5)], 8)
    [[('a', 1), ('b', 1)], [('d', 1), ('e', 5)]]
    """
    runs: list[list[tuple[str, int]]] = []
    run: list[tuple[str, int]] = []
    total = 0
    for path, size in [*files, ("", target_bytes)]:  # a large file ends the last run
        if size >= target_bytes or total + size > target_bytes:
            if len(run) > 1:
                runs.append(run)
            run, total = [], 0
            if size >= target_bytes:
                continue
        run.append((path, size))
        total += size
    return runs


def _landed(root: Path, files: Sequence[Path]) -> bool:
    """Whether the latest version of the table at ``root`` holds any of ``files``."""
    try:
        current = {Path(uri.removeprefix("file://")) for uri in DeltaTable(str(root)).file_uris()}
    except Exception:  # unreadable now: keep the files, a vacuum removes them if unused
        return True
    return any(path in current for path in files)


def _footer_ranges(table: DeltaTable, paths: pl.Series, columns: Sequence[str]) -> list[pl.Series]:
    """Exact ``min.<column>`` and ``max.<column>`` of each file, from its Parquet footer."""
    root = Path(table.table_uri.removeprefix("file://"))
    lows: dict[str, list[Any]] = {c: [] for c in columns}
    highs: dict[str, list[Any]] = {c: [] for c in columns}
    for path in paths:
        metadata = pq.ParquetFile(root / unquote(path)).metadata
        arrow = metadata.schema.to_arrow_schema()
        for column in columns:
            stats = [
                metadata.row_group(g).column(arrow.names.index(column)).statistics
                for g in range(metadata.num_row_groups)
            ]
            # raw integers (microseconds), which every stored time has, unlike datetime
            field = arrow.field(column).type
            known = (
                bool(stats)
                and all(s is not None and s.has_min_max for s in stats)
                and getattr(field, "unit", None) == "us"
            )
            lows[column].append(min(s.min_raw for s in stats) if known else None)
            highs[column].append(max(s.max_raw for s in stats) if known else None)
    return [
        *(pl.Series(f"min.{c}", lows[c], dtype=pl.Int64).cast(DATETIME) for c in columns),
        *(pl.Series(f"max.{c}", highs[c], dtype=pl.Int64).cast(DATETIME) for c in columns),
    ]


def _quote(column: str) -> str:
    return f"`{column}`"


def _literal(kind: str, value: int) -> str:
    """A merge predicate literal of a range bound: an integer, cast in the predicate."""
    number = int(value)
    if kind == "datetime":
        return f"arrow_cast({number}, 'Timestamp(Microsecond, Some(\"UTC\"))')"
    if kind == "date":
        return f"arrow_cast({number}, 'Date32')"
    return str(number)


def _height(df: object) -> int | None:
    """Rows of a batch, where the frame says so cheaply (for deciding to draw a bar)."""
    height = getattr(df, "height", None)
    if isinstance(height, int):
        return height
    rows = getattr(df, "num_rows", None)
    if isinstance(rows, int):
        return rows
    try:
        return len(df)  # type: ignore[arg-type]
    except TypeError:
        return None


def _key_frame(keys: object) -> pl.DataFrame:
    """The keys to delete as a frame: a Polars, pandas or Arrow frame, or a list of dicts."""
    if isinstance(keys, Sequence) and not isinstance(keys, (str, bytes)):
        if not keys:
            return pl.DataFrame()
        if not all(isinstance(k, Mapping) for k in keys):
            raise SchemaError(
                f"delete_rows takes a frame or a list of dicts of key values, got {keys!r}"
            )
        try:
            return pl.DataFrame(list(keys))
        except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
            raise SchemaError(f"could not read the keys as a table: {exc}") from exc
    return to_polars(keys)


def _arrow_type(dtype: pl.DataType) -> pa.DataType:
    """The Arrow type Polars writes for ``dtype`` (what the group's Delta table stores)."""
    arrow: pa.DataType = pl.Series("x", [], dtype=dtype).to_arrow().type
    return arrow


def _with_appended_nulls(df: object, definition: FeatureGroupDefinition) -> pl.DataFrame:
    """The batch with null columns for appended features it lacks (the input is not changed)."""
    frame = to_polars(df)
    missing = [c for c in definition.appended if c not in frame.columns]
    if not missing:
        return frame
    return frame.with_columns(
        pl.lit(None, dtype=polars_dtype(definition.schema[c])).alias(c) for c in missing
    )
