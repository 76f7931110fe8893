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

Data quality lives beside the table, in ``<lake>/feature_groups/<name>/v<version>.quality/``:
``statistics/<table version>.json`` (written once per table version, by the insert that
made it when cheap, else by the first request; see :mod:`microfs.statistics`) and
``rejects/``, the Delta table of rows the ``quarantine``
policy refused. Each validated commit records its validation summary in its Delta commit
metadata (``microfs.validation``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import random
import time
import warnings
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

from microfs import statistics as stats
from microfs.errors import (
    CommitConflictError,
    DefinitionError,
    NotFoundError,
    SchemaError,
    ValidationError,
)
from microfs.expectations import REASON, ValidationReport, ValidationWarning, evaluate, split
from microfs.group_definition import FeatureGroupDefinition
from microfs.pit import order_spine
from microfs.schema import DATETIME, prepare_batch

__all__ = [
    "Commit",
    "CompactResult",
    "FeatureGroup",
    "FeatureGroupDefinition",
    "InsertResult",
    "VacuumResult",
]

RowOrder = Literal["keys", "time", "none"]
_MAX_ATTEMPTS = 8
_BACKOFF_SECONDS = 0.05
_DEFAULT_RETENTION = timedelta(days=7)
_STATS_SLACK = timedelta(milliseconds=1)
_MAX_FOOTERS = 8  # files whose Parquet footers an insert may read to prove an append
_KEPT_ORDERS = 64  # proven row orders remembered on disk per table
_VALIDATION_KEY = "microfs.validation"
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
        version: the Delta table version after the insert.
        rows_inserted: rows appended (new key and event time).
        rows_updated: stored rows replaced (same key and event time).
        mode: ``"append"`` (fast path), ``"merge"`` (upsert) or ``"noop"`` (empty batch).
        validation: the report of the group's expectations on the batch (None when the
            group has none).
        rows_rejected: rows the ``quarantine`` policy put in the rejects table.
    """

    version: int
    rows_inserted: int
    rows_updated: int
    mode: Literal["append", "merge", "noop"]
    validation: ValidationReport | None = None
    rows_rejected: int = 0


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

        The group's expectations are checked first, with its validation policy: a
        ``strict`` group raises :class:`microfs.ValidationError` and writes nothing,
        ``warn`` writes the batch with a :class:`microfs.ValidationWarning`,
        ``quarantine`` writes the passing rows and appends the failing ones, with a
        ``reason`` column, to the rejects table (:meth:`rejects`). When the batch is the
        whole new table version (the first insert), its statistics are computed from
        memory and stored with the version (see :meth:`statistics`).
        """
        d = self.definition
        batch = prepare_batch(df, d.schema, primary_keys=d.primary_keys, event_time=d.event_time)
        report, rejected = self._check(batch)
        if rejected is not None:
            batch, rejected = split(batch, d.expectations)
        if batch.height == 0 and (rejected is None or rejected.height == 0):
            return InsertResult(self.table_version(), 0, 0, "noop", validation=report)
        if d.event_time is None:
            # prepare_batch sorts by event time; a static group clusters files by key instead
            batch = batch.sort(list(d.primary_keys))
        else:
            # Rows sharing an event time go in key order, so a table written by appends is
            # in a point-in-time spine's full order (see scan_by_time).
            ordered = order_spine(batch.lazy(), d.event_time, d.primary_keys, time_sorted=True)
            batch = ordered.collect(engine="in-memory")
        note = _validation_note(d.validation, report, rejected)
        with self._writer_lock():
            if batch.height:
                write = (lambda: self._write(batch, note)) if note else lambda: self._write(batch)
                result = self._with_retries(write)
            else:
                result = InsertResult(self.table_version(), 0, 0, "noop")
            if rejected is not None and rejected.height:
                # the validation note goes with the rejects only when nothing else committed
                self._write_rejects(rejected, note if result.mode == "noop" else {})
        result = dataclasses.replace(
            result,
            validation=report,
            rows_rejected=rejected.height if rejected is not None else 0,
        )
        if result.mode != "noop":
            if d.statistics:
                self._store_statistics(result, batch)
            if self._on_commit is not None:
                self._on_commit(self, result)
        return result

    def _write(self, batch: pl.DataFrame, note: Mapping[str, str] | None = None) -> InsertResult:
        table = self._table()
        ranges = _batch_ranges(batch, self._range_columns())
        meta = CommitProperties(
            custom_metadata={
                "microfs.operation": "insert",
                "microfs.rows": str(batch.height),
                **(note or {}),
            },
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
        if not isinstance(as_of, datetime) or as_of.tzinfo is None:
            raise SchemaError(
                f"as_of={as_of!r} must be a timezone-aware datetime, e.g. "
                "datetime(2024, 1, 1, tzinfo=timezone.utc)"
            )
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

    def scan_by_time(self, version: int | None = None) -> tuple[pl.LazyFrame, RowOrder]:
        """A scan whose rows follow event time where the stored files allow, and their order.

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

    def _rows_and_range(self, column: str, version: int | None = None) -> tuple[int, Any, Any]:
        """A table version's row count and ``column``'s (min, max), from the Delta log alone.

        No data file is read. The range is (None, None) where the log keeps no statistics
        for ``column``.
        """
        actions = self._files(self.resolve_version(version=version))
        if actions.height == 0 or "num_records" not in actions.columns:
            return 0, None, None
        rows = int(actions.get_column("num_records").sum())
        low, high = f"min.{column}", f"max.{column}"
        if low not in actions.columns or high not in actions.columns:
            return rows, None, None
        return rows, actions.get_column(low).min(), actions.get_column(high).max()

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
        stored with the table version, once: by the insert that wrote it when its batch
        was the whole version, else by the first call for that version, which reads the
        version's own data (never a newer snapshot). Later calls read the stored file.
        A version vacuumed before its statistics were stored has none (NotFoundError).

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

    def _check(self, batch: pl.DataFrame) -> tuple[ValidationReport | None, pl.DataFrame | None]:
        """Validate a batch by the group's policy: raise, warn, or mark it for splitting.

        Returns the report (None without expectations) and, for a failing batch under
        ``quarantine``, the batch itself (to be split into passing and rejected rows).
        """
        d = self.definition
        if not d.expectations:
            return None, None
        report = evaluate(batch, d.expectations)
        if report.passed:
            return report, None
        if d.validation == "strict":
            raise ValidationError(
                f"feature group {self.name!r} refused the batch (validation='strict'); "
                f"nothing was written: {report.summary()}",
                report,
            )
        if d.validation == "warn":
            warnings.warn(
                f"feature group {self.name!r} wrote a batch that fails its expectations "
                f"(validation='warn'): {report.summary()}",
                ValidationWarning,
                stacklevel=3,
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
                commit_properties=meta,
            )
            return InsertResult(0, rejected.height, 0, "append")

        self._rejects_path().parent.mkdir(parents=True, exist_ok=True)
        self._with_retries(append)

    def _store_statistics(self, result: InsertResult, batch: pl.DataFrame) -> None:
        """Store the statistics of the version an insert committed, when that is cheap.

        When the insert appended to an empty table, the batch in memory is the whole
        version: it is summarised at once. Any other version would have to be read back
        in full, which an insert never does (an append stays proportional to its batch);
        its statistics are computed on the first :meth:`statistics` call and stored then.
        """
        rows = self.count(result.version)
        if result.mode != "append" or result.rows_inserted != rows:
            return
        document = stats.compute(batch, self.definition.schema, rows=rows)
        document["table_version"] = result.version
        stats.write_document(self._statistics_path(result.version), document)

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


def _fingerprint(paths: Sequence[str]) -> str:
    """A digest of data file names in read order (names only, so a copied lake matches)."""
    names = "\n".join(path.rsplit("/", 1)[-1] for path in paths)
    return hashlib.sha256(names.encode("utf-8")).hexdigest()


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
