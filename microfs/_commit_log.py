"""Commit times and superseded row versions: the storage side of known-at joins.

Part of the feature-group storage layer (only :mod:`microfs.feature_group` uses it).

- **Commit times.** Every commit MicroFS makes to a group's table records its commit time
  in the commit's metadata (``microfs.commit_time``, microseconds since the epoch), and
  every row an insert writes carries it in the :data:`~microfs.known.COMMIT_TIME` column,
  so a compaction, which rewrites files, keeps it. The rule is that of Delta's in-commit
  timestamps: ``max(now, previous + 1 µs)``, strictly increasing per table whatever the
  clock does; file modification times play no part.
- **Superseded versions.** An upsert that replaces stored rows first appends the rows it
  replaces, with their commit time, the replacing commit's time
  (:data:`~microfs.known.SUPERSEDED_AT`) and table version (:data:`SUPERSEDED_VERSION`),
  to a second Delta table beside the group's (``.v<version>.superseded/``). A row there
  counts only once the table's commit at that version records that time, so rows left by
  a writer that died between the two commits are ignored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError

from microfs.known import COMMIT_TIME, SUPERSEDED_AT

__all__ = [
    "COMMIT_TIME_KEY",
    "HISTORY_FROM_KEY",
    "SUPERSEDED_VERSION",
    "Clock",
    "SupersededLog",
    "commit_times",
    "next_commit_time",
    "system_clock",
]

SUPERSEDED_VERSION = "_microfs_superseded_version"
"""The table version whose commit replaced a superseded row."""

COMMIT_TIME_KEY = "microfs.commit_time"
"""Commit metadata: the commit's MicroFS commit time, in microseconds since the epoch."""

HISTORY_FROM_KEY = "microfs.history_from"
"""Superseded-log commit metadata: versions replaced before this time were pruned."""

Clock = Callable[[], datetime]
"""Gives the current time (aware); a test may give a group another one."""

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
_RECENT = 16  # commits searched for the last recorded time before reading the whole log


def system_clock() -> datetime:
    """The current time in UTC."""
    return datetime.now(timezone.utc)


def micros(moment: datetime) -> int:
    """Microseconds since the epoch."""
    return (moment - _EPOCH) // _US


def from_micros(value: int) -> datetime:
    """The instant ``value`` microseconds after the epoch, in UTC."""
    return _EPOCH + timedelta(microseconds=value)


def _recorded(entries: Iterable[Mapping[str, Any]]) -> list[int]:
    times = []
    for entry in entries:
        value = entry.get(COMMIT_TIME_KEY)
        if value is not None:
            with contextlib.suppress(TypeError, ValueError):
                times.append(int(value))
    return times


def next_commit_time(table: DeltaTable, clock: Clock, issued: int | None) -> int:
    """The next commit's time: ``max(now, previous + 1 µs)``, in microseconds.

    ``previous`` is the latest time recorded in the table's log, or ``issued`` (the last
    time this process handed out for the table, committed or not) when that is later.
    """
    times = _recorded(table.history(_RECENT))
    if not times:
        times = _recorded(table.history())
    floor = max([*times, *([issued] if issued is not None else [])], default=None)
    now = micros(clock())
    return now if floor is None else max(now, floor + 1)


def commit_times(table: DeltaTable, version: int) -> pl.DataFrame:
    """Table version and recorded commit time of each commit up to ``version``."""
    rows = [
        (int(entry["version"]), int(entry[COMMIT_TIME_KEY]))
        for entry in table.history()
        if entry.get(COMMIT_TIME_KEY) is not None and int(entry["version"]) <= version
    ]
    return pl.DataFrame(
        rows, schema={SUPERSEDED_VERSION: pl.Int64, SUPERSEDED_AT: pl.Int64}, orient="row"
    ).with_columns(pl.col(SUPERSEDED_AT).cast(pl.Datetime("us", "UTC")))


class SupersededLog:
    """The Delta table of row versions that upserts replaced, beside a group's table.

    Args:
        path: The log's folder.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def _table(self) -> DeltaTable | None:
        try:
            return DeltaTable(str(self.path))
        except (TableNotFoundError, DeltaError):
            return None

    def append(self, rows: pl.DataFrame) -> None:
        """Append replaced versions (one Delta commit; the table is created if missing)."""
        if rows.height == 0:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        write_deltalake(
            str(self.path),
            rows.to_arrow(),
            mode="append",
            schema_mode="merge",
            commit_properties=CommitProperties(custom_metadata={"microfs.operation": "supersede"}),
        )

    def erase(self, keys: pl.DataFrame) -> None:
        """Delete every logged version of the rows ``keys`` names (its columns are keys).

        What :meth:`microfs.FeatureGroup.delete_rows` erases goes from the history too: a
        deleted row is not kept anywhere, so no known-at frame shows it again.
        """
        table = self._table()
        if table is None or keys.height == 0:
            return
        names = set(table.schema().to_arrow().names)
        if not set(keys.columns) <= names:
            return  # the log never held rows of these columns
        condition = " AND ".join(f"t.{_quote(c)} = s.{_quote(c)}" for c in keys.columns)
        table.merge(
            keys.to_arrow(),
            predicate=condition,
            source_alias="s",
            target_alias="t",
            commit_properties=CommitProperties(custom_metadata={"microfs.operation": "erase"}),
        ).when_matched_delete().execute()

    def scan(self, schema: Mapping[str, pl.DataType]) -> pl.LazyFrame:
        """Every logged version with the group's columns (``schema``) and the log's own.

        Columns the log has not seen yet (added to the group later) read null.
        """
        own = {
            COMMIT_TIME: pl.Datetime("us", "UTC"),
            SUPERSEDED_AT: pl.Datetime("us", "UTC"),
            SUPERSEDED_VERSION: pl.Int64(),
        }
        table = self._table()
        if table is None:
            return pl.LazyFrame(schema={**schema, **own})
        frame = pl.scan_delta(str(self.path), version=table.version())
        names = frame.collect_schema().names()
        return frame.select(
            [
                (pl.col(c) if c in names else pl.lit(None)).cast(t).alias(c)
                for c, t in {**schema, **own}.items()
            ]
        )

    def history_from(self) -> datetime | None:
        """Versions replaced before this time were pruned (None: nothing was)."""
        table = self._table()
        if table is None:
            return None
        marks = [
            int(e[HISTORY_FROM_KEY]) for e in table.history() if e.get(HISTORY_FROM_KEY) is not None
        ]
        return from_micros(max(marks)) if marks else None

    def prunable(self, before: datetime) -> int:
        """How many logged versions were replaced before ``before``."""
        table = self._table()
        if table is None:
            return 0
        count: int = (
            pl.scan_delta(str(self.path), version=table.version())
            .filter(pl.col(SUPERSEDED_AT) < before)
            .select(pl.len())
            .collect()
            .item()
        )
        return count

    def prune(self, before: datetime, *, dry_run: bool) -> int:
        """Delete versions replaced before ``before`` and mark the log's horizon there.

        Returns how many were (or, for a dry run, would be) deleted.
        """
        count = self.prunable(before)
        table = self._table()
        if table is None or count == 0 or dry_run:
            return count
        literal = before.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        table.delete(
            f"`{SUPERSEDED_AT}` < '{literal}'",
            commit_properties=CommitProperties(
                custom_metadata={
                    "microfs.operation": "prune",
                    HISTORY_FROM_KEY: str(micros(before)),
                }
            ),
        )
        return count

    def vacuum(self, retention_hours: int) -> None:
        """Delete the log's files no longer referenced (after :meth:`prune`)."""
        table = self._table()
        if table is not None:
            table.vacuum(
                retention_hours=retention_hours,
                dry_run=False,
                enforce_retention_duration=False,
                full=True,
            )


def _quote(column: str) -> str:
    return "`" + column.replace("`", "``") + "`"
