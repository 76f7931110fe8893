"""An online table: the latest row per online key of one feature group, in memory.

Every feature group with ``online_keys`` is served online. Its :class:`OnlineTable` holds,
for each online key, the row with the greatest event time. Two rows with the same online
key and event time (possible when the online keys are a subset of the primary keys) are
ordered by the remaining primary key columns, in primary-key order: the greatest wins. A
static group (no event time) orders by those remaining columns alone; when its online keys
cover its primary keys every row is its own latest. Rows with a null online key are not
served (a null key matches nothing, as in the point-in-time join).

Layout: the columns live in growable numpy buffers (:mod:`microfs.online.columns`); a hash
index (:mod:`microfs.online.index`) maps a key to its row position, for one key (in Python)
and for many keys (vectorised in numpy); both are held by one ``Snapshot``, which this
module swaps or extends as commits arrive. :class:`~microfs.online.OnlineStore` holds the
tables of a process.

Freshness: an insert made in this process notes its table version
(:meth:`OnlineTable.committed`), and the next lookup applies what was committed since: only
the appended rows when every commit since was an append (``FeatureGroup.added_since``),
else a rebuild from the latest snapshot. :meth:`OnlineTable.refresh` does the same for
commits made by other processes. Updates append the newer rows and repoint the index;
stale rows are dropped by a compaction once they outnumber live ones.

Threads: once an insert returns, every lookup started afterwards, from any thread, sees
it. A lookup compares two integers, the newest noted version and the version the snapshot
reflects; when they differ it takes the table's lock and catches up, or waits for the
lookup that is catching up, and the reflected version moves only once the new snapshot is
in place. Lookups of an up-to-date table take no lock: an update that must grow a buffer
builds a new snapshot and swaps it in, so a lookup that started before the insert returned
sees the old or the new row.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl

from microfs.errors import DefinitionError, NotFoundError, SchemaError
from microfs.feature_group import FeatureGroup
from microfs.online.hashing import Array, key_hashes
from microfs.online.index import Request, RowReader, Snapshot, latest_rows, row_reader
from microfs.online.keys import Keys
from microfs.progress import Progress, track

__all__ = ["FoundRows", "OnlineTable"]

_LARGE_BUILD = 1_000_000  # rows from which progress=True draws a bar
_MIN_COMPACT = 4_096  # stale rows tolerated before a compaction is considered
_FOUND = "__found"


class OnlineTable:
    """Latest row per online key of one feature group, in compact columnar form + a hash index.

    Get one from :meth:`OnlineStore.table`. Lookups take a key as a tuple of values in
    ``key_columns`` order (a bare value for a one-column key); values are compared as typed
    values, so ``(1, 102)`` never matches ``("1", "102")``.

    Attributes:
        group_name: the feature group's name.
        group_version: the feature group's definition version.
        table_version: the Delta table version the rows reflect.
        key_columns: the online key columns.
        columns: the other columns held (features and the event time), in schema order.

    >>> import tempfile, microfs
    >>> fs = microfs.FeatureStore(tempfile.mkdtemp())
    >>> fg = fs.create_feature_group(
    ...     name="user_profile", primary_keys=["user_id"], online_keys=["user_id"],
    ...     schema={"user_id": "int64", "age": "int64", "level": "string"})
    >>> _ = fg.insert(pl.DataFrame({"user_id": [1, 2], "age": [34, 51], "level": ["gold", None]}))
    >>> table = fs.online.table(fg)
    >>> table.get((1,), ["age", "level"]), table.get((2,), ["level"]), table.get((3,), ["age"])
    ((34, 'gold'), (None,), None)
    """

    def __init__(self, group: FeatureGroup, *, progress: Progress = False) -> None:
        online = group.online_keys
        if not online:
            raise DefinitionError(
                f"feature group {group.name!r} has no online_keys, so it is not served online; "
                "create a version with online_keys=[...] to serve it"
            )
        definition = group.definition
        self.group_name = group.name
        self.group_version = group.version
        self.key_columns = tuple(online)
        self.columns = tuple(c for c in definition.schema if c not in self.key_columns)
        self._group = group
        self._canonical = dict(definition.schema)
        self._keys = Keys(group.name, online, [self._canonical[k] for k in online])
        # rows of one online key are ordered by event time, then the other primary keys
        self._order = (
            *([definition.event_time] if definition.event_time else []),
            *(k for k in definition.primary_keys if k not in online),
        )
        self._nullable = [k for k in online if k not in definition.primary_keys]
        self._lock = threading.RLock()  # held by a catch-up; the lookups waiting for it queue here
        self._noted = threading.Lock()  # guards raising _wanted
        self._wanted = -1  # the newest table version a commit in this process made
        self._version = -1  # the table version the snapshot reflects
        self._state: Snapshot
        # Arrow's take (string columns of batch lookups) imports pyarrow.compute on first
        # use, about 80 ms: paid here, with the build, rather than by the first batch.
        import pyarrow.compute  # noqa: F401

        # progress=True draws a bar only for 1M keys or more (the Delta log's row count)
        large = progress is True and group.count() >= _LARGE_BUILD
        with track(progress, task=f"online table {group.name}", total=1, large=large) as step:
            self._rebuild()
            step("built")

    def __repr__(self) -> str:
        return (
            f"OnlineTable(group={self.group_name!r}, version={self.group_version}, "
            f"table_version={self._version}, keys={len(self)})"
        )

    @property
    def table_version(self) -> int:
        """The Delta table version the rows reflect."""
        if self._wanted > self._version:
            self._sync()
        return self._version

    def __len__(self) -> int:
        if self._wanted > self._version:
            self._sync()
        return self._state.count

    def row_index(self, key: tuple[Any, ...]) -> int | None:
        """The row position holding ``key``'s latest row, or None for an unknown key.

        Raises:
            SchemaError: a key value of a type the key column cannot hold.

        >>> table.row_index((1,))  # doctest: +SKIP
        0
        """
        if self._wanted > self._version:
            self._sync()
        return self._state.find(key)

    def get(self, key: tuple[Any, ...], columns: Sequence[str]) -> tuple[Any, ...] | None:
        """Python values of ``columns`` in ``key``'s latest row, or None for an unknown key.

        Nulls come back as None, datetimes as UTC datetimes, dates as dates.

        Raises:
            SchemaError: an unknown column, or a key value of the wrong type.

        >>> table.get((1,), ("age", "level"))  # doctest: +SKIP
        (34, 'gold')
        """
        if self._wanted > self._version:
            self._sync()
        state = self._state
        position = state.find(key)
        if position is None:
            return None
        names = columns if type(columns) is tuple else self._checked(columns)
        read = state.rows.get(names)
        if read is None:
            read = self._row_reader(state, names)
        return read(position)

    def getter(self, columns: Sequence[str]) -> Callable[[tuple[Any, ...]], tuple[Any, ...] | None]:
        """A function doing :meth:`get` for ``columns``, bound to the current snapshot.

        For many lookups in a loop: the freshness check, the column check and the row
        reader are done once, and every lookup through it reads the same snapshot (so the
        rows of one batch are consistent while inserts are applied).

        Raises:
            SchemaError: an unknown column (the function: a key value of the wrong type).

        >>> get = table.getter(("age", "level"))  # doctest: +SKIP
        >>> get((1,)), get((3,))  # doctest: +SKIP
        ((34, 'gold'), None)
        """
        if self._wanted > self._version:
            self._sync()
        state = self._state
        names = self._checked(columns)
        read = state.rows.get(names)
        if read is None:
            read = self._row_reader(state, names)
        find = state.find

        def get(key: tuple[Any, ...]) -> tuple[Any, ...] | None:
            position = find(key)
            return None if position is None else read(position)

        return get

    def get_many(self, keys: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
        """One row per row of ``keys``, in order: ``columns`` and a boolean ``__found``.

        Unknown keys (and keys with a null) give nulls and ``__found`` false. Request key
        columns are cast to the stored types when that loses nothing. Vectorised: one
        hash probe per round over all keys, no Python loop over rows.

        >>> table.get_many(pl.DataFrame({"user_id": [2, 3]}), ["age"]).rows()  # doctest: +SKIP
        [(51, True), (None, False)]
        """
        names = self._checked(columns)
        rows = self.find_many(keys)
        return pl.DataFrame([*(rows.column(n) for n in names), pl.Series(_FOUND, rows.found)])

    def find_many(self, keys: pl.DataFrame) -> FoundRows:
        """The rows of many keys (the frame's online key columns), in request order.

        Vectorised like :meth:`get_many`; the result reads columns of one consistent
        snapshot, so concurrent inserts never mix old and new rows in it.

        Raises:
            SchemaError: ``keys`` is not a DataFrame, lacks a key column or holds values
                the key column cannot hold.

        >>> table.find_many(pl.DataFrame({"user_id": [2, 3]})).found  # doctest: +SKIP
        array([ True, False])
        """
        if self._wanted > self._version:
            self._sync()
        state = self._state
        if not isinstance(keys, pl.DataFrame):
            raise SchemaError(
                f"get_many takes a polars.DataFrame of key columns, not {type(keys).__name__}"
            )
        series = self._keys.cast(keys)
        positions = np.full(keys.height, -1, dtype=np.int64)
        known: Array | None = None
        for column in series:
            if column.null_count():
                valid = column.is_not_null().to_numpy()
                known = valid if known is None else known & valid
        if known is not None:
            rows = np.flatnonzero(known)
            request = Request(self._keys, [column.gather(rows) for column in series])
            positions[rows] = state.probe(request, key_hashes(request.codes))[0]
        elif keys.height:
            request = Request(self._keys, series)
            positions = state.probe(request, key_hashes(request.codes))[0]
        return FoundRows(self, state, positions)

    def memory_bytes(self) -> int:
        """Bytes held by the column buffers and the index (Python object overhead aside).

        >>> table.memory_bytes()  # doctest: +SKIP
        1234
        """
        if self._wanted > self._version:
            self._sync()
        return self._state.nbytes()

    # -- internals ---------------------------------------------------------------------

    def _checked(self, columns: Sequence[str]) -> tuple[str, ...]:
        names = (columns,) if isinstance(columns, str) else tuple(columns)
        unknown = [c for c in names if c not in self._canonical]
        if unknown or len(set(names)) != len(names):
            problem = (
                f"has no column(s) {', '.join(map(repr, unknown))}"
                if unknown
                else f"was asked for a column twice: {list(names)}"
            )
            raise SchemaError(
                f"feature group {self.group_name!r} {problem}; its columns are "
                f"{', '.join(self._canonical)}"
            )
        return names

    def _row_reader(self, state: Snapshot, columns: Sequence[str]) -> RowReader:
        names = self._checked(columns)
        read = row_reader([state.columns[name].reader() for name in names])
        if len(state.rows) < 256:
            state.rows[names] = read
        return read

    def committed(self, version: int) -> None:
        """Note that table ``version`` was committed: every lookup from now on reflects it.

        Cheap (nothing is read here): the next lookup catches up, and lookups that start
        while it does wait for it. :meth:`OnlineStore.committed` calls this after each
        insert of the feature store; a table made by hand is told by its caller.

        >>> table.committed(group.insert(batch).version)  # doctest: +SKIP
        """
        with self._noted:
            if version > self._wanted:
                self._wanted = version

    def refresh(self) -> None:
        """Catch up with every commit since the snapshot (other processes' too).

        >>> table.refresh()  # doctest: +SKIP
        """
        with self._lock:
            if self._group.table_version() != self._version:
                self._catch_up()

    def _sync(self) -> None:
        """Catch up with the noted commits, or wait for the lookup already doing it.

        Only a finished catch-up moves ``_version`` (after the snapshot it built is in
        place), so a lookup that sees ``_wanted <= _version`` reads a snapshot holding
        every commit noted before it started; one that does not comes here, where the
        lock makes it wait for a catch-up in progress and then finds nothing left to do.
        A catch-up that fails leaves ``_version`` behind, so the next lookup tries again.
        """
        with self._lock:
            if self._wanted > self._version:
                self._catch_up()

    def _catch_up(self) -> None:
        try:
            added = self._group.added_since(self._version)
        except NotFoundError:
            added = None
        if added is None:
            self._rebuild()
            return
        latest, rows = added
        if latest == self._version:
            return
        try:
            appended = rows.collect()
        except pl.exceptions.PolarsError:  # files the reader cannot take alone: read it all
            self._rebuild()
            return
        self._apply(appended, latest)

    def _prepared(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Rows with non-null online keys, in the group's schema."""
        if self._nullable:
            frame = frame.filter(pl.all_horizontal(pl.col(k).is_not_null() for k in self._nullable))
        frame = frame.select(list(self._canonical))
        schema = self._group.schema
        if frame.schema != schema:  # Delta keeps unsigned integers as signed ones
            frame = frame.cast(schema)
        return frame

    def _rebuild(self) -> None:
        version = self._group.table_version()
        frame = self._prepared(self._group.scan(version=version).collect())
        self._state = Snapshot.build(self._keys, self._canonical, frame, self._order)
        self._version = version

    def _apply(self, frame: pl.DataFrame, version: int) -> None:
        """Merge appended rows: a row replaces its key's row only if it is not older."""
        state, keys = self._state, self._keys
        batch, h, _, _ = latest_rows(keys, self._prepared(frame), self._order)
        if not batch.height:
            self._version = version
            return
        request = Request(keys, [batch.get_column(name) for name in keys.names])
        positions, slots_found = state.probe(request, h)
        found = positions >= 0
        wins = np.ones(batch.height, dtype=np.bool_)
        if found.any() and self._order:
            wins[found] = self._newer(batch.filter(pl.Series(found)), state, positions[found])
        take = np.flatnonzero(wins)
        if not take.size:
            self._version = version
            return
        self._state = state.merged(batch[take], h[take], positions[take], slots_found[take])
        if self._state.stale > max(_MIN_COMPACT, self._state.count):
            self._state = self._state.compacted(self._canonical)
        self._version = version

    def _newer(self, batch: pl.DataFrame, state: Snapshot, positions: Array) -> Array:
        """Whether each batch row orders at or after the stored row (ties: the batch wins)."""
        result: pl.Series | None = None
        for name in reversed(self._order):
            new = batch.get_column(name)
            old = state.columns[name].gather(positions)
            result = (new >= old) if result is None else (new > old) | ((new == old) & result)
        assert result is not None
        return np.asarray(result.to_numpy())


class FoundRows:
    """Rows of one online table found for a batch of keys, in request order.

    Get one from :meth:`OnlineTable.find_many`. It reads a single snapshot of the table,
    so it stays consistent while inserts are applied.

    Attributes:
        positions: the row position of each request key (``int64``, -1 where not found).
    """

    __slots__ = ("_state", "_table", "positions")

    def __init__(self, table: OnlineTable, state: Snapshot, positions: Array) -> None:
        self._table, self._state, self.positions = table, state, positions

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def found(self) -> Array:
        """Whether each request key has a row (a boolean array).

        >>> table.find_many(pl.DataFrame({"user_id": [2, 3]})).found  # doctest: +SKIP
        array([ True, False])
        """
        found: Array = self.positions >= 0
        return found

    def where(self, keep: Array) -> FoundRows:
        """The same rows, with those where ``keep`` is false treated as not found.

        >>> rows.where(np.array([True, False])).found  # doctest: +SKIP
        array([ True, False])
        """
        return FoundRows(self._table, self._state, np.where(keep, self.positions, -1))

    def column(self, name: str) -> pl.Series:
        """The values of column ``name`` for each request key (null where not found).

        Raises:
            SchemaError: the table has no column ``name``.

        >>> rows.column("age").to_list()  # doctest: +SKIP
        [51, None]
        """
        self._table._checked((name,))
        return self._state.columns[name].gather(self.positions)
