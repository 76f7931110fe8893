"""Feature groups: versioned Delta tables with upserts, time travel and a strict write path.

This is the one module that talks to ``deltalake``. A feature group version is one Delta
table under ``<lake>/feature_groups/<name>/v<version>/``; any Delta reader can read it as
a plain table.

An insert is one Delta commit, all or nothing, with upsert semantics on (primary keys,
event time). When the batch provably cannot overlap stored rows (some key column's value
range in the batch is disjoint from the stored range, e.g. every event time is later
than the stored maximum), it is a plain append; otherwise it is a merge whose predicate
carries the batch's key ranges, so Delta prunes the files that cannot hold a match.

Writers of one group on one machine take turns through a lock file; a commit that still
conflicts (another Delta writer) is retried with jittered backoff.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import polars as pl
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError

from microfs.errors import (
    CommitConflictError,
    DefinitionError,
    NotFoundError,
)
from microfs.group_definition import FeatureGroupDefinition
from microfs.pit import RowOrder, order_spine
from microfs.schema import DATETIME, aware_utc, prepare_batch

__all__ = [
    "Commit",
    "CompactResult",
    "Extent",
    "FeatureGroup",
    "FeatureGroupDefinition",
    "InsertResult",
    "VacuumResult",
]

_MAX_ATTEMPTS = 8
_BACKOFF_SECONDS = 0.05
_DEFAULT_RETENTION = timedelta(days=7)
_STATS_SLACK = timedelta(milliseconds=1)
_MAX_FOOTERS = 8  # files whose Parquet footers an insert may read to prove an append
_KEPT_ORDERS = 64  # proven row orders remembered on disk per table
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
        version: the Delta table version after the insert.
        rows_inserted: rows appended (new key and event time).
        rows_updated: stored rows replaced (same key and event time).
        mode: ``"append"`` (fast path), ``"merge"`` (upsert) or ``"noop"`` (empty batch).
    """

    version: int
    rows_inserted: int
    rows_updated: int
    mode: Literal["append", "merge", "noop"]


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
    """One entry of a feature group's history."""

    version: int
    timestamp: datetime
    operation: str
    rows: int | None


@dataclass(frozen=True)
class CompactResult:
    """What a compaction did."""

    version: int
    files_removed: int
    files_added: int


@dataclass(frozen=True)
class VacuumResult:
    """What a vacuum deleted (or would delete, for a dry run)."""

    files: tuple[str, ...]
    dry_run: bool
    kept_versions: tuple[int, ...]
    broken: tuple[str, ...] = ()


CommitListener = Callable[["FeatureGroup", InsertResult], None]
PinsProvider = Callable[[], Mapping[int, Sequence[str]]]


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
    ) -> None:
        self.definition = definition
        self.path = path
        self._on_commit = on_commit
        self._pins = pins
        self._row_order: dict[int, RowOrder] = {}
        self._file_actions: dict[int, pl.DataFrame] = {}

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

    def create_table(self) -> None:
        """Create the empty Delta table (table version 0) unless it exists."""
        if DeltaTable.is_deltatable(str(self.path)):
            return
        self.path.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(DeltaError):
            DeltaTable.create(
                str(self.path),
                self.schema.to_arrow(),
                mode="ignore",
                name=self.name,
                description=self.description or None,
                commit_properties=CommitProperties(custom_metadata={"microfs.operation": "create"}),
            )

    def _table(self, version: int | None = None) -> DeltaTable:
        try:
            return DeltaTable(str(self.path), version=version)
        except DeltaError as exc:
            if version is not None:
                latest = self.table_version()
                raise NotFoundError(
                    f"feature group {self.name!r} has no table version {version}; versions "
                    f"0..{latest} exist"
                ) from exc
            raise NotFoundError(
                f"the Delta table of feature group {self.name!r} is missing at {self.path}"
            ) from exc

    def table_version(self) -> int:
        """The latest Delta table version."""
        version: int = self._table().version()
        return version

    # -- writing ---------------------------------------------------------------------------

    def insert(self, df: object) -> InsertResult:
        """Upsert a batch on (primary keys, event time) in one Delta commit.

        Rows whose key and event time are stored already replace the stored rows; the
        others are appended. Takes a Polars, pandas or Arrow table; bad input raises a
        :class:`microfs.SchemaError` (or subclass) and writes nothing.
        """
        d = self.definition
        batch = prepare_batch(df, d.schema, primary_keys=d.primary_keys, event_time=d.event_time)
        if batch.height == 0:
            return InsertResult(self.table_version(), 0, 0, "noop")
        if d.event_time is None:
            # prepare_batch sorts by event time; a static group clusters files by key instead
            batch = batch.sort(list(d.primary_keys))
        elif _shares_times(batch.get_column(d.event_time)):
            # Rows sharing an event time go in key order, so a table written by appends is
            # in a point-in-time spine's full order (see scan_and_record_order). A batch in
            # event-time order without ties is in that order already: no sort, no copy.
            ordered = order_spine(batch.lazy(), d.event_time, d.primary_keys, time_sorted=True)
            batch = ordered.collect(engine="in-memory")
        with self._writer_lock():
            result = self._with_retries(lambda: self._write(batch))
        if self._on_commit is not None:
            self._on_commit(self, result)
        return result

    def _write(self, batch: pl.DataFrame) -> InsertResult:
        table = self._table()
        ranges = _batch_ranges(batch, self._range_columns())
        meta = CommitProperties(
            custom_metadata={"microfs.operation": "insert", "microfs.rows": str(batch.height)},
            max_commit_retries=0,
        )
        if _cannot_overlap(table, ranges):
            write_deltalake(table, batch.to_arrow(), mode="append", commit_properties=meta)
            return InsertResult(table.version(), batch.height, 0, "append")
        keys = self.definition.upsert_keys
        condition = " AND ".join(
            [f"t.{_quote(k)} = s.{_quote(k)}" for k in keys]
            + [
                f"t.{_quote(col)} >= {_literal(lo)} AND t.{_quote(col)} <= {_literal(hi)}"
                for col, (lo, hi) in ranges.items()
            ]
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

    def _range_columns(self) -> list[str]:
        d = self.definition
        return [c for c in d.upsert_keys if d.schema[c] in _RANGE_TYPES]

    def _with_retries(self, action: Callable[[], InsertResult]) -> InsertResult:
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
        lock = self.path.parent / f".{self.path.name}.lock"
        with lock.open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    # -- reading ---------------------------------------------------------------------------

    def resolve_version(self, *, version: int | None = None, as_of: datetime | None = None) -> int:
        """The Delta table version that ``version`` or ``as_of`` (a commit time) selects."""
        if version is not None and as_of is not None:
            raise DefinitionError("give either version= or as_of=, not both")
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

    def scan(self, version: int | None = None, as_of: datetime | None = None) -> pl.LazyFrame:
        """A lazy scan of the table at a version (or commit time); the latest by default.

        >>> fg.scan().filter(pl.col("age") > 30).collect()  # doctest: +SKIP
        """
        resolved = self.resolve_version(version=version, as_of=as_of)
        files = self._table(resolved).file_uris()
        missing = [f for f in files if not Path(f.removeprefix("file://")).exists()]
        if missing:
            raise NotFoundError(
                f"table version {resolved} of feature group {self.name!r} was vacuumed "
                f"({len(missing)} data file(s) are gone); read a later version"
            )
        return pl.scan_delta(str(self.path), version=resolved)

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
        if time is None:
            return self.scan(version=resolved), "none"
        table = self._table(resolved)
        actions = self._files(resolved, table)
        low, high = f"min.{time}", f"max.{time}"
        if actions.height == 0 or low not in actions.columns or high not in actions.columns:
            return self.scan(version=resolved), "none"
        by_name = {uri.rsplit("/", 1)[-1]: uri for uri in table.file_uris()}
        ordered = actions.sort([low, high, "path"], nulls_last=True)["path"].to_list()
        uris = [by_name.get(path.rsplit("/", 1)[-1]) for path in ordered]
        if None in uris or any(not Path(u.removeprefix("file://")).exists() for u in uris if u):
            return self.scan(version=resolved), "none"
        frame = pl.scan_parquet([u for u in uris if u is not None]).cast(self.schema)
        known = self._row_order.get(resolved)
        if known is None:
            fingerprint = _fingerprint(ordered)
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
            actions = pl.DataFrame(table.get_add_actions(flatten=True))
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

    def read(self, version: int | None = None, as_of: datetime | None = None) -> pl.DataFrame:
        """Like :meth:`scan`, collected."""
        return self.scan(version=version, as_of=as_of).collect()

    def count(self, version: int | None = None) -> int:
        """Rows at a table version, from the Delta log's statistics."""
        return int(self._table(version).count())

    def history(self) -> list[Commit]:
        """The table's commits, oldest first."""
        entries = self._table().history()
        commits = [
            Commit(
                version=int(e["version"]),
                timestamp=datetime.fromtimestamp(e["timestamp"] / 1000, tz=timezone.utc),
                operation=str(e.get("operation", "")),
                rows=_rows_of(e),
            )
            for e in entries
        ]
        return sorted(commits, key=lambda c: c.version)

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
        new = [f for f in table.file_uris() if f not in before]
        if not new:
            return latest, self.schema_frame()
        return latest, pl.scan_parquet(new, schema=self.schema)

    def schema_frame(self) -> pl.LazyFrame:
        """An empty frame with the group's schema."""
        return pl.LazyFrame(schema=self.schema)

    # -- maintenance -----------------------------------------------------------------------

    def compact(self) -> CompactResult:
        """Rewrite small files into larger ones (a new table version, same rows)."""
        with self._writer_lock():
            metrics = self._table().optimize.compact(
                commit_properties=CommitProperties(custom_metadata={"microfs.operation": "compact"})
            )
        return CompactResult(
            version=self.table_version(),
            files_removed=int(metrics.get("numFilesRemoved", 0)),
            files_added=int(metrics.get("numFilesAdded", 0)),
        )

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
        they are older than ``retention``.

        Files that recorded training datasets need are kept, so their data stays
        reproducible; ``force=True`` deletes those too and names the training datasets
        it breaks. The default retention (7 days) is far longer than any write.
        """
        if not isinstance(retention, timedelta) or retention < timedelta(0):
            raise DefinitionError(
                f"retention={retention!r} must be a non-negative datetime.timedelta"
            )
        pins = dict(self._pins()) if self._pins is not None else {}
        keep = sorted(pins) if not force else []
        # deltalake takes whole hours: round up, so no file younger than asked is deleted
        hours = math.ceil(retention.total_seconds() / 3600)
        with self._writer_lock():
            table = self._table()
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
            if dry_run:
                files = would
            else:
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
        return VacuumResult(
            files=tuple(files), dry_run=dry_run, kept_versions=tuple(keep), broken=tuple(broken)
        )


def _fingerprint(paths: Sequence[str]) -> str:
    """A digest of data file names in read order (names only, so a copied lake matches)."""
    names = "\n".join(path.rsplit("/", 1)[-1] for path in paths)
    return hashlib.sha256(names.encode("utf-8")).hexdigest()


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
    return None


def _batch_ranges(batch: pl.DataFrame, columns: Sequence[str]) -> dict[str, tuple[Any, Any]]:
    if not columns:
        return {}
    row = batch.select(
        [pl.col(c).min().alias(f"{c}\x00min") for c in columns]
        + [pl.col(c).max().alias(f"{c}\x00max") for c in columns]
    ).row(0)
    n = len(columns)
    return {c: (row[i], row[n + i]) for i, c in enumerate(columns)}


def _cannot_overlap(table: DeltaTable, ranges: Mapping[str, tuple[Any, Any]]) -> bool:
    """True when no stored row can share a key with the batch, judged from file statistics.

    A row overlaps only if all its key columns are equal, so a file is out of reach when
    the batch's range of one key column lies outside the file's range of that column.
    Delta statistics keep timestamps to the millisecond only (truncated), so they are
    widened by a millisecond; files that only that widening keeps in reach (a batch
    starting within a millisecond of the stored maximum) are judged again from the exact
    statistics in their Parquet footers.
    """
    files = pl.DataFrame(table.get_add_actions(flatten=True))
    in_reach = files.filter(~_disjoint(files, ranges, slack=_STATS_SLACK))
    if in_reach.height == 0:
        return True
    times = [c for c, (lo, _) in ranges.items() if isinstance(lo, datetime)]
    if not times or in_reach.height > _MAX_FOOTERS:
        return False
    exact = in_reach.with_columns(_footer_ranges(table, in_reach["path"], times))
    return bool(exact.select(_disjoint(exact, ranges, slack=timedelta(0)).all()).item())


def _disjoint(
    files: pl.DataFrame, ranges: Mapping[str, tuple[Any, Any]], *, slack: timedelta
) -> pl.Expr:
    """Per file: whether some key column's batch range lies outside the file's range."""
    outside = []
    for column, (lo, hi) in ranges.items():
        low, high = f"min.{column}", f"max.{column}"
        if low not in files.columns or high not in files.columns:
            continue
        stored_lo, stored_hi = pl.col(low), pl.col(high)
        if isinstance(lo, datetime):
            stored_lo, stored_hi = stored_lo - slack, stored_hi + slack
        outside.append(((pl.lit(hi) < stored_lo) | (pl.lit(lo) > stored_hi)).fill_null(False))
    return pl.any_horizontal(outside) if outside else pl.repeat(False, pl.len())


def _footer_ranges(table: DeltaTable, paths: pl.Series, columns: Sequence[str]) -> list[pl.Series]:
    """Exact ``min.<column>`` and ``max.<column>`` of each file, from its Parquet footer."""
    root = Path(table.table_uri.removeprefix("file://"))
    lows: dict[str, list[Any]] = {c: [] for c in columns}
    highs: dict[str, list[Any]] = {c: [] for c in columns}
    for path in paths:
        metadata = pq.ParquetFile(root / unquote(path)).metadata
        names = metadata.schema.to_arrow_schema().names
        for column in columns:
            stats = [
                metadata.row_group(g).column(names.index(column)).statistics
                for g in range(metadata.num_row_groups)
            ]
            known = all(s is not None and s.has_min_max for s in stats) and bool(stats)
            lows[column].append(min(s.min for s in stats) if known else None)
            highs[column].append(max(s.max for s in stats) if known else None)
    return [
        *(pl.Series(f"min.{c}", lows[c], dtype=DATETIME) for c in columns),
        *(pl.Series(f"max.{c}", highs[c], dtype=DATETIME) for c in columns),
    ]


def _quote(column: str) -> str:
    return f"`{column}`"


def _literal(value: Any) -> str:
    if isinstance(value, datetime):
        text = value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return f"'{text}'"
    if hasattr(value, "isoformat"):
        return f"'{value.isoformat()}'"
    return repr(int(value))
